# Matrix products: C := alpha op(A) op(B) + beta C on row-major matrices, computed one of
# four ways chosen by the number of multiply-adds m n k. The thresholds, measured on
# the project's benchmark machine (README "How it is built"):
#
#   path                  from (multiply-adds)    why
#   plain loops           0                       a call and a tile cost more than the
#                                                 work (the tutorial's [2, 2, 1] network)
#   register tiles        TILE_MIN_WORK = 512     73-84 GFLOP/s in float64 where OpenBLAS
#                                                 gets 54-62 and pays for its call,
#                                                 packing and threads (load_digits' fit
#                                                 0.27 s -> 0.19-0.21 s)
#   tiles, in parts on    PARTS_MIN_WORK = 2^22   both cores, on the library's team: parts
#   the team                                      of C claimed by whichever thread is free
#                                                 (see _gemm_parts)
#   BLAS, narrow C        NARROW_BLAS_MIN_WORK    C narrower than a tile strip with
#                         = 4096                  op(B) = B (a classifier's output layer):
#                                                 OpenBLAS's small-matrix kernels waste no
#                                                 lanes where a tile computes a whole strip;
#                                                 in chunks of rows on the calling thread
#   BLAS sgemm/dgemm      BLAS_MIN_WORK (never    for the tests, which send every product
#                         by default)             to BLAS to check the others
#
# OpenBLAS runs a product of fewer than BLAS_ONE_THREAD_WORK multiply-adds on the
# calling thread alone (its GEMM_MULTITHREAD_THRESHOLD, 4 x 65536): the narrow products'
# chunks stay under it, so that BLAS's threads never run.
cdef Py_ssize_t TILE_MIN_WORK = 512
cdef Py_ssize_t PARTS_MIN_WORK = 1 << 22
cdef Py_ssize_t BLAS_MIN_WORK = 1 << 62
cdef Py_ssize_t NARROW_BLAS_MIN_WORK = 4096
cdef Py_ssize_t BLAS_ONE_THREAD_WORK = 1 << 18

# BLAS is scipy's (scipy.linalg.cython_blas), bound on the first call that may use it
# rather than when backprop is imported: importing scipy.linalg takes ~0.3 s, most of
# what ``import backprop`` would cost.
ctypedef void (*_sgemm_t)(char* ta, char* tb, int* m, int* n, int* k, float* alpha,
                          float* a, int* lda, float* b, int* ldb, float* beta, float* c,
                          int* ldc) noexcept nogil
ctypedef void (*_dgemm_t)(char* ta, char* tb, int* m, int* n, int* k, double* alpha,
                          double* a, int* lda, double* b, int* ldb, double* beta, double* c,
                          int* ldc) noexcept nogil
cdef _sgemm_t _sgemm = NULL
cdef _dgemm_t _dgemm = NULL
cdef object _blas_library = None


cdef int _bind_blas() except -1:
    """Binds scipy's gemm, and OpenBLAS's thread count (``_bind_scipy_openblas``), once;
    called with the GIL by every entry point that computes products, before its first."""
    global _sgemm, _dgemm, _blas_library
    if _dgemm != NULL:
        return 0
    from scipy.linalg import cython_blas
    capi = cython_blas.__pyx_capi__
    _blas_library = _bind_scipy_openblas()
    _sgemm = <_sgemm_t>PyCapsule_GetPointer(capi["sgemm"], PyCapsule_GetName(capi["sgemm"]))
    _dgemm = <_dgemm_t>PyCapsule_GetPointer(capi["dgemm"], PyCapsule_GetName(capi["dgemm"]))
    return 0


def blas_library():
    """The path of the OpenBLAS behind scipy.linalg.cython_blas, whose thread count the
    kernels read (binding BLAS first); None where it was not found."""
    _bind_blas()
    return _blas_library


