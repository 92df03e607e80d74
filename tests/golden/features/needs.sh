# ---- component needs: What the step takes from the base image. ----
_eb_component needs \
  hash=d66ff59919d5e44f1c3f7bf199bb1986526ae896c76200e4fabe9f3db3fbf93a \
  gpu_target=gfx950
_eb_step_needs() {
hipify-perl --version
}
_eb_check_needs() {
  :
}
# What it takes from the base image, checked before anything is installed.
_eb_needs_needs() {
  _eb_need_command hipify-perl
  _eb_need_file /usr/include/infiniband/verbs.h
  _eb_need_file "${ROCM_PATH:-/opt/rocm}"/lib/libhiprtc.so '${ROCM_PATH:-/opt/rocm}/lib/libhiprtc.so'
  _eb_need_python_headers
}
_eb_env_needs() {
  :
}
