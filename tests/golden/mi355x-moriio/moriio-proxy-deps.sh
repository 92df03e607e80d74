# ---- component moriio-proxy-deps: Python packages of the MoRI-IO proxy, which runs on the first node only. ----
_eb_component moriio-proxy-deps d31a31d5d6b0809f133d682710340d7b77b9120f2f2424203bfde05db9b11c5b '' 0 '' 0 '' ''
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
