/* Stand-in for UCX's ROCm transport module: needs the HIP headers and library. */
#include <hip/hip_runtime.h>

int uct_rocm_hip_version(void) { return HIP_VERSION_MAJOR; }
