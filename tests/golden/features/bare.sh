# ---- component bare: Nothing to do but a check. ----
_eb_component bare \
  hash=61fa2aff076385d0850e12c1769e2ec13aa21ea53c9eb795a9de44e29b93cf51 \
  gpu_target=gfx950
_eb_step_bare() {
  :
}
_eb_check_bare() {
true
}
_eb_env_bare() {
  :
}
