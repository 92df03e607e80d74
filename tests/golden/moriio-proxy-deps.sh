# ---- component moriio-proxy-deps: Python packages of the MoRI-IO proxy, which runs on the first node only. ----
_eb_component moriio-proxy-deps 2e7e40a338b29234f14e884dd158b6e800164681c99995711761e35df1f4c868 '' 0 '' 0 '' '' '' 1
_eb_step_moriio_proxy_deps() {
  _eb_pip --ignore-installed blinker
  _eb_pip quart aiohttp msgpack pyzmq
}
_eb_check_moriio_proxy_deps() {
"$EB_PYTHON" -c 'import quart, aiohttp, msgpack, zmq'
}
_eb_env_moriio_proxy_deps() {
  :
}
