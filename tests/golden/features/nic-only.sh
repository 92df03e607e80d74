# ---- component nic-only: Only on ionic and bnxt nodes. ----
_eb_component nic-only \
  hash=bd0555d38ca3c0b02e8d27c3e5500dbf08497409939a0383d39c70cd9a209f3e \
  condition='NIC family in ionic,bnxt' \
  nics='ionic bnxt' \
  gpu_target=gfx950
_eb_step_nic_only() {
echo nic
}
_eb_check_nic_only() {
  :
}
_eb_env_nic_only() {
  :
}
