# ---- component apt-and-pip: Debian packages, loose pip requirements and a pip group with options. ----
_eb_component apt-and-pip \
  hash=dd573cbf2923465c5a6599dda7364925b2e46fb80027e169bb7ac32018fc7d4d \
  uses_python=1
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
