"""Compiled kernels of backprop.

Design
------
Three levels, each calling only the one below it:

1. Per-element and per-row helpers (``_exp_neg``, ``_sigmoid``, ``_act_prime``,
   ``_softmax_rows``, ``_divide``): ``cdef inline ... noexcept nogil``, written once for
   ``cython.floating`` so float32 and float64 share one source.
2. Per-layer kernels on raw row-major pointers: ``_gemm`` (row-major
   C := alpha op(A) op(B) + beta C; hand loops for tiny products, a register-tiled C
   kernel for mid-size ones, BLAS ``sgemm``/``dgemm`` from ``scipy.linalg.cython_blas``
   for large ones),
   ``_bias_act`` (Z := act(Z + b)), ``_output_delta``, ``_hidden_delta`` and
   ``_backward`` (gradients, or the gradient-descent update fused into the
   gradient product). ``_batch`` chains them: the forward pass, the loss and the
   backward pass of one mini-batch; ``_split_batch`` runs a batch as two halves of
   rows on two cores. scikit-learn's solvers step with ``_sk_update``;
   ``_units_epoch`` runs their epoch of a one-hidden-layer network on two cores with
   the hidden units cut in two.
3. Python-callable entry points: ``train`` (every epoch and batch of ``fit`` in one
   call, without the GIL), ``sk_epoch`` and ``sk_loss_grad`` (the estimators'),
   ``batch`` (loss / gradients / one step on a whole batch),
   ``forward`` (inference in chunks), and thin per-layer wrappers (``dense``,
   ``activate``, ...) used by ``Network.trace`` and by the kernel tests.

Parameters of a network live in one flat array ``theta``: for each layer l its
weights W_l, row-major of shape (n_out, n_in), then its biases b_l.
``offsets[2*l]`` and ``offsets[2*l + 1]`` locate them. Gradients use the same layout.

The kernels trust their inputs: ``backprop.network`` checks shapes, dtypes,
contiguity and values and allocates every output and workspace before calling
them. Compiler directives (bounds checking off, ...) are set once in setup.py;
BACKPROP_DEBUG_CYTHON=1 turns the checks back on.
"""

from cython cimport floating
from libc.math cimport exp, expf, fma, fmaf, log, log1p, tanh, tanhf, fabs, isfinite, sqrt
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

from cpython.exc cimport PyErr_CheckSignals
from cython.parallel cimport parallel, prange, threadid
from openmp cimport omp_get_max_threads, omp_get_num_threads

ctypedef unsigned long long u64

cdef extern from *:
    # The bit pattern of 1.5 * 2^52: adding it to |y| < 2^51 rounds y to an integer
    # that can then be read from the low bits of the sum.
    long long _ROUND_BITS "0x4338000000000000LL"
    # SplitMix64's increment and multipliers.
    u64 _SM_GAMMA "0x9E3779B97F4A7C15ULL"
    u64 _SM_M1 "0xBF58476D1CE4E5B9ULL"
    u64 _SM_M2 "0x94D049BB133111EBULL"

cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_SOFTMAX = 4
    ACT_EXP = 5

cdef enum:
    LOSS_MSE = 0
    LOSS_CROSS_ENTROPY = 1
    LOSS_BINARY_CROSS_ENTROPY = 2
    # scikit-learn's conventions: delta = (p - y) sw_i, not normalised; see _output_delta
    LOSS_SK_SQUARED = 3
    LOSS_SK_LOG = 4
    LOSS_SK_BINARY_LOG = 5
    LOSS_SK_POISSON = 6

cdef enum:
    SK_NONE = 0
    SK_SGD = 1
    SK_ADAM = 2

cdef enum:
    MODE_LOSS = 0
    MODE_GRADIENTS = 1
    MODE_SGD = 2

ACTIVATIONS = {
    "identity": ACT_IDENTITY,
    "sigmoid": ACT_SIGMOID,
    "tanh": ACT_TANH,
    "relu": ACT_RELU,
    "softmax": ACT_SOFTMAX,
    "exp": ACT_EXP,
}
LOSSES = {
    "mse": LOSS_MSE,
    "cross_entropy": LOSS_CROSS_ENTROPY,
    "binary_cross_entropy": LOSS_BINARY_CROSS_ENTROPY,
    "sk_squared_error": LOSS_SK_SQUARED,
    "sk_log_loss": LOSS_SK_LOG,
    "sk_binary_log_loss": LOSS_SK_BINARY_LOG,
    "sk_poisson": LOSS_SK_POISSON,
}

# Products are computed one of three ways, chosen by their number of multiply-adds
# (measured on this kind of machine; see README "How it is built"):
#   fewer than TILE_MIN_WORK: plain loops; a product this small costs less than setting
#     up a tile (the [2, 2, 1] network of the tutorial lives here);
#   fewer than BLAS_MIN_WORK: the register-tiled kernel below, on the calling thread;
#     below this size BLAS spends more on its call, packing and threads than on the work;
#   the rest: BLAS sgemm/dgemm, with its threads.
# Narrow products (C less than a tile strip wide, op(B) = B: the output layer of a
# classifier) go to BLAS from NARROW_BLAS_MIN_WORK: its small-matrix kernels waste no
# lanes on them, where a tile computes a whole strip.
cdef Py_ssize_t TILE_MIN_WORK = 512
cdef Py_ssize_t BLAS_MIN_WORK = 1 << 22
cdef Py_ssize_t NARROW_BLAS_MIN_WORK = 4096
# Batches with at least SPLIT_MIN_WORK multiply-adds (forward) whose products all run
# on one thread use both cores: one hidden layer of 32 units or more in the estimators'
# epochs has its units cut in two (_units_epoch); other batches of at least
# SPLIT_MIN_ROWS rows are split in two halves of rows (_split_batch). Measured (README
# "Two cores"): units 1.2-1.8x faster from 2^18 multiply-adds a batch, about even
# below; halves 1.3-1.5x faster on batches of 200 rows, 0.9x on 64 and 0.5x on 32,
# where the gradient that crosses between the cores costs more than half a batch.
cdef Py_ssize_t SPLIT_MIN_WORK = 1 << 18
cdef Py_ssize_t SPLIT_MIN_ROWS = 128
# OpenBLAS runs a product of fewer multiply-adds than this on the calling thread alone
# (its GEMM_MULTITHREAD_THRESHOLD, 4 x 65536).
cdef Py_ssize_t BLAS_ONE_THREAD_WORK = 1 << 18


def set_thresholds(Py_ssize_t tile_min_work, Py_ssize_t blas_min_work,
                   Py_ssize_t narrow_blas_min_work, Py_ssize_t split_min_work,
                   split_min_rows=None):
    """Set the sizes (multiply-adds) from which products use the tiles, BLAS gemm and,
    for narrow ones, BLAS gemm, and from which a batch uses both cores (halves also
    need ``split_min_rows`` rows; None keeps it); returns the previous five.

    (0, 0, 0, .) sends every product to BLAS; (0, huge, huge, .) every one to the tiles;
    (huge, huge, huge, .) every one to the plain loops. (., huge, huge, 0, 2) takes
    both cores for every batch of two rows or more; (., ., ., huge) for none.
    """
    global TILE_MIN_WORK, BLAS_MIN_WORK, NARROW_BLAS_MIN_WORK, SPLIT_MIN_WORK, SPLIT_MIN_ROWS
    previous = (TILE_MIN_WORK, BLAS_MIN_WORK, NARROW_BLAS_MIN_WORK, SPLIT_MIN_WORK,
                SPLIT_MIN_ROWS)
    TILE_MIN_WORK, BLAS_MIN_WORK = tile_min_work, blas_min_work
    NARROW_BLAS_MIN_WORK, SPLIT_MIN_WORK = narrow_blas_min_work, split_min_work
    if split_min_rows is not None:
        SPLIT_MIN_ROWS = max(2, <Py_ssize_t>split_min_rows)
    return previous


