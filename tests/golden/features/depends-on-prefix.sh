# ---- component depends-on-prefix: Needs prefix-env, so its stamp and environment carry THING_HOME. ----
_eb_component depends-on-prefix \
  hash=1024f56751540c06bf77d0e39559f2a249f5a471d920aa661e9591d821ce1e44 \
  depends=prefix-env \
  prefix_vars=THING_HOME \
  env_chain=prefix-env \
  gpu_target=gfx950
_eb_step_depends_on_prefix() {
"$THING_HOME/bin/thing" --version
}
_eb_check_depends_on_prefix() {
  :
}
_eb_env_depends_on_prefix() {
  :
}
