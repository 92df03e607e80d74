# ---- component depends-on-prefix: Needs prefix-env, so its stamp and environment carry THING_HOME. ----
_eb_component depends-on-prefix \
  hash=c1470d983a20d62047fb20ef1b1b9f26952997035d7c70ca37508898f248f666 \
  depends=prefix-env \
  prefix_vars=THING_HOME \
  env_chain=prefix-env
_eb_step_depends_on_prefix() {
"$THING_HOME/bin/thing" --version
}
_eb_check_depends_on_prefix() {
  :
}
_eb_env_depends_on_prefix() {
  :
}
