# ---- component prefix-env: An install prefix and the environment that points at it. ----
_eb_component prefix-env \
  hash=13143bdd6018e8490431b666f859e10c1095a67ae0302de73c0b4afc45ba27b4 \
  prefix_vars=THING_HOME \
  own_prefixes=THING_HOME \
  env_chain=prefix-env \
  gpu_target=gfx950
_eb_prefix THING_HOME /opt/thing
_eb_step_prefix_env() {
mkdir -p "$THING_HOME/bin"
}
_eb_check_prefix_env() {
  :
}
_eb_env_prefix_env() {
  _eb_set THING_HOME "${THING_HOME}"
  _eb_set THING_MODE 'fast; not a command'
  _eb_prepend PATH "${THING_HOME}"/bin
  _eb_prepend LD_LIBRARY_PATH "${THING_HOME}"/lib64
  _eb_prepend LD_LIBRARY_PATH "${THING_HOME}"/lib
}