# The tiled kernel is C, because Cython has no way to name a SIMD register: GCC's (and
# Clang's) vector extensions give one portable source that compiles to the widest
# vectors -march allows (8 doubles / 16 floats with AVX-512), or to pairs or quadruples
# of narrower ones. It is written once and instantiated for float and double.
#
# C := alpha op(A) op(B) + beta C, row-major, op(A) m x k, op(B) k x n, as _gemm. The
# columns of C go in strips of NR = 2 vectors and the depth in panels of KC. A strip of
# B is read where it lies; a strip of B^T, or a last strip narrower than NR, is first
# copied into an aligned KC x NR buffer on the stack, zero-padded past n. Against it,
# tiles of MR = 8 rows of op(A) are multiplied with MR x 2 vector accumulators held in
# registers (16 of AVX-512's 32): per depth step 2 vector loads, 8 broadcasts and 16
# fused multiply-adds. A strip of at most one vector uses a 1-vector tile (reading B
# in place too when it is exactly one vector wide). A last partial tile of rows
# repeats its last row and keeps only the rows that exist.
# (The classic register-blocked micro-kernel: Goto and van de Geijn, "Anatomy of
# high-performance matrix multiplication", ACM TOMS 34(3), 2008.)
cdef extern from *:
    """
    #if !defined(__GNUC__)
    #error "backprop's tiled kernel needs GCC or Clang (vector extensions)"
    #endif
    #include <string.h>
    typedef double bp_vd __attribute__((vector_size(64), aligned(8), may_alias));
    typedef float bp_vf __attribute__((vector_size(64), aligned(4), may_alias));
    #define BP_MR 8
    #define BP_KC 256
    /* One MR x (NV vectors) tile: C[r, :] := alpha sum_p row[r][p*ap] B[p, :] + keep C[r, :] */
    #define BP_DEFINE_TILE(NAME, T, V, NV)                                                    \\
    static inline __attribute__((always_inline)) void NAME(                                   \\
        Py_ssize_t kc, const T* const* row, Py_ssize_t ap, const T* bp, Py_ssize_t ldb,       \\
        T alpha, T keep, T* c, Py_ssize_t ldc, Py_ssize_t mr, Py_ssize_t nr)                  \\
    {                                                                                         \\
        enum { W = sizeof(V) / sizeof(T) };                                                   \\
        V acc[BP_MR][NV];                                                                     \\
        Py_ssize_t p, r, v, j;                                                                \\
        _Pragma("GCC unroll 8")                                                               \\
        for (r = 0; r < BP_MR; r++)                                                           \\
            _Pragma("GCC unroll 4")                                                           \\
            for (v = 0; v < NV; v++) acc[r][v] = (V){0};                                      \\
        for (p = 0; p < kc; p++) {                                                            \\
            V bv[NV];                                                                         \\
            _Pragma("GCC unroll 4")                                                           \\
            for (v = 0; v < NV; v++) bv[v] = *(const V*)(bp + p * ldb + v * W);               \\
            _Pragma("GCC unroll 8")                                                           \\
            for (r = 0; r < BP_MR; r++) {                                                     \\
                const T x = row[r][p * ap];                                                   \\
                _Pragma("GCC unroll 4")                                                       \\
                for (v = 0; v < NV; v++) acc[r][v] += x * bv[v];                              \\
            }                                                                                 \\
        }                                                                                     \\
        for (r = 0; r < mr; r++) {                                                            \\
            T* cr = c + r * ldc;                                                              \\
            if (nr == NV * W) {                                                               \\
                for (v = 0; v < NV; v++) {                                                    \\
                    V out = alpha * acc[r][v];                                                \\
                    if (keep != 0) out += keep * *(V*)(cr + v * W);                           \\
                    *(V*)(cr + v * W) = out;                                                  \\
                }                                                                             \\
            } else {                                                                          \\
                T t[NV * W];                                                                  \\
                memcpy(t, acc[r], sizeof t);                                                  \\
                for (j = 0; j < nr; j++)                                                      \\
                    cr[j] = keep != 0 ? alpha * t[j] + keep * cr[j] : alpha * t[j];           \\
            }                                                                                 \\
        }                                                                                     \\
    }
    #define BP_DEFINE_TILE_GEMM(NAME, T, V)                                                   \\
    BP_DEFINE_TILE(NAME##_tile2, T, V, 2)                                                     \\
    BP_DEFINE_TILE(NAME##_tile1, T, V, 1)                                                     \\
    __attribute__((noinline)) static void NAME(char ta, char tb, Py_ssize_t m, Py_ssize_t n,   \\
                     Py_ssize_t k, T alpha,                                                \\
                     const T* a, Py_ssize_t lda, const T* b, Py_ssize_t ldb, T beta, T* c,    \\
                     Py_ssize_t ldc)                                                          \\
    {                                                                                         \\
        enum { W = sizeof(V) / sizeof(T), NR = 2 * W };                                       \\
        T panel[BP_KC * NR] __attribute__((aligned(64)));                                     \\
        const Py_ssize_t ai = ta == 'N' ? lda : 1, ap = ta == 'N' ? 1 : lda;                  \\
        const Py_ssize_t bk = tb == 'N' ? ldb : 1, bj = tb == 'N' ? 1 : ldb;                  \\
        Py_ssize_t i0, j0, p0, p, r, j, kc, nr, mr, ld;                                       \\
        const T* row[BP_MR];                                                                  \\
        const T* bp;                                                                          \\
        if (k == 0) {                                                                         \\
            for (i0 = 0; i0 < m; i0++)                                                        \\
                for (j = 0; j < n; j++)                                                       \\
                    c[i0 * ldc + j] = beta != 0 ? beta * c[i0 * ldc + j] : (T)0;              \\
            return;                                                                           \\
        }                                                                                     \\
        for (j0 = 0; j0 < n; j0 += NR) {                                                      \\
            nr = n - j0 < NR ? n - j0 : NR;                                                   \\
            for (p0 = 0; p0 < k; p0 += BP_KC) {                                               \\
                kc = k - p0 < BP_KC ? k - p0 : BP_KC;                                         \\
                if (tb == 'N' && (nr == NR || nr == W)) {                                     \\
                    bp = b + p0 * ldb + j0;                                                   \\
                    ld = ldb;                                                                 \\
                } else {                                                                      \\
                    const T* bs = b + p0 * bk + j0 * bj;                                      \\
                    for (p = 0; p < kc; p++)                                                  \\
                        for (j = 0; j < NR; j++)                                              \\
                            panel[p * NR + j] = j < nr ? bs[p * bk + j * bj] : (T)0;          \\
                    bp = panel;                                                               \\
                    ld = NR;                                                                  \\
                }                                                                             \\
                const T keep = p0 == 0 ? beta : (T)1;                                         \\
                for (i0 = 0; i0 < m; i0 += BP_MR) {                                           \\
                    mr = m - i0 < BP_MR ? m - i0 : BP_MR;                                     \\
                    for (r = 0; r < BP_MR; r++)                                               \\
                        row[r] = a + (i0 + (r < mr ? r : mr - 1)) * ai + p0 * ap;             \\
                    if (nr <= W)                                                              \\
                        NAME##_tile1(kc, row, ap, bp, ld, alpha, keep, c + i0 * ldc + j0, ldc, mr, nr); \\
                    else                                                                      \\
                        NAME##_tile2(kc, row, ap, bp, ld, alpha, keep, c + i0 * ldc + j0, ldc, mr, nr); \\
                }                                                                             \\
            }                                                                                 \\
        }                                                                                     \\
    }
    BP_DEFINE_TILE_GEMM(bp_tile_sgemm, float, bp_vf)
    BP_DEFINE_TILE_GEMM(bp_tile_dgemm, double, bp_vd)
    /* sum_i x_i^2, accumulated in float64 over 16 lanes in a fixed order */
    typedef float bp_vf8 __attribute__((vector_size(32), aligned(4), may_alias));
    #define BP_DEFINE_SUM_SQUARES(NAME, T, LOAD)                                              \
    static double NAME(const T* x, Py_ssize_t n)                                              \
    {                                                                                         \
        bp_vd acc0 = (bp_vd){0}, acc1 = (bp_vd){0};                                           \
        double lanes[8], s = 0, tail = 0;                                                     \
        Py_ssize_t i = 0, j;                                                                  \
        for (; i + 16 <= n; i += 16) {                                                        \
            acc0 += LOAD(x + i);                                                              \
            acc1 += LOAD(x + i + 8);                                                          \
        }                                                                                     \
        for (; i < n; i++) {                                                                  \
            const T v = x[i] * x[i];                                                          \
            tail += v;                                                                        \
        }                                                                                     \
        acc0 += acc1;                                                                         \
        memcpy(lanes, &acc0, sizeof lanes);                                                   \
        for (j = 0; j < 8; j++) s += lanes[j];                                                \
        return s + tail;                                                                      \
    }
    #define BP_SQUARES_D(p) ((*(const bp_vd*)(p)) * (*(const bp_vd*)(p)))
    #define BP_SQUARES_F(p) __builtin_convertvector((*(const bp_vf8*)(p)) * (*(const bp_vf8*)(p)), bp_vd)
    BP_DEFINE_SUM_SQUARES(bp_sum_squares_d, double, BP_SQUARES_D)
    BP_DEFINE_SUM_SQUARES(bp_sum_squares_f, float, BP_SQUARES_F)
    """
    void _tile_sgemm "bp_tile_sgemm"(char ta, char tb, Py_ssize_t m, Py_ssize_t n,
                                     Py_ssize_t k, float alpha, const float* a, Py_ssize_t lda,
                                     const float* b, Py_ssize_t ldb, float beta, float* c,
                                     Py_ssize_t ldc) noexcept nogil
    void _tile_dgemm "bp_tile_dgemm"(char ta, char tb, Py_ssize_t m, Py_ssize_t n,
                                     Py_ssize_t k, double alpha, const double* a,
                                     Py_ssize_t lda, const double* b, Py_ssize_t ldb,
                                     double beta, double* c, Py_ssize_t ldc) noexcept nogil
    double _sum_squares_d "bp_sum_squares_d"(const double* x, Py_ssize_t n) noexcept nogil
    double _sum_squares_f "bp_sum_squares_f"(const float* x, Py_ssize_t n) noexcept nogil


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


cdef extern from *:
    """
    /* An orphaned barrier: binds to the team of the parallel region it runs in (a team
       of one, or no region, makes it a no-op; without OpenMP it is not compiled in). */
    static inline void bp_barrier(void) { _Pragma("omp barrier") }
    """
    void _barrier "bp_barrier"() noexcept nogil


cdef extern from "Python.h":
    # PyErr_CheckSignals as a plain int: inside a parallel region the error it sets is
    # raised only after every thread has left the region
    int _check_signals "PyErr_CheckSignals"() noexcept


cdef int _raise_pending() except -1:
    """Raises the exception a signal handler left set (see ``_check_signals``)."""
    return -1


# ---------------------------------------------------------------- per element ---

