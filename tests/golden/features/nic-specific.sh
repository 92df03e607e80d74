# ---- component nic-specific: Built per NIC family, into a prefix that holds a directory per family. ----
_eb_component nic-specific \
  hash=671cacd89cc32d612120a8352453e4fb318e921a0c5154ac40b575a3f5c878e7 \
  depends='deb prefix-env' \
  nic_specific=1 \
  prefix_vars='NIC_HOME THING_HOME' \
  own_prefixes=NIC_HOME \
  env_chain='prefix-env nic-specific' \
  gpu_target=gfx950
_eb_prefix NIC_HOME /opt/nic-specific
_eb_step_nic_specific() {
echo "building for $EB_NIC_FAMILY"
mkdir -p "$NIC_HOME/bin"
}
_eb_check_nic_specific() {
  :
}
_eb_env_nic_specific() {
  _eb_set NIC_HOME "${NIC_HOME}"
  _eb_prepend PATH "${NIC_HOME}"/bin
}
