# ---- component bare: Nothing to do but a check. ----
_eb_component bare \
  hash=949b7d7d513d78978d8169ca25bc833c24de24dc498048e5986ef8972eb6bdee
_eb_step_bare() {
  :
}
_eb_check_bare() {
true
}
_eb_env_bare() {
  :
}
