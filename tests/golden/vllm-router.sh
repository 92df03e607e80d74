# ---- component vllm-router: vllm-router, the Rust request router for prefill/decode disaggregation. ----
_eb_component vllm-router 7db2b92473639efd8fe4b03741a4543d70d7df8c03f042bd7230b5c0cf385cc4 '' 0 '' 0 '' '' '' 1
_eb_step_vllm_router() {
  _eb_pip vllm-router
}
_eb_check_vllm_router() {
"$EB_PYTHON" -c 'import importlib.metadata as m; m.version("vllm-router")'
}
_eb_env_vllm_router() {
  :
}
