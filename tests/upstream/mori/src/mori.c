/* Stand-in for MoRI's libraries: reports what the build compiled in. */
#include <msgpack.h>
#include <spdlog/spdlog.h>

const char *mori_device_nic(void) {
#if defined(MORI_DEVICE_NIC_BNXT)
  return "bnxt";
#elif defined(MORI_DEVICE_NIC_IONIC)
  return "ionic";
#else
  return "mlx5";
#endif
}

int mori_host_bnxt(void) { return USE_BNXT; }

int mori_host_ionic(void) { return USE_IONIC; }

const char *mori_gpu_archs(void) { return MORI_GPU_ARCHS; }