cdef inline double _sum_squares(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum_i x_i^2 in float64 (16 running sums: vectorised, and the same on every call)."""
    if floating is float:
        return _sum_squares_f(x, n)
    else:
        return _sum_squares_d(x, n)


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _fma(floating a, floating b, floating c) noexcept nogil:
    """a b + c rounded once."""
    if floating is float:
        return fmaf(a, b, c)
    else:
        return fma(a, b, c)


cdef inline floating _divide(floating a, floating b, floating inv) noexcept nogil:
    """a / b, correctly rounded, from inv = 1 / b (correctly rounded) without a division:
    q = a inv, then q + (a - q b) inv with the remainder a - q b exact in a fused
    multiply-add (Markstein, IBM J. Res. Dev. 34(1), 1990). Equal to a / b whenever
    the quotient is a normal number and a is finite (a subnormal quotient can be an ulp
    off; an infinite a gives NaN)."""
    cdef floating q = a * inv
    return _fma(_fma(-q, b, a), inv, q)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef union _Bits:
    double d
    long long i


cdef inline double _exp_neg(double x) noexcept nogil:
    """e^x for x <= 0, in straight-line code the compiler vectorises (libm's exp is a call).

    Cody and Waite's reduction x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two so
    that n ln2_hi is exact (the constants of fdlibm's exp); e^r by its Taylor series to
    r^13 (truncation < 1e-17) in Estrin's order; 2^n assembled in the exponent bits. Within 2 ulp of libm.
    Arguments below -708 are taken as -708 (e^-708 ~ 3e-308, still a normal number);
    NaN stays NaN.
    """
    cdef _Bits t, scale
    cdef double n, r, r2, r4, p
    x = -708.0 if x < -708.0 else x
    t.d = x * 1.4426950408889634 + 6755399441055744.0
    n = t.d - 6755399441055744.0
    r = x - n * 6.93147180369123816490e-01
    r = r - n * 1.90821492927058770002e-10
    # Estrin's scheme: the Taylor coefficients 1/k! paired, four levels deep instead of
    # Horner's thirteen, so a lone call is not one long chain of dependent operations.
    r2 = r * r
    r4 = r2 * r2
    p = ((1.0 + r) + (0.5 + r * (1.0 / 6.0)) * r2
         + ((1.0 / 24.0 + r * (1.0 / 120.0)) + (1.0 / 720.0 + r * (1.0 / 5040.0)) * r2) * r4
         + (((1.0 / 40320.0 + r * (1.0 / 362880.0))
             + (1.0 / 3628800.0 + r * (1.0 / 39916800.0)) * r2)
            + (1.0 / 479001600.0 + r * (1.0 / 6227020800.0)) * r4) * (r4 * r4))
    scale.i = (t.i - _ROUND_BITS + 1023) << 52
    return p * scale.d


cdef inline floating _sigmoid(floating z) noexcept nogil:
    """sigma(z) = 1 / (1 + e^-z), as e / (1 + e) with e = e^-|z| for z < 0: no overflow."""
    cdef double e = _exp_neg(-fabs(z))
    return ((1.0 if z >= 0 else e) / (1.0 + e))


cdef inline double _uniform(u64* state) noexcept nogil:
    """A uniform double in [0, 1): SplitMix64 (Steele, Lea and Flood 2014), top 53 bits."""
    cdef u64 z
    state[0] += _SM_GAMMA
    z = state[0]
    z = (z ^ (z >> 30)) * _SM_M1
    z = (z ^ (z >> 27)) * _SM_M2
    z = z ^ (z >> 31)
    return (z >> 11) * (1.0 / 9007199254740992.0)


cdef inline floating _act(floating z, int act) noexcept nogil:
    """a = act(z) for the element-wise activations."""
    if act == ACT_SIGMOID:
        return _sigmoid(z)
    if act == ACT_TANH:
        return _tanh(z)
    if act == ACT_RELU:
        return 0 if z < 0 else z
    if act == ACT_EXP:
        return _exp(z)
    return z


cdef inline floating _act_prime(floating a, int act) noexcept nogil:
    """act'(z) written from the activation a = act(z)."""
    if act == ACT_SIGMOID:
        return a * (1 - a)
    if act == ACT_TANH:
        return 1 - a * a
    if act == ACT_RELU:
        return 1 if a > 0 else 0
    return 1


cdef void _softmax_rows(floating* z, Py_ssize_t m, Py_ssize_t k, double* lse) noexcept nogil:
    """z_i := exp(z_i - max z_i) / sum_j exp(z_ij - max z_i) for each row i of the m x k
    block z, in place. With ``lse`` (not NULL), lse := lse + sum_i lse(z_i), where
    lse(z_i) = max z_i + log sum_j exp(z_ij - max z_i) (the log-sum-exp trick: no
    exponential overflows).

    The shifted exponentials run as one loop over the whole block, which vectorises
    however few columns there are; the logarithms are one per batch, of the product of
    the rows' sums (each in [1, k]), taken before the product could overflow.
    """
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating zmax, m0, m1, m2, m3
    cdef double s, s0, s1, s2, s3, inv, maxima = 0, sums = 1
    for i in range(m):
        row = z + i * k
        # the maximum and (below) the sum in four interleaved chains: a row of a few
        # columns is otherwise one chain of dependent operations
        m0 = m1 = m2 = m3 = row[0]
        j = 1
        while j + 4 <= k:
            m0 = row[j] if row[j] > m0 else m0
            m1 = row[j + 1] if row[j + 1] > m1 else m1
            m2 = row[j + 2] if row[j + 2] > m2 else m2
            m3 = row[j + 3] if row[j + 3] > m3 else m3
            j += 4
        while j < k:
            m0 = row[j] if row[j] > m0 else m0
            j += 1
        m0 = m1 if m1 > m0 else m0
        m2 = m3 if m3 > m2 else m2
        zmax = m2 if m2 > m0 else m0
        for j in range(k):
            row[j] = row[j] - zmax
        maxima += zmax
    for i in range(m * k):
        z[i] = _exp_neg(z[i])
    for i in range(m):
        row = z + i * k
        s0 = s1 = s2 = s3 = 0
        j = 0
        while j + 4 <= k:
            s0 += row[j]
            s1 += row[j + 1]
            s2 += row[j + 2]
            s3 += row[j + 3]
            j += 4
        while j < k:
            s0 += row[j]
            j += 1
        s = (s0 + s1) + (s2 + s3)
        inv = 1 / s  # one division per row, not k
        for j in range(k):
            row[j] = row[j] * inv
        if lse != NULL:
            sums *= s
            if sums > 1e280:
                maxima += log(sums)
                sums = 1
    if lse != NULL:
        lse[0] += maxima + log(sums)


# ---------------------------------------------------------------- per layer ---

cdef inline bint _narrow(Py_ssize_t n, char tb, floating dtype) noexcept nogil:
    """A product whose C is narrower than a tile strip (2 vectors: 16 doubles or 32
    floats with AVX-512) and op(B) = B: BLAS's small-matrix kernels run it faster than a
    tile, which leaves most of its lanes idle. Not with op(B) = B^T, which they run slower.
    """
    return n < <Py_ssize_t>(128 // sizeof(floating)) and tb == c'N'


cdef void _gemm_blocked(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        floating alpha, const floating* a, Py_ssize_t lda,
                        const floating* b, Py_ssize_t ldb,
                        floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """``_gemm`` from TILE_MIN_WORK multiply-adds: the tiles or BLAS. BLAS is
    column-major, so a row-major product C = op(A) op(B) is computed as
    C^T = op(B)^T op(A)^T, which is the same call with A and B swapped."""
    cdef int im, in_, ik, ilda, ildb, ildc
    cdef Py_ssize_t work = m * n * k
    if work >= BLAS_MIN_WORK or (_narrow(n, tb, <floating>0) and work >= NARROW_BLAS_MIN_WORK):
        im, in_, ik, ilda, ildb, ildc = m, n, k, lda, ldb, ldc
        if floating is float:
            sgemm(&tb, &ta, &in_, &im, &ik, &alpha, <float*>b, &ildb, <float*>a, &ilda,
                  &beta, c, &ildc)
        else:
            dgemm(&tb, &ta, &in_, &im, &ik, &alpha, <double*>b, &ildb, <double*>a, &ilda,
                  &beta, c, &ildc)
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


cdef void _bias_act(floating* z, const floating* bias, Py_ssize_t m, Py_ssize_t n,
                    int act) noexcept nogil:
    """Z := act(Z + b), row by row, in place (softmax acts on whole rows)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    if act == ACT_SOFTMAX:
        for i in range(m):
            row = z + i * n
            for j in range(n):
                row[j] = row[j] + bias[j]
        _softmax_rows(z, m, n, NULL)
        return
    for i in range(m):
        row = z + i * n
        if act == ACT_SIGMOID:
            for j in range(n):
                row[j] = _sigmoid(row[j] + bias[j])
        elif act == ACT_TANH:
            for j in range(n):
                row[j] = _tanh(row[j] + bias[j])
        elif act == ACT_RELU:
            for j in range(n):
                row[j] = row[j] + bias[j]
                if row[j] < 0:
                    row[j] = 0
        elif act == ACT_EXP:
            for j in range(n):
                row[j] = _exp(row[j] + bias[j])
        else:
            for j in range(n):
                row[j] = row[j] + bias[j]


cdef void _dense(const floating* x, const floating* w, const floating* bias, floating* z,
                 Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t n_out, int act,
                 bint wt) noexcept nogil:
    """Z := act(X @ W.T + b); X is m x n_in, W is n_out x n_in, Z is m x n_out.

    With ``wt`` W is stored transposed, n_in x n_out (scikit-learn's coefs_), and
    Z := act(X @ W + b). The same flag means the same in every per-layer kernel.
    """
    if wt:
        _gemm(c'N', c'N', m, n_out, n_in, <floating>1, x, n_in, w, n_out, <floating>0, z, n_out)
    else:
        _gemm(c'N', c'T', m, n_out, n_in, <floating>1, x, n_in, w, n_in, <floating>0, z, n_out)
    _bias_act(z, bias, m, n_out, act)


cdef double _output_delta(floating* z, const floating* y, const Py_ssize_t* labels,
                          const floating* sw, double wsum, floating* delta,
                          Py_ssize_t m, Py_ssize_t m_norm, Py_ssize_t k, int output,
                          int loss) noexcept nogil:
    """A := out(Z) in place, delta := dL/dZ; returns L, the mean loss of the batch.

    Z holds m rows of a batch of m_norm (m_norm = m but for half a batch, see
    ``_split_batch``): means are taken over m_norm rows, so the halves' L and delta add up
    to the whole batch's.

    mse:                  L = sum (a - y)^2 / (m k);  dL/da = 2 (a - y) / (m k)
    cross_entropy:        L = sum_i (lse(z_i) - sum_j y_ij z_ij) / m;  dL/dz = (p - y) / m
    binary_cross_entropy: L = sum (max(z, 0) - y z + log1p(e^-|z|)) / (m k);
                          dL/dz = (a - y) / (m k)
    The cross-entropies are taken from z, not from the probabilities, so that
    they stay finite when a probability rounds to 0 or 1.
    ``labels`` (integer classes) replaces ``y`` for cross_entropy when not NULL.

    The sk_* losses follow scikit-learn's MLP, with sample weights sw (NULL: all 1)
    summing to wsum and q = clip(p, eps, 1 - eps):
    sk_squared_error:   L = sum_i sw_i sum_j (y - p)^2 / (2 wsum k)
    sk_log_loss:        L = -sum_i sw_i sum_j y log q / wsum
    sk_binary_log_loss: L = -sum_i sw_i sum_j (y log q + (1 - y) log(1 - q)) / wsum
    sk_poisson:         L = sum_i sw_i sum_j (y log(y / p) - y + p) / wsum
    and for all four delta := (p - y) sw_i, left unnormalised: the caller divides the
    gradients by wsum, as scikit-learn does.
    """
    cdef Py_ssize_t i, j
    cdef floating* zr
    cdef floating* dr
    cdef const floating* yr = NULL
    cdef floating a, g, yv, zv, scale, dot, w, eps, q
    cdef double total = 0, yz, row_total, chosen = 1
    if output == ACT_SOFTMAX and loss != LOSS_CROSS_ENTROPY:
        _softmax_rows(z, m, k, NULL)
    if loss >= LOSS_SK_SQUARED:
        # Terms in float64 whatever the dtype; probabilities clipped to [eps, 1 - eps]
        # in their own dtype first: both as scikit-learn does.
        eps = <floating>(1.1920928955078125e-07 if floating is float else 2.220446049250313e-16)
        for i in range(m):
            zr = z + i * k
            dr = delta + i * k
            yr = y + i * k
            w = sw[i] if sw != NULL else 1
            if output != ACT_SOFTMAX:
                for j in range(k):
                    zr[j] = _act(zr[j], output)
            for j in range(k):
                dr[j] = (zr[j] - yr[j]) * w
            row_total = 0
            if loss == LOSS_SK_SQUARED:
                for j in range(k):
                    row_total += (<double>yr[j] - zr[j]) * (<double>yr[j] - zr[j])
            elif loss == LOSS_SK_POISSON:
                for j in range(k):
                    yv = yr[j]
                    if yv != 0:
                        row_total += yv * log(yv / <double>zr[j])
                    row_total += <double>zr[j] - yv
            else:
                for j in range(k):
                    yv = yr[j]
                    if yv == 0 and loss == LOSS_SK_LOG:
                        continue
                    q = min(max(zr[j], eps), 1 - eps)
                    if w == 1 and (yv == 1 or yv == 0):
                        # log q (or log(1 - q)) gathered into one product and one
                        # logarithm; each factor is >= eps, so the product is flushed
                        # into the total long before it could underflow
                        chosen *= q if yv == 1 else 1 - q
                        if chosen < 1e-280:
                            total -= log(chosen)
                            chosen = 1
                    else:
                        if yv != 0:
                            row_total -= yv * log(<double>q)
                        if loss == LOSS_SK_BINARY_LOG and yv != 1:
                            row_total -= (1 - yv) * log(<double>(1 - q))
            total += w * row_total
        if loss == LOSS_SK_SQUARED:
            return total / (2 * wsum * k)
        return (total - log(chosen)) / wsum
    if loss == LOSS_CROSS_ENTROPY:
        scale = <floating>1 / m_norm
        # L = sum_i (lse(z_i) - sum_j y_ij z_ij) / m, the z_iy taken before the softmax
        for i in range(m):
            zr = z + i * k
            if labels != NULL:
                total -= zr[labels[i]]
            else:
                yr = y + i * k
                yz = 0
                for j in range(k):
                    yz += yr[j] * zr[j]
                total -= yz
        _softmax_rows(z, m, k, &total)
    else:
        scale = <floating>1 / (m_norm * k)
    for i in range(m):
        zr = z + i * k
        dr = delta + i * k
        if y != NULL:
            yr = y + i * k
        if loss == LOSS_CROSS_ENTROPY:
            for j in range(k):
                dr[j] = zr[j] * scale
            if labels != NULL:
                dr[labels[i]] -= scale
            else:
                for j in range(k):
                    dr[j] = dr[j] - yr[j] * scale
        elif loss == LOSS_BINARY_CROSS_ENTROPY:
            for j in range(k):
                zv = zr[j]
                yv = yr[j]
                total += (zv if zv > 0 else 0) - yv * zv + log1p(_exp_neg(-fabs(zv)))
                a = _sigmoid(zv)
                zr[j] = a
                dr[j] = (a - yv) * scale
        else:
            for j in range(k):
                if output == ACT_SIGMOID:
                    zr[j] = _sigmoid(zr[j])
                g = zr[j] - yr[j]
                total += g * g
                dr[j] = 2 * g * scale
            if output == ACT_SIGMOID:
                for j in range(k):
                    dr[j] = dr[j] * zr[j] * (1 - zr[j])
            elif output == ACT_SOFTMAX:
                dot = 0
                for j in range(k):
                    dot = dot + dr[j] * zr[j]
                for j in range(k):
                    dr[j] = zr[j] * (dr[j] - dot)
    if loss == LOSS_CROSS_ENTROPY:
        return total / m_norm
    return total / (m_norm * k)


cdef void _hidden_delta(const floating* delta, const floating* w, const floating* a_prev,
                        floating* delta_prev, Py_ssize_t m, Py_ssize_t n_in,
                        Py_ssize_t n_out, int act, bint wt,
                        const floating* factor) noexcept nogil:
    """delta_prev := (delta @ W) * act'(A_prev); delta is m x n_out, W n_out x n_in.

    With dropout, ``factor`` holds act'(A_prev) times the mask and replaces it.
    """
    cdef Py_ssize_t i
    if wt:
        _gemm(c'N', c'T', m, n_in, n_out, <floating>1, delta, n_out, w, n_out,
              <floating>0, delta_prev, n_in)
    else:
        _gemm(c'N', c'N', m, n_in, n_out, <floating>1, delta, n_out, w, n_in,
              <floating>0, delta_prev, n_in)
    if factor != NULL:
        for i in range(m * n_in):
            delta_prev[i] = delta_prev[i] * factor[i]
    elif act != ACT_IDENTITY:
        for i in range(m * n_in):
            delta_prev[i] = delta_prev[i] * _act_prime(a_prev[i], act)


cdef inline void _column_sums(const floating* d, Py_ssize_t m, Py_ssize_t n,
                              floating* out) noexcept nogil:
    """out_j := sum_i d_ij over the m x n block d, row by row (so that the loop
    vectorises); out may be d itself (its first row then takes the sums)."""
    cdef Py_ssize_t i, j
    for j in range(n):
        out[j] = d[j]
    for i in range(1, m):
        for j in range(n):
            out[j] = out[j] + d[i * n + j]


cdef void _backward(floating* delta, const floating* a_prev, floating* gw, floating* gb,
                    Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t n_out,
                    floating alpha, floating beta, floating beta_b, bint wt) noexcept nogil:
    """G_W := alpha delta^T @ A_prev + beta G_W;  g_b := alpha sum_rows(delta) + beta_b g_b.

    With alpha = 1, beta = beta_b = 0 these are the gradients; with alpha = -eta,
    beta = 1 - eta lambda, beta_b = 1 and G_W = W, g_b = b they are the gradient-descent
    update with weight decay lambda, fused so that the gradient is never stored. The column sums are accumulated into delta's first row
    (row by row, so the loop vectorises): delta is consumed.
    """
    cdef Py_ssize_t j
    if wt:
        _gemm(c'T', c'N', n_in, n_out, m, alpha, a_prev, n_in, delta, n_out, beta, gw, n_out)
    else:
        _gemm(c'T', c'N', n_out, n_in, m, alpha, delta, n_out, a_prev, n_in, beta, gw, n_in)
    _column_sums(delta, m, n_out, delta)
    for j in range(n_out):
        if beta_b == 0:
            gb[j] = alpha * delta[j]
        else:
            gb[j] = beta_b * gb[j] + alpha * delta[j]


cdef void _dropout(floating* a, floating* factor, Py_ssize_t n, int act, double drop,
                   u64* rng) noexcept nogil:
    """factor := act'(a) s, a := a s, with s = 1 / (1 - drop) if a uniform draw >= drop else 0."""
    cdef Py_ssize_t i
    cdef floating keep = <floating>(1.0 / (1.0 - drop)), scale
    for i in range(n):
        scale = keep if _uniform(rng) >= drop else 0
        factor[i] = _act_prime(a[i], act) * scale
        a[i] = a[i] * scale


cdef double _batch(floating* theta, floating* grad, const Py_ssize_t* sizes,
                   const Py_ssize_t* offsets, Py_ssize_t n_layers, bint wt,
                   int hidden, int output, int loss,
                   const floating* x, const floating* y, const Py_ssize_t* labels,
                   const floating* sw, double wsum,
                   Py_ssize_t m, Py_ssize_t m_norm, floating* acts, floating* delta0,
                   floating* delta1, floating eta, floating decay, int mode,
                   double drop, u64* rng, floating* factors) noexcept nogil:
    """The forward pass, the loss and the backward pass of one mini-batch of m rows
    (of m_norm: see ``_output_delta``).

    mode MODE_LOSS:      A_l := act(A_{l-1} W_l^T + b_l) for every layer; returns L
    mode MODE_GRADIENTS: also grad := dL/dtheta (the flat layout of theta)
    mode MODE_SGD:       also W_l := W_l - eta (dL/dW_l + decay W_l) and
                         b_l := b_l - eta dL/db_l, layer by layer from
                         the last, each W_l updated after it has carried the delta back;
                         not when L is not finite: theta is then left as it was
    ``acts`` receives A_1 .. A_L one after the other (m * sizes[l] each). ``wt``, ``sw``
    and ``wsum`` are passed on to the per-layer kernels and _output_delta.
    With ``factors`` (laid out like ``acts``), inverted dropout: every hidden unit of
    every row is kept with probability 1 - drop (one draw of ``rng`` each, layer by
    layer, row by row), A := A * s with s = 1 / (1 - drop) if kept, else 0, and
    factors := act'(A before) * s carries the mask into the backward pass.
    """
    cdef Py_ssize_t l, n_in, n_out, a_off = 0
    cdef const floating* a_prev = x
    cdef floating* a_out
    cdef floating* d = delta0
    cdef floating* d_prev = delta1
    cdef floating* swap
    cdef double value
    cdef floating alpha = 1, beta = 0, beta_b = 0
    for l in range(n_layers):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        a_out = acts + a_off
        _dense(a_prev, theta + offsets[2 * l], theta + offsets[2 * l + 1], a_out,
               m, n_in, n_out, hidden if l < n_layers - 1 else ACT_IDENTITY, wt)
        if factors != NULL and l < n_layers - 1:
            _dropout(a_out, factors + a_off, m * n_out, hidden, drop, rng)
        a_prev = a_out
        a_off += m * n_out
    value = _output_delta(acts + a_off - m * sizes[n_layers], y, labels, sw, wsum, d, m,
                          m_norm, sizes[n_layers], output, loss)
    if mode == MODE_LOSS or (mode == MODE_SGD and not isfinite(value)):
        return value
    if mode == MODE_SGD:
        alpha, beta, beta_b = -eta, 1 - eta * decay, 1
    for l in range(n_layers - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        a_off -= m * n_out
        a_prev = x if l == 0 else acts + a_off - m * n_in
        if l > 0:
            _hidden_delta(d, theta + offsets[2 * l], a_prev, d_prev, m, n_in, n_out, hidden, wt,
                          NULL if factors == NULL else factors + (a_prev - acts))
        if mode == MODE_SGD:
            _backward(d, a_prev, theta + offsets[2 * l], theta + offsets[2 * l + 1],
                      m, n_in, n_out, alpha, beta, beta_b, wt)
        else:
            _backward(d, a_prev, grad + offsets[2 * l], grad + offsets[2 * l + 1],
                      m, n_in, n_out, alpha, beta, beta_b, wt)
        swap = d
        d = d_prev
        d_prev = swap
    return value


cdef bint _splits(const Py_ssize_t* sizes, Py_ssize_t n_layers, Py_ssize_t m) noexcept nogil:
    """Whether a batch of m rows is trained as two halves (see ``_split_batch``)."""
    return m >= SPLIT_MIN_ROWS and _two_cores(sizes, n_layers, m, (m + 1) // 2)


cdef bint _two_cores(const Py_ssize_t* sizes, Py_ssize_t n_layers, Py_ssize_t m,
                     Py_ssize_t h) noexcept nogil:
    """Whether a batch of m rows is worth both cores when each runs products of h rows
    (of the whole layer's width at most)."""
    cdef Py_ssize_t l, work = 0, product
    if m < 2:
        return False
    for l in range(n_layers):
        product = h * sizes[l] * sizes[l + 1]
        # No half may call a BLAS product that BLAS would thread: its threads share the
        # cores instead. Narrow products (a dimension under a strip) may go to BLAS.
        if product >= BLAS_MIN_WORK or (
                product >= BLAS_ONE_THREAD_WORK and min(sizes[l], sizes[l + 1]) < 32):
            return False
        work += m * sizes[l] * sizes[l + 1]
    return work >= SPLIT_MIN_WORK


cdef double _half_batch(int t, floating* theta, floating* grad, const Py_ssize_t* sizes,
                        const Py_ssize_t* offsets, Py_ssize_t n_layers, bint wt,
                        int hidden, int output, int loss,
                        const floating* x, const floating* y, const Py_ssize_t* labels,
                        const floating* sw, double wsum, Py_ssize_t m,
                        floating* acts, floating* delta0, floating* delta1) noexcept nogil:
    """``_batch`` in gradient mode on half t (0 or 1) of a batch of m rows: rows
    [0, h) or [h, m) with h = ceil(m / 2), each half in its own part of the workspaces."""
    cdef Py_ssize_t h = (m + 1) // 2, l, width = 0, widest = 0
    cdef Py_ssize_t r0 = 0 if t == 0 else h, rows = h if t == 0 else m - h
    cdef Py_ssize_t n_in = sizes[0], k = sizes[n_layers]
    for l in range(n_layers):
        width += sizes[l + 1]
        widest = max(widest, sizes[l + 1])
    if y != NULL:
        y = y + r0 * k
    if labels != NULL:
        labels = labels + r0
    if sw != NULL:
        sw = sw + r0
    return _batch(theta, grad, sizes, offsets, n_layers, wt, hidden, output, loss,
                  x + r0 * n_in, y, labels, sw, wsum, rows, m, acts + t * h * width,
                  delta0 + t * h * widest,
                  delta1 + t * h * widest, 0, 0, MODE_GRADIENTS, 0, NULL, NULL)


cdef double _split_batch(floating* theta, floating* grad, floating* halves,
                         const Py_ssize_t* sizes, const Py_ssize_t* offsets,
                         Py_ssize_t n_layers, bint wt, int hidden, int output, int loss,
                         const floating* x, const floating* y, const Py_ssize_t* labels,
                         const floating* sw, double wsum, Py_ssize_t m,
                         floating* acts, floating* delta0, floating* delta1,
                         floating eta, floating decay, int mode,
                         double drop, u64* rng, floating* factors,
                         bint* was_split) noexcept nogil:
    """``_batch`` (mode MODE_GRADIENTS or MODE_SGD) on both cores, for mid-size layers.

    Products too small for BLAS's threads to pay off (see ``_splits``) leave the second
    core idle. Such a batch is cut into two halves of rows instead, each run through
    the forward and backward pass on its own (on two threads when OpenMP allows two and
    no other kernel call is running, else one after the other):
        L = L_1 + L_2,  g = g_1 + g_2  (each half's mean taken over all m rows)
    then grad := g, or W := W - eta (g_W + decay W), b := b - eta g_b as ``_batch``.
    The halves, and so the result, do not depend on the number of threads.
    ``halves`` holds two gradients (2 n_params; n_params in MODE_GRADIENTS); NULL,
    dropout or a batch that ``_splits`` rejects runs ``_batch`` as it is. The workspaces
    hold m + 1 rows. With ``was_split`` (MODE_GRADIENTS), g_1 is left in ``halves`` and
    g_2 in ``grad`` for the caller to add, and *was_split says whether the batch was split.
    """
    cdef Py_ssize_t n_params = offsets[2 * n_layers - 1] + sizes[n_layers]
    cdef Py_ssize_t l, i, w_end
    cdef floating* g0
    cdef floating* g1
    cdef double values[2]
    cdef double value
    cdef int t, threads
    cdef floating keep = 1 - eta * decay
    if was_split != NULL:
        was_split[0] = False
    if halves == NULL or factors != NULL or not _splits(sizes, n_layers, m):
        return _batch(theta, grad, sizes, offsets, n_layers, wt, hidden, output, loss, x, y,
                      labels, sw, wsum, m, m, acts, delta0, delta1, eta, decay, mode, drop,
                      rng, factors)
    if mode == MODE_GRADIENTS:
        g0, g1 = grad, halves
    else:
        g0, g1 = halves, halves + n_params
    threads = 2 if _running <= 1 and omp_get_max_threads() >= 2 else 1
    for t in prange(2, num_threads=threads, schedule="static", chunksize=1):
        values[t] = _half_batch(t, theta, g0 if t == 0 else g1, sizes, offsets, n_layers,
                                wt, hidden, output, loss, x, y, labels, sw, wsum, m, acts,
                                delta0, delta1)
    value = values[0] + values[1]
    if was_split != NULL:
        was_split[0] = True
    elif mode == MODE_GRADIENTS:
        for i in range(n_params):
            grad[i] = g0[i] + g1[i]
    elif isfinite(value):
        for l in range(n_layers):
            w_end = offsets[2 * l] + sizes[l] * sizes[l + 1]
            for i in range(offsets[2 * l], w_end):
                theta[i] = keep * theta[i] - eta * (g0[i] + g1[i])
            for i in range(offsets[2 * l + 1], offsets[2 * l + 1] + sizes[l + 1]):
                theta[i] = theta[i] - eta * (g0[i] + g1[i])
    return value


cdef inline bint _all_finite(const floating* v, Py_ssize_t n) noexcept nogil:
    """True when no v[i] is NaN or infinite."""
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        # v - v is 0 for finite v and NaN otherwise; the OR-reduction vectorises
        bad |= not (v[i] - v[i] == 0)
    return not bad


cdef void _momentum_step(floating* theta, floating* grad, floating* velocity,
                         const Py_ssize_t* sizes, const Py_ssize_t* offsets,
                         Py_ssize_t n_layers, floating eta, floating decay, floating mu,
                         bint nesterov) noexcept nogil:
    """SGD with momentum (PyTorch's form): g := grad (+ decay W for weights);
    v := mu v + g;  theta := theta - eta (g + mu v if nesterov else v)."""
    cdef Py_ssize_t l, i, start, end, n_w
    cdef floating gi
    for l in range(n_layers):
        start = offsets[2 * l]
        n_w = sizes[l] * sizes[l + 1]
        end = offsets[2 * l + 1] + sizes[l + 1]
        for i in range(start, end):
            gi = grad[i] + decay * theta[i] if i < start + n_w else grad[i]
            velocity[i] = mu * velocity[i] + gi
            if nesterov:
                theta[i] = theta[i] - eta * (gi + mu * velocity[i])
            else:
                theta[i] = theta[i] - eta * velocity[i]


# ------------------------------------------------------------ entry points ---

def train(floating[::1] theta, const Py_ssize_t[::1] sizes, const Py_ssize_t[::1] offsets,
          int hidden, int output, int loss,
          const floating[:, ::1] X, const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
          const Py_ssize_t[::1] order, Py_ssize_t batch_size, Py_ssize_t epochs,
          floating eta, double[::1] epoch_losses, floating[::1] acts, floating[::1] deltas,
          floating[:, ::1] x_batch, floating[:, ::1] y_batch, Py_ssize_t[::1] label_batch,
          Py_ssize_t check_every, bint wt=False, floating decay=0, double dropout=0,
          u64[::1] rng_state=None, floating[::1] factors=None, floating momentum=0,
          bint nesterov=False, floating[::1] velocity=None, floating[::1] grad=None,
          floating[::1] halves=None, bint check_input=False):
    """Run ``epochs`` epochs of mini-batch gradient descent; theta is updated in place.

    For every epoch e and batch B (consecutive runs of ``batch_size`` entries of
    ``order``, or of 0..n-1 when ``order`` is empty):
        L_B := loss(X[B], Y[B]);  W := W - eta (dL_B/dW + decay W);  b := b - eta dL_B/db
    and epoch_losses[e] := sum_B |B| L_B / n. With ``dropout`` > 0 the hidden units are
    dropped as in ``_batch``, drawing from ``rng_state`` (updated in place) into
    ``factors`` (the size of ``acts``). With ``velocity`` (not None), SGD with momentum
    as PyTorch's: g := dL_B/dtheta (+ decay W for weights) into ``grad``,
    v := momentum v + g, theta := theta - eta (g + momentum v if nesterov else v).
    Rows of a shuffled batch are gathered into ``x_batch``/``y_batch``/``label_batch``;
    unshuffled batches are read in place. With ``halves`` (2 n_params), mid-size batches
    run as two halves on two cores (``_split_batch``); ``acts`` and ``deltas`` then hold
    batch_size + 1 rows. Pending signals (Ctrl-C) are checked every
    ``check_every`` batches, with the GIL taken only for that moment. ``wt``: the
    weights are stored transposed (see ``_dense``).

    Returns (epochs, 0, 0) after a full run. A batch whose loss is not finite stops
    training before its update and returns (epoch, batch, 1); theta is then what the
    previous step left, which is not finite if that step overflowed. A full run that
    leaves theta not finite (its last step overflowed) returns (epochs, 0, 2).
    With ``check_input``, the first epoch checks each batch's rows of X just before
    they are used (they are in cache then, so the check is nearly free; the first epoch
    visits every row): a row with NaN or infinity stops training before that batch and
    returns (0, batch, 3).
    """
    cdef Py_ssize_t n = X.shape[0], n_layers = sizes.shape[0] - 1
    cdef Py_ssize_t n_in = X.shape[1], k = sizes[n_layers]
    cdef Py_ssize_t e, start, m, i, row, batches = 0, b = 0
    cdef Py_ssize_t n_params = theta.shape[0]
    cdef bint shuffled = order.shape[0] > 0, with_labels = labels.shape[0] > 0
    cdef const floating* xb
    cdef const floating* yb
    cdef const Py_ssize_t* lb
    cdef double value, total
    cdef int status = 0
    cdef Py_ssize_t stop_epoch = epochs, stop_batch = 0
    cdef u64* rng = NULL
    cdef floating* fac = NULL
    cdef bint heavy = velocity is not None
    cdef floating* g = NULL
    cdef floating* hv = NULL
    if heavy:
        g = &grad[0]
    if halves is not None:
        hv = &halves[0]
    if dropout > 0:
        rng = &rng_state[0]
        fac = &factors[0]
    _calls_enter()
    try:
        with nogil:
            for e in range(epochs):
                total = 0
                b = 0
                start = 0
                while start < n:
                    m = min(batch_size, n - start)
                    xb = NULL
                    yb = NULL
                    lb = NULL
                    if shuffled:
                        for i in range(m):
                            row = order[start + i]
                            memcpy(&x_batch[i, 0], &X[row, 0], n_in * sizeof(floating))
                            if with_labels:
                                label_batch[i] = labels[row]
                            else:
                                memcpy(&y_batch[i, 0], &Y[row, 0], k * sizeof(floating))
                        xb = &x_batch[0, 0]
                        if with_labels:
                            lb = &label_batch[0]
                        else:
                            yb = &y_batch[0, 0]
                    else:
                        xb = &X[start, 0]
                        if with_labels:
                            lb = &labels[start]
                        else:
                            yb = &Y[start, 0]
                    if check_input and e == 0 and not _all_finite(xb, m * n_in):
                        status = 3
                        stop_epoch, stop_batch = e, b
                        break
                    if hv == NULL:  # the common case, without the halves' call in between
                        value = _batch(&theta[0], g, &sizes[0], &offsets[0], n_layers, wt,
                                       hidden, output, loss, xb, yb, lb, NULL, m, m, m,
                                       &acts[0], &deltas[0], &deltas[deltas.shape[0] // 2],
                                       eta, decay, MODE_GRADIENTS if heavy else MODE_SGD,
                                       dropout, rng, fac)
                    else:
                        value = _split_batch(&theta[0], g, hv, &sizes[0], &offsets[0],
                                             n_layers, wt, hidden, output, loss, xb, yb, lb,
                                             NULL, m, m, &acts[0], &deltas[0],
                                             &deltas[deltas.shape[0] // 2], eta, decay,
                                             MODE_GRADIENTS if heavy else MODE_SGD, dropout,
                                             rng, fac, NULL)
                    if not isfinite(value):
                        status = 1
                        stop_epoch, stop_batch = e, b
                        break
                    if heavy:
                        _momentum_step(&theta[0], g, &velocity[0], &sizes[0], &offsets[0],
                                       n_layers, eta, decay, momentum, nesterov)
                    total += value * m
                    b += 1
                    batches += 1
                    if batches % check_every == 0:
                        with gil:
                            PyErr_CheckSignals()
                    start += m
                if status:
                    break
                epoch_losses[e] = total / n
    finally:
        _calls_exit()
    if status == 0 and not _all_finite(&theta[0], n_params):
        return epochs, 0, 2
    return stop_epoch, stop_batch, status


def batch(floating[::1] theta, floating[::1] grad, const Py_ssize_t[::1] sizes,
          const Py_ssize_t[::1] offsets, int hidden, int output, int loss,
          const floating[:, ::1] X, const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
          floating eta, int mode, floating[::1] acts, floating[::1] deltas, bint wt=False,
          floating decay=0, floating[::1] halves=None):
    """One whole-batch pass: returns L; mode 0 loss only, 1 grad := dL/dtheta,
    2 W := W - eta (dL/dW + decay W), b := b - eta dL/db. With ``halves`` (modes 1 and
    2) a mid-size batch runs as two halves, as in ``train``, whose steps it then repeats
    exactly; ``acts`` and ``deltas`` then hold m + 1 rows."""
    cdef Py_ssize_t m = X.shape[0], n_layers = sizes.shape[0] - 1
    cdef const floating* yb = NULL
    cdef const Py_ssize_t* lb = NULL
    cdef floating* g = NULL
    cdef floating* hv = NULL
    cdef double value
    if labels.shape[0] > 0:
        lb = &labels[0]
    else:
        yb = &Y[0, 0]
    if grad.shape[0] > 0:
        g = &grad[0]
    if halves is not None and mode != MODE_LOSS:
        hv = &halves[0]
    _calls_enter()
    try:
        with nogil:
            value = _split_batch(&theta[0], g, hv, &sizes[0], &offsets[0], n_layers, wt,
                                 hidden, output, loss, &X[0, 0], yb, lb, NULL, m, m,
                                 &acts[0], &deltas[0], &deltas[deltas.shape[0] // 2], eta,
                                 decay, mode, 0, NULL, NULL, NULL)
    finally:
        _calls_exit()
    return value


def forward(const floating[::1] theta, const Py_ssize_t[::1] sizes,
            const Py_ssize_t[::1] offsets, int hidden, int output,
            const floating[:, ::1] X, floating[:, ::1] out, floating[::1] work,
            Py_ssize_t chunk, bint wt=False):
    """out := the network's output for every row of X, ``chunk`` rows at a time.

    ``work`` holds two chunk x max(hidden width) buffers that the hidden layers
    alternate between; the last layer writes straight into ``out``.
    """
    cdef Py_ssize_t n = X.shape[0], n_layers = sizes.shape[0] - 1
    cdef Py_ssize_t start, m, l, half = work.shape[0] // 2
    cdef const floating* a_prev
    cdef floating* a_out
    cdef floating* buf0 = &work[0]
    cdef floating* buf1 = &work[half]
    _calls_enter()
    try:
        with nogil:
            start = 0
            while start < n:
                m = min(chunk, n - start)
                a_prev = &X[start, 0]
                for l in range(n_layers):
                    if l == n_layers - 1:
                        a_out = &out[start, 0]
                    else:
                        a_out = buf0 if l % 2 == 0 else buf1
                    _dense(a_prev, &theta[offsets[2 * l]], &theta[offsets[2 * l + 1]], a_out,
                           m, sizes[l], sizes[l + 1], output if l == n_layers - 1 else hidden, wt)
                    a_prev = a_out
                start += m
    finally:
        _calls_exit()


# Per-layer kernels, one call each: the steps of the worked example, and the units
# the kernel tests hold against the reference.

def dense(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
          floating[:, ::1] Z):
    """Z := X @ W.T + b."""
    with nogil:
        _dense(&X[0, 0], &W[0, 0], &b[0], &Z[0, 0], X.shape[0], X.shape[1], W.shape[0],
               ACT_IDENTITY, False)


def activate(const floating[:, ::1] Z, floating[:, ::1] A, int act):
    """A := act(Z) (softmax row-wise)."""
    cdef Py_ssize_t i, j, m = Z.shape[0], n = Z.shape[1]
    with nogil:
        for i in range(m):
            for j in range(n):
                A[i, j] = Z[i, j] if act == ACT_SOFTMAX else _act(Z[i, j], act)
        if act == ACT_SOFTMAX and m > 0:
            _softmax_rows(&A[0, 0], m, n, NULL)


def activation_prime(const floating[:, ::1] A, floating[:, ::1] out, int act):
    """out := act'(z), written from the activation A = act(Z)."""
    cdef Py_ssize_t i, j
    with nogil:
        for i in range(A.shape[0]):
            for j in range(A.shape[1]):
                out[i, j] = _act_prime(A[i, j], act)


def output_delta(floating[:, ::1] Z, const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
                 floating[:, ::1] delta, int output, int loss):
    """Z := out(Z) in place, delta := dL/dZ; returns the mean loss L."""
    cdef const floating* yb = NULL
    cdef const Py_ssize_t* lb = NULL
    cdef double value
    if labels.shape[0] > 0:
        lb = &labels[0]
    else:
        yb = &Y[0, 0]
    with nogil:
        value = _output_delta(&Z[0, 0], yb, lb, NULL, Z.shape[0], &delta[0, 0], Z.shape[0],
                              Z.shape[0],
                              Z.shape[1], output, loss)
    return value


def hidden_delta(const floating[:, ::1] delta, const floating[:, ::1] W,
                 const floating[:, ::1] A_prev, floating[:, ::1] delta_prev, int act):
    """delta_prev := (delta @ W) * act'(A_prev)."""
    with nogil:
        _hidden_delta(&delta[0, 0], &W[0, 0], &A_prev[0, 0], &delta_prev[0, 0],
                      delta.shape[0], W.shape[1], W.shape[0], act, False, NULL)


def weight_gradients(const floating[:, ::1] delta, const floating[:, ::1] A_prev,
                     floating[:, ::1] grad_W, floating[::1] grad_b):
    """grad_W := delta^T @ A_prev;  grad_b := sum over rows of delta (delta is not changed)."""
    cdef floating[:, ::1] scratch = delta.copy()
    with nogil:
        _backward(&scratch[0, 0], &A_prev[0, 0], &grad_W[0, 0], &grad_b[0], delta.shape[0],
                  A_prev.shape[1], delta.shape[1], <floating>1, <floating>0, <floating>0, False)


# scikit-learn's MLP: one epoch of its stochastic solvers, and its L-BFGS objective.
# Weights are stored transposed (n_in, n_out) and packed as scikit-learn packs them.

cdef struct _SkSolver:
    # scikit-learn's solver settings for one step (float64; rounded to the parameters'
    # dtype where used, as NumPy does with Python scalars)
    int solver  # SK_NONE, SK_SGD or SK_ADAM
    bint nesterov
    double alpha, lr, mu, b1, b2, eps
    double t_lr  # Adam's lr sqrt(1 - b2^t) / (1 - b1^t), the step size in float64


cdef double _sk_update(floating* params, floating* grad, floating* moment1,
                       floating* moment2, Py_ssize_t n, bint weights, floating wsum,
                       const _SkSolver* s) noexcept nogil:
    """One step of scikit-learn's solvers on n contiguous parameters, all weights or all
    biases; returns sum W^2 over them (before the step; 0 for biases).

    g_W := (g_W + alpha W) / wsum, g_b := g_b / wsum, left in grad, then
    (SK_NONE: no step)
    SK_SGD:  v := mu v - lr g;  params += v  (Nesterov: mu v - lr g)
    SK_ADAM: m := b1 m + (1 - b1) g;  v := b2 v + (1 - b2) g^2;
             params += -t_lr m / (sqrt(v) + eps)
    with moment1 holding v (sgd) or m (adam), moment2 Adam's v.
    """
    cdef Py_ssize_t i
    cdef floating g, v, den
    cdef floating alpha = <floating>s.alpha, lr = <floating>s.lr, mu = <floating>s.mu
    cdef floating b1 = <floating>s.b1, b2 = <floating>s.b2, eps = <floating>s.eps
    cdef floating c1 = <floating>(1 - s.b1), c2 = <floating>(1 - s.b2)
    cdef floating inv = 1 / wsum
    cdef double sq = 0
    # one branch-free loop per case, so that each vectorises
    # the division by wsum without a divider (see _divide): 16 cycles for 8 doubles
    # otherwise, as much as the rest of an SGD step
    if weights:
        sq = _sum_squares(params, n)
        for i in range(n):
            grad[i] = _divide(grad[i] + alpha * params[i], wsum, inv)
    else:
        for i in range(n):
            grad[i] = _divide(grad[i], wsum, inv)
    if s.solver == SK_ADAM:
        for i in range(n):
            g = grad[i]
            moment1[i] = b1 * moment1[i] + c1 * g
            moment2[i] = b2 * moment2[i] + c2 * (g * g)
            # sqrt(v) + eps in the dtype, the step in float64, rounded once when added:
            # as scikit-learn forms them
            den = <floating>sqrt(<double>moment2[i]) + eps
            params[i] = <floating>(params[i] + -s.t_lr * moment1[i] / <double>den)
    elif s.solver == SK_SGD and s.nesterov:
        for i in range(n):
            v = mu * moment1[i] - lr * grad[i]
            moment1[i] = v
            params[i] = params[i] + (mu * v - lr * grad[i])
    elif s.solver == SK_SGD:
        for i in range(n):
            v = mu * moment1[i] - lr * grad[i]
            moment1[i] = v
            params[i] = params[i] + v
    return sq


cdef inline double _adam_lr(double lr, double beta_1, double beta_2, double t) noexcept nogil:
    """Adam's step size at step t (from 1): lr sqrt(1 - beta_2^t) / (1 - beta_1^t)."""
    return lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)


cdef double _sk_step(Py_ssize_t lo, Py_ssize_t hi, floating* params, floating* grad,
                     const floating* other, floating* moment1, floating* moment2,
                     const Py_ssize_t* sizes, const Py_ssize_t* offsets, Py_ssize_t n_layers,
                     floating wsum, const _SkSolver* s) noexcept nogil:
    """``_sk_update`` on parameters lo .. hi - 1 (any mix of layers' weights and biases)
    after g := grad + other (the second half's gradient) when other is not NULL;
    returns sum W^2 there."""
    cdef Py_ssize_t l, i, first, end
    cdef int part_b
    cdef double sq = 0
    for l in range(n_layers):
        for part_b in range(2):  # the weights, then the biases (not always adjacent)
            first = max(lo, offsets[2 * l + part_b])
            end = min(hi, offsets[2 * l + part_b] + (sizes[l + 1] if part_b else
                                                      sizes[l] * sizes[l + 1]))
            if first >= end:
                continue
            if other != NULL:
                for i in range(first, end):
                    grad[i] = grad[i] + other[i]
            sq += _sk_update(&params[first], &grad[first], &moment1[first], &moment2[first],
                             end - first, part_b == 0, wsum, s)
    return sq


cdef double _sk_steps(floating* params, floating* grad, const floating* other,
                      floating* moment1, floating* moment2, const Py_ssize_t* sizes,
                      const Py_ssize_t* offsets, Py_ssize_t n_layers, floating wsum,
                      const _SkSolver* s, bint two_threads) noexcept nogil:
    """``_sk_step`` on all parameters, in two fixed halves (on two threads if
    ``two_threads`` and OpenMP allows two): sum W^2 = half 1's + half 2's either way."""
    cdef Py_ssize_t n_params = offsets[2 * n_layers - 1] + sizes[n_layers]
    cdef Py_ssize_t h = n_params // 2
    cdef double sq[2]
    cdef int t, threads
    threads = 2 if two_threads and _running <= 1 and omp_get_max_threads() >= 2 else 1
    for t in prange(2, num_threads=threads, schedule="static", chunksize=1):
        sq[t] = _sk_step(0 if t == 0 else h, h if t == 0 else n_params, params, grad,
                         other, moment1, moment2, sizes, offsets, n_layers, wsum, s)
    return sq[0] + sq[1]


cdef floating _sk_gather(const floating* X, const floating* Y, const floating* sample_weight,
                         const Py_ssize_t* order, Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t k,
                         floating* xb, floating* yb, floating* swb) noexcept nogil:
    """Rows order[0 .. m-1] of X, Y (and of sample_weight when not NULL) copied into the
    batch buffers; returns the batch's weight sum_i sw_i (m without weights)."""
    cdef Py_ssize_t i, row
    cdef floating wsum = m
    for i in range(m):
        row = order[i]
        memcpy(xb + i * n_in, X + row * n_in, n_in * sizeof(floating))
        memcpy(yb + i * k, Y + row * k, k * sizeof(floating))
    if sample_weight != NULL:
        wsum = 0
        for i in range(m):
            swb[i] = sample_weight[order[i]]
            wsum = wsum + swb[i]
    return wsum


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t v) noexcept nogil:
    return (n + v - 1) // v * v


cdef Py_ssize_t _units_cut(const Py_ssize_t* sizes, Py_ssize_t n_layers) noexcept nogil:
    """Where ``_units_epoch`` cuts the hidden layer's units between two threads: the
    multiple of 16 (whole vectors in either dtype) nearest half of them, so that each
    part has at least 16; or 0 when it does not apply: one hidden layer of at least 32
    units."""
    if n_layers != 2 or sizes[1] < 32:
        return 0
    return (sizes[1] + 16) // 32 * 16


cdef bint _one_thread_product(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                              char tb) noexcept nogil:
    """Whether ``_gemm`` runs this product on the calling thread alone: below the BLAS
    size, and if narrow (as float32 counts it, the stricter), below OpenBLAS's threads."""
    cdef Py_ssize_t work = m * n * k
    return work < BLAS_MIN_WORK and not (n < 32 and tb == c'N' and
                                         work >= BLAS_ONE_THREAD_WORK)


cdef bint _units(const Py_ssize_t* sizes, Py_ssize_t n_layers, Py_ssize_t m) noexcept nogil:
    """Whether ``sk_epoch`` runs batches of m rows with the units cut in two: one hidden
    layer of 32 units or more, at least SPLIT_MIN_WORK multiply-adds a batch, and every
    product a part makes (``_units_forward``, ``_units_backward``; its width padded to
    16) on its own thread: two threaded BLAS calls at once would share the cores."""
    cdef Py_ssize_t n_in, h, k, w, t, cut = _units_cut(sizes, n_layers)
    if cut == 0 or m * (sizes[0] + sizes[2]) * sizes[1] < SPLIT_MIN_WORK:
        return False
    n_in, h, k = sizes[0], sizes[1], sizes[2]
    for t in range(2):
        w = _round_up(cut if t == 0 else h - cut, 16)
        if not (_one_thread_product(m, w, n_in, c'N') and _one_thread_product(m, k, w, c'N')
                and _one_thread_product(w, k, m, c'N') and _one_thread_product(m, w, k, c'T')
                and _one_thread_product(n_in, w, m, c'N')):
            return False
    return True


cdef inline Py_ssize_t _part_size(Py_ssize_t n_in, Py_ssize_t wp, Py_ssize_t k) noexcept nogil:
    """Numbers in a packed part (see ``_units_pack``) of wp (padded) units."""
    return _round_up((n_in + 1 + k) * wp, 16)


cdef Py_ssize_t _units_size(const Py_ssize_t* sizes, Py_ssize_t n_layers,
                            Py_ssize_t m) noexcept nogil:
    """Length of ``_units_epoch``'s workspace for batches of up to m rows (0: no cut);
    every block padded to 16 numbers (64 bytes in float32, 128 in float64) and the parts
    to whole vectors of 16, enough for either dtype."""
    cdef Py_ssize_t n_in = sizes[0], h = sizes[1], k = sizes[n_layers]
    cdef Py_ssize_t cut = _units_cut(sizes, n_layers), w0, w1
    if cut == 0:
        return 0
    w0, w1 = _round_up(cut, 16), _round_up(h - cut, 16)
    # per thread a gathered batch (X, Y, weights) and the output layer's Z and delta;
    # per part A and delta of its units; the partial outputs and the output biases (two
    # of each, by batch parity); parameters, moments and gradients of both parts
    return (16 + 2 * (_round_up(m * n_in, 16) + 3 * _round_up(m * k, 16) + _round_up(m, 16))
            + 2 * (_round_up(m * w0, 16) + _round_up(m * w1, 16)) + 4 * _round_up(m * k, 16)
            + 2 * _round_up(k, 16) + 4 * (_part_size(n_in, w0, k) + _part_size(n_in, w1, k)))


cdef void _units_pack(Py_ssize_t j0, Py_ssize_t width, Py_ssize_t wp, const Py_ssize_t* sizes,
                      const Py_ssize_t* offsets, floating* flat, floating* part,
                      bint unpack) noexcept nogil:
    """part := the parameters of units j0 .. j0 + width - 1 in ``flat`` (the layout of
    params), contiguous and padded to wp units: W1[:, J] row by row (n_in x wp), b1[J]
    (wp), W2[J, :] (wp x k), the padding zero; or, with ``unpack``, the reverse (the
    padding dropped). Each thread then writes only its own cache lines (rows of W1 hold
    both threads' units), its rows start on vector boundaries, and its parameters are
    stepped in three contiguous runs.

    A padding unit has zero weights in and out and a zero bias: it adds exact zeros to
    the output, gets a zero gradient (its row of grad W2 is never written), and every
    solver's step leaves a parameter with zero value, gradient and moments at zero.
    """
    cdef Py_ssize_t n_in = sizes[0], h = sizes[1], k = sizes[2], r
    cdef Py_ssize_t row = width * sizeof(floating)
    if unpack:
        for r in range(n_in):
            memcpy(flat + offsets[0] + r * h + j0, part + r * wp, row)
        memcpy(flat + offsets[1] + j0, part + n_in * wp, row)
        memcpy(flat + offsets[2] + j0 * k, part + (n_in + 1) * wp, k * row)
        return
    memset(part, 0, (n_in + 1 + k) * wp * sizeof(floating))
    for r in range(n_in):
        memcpy(part + r * wp, flat + offsets[0] + r * h + j0, row)
    memcpy(part + n_in * wp, flat + offsets[1] + j0, row)
    memcpy(part + (n_in + 1) * wp, flat + offsets[2] + j0 * k, k * row)


cdef double _units_forward(const floating* part, Py_ssize_t wp, const Py_ssize_t* sizes,
                           int hidden, const floating* x, Py_ssize_t m, floating* a1,
                           floating* partial) noexcept nogil:
    """A thread's part of the forward pass, for its units J (wp of them with the
    padding; parameters ``part`` as ``_units_pack`` lays them out):
    A_J := act(X W1[:, J] + b1[J]) (m x wp, into a1) and the units' share of the output,
    partial := A_J W2[J, :] (m x k)."""
    cdef Py_ssize_t n_in = sizes[0], k = sizes[2]
    _gemm(c'N', c'N', m, wp, n_in, <floating>1, x, n_in, part, wp, <floating>0, a1, wp)
    _bias_act(a1, part + n_in * wp, m, wp, hidden)
    _gemm(c'N', c'N', m, k, wp, <floating>1, a1, wp, part + (n_in + 1) * wp, k,
          <floating>0, partial, k)
    return 0


cdef double _units_backward(bint first, Py_ssize_t width, Py_ssize_t wp, floating* part,
                            floating* part_m1, floating* part_m2, floating* part_g,
                            floating* params, floating* grad, floating* moment1,
                            floating* moment2, const Py_ssize_t* sizes,
                            const Py_ssize_t* offsets, int hidden, const floating* x,
                            const floating* delta, Py_ssize_t m, floating* a1, floating* d1,
                            floating wsum, const _SkSolver* s) noexcept nogil:
    """A thread's part of the backward pass and the step, on its units J only
    (parameters, moments and gradients in ``part``, ``part_m1``, ``part_m2``, ``part_g``,
    laid out by ``_units_pack``):
        grad W2[J, :] := A_J^T delta,  delta_J := (delta W2[J, :]^T) * act'(A_J),
        grad W1[:, J] := X^T delta_J,  grad b1[J] := sum_rows delta_J,
        the ``first`` part also grad b2 := sum_rows delta (b2 stays in params, its
        gradient in grad),
    then ``_sk_update`` on W1[:, J], b1[J], W2[J, :] and (first part) b2.
    delta (the output layer's, m x k) is read, not changed. Returns sum W^2 over the
    weights it stepped."""
    cdef Py_ssize_t n_in = sizes[0], k = sizes[2]
    cdef Py_ssize_t b_at = n_in * wp, w2_at = (n_in + 1) * wp
    cdef floating* gb2 = grad + offsets[3]
    cdef double sq = 0
    # the padding's rows of grad W2 stay zero
    _gemm(c'T', c'N', width, k, m, <floating>1, a1, wp, delta, k, <floating>0,
          part_g + w2_at, k)
    _hidden_delta(delta, part + w2_at, a1, d1, m, wp, k, hidden, True, NULL)
    _backward(d1, x, part_g, part_g + b_at, m, n_in, wp, 1, 0, 0, True)
    if first:
        _column_sums(delta, m, k, gb2)
    sq += _sk_update(part, part_g, part_m1, part_m2, b_at, True, wsum, s)
    sq += _sk_update(part + b_at, part_g + b_at, part_m1 + b_at, part_m2 + b_at, wp, False,
                     wsum, s)
    sq += _sk_update(part + w2_at, part_g + w2_at, part_m1 + w2_at, part_m2 + w2_at,
                     wp * k, True, wsum, s)
    if first:
        sq += _sk_update(params + offsets[3], gb2, moment1 + offsets[3],
                         moment2 + offsets[3], k, False, wsum, s)
    return sq


cdef inline floating* _take(floating** cursor, Py_ssize_t n) noexcept nogil:
    """The next block of n numbers (rounded up to 16) from a workspace cursor."""
    cdef floating* block = cursor[0]
    cursor[0] = block + _round_up(n, 16)
    return block


cdef double _units_epoch(floating* params, floating* grad, floating* moment1,
                         floating* moment2, const Py_ssize_t* sizes, const Py_ssize_t* offsets,
                         int hidden, int output, int loss, const floating* X,
                         const floating* Y, const floating* sample_weight,
                         const Py_ssize_t* order, Py_ssize_t n, Py_ssize_t batch_size,
                         _SkSolver solver, Py_ssize_t step, floating* work,
                         Py_ssize_t check_every, bint* interrupted) noexcept nogil:
    """``sk_epoch`` for one hidden layer, on two cores with the hidden units cut in two.

    Thread t owns units J_t and the parameters that touch only them (W1[:, J_t], b1[J_t],
    W2[J_t, :]; thread 0 also b2), so parameters never cross between the cores; for the
    epoch it keeps them, their moments and their gradient in contiguous copies padded to
    whole vectors (``_units_pack``). Per batch: each thread gathers the batch (X, Y,
    weights) for itself and runs ``_units_forward``; after one barrier, each forms
    Z2 = (P_0 + P_1) + b2 from both partial outputs and takes the loss and delta of the
    whole output layer (the same numbers on both: only the m x k partials and b2 cross
    between the cores); then ``_units_backward`` and its step. The partial outputs, and
    the copy of b2 the batch reads (thread 0 steps b2 while thread 1 may still be
    reading it), alternate between two buffers by batch parity, so one barrier per batch
    suffices. With one thread (OpenMP allows one, or another kernel call is running)
    that thread plays both parts in turn, with the same arithmetic: the result does not
    depend on the number of threads. Returns sum_B |B| L_B as ``sk_epoch``; a pending
    signal sets *interrupted and stops the epoch after the batch it came in.
    """
    cdef Py_ssize_t n_in = sizes[0], h = sizes[1], k = sizes[2]
    cdef Py_ssize_t cut = _units_cut(sizes, 2)
    cdef Py_ssize_t vec = 64 // sizeof(floating)
    cdef Py_ssize_t j0s[2]
    cdef Py_ssize_t widths[2]
    cdef Py_ssize_t wps[2]
    cdef floating* bufs[2][5]  # per thread: X, Y, weights, Z and delta of the batch
    cdef floating* a1s[2]
    cdef floating* d1s[2]
    cdef floating* partials[2][2]  # by batch parity, by part
    cdef floating* biases[2]  # by batch parity
    cdef floating* flats[4]  # params, moment1, moment2, gradient
    cdef floating* parts[4][2]  # the same, as each part's packed copy
    cdef floating* cursor = <floating*>_round_up(<Py_ssize_t>work, 64)
    cdef double totals[3]  # the losses (thread 0's), thread 0's and thread 1's L2 terms
    cdef int stop[3]  # stop before batch b when stop[b % 2]; stop[2]: a signal came
    cdef int threads, nth, p, t, halt, a
    cdef Py_ssize_t start, m, i, j, b
    cdef floating* xb
    cdef floating* yb
    cdef floating* swb
    cdef floating* zb
    cdef floating* db
    cdef floating* pb
    cdef floating* bb
    cdef floating wsum
    cdef double value, sq
    cdef _SkSolver s
    flats[0], flats[1], flats[2], flats[3] = params, moment1, moment2, grad
    j0s[0], j0s[1], widths[0], widths[1] = 0, cut, cut, h - cut
    for t in range(2):
        wps[t] = _round_up(widths[t], vec)
    for p in range(2):
        bufs[p][0] = _take(&cursor, batch_size * n_in)
        bufs[p][1] = _take(&cursor, batch_size * k)
        bufs[p][2] = _take(&cursor, batch_size)
        bufs[p][3] = _take(&cursor, batch_size * k)
        bufs[p][4] = _take(&cursor, batch_size * k)
    for t in range(2):
        a1s[t] = _take(&cursor, batch_size * wps[t])
        d1s[t] = _take(&cursor, batch_size * wps[t])
        partials[0][t] = _take(&cursor, batch_size * k)
        partials[1][t] = _take(&cursor, batch_size * k)
    biases[0] = _take(&cursor, k)
    biases[1] = _take(&cursor, k)
    for a in range(4):
        for t in range(2):
            parts[a][t] = _take(&cursor, _part_size(n_in, wps[t], k))
    totals[0] = totals[1] = totals[2] = 0
    stop[0] = stop[1] = stop[2] = 0
    # Cython makes these firstprivate: give them values to copy
    p = nth = t = halt = a = 0
    start = m = i = j = b = 0
    xb = yb = swb = zb = db = pb = bb = NULL
    wsum = 0
    value = sq = 0
    s = solver
    threads = 2 if _running <= 1 and omp_get_max_threads() >= 2 else 1
    with parallel(num_threads=threads):
        p = threadid()
        nth = omp_get_num_threads()
        s = solver
        xb, yb, swb, zb, db = bufs[p][0], bufs[p][1], bufs[p][2], bufs[p][3], bufs[p][4]
        t = p
        while t < 2:
            for a in range(3):
                _units_pack(j0s[t], widths[t], wps[t], sizes, offsets, flats[a], parts[a][t],
                            False)
            memset(parts[3][t], 0, (n_in + 1 + k) * wps[t] * sizeof(floating))
            t = t + nth
        start = 0
        b = 0
        while start < n:
            m = min(batch_size, n - start)
            wsum = _sk_gather(X, Y, sample_weight, order + start, m, n_in, k, xb, yb, swb)
            if s.solver == SK_ADAM:
                s.t_lr = _adam_lr(s.lr, s.b1, s.b2, step + b + 1)
            bb = biases[b % 2]
            t = p
            while t < 2:  # thread p's part(s): p, or with one thread 0 then 1
                _units_forward(parts[0][t], wps[t], sizes, hidden, xb, m, a1s[t],
                               partials[b % 2][t])
                if t == 0:
                    # b2 as this batch sees it: part 0 steps b2 while the other thread
                    # may still be forming Z2
                    memcpy(bb, params + offsets[3], k * sizeof(floating))
                t = t + nth
            _barrier()
            if stop[b % 2]:
                break
            pb = partials[b % 2][0]
            for i in range(m * k):
                zb[i] = pb[i] + partials[b % 2][1][i]
            for i in range(m):
                for j in range(k):
                    zb[i * k + j] = zb[i * k + j] + bb[j]
            value = _output_delta(zb, yb, NULL, swb if sample_weight != NULL else NULL,
                                  wsum, db, m, m, k, output, loss)
            if p == 0:
                totals[0] += value * m
            t = p
            while t < 2:
                sq = _units_backward(t == 0, widths[t], wps[t], parts[0][t], parts[1][t],
                                     parts[2][t], parts[3][t], params, grad, moment1,
                                     moment2, sizes, offsets, hidden, xb, db, m, a1s[t],
                                     d1s[t], wsum, &s)
                totals[1 + t] += 0.5 * s.alpha * sq / wsum * m
                t = t + nth
            b = b + 1
            start = start + m
            if p == 0:
                halt = 0
                if b % check_every == 0:
                    with gil:
                        if _check_signals() < 0:
                            halt = 1
                            stop[2] = 1
                # read by both threads after the next barrier; the slot is not written
                # again until both have passed it
                stop[b % 2] = halt
        t = p
        while t < 2:
            # params, moments and grad (the last batch's gradient) back in the flat layout;
            # moment2 is moment1 for SGD: unpacked once, from the copy that was stepped
            for a in range(4):
                if a != 2 or moment2 != moment1:
                    _units_pack(j0s[t], widths[t], wps[t], sizes, offsets, flats[a],
                                parts[a][t], True)
            t = t + nth
    interrupted[0] = stop[2]
    return totals[0] + totals[1] + totals[2]


def sk_epoch(floating[::1] params, floating[::1] grad, floating[::1] moment1,
             floating[::1] moment2, const Py_ssize_t[::1] sizes, const Py_ssize_t[::1] offsets,
             int hidden, int output, int loss,
             const floating[:, ::1] X, const floating[:, ::1] Y,
             const floating[::1] sample_weight, const Py_ssize_t[::1] order,
             Py_ssize_t batch_size, double alpha, bint adam, double learning_rate,
             double momentum, bint nesterov, double beta_1, double beta_2, double epsilon,
             Py_ssize_t step, floating[::1] acts, floating[::1] deltas,
             floating[:, ::1] x_batch, floating[:, ::1] y_batch, floating[::1] sw_batch,
             Py_ssize_t check_every, floating[::1] halves=None):
    """One epoch of scikit-learn's stochastic solvers; returns sum_B |B| L_B.

    For each batch B (runs of ``batch_size`` entries of ``order``):
        g := dL_B/dparams, L_B := mean loss + alpha / (2 sum(sw_B)) sum_l ||W_l||^2
        sgd:  v := momentum v - lr g;  params += v  (Nesterov: momentum v - lr g)
        adam: t := step + batch number (from 1); m := b1 m + (1 - b1) g;
              v := b2 v + (1 - b2) g^2;  params += -lr sqrt(1 - b2^t) / (1 - b1^t)
                                          * m / (sqrt(v) + epsilon)
    moment1 holds v (sgd) or m (adam), moment2 Adam's v. Hyper-parameters are rounded
    to the parameters' dtype before use, as NumPy does with Python scalars.
    ``grad`` is left holding the last batch's gradient. ``halves``: for mid-size
    batches (``splits``), room for ``split_size(sizes, batch_size)`` numbers; one hidden
    layer then runs on two cores with its units cut in two (``_units_epoch``), other
    networks as two halves of each batch as in ``train``.
    """
    cdef Py_ssize_t n = order.shape[0], n_layers = sizes.shape[0] - 1
    cdef Py_ssize_t n_in = X.shape[1], k = sizes[n_layers], n_params = params.shape[0]
    cdef Py_ssize_t start = 0, m, b = 0
    cdef bint weighted = sample_weight.shape[0] > 0
    cdef floating wsum
    cdef _SkSolver solver
    cdef const floating* swb = NULL
    cdef floating* hv = NULL
    cdef bint split = False
    cdef double value, total = 0, sq
    cdef bint interrupted = False
    solver.solver = SK_ADAM if adam else SK_SGD
    solver.nesterov = nesterov
    solver.alpha, solver.lr, solver.mu = alpha, learning_rate, momentum
    solver.b1, solver.b2, solver.eps, solver.t_lr = beta_1, beta_2, epsilon, 0
    if halves is not None:
        hv = &halves[0]
    # (an epsilon that rounds to 0 would make Adam's step 0 / 0 on the padding units)
    if (hv != NULL and n > 0 and _units(&sizes[0], n_layers, batch_size)
            and halves.shape[0] >= _units_size(&sizes[0], n_layers, batch_size)
            and (not adam or <floating>epsilon > 0)):
        _calls_enter()
        try:
            with nogil:
                total = _units_epoch(&params[0], &grad[0], &moment1[0], &moment2[0],
                                     &sizes[0], &offsets[0], hidden, output, loss, &X[0, 0],
                                     &Y[0, 0], &sample_weight[0] if weighted else NULL,
                                     &order[0], n, batch_size, solver, step, hv,
                                     check_every, &interrupted)
        finally:
            _calls_exit()
        if interrupted:
            _raise_pending()
        return total
    _calls_enter()
    try:
        with nogil:
            while start < n:
                m = min(batch_size, n - start)
                wsum = _sk_gather(&X[0, 0], &Y[0, 0], &sample_weight[0] if weighted else NULL,
                                  &order[start], m, n_in, k, &x_batch[0, 0], &y_batch[0, 0],
                                  &sw_batch[0] if weighted else NULL)
                if weighted:
                    swb = &sw_batch[0]
                value = _split_batch(&params[0], &grad[0], hv, &sizes[0], &offsets[0],
                                     n_layers, True, hidden, output, loss, &x_batch[0, 0],
                                     &y_batch[0, 0], NULL, swb, wsum, m, &acts[0], &deltas[0],
                                     &deltas[deltas.shape[0] // 2], 0, 0, MODE_GRADIENTS, 0,
                                     NULL, NULL, &split)
                if adam:
                    solver.t_lr = _adam_lr(learning_rate, beta_1, beta_2, step + b + 1)
                # a split batch has both threads awake: they share the step as well
                sq = _sk_steps(&params[0], &grad[0], hv if split else NULL, &moment1[0],
                               &moment2[0], &sizes[0], &offsets[0], n_layers, wsum, &solver,
                               split)
                value += 0.5 * alpha * sq / wsum
                total += value * m
                b += 1
                start += m
                if b % check_every == 0:
                    with gil:
                        PyErr_CheckSignals()
    finally:
        _calls_exit()
    return total


def sk_loss_grad(const floating[::1] params, floating[::1] grad, const Py_ssize_t[::1] sizes,
                 const Py_ssize_t[::1] offsets, int hidden, int output, int loss,
                 const floating[:, ::1] X, const floating[:, ::1] Y,
                 const floating[::1] sample_weight, double alpha,
                 floating[::1] acts, floating[::1] deltas):
    """scikit-learn's L-BFGS objective over the whole of (X, Y): returns L, grad := dL/dparams.

    L := mean loss + alpha / (2 sum(sw)) sum_l ||W_l||^2, as in ``sk_epoch``.
    """
    cdef Py_ssize_t m = X.shape[0], n_layers = sizes.shape[0] - 1, i
    cdef const floating* sw = NULL
    cdef floating wsum = m
    cdef double value
    cdef _SkSolver solver
    solver.solver, solver.nesterov, solver.alpha = SK_NONE, False, alpha
    solver.lr = solver.mu = solver.b1 = solver.b2 = solver.eps = solver.t_lr = 0
    if sample_weight.shape[0] > 0:
        sw = &sample_weight[0]
        wsum = 0
        for i in range(m):
            wsum = wsum + sample_weight[i]
    _calls_enter()
    try:
        with nogil:
            value = _batch(<floating*>&params[0], &grad[0], &sizes[0], &offsets[0], n_layers, True,
                           hidden, output, loss, &X[0, 0], &Y[0, 0], NULL, sw, wsum, m, m,
                           &acts[0], &deltas[0], &deltas[deltas.shape[0] // 2], 0, 0,
                           MODE_GRADIENTS, 0, NULL, NULL)
            # SK_NONE: the moments are not touched (params stands in for them)
            value += 0.5 * alpha * _sk_steps(<floating*>&params[0], &grad[0], NULL,
                                             <floating*>&params[0], <floating*>&params[0],
                                             &sizes[0], &offsets[0], n_layers, wsum, &solver,
                                             False) / wsum
    finally:
        _calls_exit()
    return value


def split_size(const Py_ssize_t[::1] sizes, Py_ssize_t m):
    """Length of the ``halves`` workspace that ``sk_epoch`` takes for batches of up to m
    rows: its hidden units cut in two, or (other networks) a second gradient."""
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1, l, n_params = 0
    for l in range(n_layers):
        n_params += (sizes[l] + 1) * sizes[l + 1]
    return max(_units_size(&sizes[0], n_layers, m), n_params)


def splits(const Py_ssize_t[::1] sizes, Py_ssize_t m):
    """Whether ``train`` runs a batch of m rows as two halves (given ``halves``): its
    products are mid-size and it has rows enough (see ``_split_batch``)."""
    return _splits(&sizes[0], sizes.shape[0] - 1, m)


def two_cores(const Py_ssize_t[::1] sizes, Py_ssize_t m):
    """Whether ``sk_epoch`` runs batches of m rows on both cores (given ``halves``):
    with the hidden units cut in two, or as two halves of rows."""
    cdef Py_ssize_t n_layers = sizes.shape[0] - 1
    return _units(&sizes[0], n_layers, m) or _splits(&sizes[0], n_layers, m)


def all_finite(const floating[::1] values):
    """True when no entry of ``values`` is NaN or infinite; one pass, no temporary array."""
    cdef bint result = True
    if values.shape[0] > 0:
        with nogil:
            result = _all_finite(&values[0], values.shape[0])
    return result



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


BLAS_THREAD_CONTROL = _bind_scipy_openblas()
