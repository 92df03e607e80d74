# ---- component nic-specific: Built per NIC family. ----
_eb_component nic-specific \
  hash=4ad7f003b5d33599d2bf96abfa47112eae5b0c57460a6f372e51a16d86aadc2e \
  nic_specific=1
_eb_step_nic_specific() {
echo "building for $EB_NIC_FAMILY"
}
_eb_check_nic_specific() {
  :
}
_eb_env_nic_specific() {
  :
}
