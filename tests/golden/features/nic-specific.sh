# ---- component nic-specific: Built per NIC family. ----
_eb_component nic-specific \
  hash=c056fd71f1e843d2b80151e353ecbeec4ef1718d7f6efb6f9d773a6bab67368c \
  nic_specific=1 \
  gpu_target=gfx950
_eb_step_nic_specific() {
echo "building for $EB_NIC_FAMILY"
}
_eb_check_nic_specific() {
  :
}
_eb_env_nic_specific() {
  :
}
