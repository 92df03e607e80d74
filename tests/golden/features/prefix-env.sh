# ---- component prefix-env: An install prefix and the environment that points at it. ----
_eb_component prefix-env \
  hash=eb1c4fde5c632f4941a10662fc629679e21f4fad37dbc94a9385fe2d5ab7dcc0 \
  prefix_vars=THING_HOME \
  own_prefixes=THING_HOME \
  env_chain=prefix-env
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
