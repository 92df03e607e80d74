/* Stand-in for RIXL's C++ API. */
const char *rixl_version(void);
