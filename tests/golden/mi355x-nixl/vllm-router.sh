# ---- component vllm-router: vllm-router, the Rust request router for prefill/decode disaggregation. ----
_eb_component vllm-router f07f6a6ab181df5568c246b7b88bcb3b2a224c546f8cb6b2148c0002c564f356 '' 0 '' 0 '' ''
_eb_step_vllm_router() {
  _eb_pip vllm-router
}
_eb_check_vllm_router() {
"$EB_PYTHON" -c 'import importlib.metadata as m; m.version("vllm-router")'
}
_eb_env_vllm_router() {
  :
}