# The register-tiled kernel (tile_gemm.h): GCC's vector extensions, one source for both
# dtypes and every vector width -march allows.
cdef extern from "tile_gemm.h":
    # the width of a tile's strip of C in bytes: two of the target's vectors
    const Py_ssize_t BP_STRIP_BYTES
    # the rows of a tile
    const Py_ssize_t BP_MR
    void _tile_sgemm "bp_tile_sgemm"(char ta, char tb, Py_ssize_t m, Py_ssize_t n,
                                     Py_ssize_t k, float alpha, const float* a, Py_ssize_t lda,
                                     const float* b, Py_ssize_t ldb, float beta, float* c,
                                     Py_ssize_t ldc) noexcept nogil
    void _tile_dgemm "bp_tile_dgemm"(char ta, char tb, Py_ssize_t m, Py_ssize_t n,
                                     Py_ssize_t k, double alpha, const double* a,
                                     Py_ssize_t lda, const double* b, Py_ssize_t ldb,
                                     double beta, double* c, Py_ssize_t ldc) noexcept nogil
    # the same products, packing op(A) and op(B) first (for large ones)
    void _tile_sgemm_packed "bp_tile_sgemm_packed"(
        char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
        const float* a, Py_ssize_t lda, const float* b, Py_ssize_t ldb, float beta, float* c,
        Py_ssize_t ldc) noexcept nogil
    void _tile_dgemm_packed "bp_tile_dgemm_packed"(
        char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
        const double* a, Py_ssize_t lda, const double* b, Py_ssize_t ldb, double beta,
        double* c, Py_ssize_t ldc) noexcept nogil


cdef inline bint _narrow(Py_ssize_t n, Py_ssize_t k, char tb, floating dtype) noexcept nogil:
    """A product whose C is narrower than a tile strip (2 vectors: with AVX-512 16
    doubles or 32 floats, with AVX2 8 or 16) and op(B) = B: BLAS's small-matrix kernels
    run it faster than a tile, which leaves most of its lanes idle. Not with op(B) = B^T,
    which they run slower. And a row of C under BLAS_ONE_THREAD_WORK multiply-adds, so
    that BLAS can take it in chunks on one thread (``_narrow_chunks``); wider ones go to
    the tiles.
    """
    return (n < BP_STRIP_BYTES // <Py_ssize_t>sizeof(floating) and tb == c'N'
            and n * k < BLAS_ONE_THREAD_WORK)


# Large products on both cores. C is cut into parts, of whole strips of columns (or of
# whole tiles of rows when C is taller than wide or too narrow for four strips), and the
# parts are runs of the library's team (team.h): the caller and the worker each claim
# the next part still free, so a worker that is late on a busy machine costs only the
# parts the caller then computes itself, where BLAS's threads would make every product
# wait for a descheduled thread. Each part is a packed-tile product of its own rows or
# columns; a tile computes the same numbers wherever its strip or rows fall, so C does
# not depend on the parts nor on which thread computes them.

cdef struct GemmParts:
    # One product, as ``_gemm`` takes it; ``single``: float (else double); ``rows``: the
    # parts are rows of C (else columns), ``step`` of them each.
    char ta
    char tb
    bint single
    bint rows
    Py_ssize_t m, n, k, lda, ldb, ldc, step
    const void* a
    const void* b
    void* c
    double alpha, beta


