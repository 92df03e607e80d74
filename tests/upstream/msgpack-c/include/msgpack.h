/* Stand-in for msgpack/msgpack-c, a git submodule of the MoRI stand-in. */
#define MSGPACK_VERSION_MAJOR 6
