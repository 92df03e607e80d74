# ---- component apt-and-pip: Debian packages, loose pip requirements and a pip group with options. ----
_eb_component apt-and-pip \
  hash=35906a2867c8e27cf924a194593c6b69a2d4211418b334eaeefdbcbfe46adfdb \
  uses_python=1 \
  gpu_target=gfx950 \
  protected='torch vllm'
_eb_step_apt_and_pip() {
  _eb_apt libfoo-dev bar=1.0-1
  _eb_pip quart 'pyzmq>=25'
  _eb_pip --ignore-installed blinker
}
_eb_check_apt_and_pip() {
"$EB_PYTHON" -c 'import quart'
}
_eb_env_apt_and_pip() {
  :
}
