/* Stand-in for one of UCX's libraries (libucs, libuct, libucp). */
#define NAME_(c) #c
#define NAME(c) NAME_(c)

const char *ucx_component(void) { return NAME(COMPONENT); }
