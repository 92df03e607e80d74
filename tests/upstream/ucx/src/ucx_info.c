/* Stand-in for ucx_info: -v passes whatever was built, -b shows the build's defines. */
#include <stdio.h>
#include <string.h>

#include "build_config.h"

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "-v") == 0) {
    printf("# Library version: 1.19.0\n# Library path: %s/lib/libucs.so\n", UCX_PREFIX);
    printf("# API headers version: 1.19.0\n# Configured with: %s\n", UCX_CONFIGURE_ARGS);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "-b") == 0) {
    fputs(build_config, stdout);
    return 0;
  }
  fprintf(stderr, "usage: ucx_info -v | -b\n");
  return 1;
}
