# ---- component rixl: RIXL, ROCm's port of NIXL, with its C++ library and the `rixl` Python package. ----
_eb_component rixl 410cf58e257a329b6ab7d4edd290c0ba10ce658850d98833e8eb3c7411237a18 ucx '' '' 0 'RIXL_HOME UCX_HOME' 'ucx rixl' RIXL_HOME 1
_EB_SOURCE[rixl]=https://github.com/ROCm/RIXL.git@f33a5599400eb8da47ecdad20111ccb35b41a709
_eb_prefix RIXL_HOME /usr/local/rixl
_eb_step_rixl() {
  _eb_apt libgrpc-dev libgrpc++-dev libprotobuf-dev protobuf-compiler-grpc libcpprest-dev libaio-dev
  _eb_pip meson 'pybind11[global]'
  _eb_git https://github.com/ROCm/RIXL.git f33a5599400eb8da47ecdad20111ccb35b41a709 0 RIXL-08fc31fefdbb
rocm_path=${ROCM_PATH:-/opt/rocm}
meson setup build --prefix="$RIXL_HOME" -Ducx_path="$UCX_HOME" -Drocm_path="$rocm_path"
ninja -C build
ninja -C build install
_eb_pip --config-settings=setup-args="-Drocm_path=$rocm_path" \
  --config-settings=setup-args="-Ducx_path=$UCX_HOME" .
}
_eb_check_rixl() {
"$EB_PYTHON" -c 'import rixl'
}
_eb_env_rixl() {
  _eb_set RIXL_HOME "${RIXL_HOME}"
  _eb_prepend LD_LIBRARY_PATH "${RIXL_HOME}"/lib/x86_64-linux-gnu
  _eb_prepend LD_LIBRARY_PATH "${RIXL_HOME}"/lib
}
