# ---- component nic-only: Only on ionic and bnxt nodes. ----
_eb_component nic-only \
  hash=5652ad7ddb2f0ff05658338e0c79a3bfbae0e27552c3c6449c5deab7e88e93d8 \
  condition='NIC family in ionic,bnxt' \
  nics='ionic bnxt'
_eb_step_nic_only() {
echo nic
}
_eb_check_nic_only() {
  :
}
_eb_env_nic_only() {
  :
}
