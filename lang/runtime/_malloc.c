/* How glibc's malloc gives memory back (an optional extension; elsewhere a no-op).
 *
 * glibc trims the top of its heap once 128 KiB (a threshold that moves) are free there, and
 * the next allocation faults the pages in again: a server echoing 64 KiB messages took
 * 75,000-107,000 minor page faults per 10,000 messages and half again as much CPU
 * (bench/RESULTS.md). keep(trim, mmap) sets M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (setting
 * one stops glibc moving the other, so both are set); it returns whether it could.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static PyObject *
malloc_keep(PyObject *module, PyObject *args)
{
    int trim, mmap_at;
    if (!PyArg_ParseTuple(args, "ii:keep", &trim, &mmap_at))
        return NULL;
#ifdef __GLIBC__
    if (mallopt(M_MMAP_THRESHOLD, mmap_at) == 1 && mallopt(M_TRIM_THRESHOLD, trim) == 1)
        Py_RETURN_TRUE;
#endif
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"keep", malloc_keep, METH_VARARGS, "keep(trim, mmap) -> bool"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_malloc", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__malloc(void)
{
    return PyModule_Create(&module);
}
