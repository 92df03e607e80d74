/* Stand-in for RIXL's core library: built against ROCm. */
#include <hip/hip_runtime.h>

#include "rixl.h"

const char *rixl_version(void) { return HIP_VERSION_MAJOR ? "0.8.0" : "0.8.0-nohip"; }
