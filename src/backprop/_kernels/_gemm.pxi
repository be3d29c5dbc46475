# Matrix products: C := alpha op(A) op(B) + beta C on row-major matrices, computed one of
# three ways chosen by the number of multiply-adds m n k. The thresholds, measured on
# the project's benchmark machine (README "How it is built"):
#
#   path                  from (multiply-adds)    why
#   plain loops           0                       a call and a tile cost more than the
#                                                 work (the tutorial's [2, 2, 1] network)
#   register tiles        TILE_MIN_WORK = 512     73-84 GFLOP/s in float64 where OpenBLAS
#                                                 gets 54-62 and pays for its call,
#                                                 packing and threads (load_digits' fit
#                                                 0.27 s -> 0.19-0.21 s)
#   BLAS sgemm/dgemm      BLAS_MIN_WORK = 2^22    BLAS's packing and threads pay off
#   BLAS, narrow C        NARROW_BLAS_MIN_WORK    C narrower than a tile strip with
#                         = 4096                  op(B) = B (a classifier's output layer):
#                                                 OpenBLAS's small-matrix kernels waste no
#                                                 lanes where a tile computes a whole strip
#
# OpenBLAS runs a product of fewer than BLAS_ONE_THREAD_WORK multiply-adds on the
# calling thread alone (its GEMM_MULTITHREAD_THRESHOLD, 4 x 65536): the two-core paths
# (_parallel.pxi) use it to keep BLAS's threads out of a core they already use.
cdef Py_ssize_t TILE_MIN_WORK = 512
cdef Py_ssize_t BLAS_MIN_WORK = 1 << 22
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
    void _tile_sgemm "bp_tile_sgemm"(char ta, char tb, Py_ssize_t m, Py_ssize_t n,
                                     Py_ssize_t k, float alpha, const float* a, Py_ssize_t lda,
                                     const float* b, Py_ssize_t ldb, float beta, float* c,
                                     Py_ssize_t ldc) noexcept nogil
    void _tile_dgemm "bp_tile_dgemm"(char ta, char tb, Py_ssize_t m, Py_ssize_t n,
                                     Py_ssize_t k, double alpha, const double* a,
                                     Py_ssize_t lda, const double* b, Py_ssize_t ldb,
                                     double beta, double* c, Py_ssize_t ldc) noexcept nogil


cdef inline bint _narrow(Py_ssize_t n, char tb, floating dtype) noexcept nogil:
    """A product whose C is narrower than a tile strip (2 vectors: with AVX-512 16
    doubles or 32 floats, with AVX2 8 or 16) and op(B) = B: BLAS's small-matrix kernels
    run it faster than a tile, which leaves most of its lanes idle. Not with op(B) = B^T,
    which they run slower.
    """
    return n < BP_STRIP_BYTES // <Py_ssize_t>sizeof(floating) and tb == c'N'


cdef void _gemm_blocked(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        floating alpha, const floating* a, Py_ssize_t lda,
                        const floating* b, Py_ssize_t ldb,
                        floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """``_gemm`` from TILE_MIN_WORK multiply-adds: the tiles or BLAS. BLAS is
    column-major, so a row-major product C = op(A) op(B) is computed as
    C^T = op(B)^T op(A)^T, which is the same call with A and B swapped."""
    cdef int im, in_, ik, ilda, ildb, ildc
    cdef Py_ssize_t work = m * n * k
    cdef bint turn
    # (BLAS is bound before any product: _bind_blas; the tiles would stand in otherwise)
    if _dgemm != NULL and (work >= BLAS_MIN_WORK or (
            _narrow(n, tb, <floating>0) and work >= NARROW_BLAS_MIN_WORK)):
        im, in_, ik, ilda, ildb, ildc = m, n, k, lda, ldb, ldc
        # a product BLAS would thread waits for its turn while other kernel calls run
        turn = work >= BLAS_ONE_THREAD_WORK and _blas_turn_take()
        if floating is float:
            _sgemm(&tb, &ta, &in_, &im, &ik, &alpha, <float*>b, &ildb, <float*>a, &ilda,
                  &beta, c, &ildc)
        else:
            _dgemm(&tb, &ta, &in_, &im, &ik, &alpha, <double*>b, &ildb, <double*>a, &ilda,
                  &beta, c, &ildc)
        _blas_turn_give(turn)
        return
    if floating is float:
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
    """Whether ``_gemm`` runs this product on the calling thread alone: below the BLAS
    size, and if narrow (as float32 counts it, the stricter), below OpenBLAS's threads."""
    cdef Py_ssize_t work = m * n * k
    return work < BLAS_MIN_WORK and not (_narrow(n, tb, <float>0) and
                                         work >= BLAS_ONE_THREAD_WORK)
