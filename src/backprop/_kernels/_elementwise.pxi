# Per-element and per-row helpers: ``cdef inline ... noexcept nogil``, written once for
# ``cython.floating``. The exponential is a polynomial the compiler vectorises; the
# sigmoid and softmax are written so that nothing overflows. The activations and their
# derivatives are PyTorch's (torch.nn.functional, its default parameters).

cdef extern from *:
    # The bit pattern of 1.5 * 2^52: adding it to |y| < 2^51 rounds y to an integer
    # that can then be read from the low bits of the sum.
    long long _ROUND_BITS "0x4338000000000000LL"
    # SplitMix64's increment and multipliers.
    u64 _SM_GAMMA "0x9E3779B97F4A7C15ULL"
    u64 _SM_M1 "0xBF58476D1CE4E5B9ULL"
    u64 _SM_M2 "0x94D049BB133111EBULL"

cdef extern from "target.h":
    const bint BP_HAS_FMA

cdef extern from "reductions.h":
    double _sum_squares_d "bp_sum_squares_d"(const double* x, Py_ssize_t n) noexcept nogil
    double _sum_squares_f "bp_sum_squares_f"(const float* x, Py_ssize_t n) noexcept nogil


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
    off; an infinite a gives NaN). Without a fused multiply-add instruction (x86-64-v2),
    where fma() is a call into libm's emulation, it is the division itself, which gives
    the same quotient."""
    cdef floating q
    if not BP_HAS_FMA:
        return a / b
    q = a * inv
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


cdef extern from *:
    # leaky_relu's slope for z < 0 and the z above which softplus is z itself: PyTorch's
    # defaults (F.leaky_relu's negative_slope, F.softplus's threshold)
    double LEAKY_SLOPE "0.01"
    double SOFTPLUS_THRESHOLD "20.0"
    # 1 / sqrt(2) and 1 / sqrt(2 pi), for the normal distribution in gelu
    double _SQRT1_2 "0.70710678118654752440"
    double _INV_SQRT_2PI "0.39894228040143267794"


cdef inline floating _act(floating z, int act) noexcept nogil:
    """a = act(z) for the element-wise activations."""
    if act == SIGMOID:
        return _sigmoid(z)
    if act == TANH:
        return _tanh(z)
    if act == RELU:
        return 0 if z < 0 else z
    if act == EXP:
        return _exp(z)
    if act == LEAKY_RELU:
        return z if z > 0 else z * <floating>LEAKY_SLOPE
    if _keeps_prime(act):
        return _act_and_prime(z, act, NULL)
    return z


cdef inline bint _keeps_prime(int act) noexcept nogil:
    """Whether the backward pass takes act'(z) from the forward pass (``_act_and_prime``)
    rather than from the activation a (``_act_prime``): elu' = a + 1 would lose the
    digits of e^z for z << 0, softplus' = 1 - e^-a would not be PyTorch's exact 1 above
    the threshold, and gelu and silu are not one-to-one: a does not determine z."""
    return act == ELU or act == GELU or act == SOFTPLUS or act == SILU


cdef inline floating _act_prime(floating a, int act) noexcept nogil:
    """act'(z) written from the activation a = act(z), for the activations that allow it
    exactly (not ``_keeps_prime``); at z = 0, relu' = 0 and leaky_relu' = 0.01, as
    PyTorch's."""
    if act == SIGMOID:
        return a * (1 - a)
    if act == TANH:
        return 1 - a * a
    if act == RELU:
        return 1 if a > 0 else 0
    if act == LEAKY_RELU:
        # a > 0 exactly when z > 0: the slope is positive
        return 1 if a > 0 else <floating>LEAKY_SLOPE
    return 1


cdef inline floating _act_and_prime(floating z, int act, floating* prime) noexcept nogil:
    """a = act(z) and, unless ``prime`` is NULL, prime := act'(z), for the activations
    whose derivative the backward pass cannot take from a (``_keeps_prime``); in float64
    whatever the dtype:

    elu(z)      = z if z > 0 else e^z - 1 (expm1: exact near 0);  elu' = 1 or e^z
    gelu(z)     = z Phi(z), Phi(z) = erfc(-z / sqrt 2) / 2, which is (1 + erf(z / sqrt 2)) / 2
                  without its cancellation for z << 0;  gelu' = Phi(z) + z phi(z),
                  phi(z) = e^(-z^2 / 2) / sqrt(2 pi)
    softplus(z) = z if z > 20 else log(1 + e^z) (log1p);  softplus' = 1 or e^z / (e^z + 1)
    silu(z)     = z sigma(z);  silu' = sigma(z) (1 + z (1 - sigma(z)))
    """
    cdef double x = z, e, cdf, s
    if act == ELU:
        if x > 0:
            if prime != NULL:
                prime[0] = 1
            return z
        if prime != NULL:
            prime[0] = <floating>exp(x)
        return <floating>expm1(x)
    if act == GELU:
        cdf = 0.5 * erfc(-x * _SQRT1_2)
        if prime != NULL:
            prime[0] = <floating>(cdf + x * (_INV_SQRT_2PI * exp(-0.5 * x * x)))
        return <floating>(x * cdf)
    if act == SOFTPLUS:
        if x > SOFTPLUS_THRESHOLD:
            if prime != NULL:
                prime[0] = 1
            return z
        e = exp(x)
        if prime != NULL:
            prime[0] = <floating>(e / (e + 1))
        return <floating>log1p(e)
    # SILU
    s = _sigmoid(x)
    if prime != NULL:
        prime[0] = <floating>(s * (1 + x * (1 - s)))
    return <floating>(x * s)


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



cdef inline bint _all_finite(const floating* v, Py_ssize_t n) noexcept nogil:
    """True when no v[i] is NaN or infinite."""
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        # v - v is 0 for finite v and NaN otherwise; the OR-reduction vectorises
        bad |= not (v[i] - v[i] == 0)
    return not bad


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
