/* Stand-in for RIXL's Python bindings (rixl._bindings). */
#include <Python.h>

#include "rixl.h"

static PyObject *version(PyObject *self, PyObject *args) { return PyUnicode_FromString(rixl_version()); }

static PyMethodDef methods[] = {{"version", version, METH_NOARGS, "The library's version."}, {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bindings", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bindings(void) { return PyModule_Create(&module); }
