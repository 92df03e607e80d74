# ---- component rixl: RIXL, ROCm's port of NIXL, with its C++ library and the `rixl` Python package. ----
_eb_component rixl 02f633ef9891df0c98f452c568f99a2819b1b314db49206b5a72fd18c95ae2a7 ucx '' '' 0 'RIXL_HOME UCX_HOME' 'ucx rixl'
_eb_step_rixl() {
  _eb_apt libgrpc-dev libgrpc++-dev libprotobuf-dev protobuf-compiler-grpc libcpprest-dev libaio-dev
  _eb_pip meson 'pybind11[global]'
  _eb_git https://github.com/ROCm/RIXL.git f33a5599400eb8da47ecdad20111ccb35b41a709 0
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
