# Threads and signals: who may use BLAS's threads, and Ctrl-C inside compiled loops.
# Threads. Large products use BLAS's threads (scipy's OpenBLAS: all cores unless
# threadpoolctl or OMP_NUM_THREADS say otherwise). When the caller already runs kernels
# in parallel, two threaded products at once would oversubscribe the cores (two fits in
# two threads took twice as long as one after the other): while more than one kernel
# call is running and BLAS has more than one thread, the products BLAS would thread
# take turns, one at a time (``_blas_turn_take``/``_blas_turn_give`` around the call;
# the lock blocks, it does not spin). BLAS's thread count is only read, never set: a
# limit the user sets, before or during a fit, is the one BLAS has after it. The
# counter is only touched with the GIL held.

ctypedef int (*_get_threads_t)() noexcept nogil
cdef _get_threads_t _blas_get_threads = NULL
cdef int _running = 0
cdef PyThread_type_lock _blas_turn = PyThread_allocate_lock()


def bind_blas_threads(size_t get_address):
    """Take OpenBLAS's get_num_threads (a C function address) to read its thread count."""
    global _blas_get_threads
    _blas_get_threads = <_get_threads_t>get_address


cdef inline bint _blas_turn_take() noexcept nogil:
    """Before a product BLAS may thread: while another kernel call is running and BLAS
    has more than one thread, waits for the turn and returns True (``_blas_turn_give``
    after the product); else returns False at once."""
    if _running <= 1 or _blas_get_threads == NULL or _blas_get_threads() <= 1:
        return False
    PyThread_acquire_lock(_blas_turn, WAIT_LOCK)
    return True


cdef inline void _blas_turn_give(bint taken) noexcept nogil:
    if taken:
        PyThread_release_lock(_blas_turn)


cdef void _calls_enter() noexcept:
    global _running
    _running += 1


cdef void _calls_exit() noexcept:
    global _running
    _running -= 1


cdef extern from "Python.h":
    # PyErr_CheckSignals as a plain int: inside a parallel region the error it sets is
    # raised only after every thread has left the region
    int _check_signals "PyErr_CheckSignals"() noexcept


cdef int _raise_pending() except -1:
    """Raises the exception a signal handler left set (see ``_check_signals``)."""
    return -1


def blas_threads():
    """BLAS's thread count as the kernels read it (binding BLAS first); 0 where they
    cannot read it."""
    _bind_blas()
    return _blas_get_threads() if _blas_get_threads != NULL else 0


def _bind_scipy_openblas():
    """Find the OpenBLAS behind scipy.linalg.cython_blas and take its thread count.

    Returns the library's path, or None where it was not found: products then never
    take turns.
    """
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({
                fields[5] for fields in (line.split(None, 5) for line in maps)
                if len(fields) == 6 and "openblas" in fields[5]
            })
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path.strip())
            get_fn = lib.scipy_openblas_get_num_threads
        except (OSError, AttributeError):
            continue
        bind_blas_threads(ctypes.cast(get_fn, ctypes.c_void_p).value)
        return path.strip()
    return None
