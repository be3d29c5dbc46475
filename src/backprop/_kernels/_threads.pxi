# Threads and signals: who may use BLAS's threads, and Ctrl-C inside compiled loops.
# Threads. Large products use BLAS's threads (scipy's OpenBLAS: all cores unless
# threadpoolctl or OMP_NUM_THREADS say otherwise). When the caller already runs kernels
# in parallel, two threaded products at once would oversubscribe the cores (two fits in
# two threads took twice as long as one after the other): while more than one kernel
# call is running, OpenBLAS is held at one thread, and given back what it had when the
# last of them ends. The counter is only touched with the GIL held. OpenBLAS reads its
# thread count when a call starts, so a call already running keeps the count it began
# with; lowering or restoring the count creates and frees no threads.

ctypedef void (*_set_threads_t)(int) noexcept nogil
ctypedef int (*_get_threads_t)() noexcept nogil
cdef _set_threads_t _blas_set_threads = NULL
cdef _get_threads_t _blas_get_threads = NULL
cdef int _running = 0
cdef int _saved_blas_threads = 0


def bind_blas_threads(size_t set_address, size_t get_address):
    """Take OpenBLAS's set/get_num_threads (C function addresses) for thread control."""
    global _blas_set_threads, _blas_get_threads
    _blas_set_threads = <_set_threads_t>set_address
    _blas_get_threads = <_get_threads_t>get_address


cdef void _calls_enter() noexcept:
    global _running, _saved_blas_threads
    _running += 1
    if _running == 2 and _blas_get_threads != NULL:
        _saved_blas_threads = _blas_get_threads()
        if _saved_blas_threads > 1:
            _blas_set_threads(1)


cdef void _calls_exit() noexcept:
    global _running, _saved_blas_threads
    _running -= 1
    if _running == 1 and _saved_blas_threads > 1:
        _blas_set_threads(_saved_blas_threads)
        _saved_blas_threads = 0


cdef extern from "Python.h":
    # PyErr_CheckSignals as a plain int: inside a parallel region the error it sets is
    # raised only after every thread has left the region
    int _check_signals "PyErr_CheckSignals"() noexcept


cdef int _raise_pending() except -1:
    """Raises the exception a signal handler left set (see ``_check_signals``)."""
    return -1


def _bind_scipy_openblas():
    """Find the OpenBLAS behind scipy.linalg.cython_blas and take its thread controls.

    Returns whether it was found; without it BLAS threads are left as they are.
    """
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({
                fields[5] for fields in (line.split(None, 5) for line in maps)
                if len(fields) == 6 and "openblas" in fields[5]
            })
    except OSError:
        return False
    for path in paths:
        try:
            lib = ctypes.CDLL(path.strip())
            set_fn = lib.scipy_openblas_set_num_threads
            get_fn = lib.scipy_openblas_get_num_threads
        except (OSError, AttributeError):
            continue
        bind_blas_threads(ctypes.cast(set_fn, ctypes.c_void_p).value,
                          ctypes.cast(get_fn, ctypes.c_void_p).value)
        return True
    return False