cdef void _gemm_part(void* ctx, int part) noexcept nogil:
    """Part ``part`` of the product ``ctx`` (a GemmParts): rows or columns
    [part step, (part + 1) step) of C."""
    cdef GemmParts* g = <GemmParts*>ctx
    cdef Py_ssize_t lo = part * g.step
    cdef Py_ssize_t m = g.m, n = g.n
    cdef Py_ssize_t a_off = 0, b_off = 0, c_off
    if g.rows:
        m = min(g.m, lo + g.step) - lo
        a_off = lo * (g.lda if g.ta == c'N' else 1)
        c_off = lo * g.ldc
    else:
        n = min(g.n, lo + g.step) - lo
        b_off = lo * (1 if g.tb == c'N' else g.ldb)
        c_off = lo
    if g.single:
        _tile_sgemm_packed(g.ta, g.tb, m, n, g.k, <float>g.alpha, <const float*>g.a + a_off,
                           g.lda, <const float*>g.b + b_off, g.ldb, <float>g.beta,
                           <float*>g.c + c_off, g.ldc)
    else:
        _tile_dgemm_packed(g.ta, g.tb, m, n, g.k, g.alpha, <const double*>g.a + a_off,
                           g.lda, <const double*>g.b + b_off, g.ldb, g.beta,
                           <double*>g.c + c_off, g.ldc)


cdef void _blas_call(bint single, char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     double alpha, const void* a, Py_ssize_t a_off, Py_ssize_t lda,
                     const void* b, Py_ssize_t ldb, double beta, void* c, Py_ssize_t c_off,
                     Py_ssize_t ldc) noexcept nogil:
    """BLAS's gemm on C + c_off := alpha op(A + a_off) op(B) + beta C. BLAS is column-major,
    so a row-major product C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T, which is
    the same call with A and B swapped."""
    cdef int im = m, in_ = n, ik = k, ilda = lda, ildb = ldb, ildc = ldc
    cdef float salpha = <float>alpha, sbeta = <float>beta
    if single:
        _sgemm(&tb, &ta, &in_, &im, &ik, &salpha, <float*>b, &ildb, <float*>a + a_off, &ilda,
               &sbeta, <float*>c + c_off, &ildc)
    else:
        _dgemm(&tb, &ta, &in_, &im, &ik, &alpha, <double*>b, &ildb, <double*>a + a_off, &ilda,
               &beta, <double*>c + c_off, &ildc)


