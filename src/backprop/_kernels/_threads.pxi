# Threads and signals: who may use BLAS's threads, and Ctrl-C inside compiled loops.
# Threads. Large products run in parts on the library's own team (_gemm_parts), and the
# narrow products BLAS computes go to it in chunks it runs on the calling thread
# (_narrow_chunks): by default no product uses BLAS's threads. A product sent whole to
# BLAS (BLAS_MIN_WORK, which the tests lower) may: when the caller already runs kernels in
# parallel, two threaded products at once would oversubscribe the cores (two fits in two
# threads took twice as long as one after the other), so while more than one kernel call
# is running and BLAS has more than one thread, the products BLAS would thread take turns,
# one at a time (``_blas_turn_take``/``_blas_turn_give`` around the call; the lock
# blocks, it does not spin). BLAS's thread count is only read, never set: a limit the
# user sets, before or during a fit, is the one BLAS has after it. The counter is only
# touched with the GIL held.

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


# The two-core paths' threads: the library's own team (team.h), the caller and one
# worker thread, started by the first two-core batch. At most ``_thread_limit`` threads
# (2 at most count): BACKPROP_NUM_THREADS, else OMP_NUM_THREADS (its first number), else
# the CPUs this process may run on, read at import; ``set_num_threads`` and
# threadpoolctl (``backprop._threadpool``) change it.

cdef extern from "team.h":
    ctypedef void (*_part_fn "bp_part_fn")(void* ctx, int part) noexcept nogil
    void _team_run "bp_team_run"(int n_parts, _part_fn fn, void* ctx, int threads) noexcept nogil
    int _team_state "bp_team_state"() noexcept nogil
    int _team_reset "bp_team_reset"() noexcept nogil
    enum:
        BP_TEAM_NONE
        BP_TEAM_READY
        BP_TEAM_FAILED

cdef int _thread_limit = 1


cdef inline int _team_size() noexcept nogil:
    """Threads for a two-core path: two when the thread limit allows two and no other
    kernel call is running (two calls at once already keep both cores busy)."""
    return 2 if _running <= 1 and _thread_limit >= 2 else 1


def team_size():
    """The threads a two-core path takes now (``_team_size``)."""
    return _team_size()


def get_num_threads():
    """The most threads the two-core paths use (``set_num_threads``)."""
    return _thread_limit


def set_num_threads(int n):
    """Let the two-core paths use at most n threads (n >= 1; more than 2 counts as 2);
    returns the previous limit. A worker that could not be started before is tried
    again."""
    global _thread_limit
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    previous, _thread_limit = _thread_limit, n
    _team_reset()
    return previous


def team_state():
    """The worker thread: "not started", "running" or "failed to start" (the two-core
    paths then run on the calling thread alone)."""
    return {BP_TEAM_NONE: "not started", BP_TEAM_READY: "running",
            BP_TEAM_FAILED: "failed to start"}[_team_state()]


def _threads_from_environment():
    """The thread limit at import: BACKPROP_NUM_THREADS, else the first number of
    OMP_NUM_THREADS, else the CPUs this process may run on; a value that is not a
    positive integer is ignored."""
    import os

    for name in ("BACKPROP_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _after_fork_in_child():
    """A forked child has only the thread that forked: no kernel call of another thread
    is running there, and none holds BLAS's turn (team.h resets the team itself)."""
    global _running, _blas_turn
    _running = 0
    _blas_turn = PyThread_allocate_lock()


_thread_limit = _threads_from_environment()
_register_at_fork(after_in_child=_after_fork_in_child)


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
