/* Stand-in for gabime/spdlog, a git submodule of the MoRI stand-in. */
#define SPDLOG_VER_MAJOR 1