cdef void _narrow_chunks(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                         floating alpha, const floating* a, Py_ssize_t lda,
                         const floating* b, Py_ssize_t ldb,
                         floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """A narrow product for BLAS (``_narrow``) in chunks of rows of C, each under
    BLAS_ONE_THREAD_WORK multiply-adds (one chunk if the product is), which OpenBLAS
    computes on the calling thread. Left to itself OpenBLAS would thread such a product,
    and its threads spin for milliseconds after it, on the core the team's worker needs
    for the next large product. The chunks are the same whatever the number of threads,
    and so are the numbers. They stay on the calling thread: a narrow product is a small
    share of a batch (a classifier's output layer), and a product's chunks never enter
    BLAS from two threads at once (the halves' own narrow products may)."""
    cdef Py_ssize_t chunk = max(1, (BLAS_ONE_THREAD_WORK - 1) // max(1, n * k))
    cdef Py_ssize_t i0 = 0, a_row = lda if ta == c'N' else 1
    while i0 < m:
        _blas_call(floating is float, ta, tb, min(chunk, m - i0), n, k, alpha, a, i0 * a_row,
                   lda, b, ldb, beta, c, i0 * ldc, ldc)
        i0 += chunk


cdef void _gemm_parts(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      floating alpha, const floating* a, Py_ssize_t lda,
                      const floating* b, Py_ssize_t ldb,
                      floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """``_gemm`` in up to four parts run by the team (the threads ``_team_size`` allows;
    inside another run, such as a half batch's, the caller computes them all).

    Four parts, not two: on a busy machine the thread that is running takes the parts
    the other has not reached. A part of a weight gradient's columns copies the whole of
    A^T (``bp_tile_?gemm_packed``), which costs about one multiply-add in a strip's worth
    per element copied: a few percent.
    """
    cdef GemmParts g
    cdef Py_ssize_t strip = BP_STRIP_BYTES // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t unit, total, n_parts = 4
    if m <= 0 or n <= 0:
        return
    g = GemmParts(ta=ta, tb=tb, single=floating is float, rows=m > n or n < 4 * strip,
                  m=m, n=n, k=k, lda=lda, ldb=ldb, ldc=ldc, step=0, a=a, b=b, c=c,
                  alpha=alpha, beta=beta)
    unit = BP_MR if g.rows else strip
    total = m if g.rows else n
    # parts of whole tiles or strips, as equal as those allow
    g.step = ((total + n_parts - 1) // n_parts + unit - 1) // unit * unit
    _team_run(<int>((total + g.step - 1) // g.step), _gemm_part, &g, _team_size())


cdef void _gemm_blocked(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        floating alpha, const floating* a, Py_ssize_t lda,
                        const floating* b, Py_ssize_t ldb,
                        floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """``_gemm`` from TILE_MIN_WORK multiply-adds: the tiles (in parts on the team from
    PARTS_MIN_WORK) or BLAS."""
    cdef Py_ssize_t work = m * n * k
    cdef bint turn
    # (BLAS is bound before any product: _bind_blas; the tiles would stand in otherwise)
    if _dgemm != NULL and work >= BLAS_MIN_WORK:
        # a product BLAS would thread waits for its turn while other kernel calls run
        turn = work >= BLAS_ONE_THREAD_WORK and _blas_turn_take()
        _blas_call(floating is float, ta, tb, m, n, k, alpha, a, 0, lda, b, ldb, beta, c, 0,
                   ldc)
        _blas_turn_give(turn)
    elif _dgemm != NULL and _narrow(n, k, tb, <floating>0) and work >= NARROW_BLAS_MIN_WORK:
        _narrow_chunks(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    elif work >= PARTS_MIN_WORK:
        _gemm_parts(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    elif floating is float:
        _tile_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        _tile_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline void _gemm(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       floating alpha, const floating* a, Py_ssize_t lda,
                       const floating* b, Py_ssize_t ldb,
                       floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C := alpha op(A) op(B) + beta C for row-major matrices; C is m x n.

    Paths by size (see TILE_MIN_WORK). Products under TILE_MIN_WORK run in loops
    written into the caller (a call costs as much as such a product: the tutorial's
    network makes five a sample); only the three forms backpropagation needs are
    hand-written: (N, T) Z = X W^T, (N, N) D W, (T, N) D^T A.
    """
    cdef Py_ssize_t i, j, p
    cdef floating s, aip
    if m * n * k >= TILE_MIN_WORK:
        _gemm_blocked(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    if ta == c'N' and tb == c'T':
        for i in range(m):
            for j in range(n):
                s = 0
                for p in range(k):
                    s = s + a[i * lda + p] * b[j * ldb + p]
                if beta == 0:
                    c[i * ldc + j] = alpha * s
                else:
                    c[i * ldc + j] = beta * c[i * ldc + j] + alpha * s
        return
    if beta == 0:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0
    elif beta != 1:
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = beta * c[i * ldc + j]
    if ta == c'N':  # (N, N): C[i, :] += alpha sum_p A[i, p] B[p, :]
        for i in range(m):
            for p in range(k):
                aip = alpha * a[i * lda + p]
                for j in range(n):
                    c[i * ldc + j] = c[i * ldc + j] + aip * b[p * ldb + j]
    else:  # (T, N): C[i, :] += alpha sum_p A[p, i] B[p, :]
        for p in range(k):
            for i in range(m):
                aip = alpha * a[p * lda + i]
                for j in range(n):
                    c[i * ldc + j] = c[i * ldc + j] + aip * b[p * ldb + j]


cdef bint _one_thread_product(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                              char tb) noexcept nogil:
    """Whether ``_gemm`` runs this product on the calling thread alone: below the size
    of a whole product for BLAS, and narrow enough for BLAS's chunks (as float64 counts
    it, the stricter) or below the size of the team's parts."""
    cdef Py_ssize_t work = m * n * k
    return work < BLAS_MIN_WORK and (_narrow(n, k, tb, <double>0) or work < PARTS_MIN_WORK)
