/* Stand-in for UCX's public header, for projects that build on UCX. */
const char *ucx_component(void);
