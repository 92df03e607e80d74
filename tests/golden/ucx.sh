# ---- component ucx: Unified Communication X, AMD's ROCm fork (branch v1.19.x). ----
_eb_component ucx 6851aa137314b8ac768d643b5d56cdadc1e35eb5434d166152bcdb9c80b3211c '' '' '' 0 UCX_HOME ucx UCX_HOME 0
_EB_SOURCE[ucx]=https://github.com/ROCm/ucx.git@da3fac2afcb55df7605f619ee19b37f4505bd4e4
_eb_prefix UCX_HOME /usr/local/ucx
_eb_step_ucx() {
  _eb_apt autoconf automake libtool pkg-config librdmacm-dev rdmacm-utils libibverbs-dev ibverbs-utils ibverbs-providers infiniband-diags perftest ethtool rdma-core
  _eb_git https://github.com/ROCm/ucx.git da3fac2afcb55df7605f619ee19b37f4505bd4e4 0 ucx-3a38db8f83db
./autogen.sh
mkdir -p build
cd build
../configure --prefix="$UCX_HOME" \
  --enable-shared --disable-static \
  --disable-doxygen-doc --enable-optimizations \
  --enable-devel-headers --enable-mt \
  --with-rocm="${ROCM_PATH:-/opt/rocm}" --with-verbs --with-dm
make -j"$EB_JOBS"
make install
}
_eb_check_ucx() {
test -x "$UCX_HOME/bin/ucx_info"
"$UCX_HOME/bin/ucx_info" -v
}
_eb_env_ucx() {
  _eb_set UCX_HOME "${UCX_HOME}"
  _eb_prepend PATH "${UCX_HOME}"/bin
  _eb_prepend LD_LIBRARY_PATH "${UCX_HOME}"/lib
}
