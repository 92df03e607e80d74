/* Stand-in for RIXL's UCX backend plugin: built against UCX. */
#include <ucp/api/ucp.h>

#include "rixl.h"

const char *rixl_ucx_backend(void) { return ucx_component(); }
