# The output layer: A := out(Z) and delta := dL/dZ, one function per loss family.
#
# Z holds m rows of a batch of m_norm (m_norm = m but for half a batch, see
# ``_split_batch``): means are taken over m_norm rows, so that the halves' losses and
# deltas add up to the whole batch's. The cross-entropies are taken from z, not from
# the probabilities, so that they stay finite when a probability rounds to 0 or 1.


cdef inline double _output_delta(floating* z, const floating* y, const Py_ssize_t* labels,
                                 const floating* sw, double wsum, floating* delta,
                                 Py_ssize_t m, Py_ssize_t m_norm, Py_ssize_t k, int output,
                                 int loss) noexcept nogil:
    """A := out(Z) in place, delta := dL/dZ; returns L, the batch's mean loss.
    ``labels`` (integer classes, not NULL) replaces ``y`` for cross_entropy; ``sw``
    (NULL: all 1) and ``wsum`` are the sample weights of the scikit-learn losses."""
    if loss == CROSS_ENTROPY:
        return _cross_entropy(z, y, labels, delta, m, m_norm, k)
    if loss == BINARY_CROSS_ENTROPY:
        return _binary_cross_entropy(z, y, delta, m, m_norm, k)
    if loss == MSE:
        return _mse(z, y, delta, m, m_norm, k, output)
    return _sk_loss(z, y, sw, wsum, delta, m, k, output, loss)


cdef double _mse(floating* z, const floating* y, floating* delta, Py_ssize_t m,
                 Py_ssize_t m_norm, Py_ssize_t k, int output) noexcept nogil:
    """L = sum (a - y)^2 / (m k);  dL/da = 2 (a - y) / (m k), times out'(z):
    a (1 - a) for sigmoid, the softmax's Jacobian a * (g - g.a) for softmax."""
    cdef Py_ssize_t i, j
    cdef floating* zr
    cdef floating* dr
    cdef const floating* yr
    cdef floating g, dot
    cdef floating scale = <floating>1 / (m_norm * k)
    cdef double total = 0
    if output == SOFTMAX:
        _softmax_rows(z, m, k, NULL)
    for i in range(m):
        zr = z + i * k
        dr = delta + i * k
        yr = y + i * k
        for j in range(k):
            if output == SIGMOID:
                zr[j] = _sigmoid(zr[j])
            g = zr[j] - yr[j]
            total += g * g
            dr[j] = 2 * g * scale
        if output == SIGMOID:
            for j in range(k):
                dr[j] = dr[j] * zr[j] * (1 - zr[j])
        elif output == SOFTMAX:
            dot = 0
            for j in range(k):
                dot = dot + dr[j] * zr[j]
            for j in range(k):
                dr[j] = zr[j] * (dr[j] - dot)
    return total / (m_norm * k)


cdef double _cross_entropy(floating* z, const floating* y, const Py_ssize_t* labels,
                           floating* delta, Py_ssize_t m, Py_ssize_t m_norm,
                           Py_ssize_t k) noexcept nogil:
    """Softmax output: L = sum_i (lse(z_i) - sum_j y_ij z_ij) / m;  dL/dz = (p - y) / m,
    with lse the log-sum-exp of ``_softmax_rows`` and y one-hot rows for labels."""
    cdef Py_ssize_t i, j
    cdef floating* zr
    cdef floating* dr
    cdef const floating* yr
    cdef floating scale = <floating>1 / m_norm
    cdef double total = 0, yz
    # the z_iy are taken before the softmax overwrites z
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
    for i in range(m):
        zr = z + i * k
        dr = delta + i * k
        for j in range(k):
            dr[j] = zr[j] * scale
        if labels != NULL:
            dr[labels[i]] -= scale
        else:
            yr = y + i * k
            for j in range(k):
                dr[j] = dr[j] - yr[j] * scale
    return total / m_norm


cdef double _binary_cross_entropy(floating* z, const floating* y, floating* delta,
                                  Py_ssize_t m, Py_ssize_t m_norm,
                                  Py_ssize_t k) noexcept nogil:
    """Sigmoid output: L = sum (max(z, 0) - y z + log1p(e^-|z|)) / (m k);
    dL/dz = (a - y) / (m k)."""
    cdef Py_ssize_t i
    cdef floating a, yv, zv
    cdef floating scale = <floating>1 / (m_norm * k)
    cdef double total = 0
    for i in range(m * k):
        zv = z[i]
        yv = y[i]
        total += (zv if zv > 0 else 0) - yv * zv + log1p(_exp_neg(-fabs(zv)))
        a = _sigmoid(zv)
        z[i] = a
        delta[i] = (a - yv) * scale
    return total / (m_norm * k)


cdef double _sk_loss(floating* z, const floating* y, const floating* sw, double wsum,
                     floating* delta, Py_ssize_t m, Py_ssize_t k, int output,
                     int loss) noexcept nogil:
    """scikit-learn's losses, with sample weights sw (NULL: all 1) summing to wsum and
    q = clip(p, eps, 1 - eps):
        sk_squared_error:   L = sum_i sw_i sum_j (y - p)^2 / (2 wsum k)
        sk_log_loss:        L = -sum_i sw_i sum_j y log q / wsum
        sk_binary_log_loss: L = -sum_i sw_i sum_j (y log q + (1 - y) log(1 - q)) / wsum
        sk_poisson:         L = sum_i sw_i sum_j (y log(y / p) - y + p) / wsum
    and for all four delta := (p - y) sw_i, left unnormalised: the solver divides the
    gradients by wsum, as scikit-learn does. Terms are summed in float64 whatever the
    dtype, the probabilities clipped in their own dtype first: both as scikit-learn.
    """
    cdef Py_ssize_t i, j
    cdef floating* zr
    cdef floating* dr
    cdef const floating* yr
    cdef floating yv, w, q
    cdef floating eps = <floating>(1.1920928955078125e-07 if floating is float
                                   else 2.220446049250313e-16)
    cdef double total = 0, row_total, chosen = 1
    if output == SOFTMAX:
        _softmax_rows(z, m, k, NULL)
    for i in range(m):
        zr = z + i * k
        dr = delta + i * k
        yr = y + i * k
        w = sw[i] if sw != NULL else 1
        if output != SOFTMAX:
            for j in range(k):
                zr[j] = _act(zr[j], output)
        for j in range(k):
            dr[j] = (zr[j] - yr[j]) * w
        row_total = 0
        if loss == SK_SQUARED_ERROR:
            for j in range(k):
                row_total += (<double>yr[j] - zr[j]) * (<double>yr[j] - zr[j])
        elif loss == SK_POISSON:
            for j in range(k):
                yv = yr[j]
                if yv != 0:
                    row_total += yv * log(yv / <double>zr[j])
                row_total += <double>zr[j] - yv
        else:
            for j in range(k):
                yv = yr[j]
                if yv == 0 and loss == SK_LOG_LOSS:
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
                    if loss == SK_BINARY_LOG_LOSS and yv != 1:
                        row_total -= (1 - yv) * log(<double>(1 - q))
        total += w * row_total
    if loss == SK_SQUARED_ERROR:
        return total / (2 * wsum * k)
    return (total - log(chosen)) / wsum
