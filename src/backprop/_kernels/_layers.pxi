# Per-layer kernels on raw row-major pointers, and ``_batch``, which chains them into
# the forward pass, the loss and the backward pass of one mini-batch.

cdef void _bias_act(floating* z, const floating* bias, Py_ssize_t m, Py_ssize_t n,
                    int act) noexcept nogil:
    """Z := act(Z + b), row by row, in place (softmax acts on whole rows)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    if act == SOFTMAX:
        for i in range(m):
            row = z + i * n
            for j in range(n):
                row[j] = row[j] + bias[j]
        _softmax_rows(z, m, n, NULL)
        return
    for i in range(m):
        row = z + i * n
        if act == SIGMOID:
            for j in range(n):
                row[j] = _sigmoid(row[j] + bias[j])
        elif act == TANH:
            for j in range(n):
                row[j] = _tanh(row[j] + bias[j])
        elif act == RELU:
            for j in range(n):
                row[j] = row[j] + bias[j]
                if row[j] < 0:
                    row[j] = 0
        elif act == EXP:
            for j in range(n):
                row[j] = _exp(row[j] + bias[j])
        elif act == LEAKY_RELU:
            for j in range(n):
                row[j] = _act(row[j] + bias[j], LEAKY_RELU)
        elif act != IDENTITY:
            for j in range(n):
                row[j] = _act(row[j] + bias[j], act)
        else:
            for j in range(n):
                row[j] = row[j] + bias[j]


cdef void _bias_act_prime(floating* z, const floating* bias, floating* prime, Py_ssize_t m,
                          Py_ssize_t n, int act) noexcept nogil:
    """Z := act(Z + b) and P := act'(Z + b), row by row, in place; for the activations
    whose derivative the backward pass takes from here (``_keeps_prime``)."""
    cdef Py_ssize_t i, j
    cdef floating* row
    cdef floating* p
    for i in range(m):
        row = z + i * n
        p = prime + i * n
        for j in range(n):
            row[j] = _act_and_prime(row[j] + bias[j], act, &p[j])


cdef void _dense(const floating* x, const floating* w, const floating* bias, floating* z,
                 Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t n_out, int act,
                 bint wt, floating* prime) noexcept nogil:
    """Z := act(X @ W.T + b); X is m x n_in, W is n_out x n_in, Z is m x n_out. With
    ``prime`` (not NULL; an activation that ``_keeps_prime``), P := act'(X @ W.T + b) too.

    With ``wt`` W is stored transposed, n_in x n_out (scikit-learn's coefs_), and
    Z := act(X @ W + b). The same flag means the same in every per-layer kernel.
    """
    if wt:
        _gemm(c'N', c'N', m, n_out, n_in, <floating>1, x, n_in, w, n_out, <floating>0, z, n_out)
    else:
        _gemm(c'N', c'T', m, n_out, n_in, <floating>1, x, n_in, w, n_in, <floating>0, z, n_out)
    if prime != NULL:
        _bias_act_prime(z, bias, prime, m, n_out, act)
    else:
        _bias_act(z, bias, m, n_out, act)


cdef inline void _hidden_delta(const floating* delta, const floating* w,
                               const floating* a_prev, floating* delta_prev, Py_ssize_t m,
                               Py_ssize_t n_in, Py_ssize_t n_out, int act, bint wt,
                               const floating* factor) noexcept nogil:
    """delta_prev := (delta @ W) * act'(Z_prev); delta is m x n_out, W n_out x n_in.

    act'(Z_prev) is written from A_prev (``_act_prime``), or read from ``factor`` (not
    NULL): the derivatives the forward pass kept (``_keeps_prime``), or with dropout
    act'(Z_prev) times the mask.
    """
    cdef Py_ssize_t i, n = m * n_in
    if wt:
        _gemm(c'N', c'T', m, n_in, n_out, <floating>1, delta, n_out, w, n_out,
              <floating>0, delta_prev, n_in)
    else:
        _gemm(c'N', c'N', m, n_in, n_out, <floating>1, delta, n_out, w, n_in,
              <floating>0, delta_prev, n_in)
    # one loop per activation, each with its derivative inlined, so that each vectorises
    # (inline: a tiny network's batch calls it once a layer, and out of line the calls
    # cost W1 1.4 % more instructions)
    if factor != NULL:
        for i in range(n):
            delta_prev[i] = delta_prev[i] * factor[i]
    elif act == SIGMOID:
        for i in range(n):
            delta_prev[i] = delta_prev[i] * _act_prime(a_prev[i], SIGMOID)
    elif act == TANH:
        for i in range(n):
            delta_prev[i] = delta_prev[i] * _act_prime(a_prev[i], TANH)
    elif act == RELU:
        for i in range(n):
            delta_prev[i] = delta_prev[i] * _act_prime(a_prev[i], RELU)
    elif act == LEAKY_RELU:
        for i in range(n):
            delta_prev[i] = delta_prev[i] * _act_prime(a_prev[i], LEAKY_RELU)


cdef void _backward(floating* delta, const floating* a_prev, floating* gw, floating* gb,
                    Py_ssize_t m, Py_ssize_t n_in, Py_ssize_t n_out,
                    floating alpha, floating beta, floating beta_b, bint wt) noexcept nogil:
    """G_W := alpha delta^T @ A_prev + beta G_W;  g_b := alpha sum_rows(delta) + beta_b g_b.

    With alpha = 1, beta = beta_b = 0 these are the gradients; with alpha = -eta,
    beta = 1 - eta lambda, beta_b = 1 and G_W = W, g_b = b they are the gradient-descent
    update with weight decay lambda, fused so that the gradient is never stored. The
    column sums are accumulated into delta's first row (row by row, so the loop
    vectorises): delta is consumed.
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
    """factor := act'(z) s, a := a s, with s = 1 / (1 - drop) if a uniform draw >= drop
    else 0; act'(z) is factor as the forward pass kept it (``_keeps_prime``), else
    written from a."""
    cdef Py_ssize_t i
    cdef floating keep = <floating>(1.0 / (1.0 - drop)), scale
    cdef bint kept = _keeps_prime(act)
    for i in range(n):
        scale = keep if _uniform(rng) >= drop else 0
        factor[i] = (factor[i] if kept else _act_prime(a[i], act)) * scale
        a[i] = a[i] * scale


# Batch normalization (Ioffe and Szegedy 2015), as PyTorch's BatchNorm1d after a Linear:
# between a hidden layer's affine map and its activation, y := gamma xhat + beta with
# xhat := (z - mu) / sqrt(var + eps). Training passes take mu and the biased var from
# the batch and, when they update them, fold the batch's mean and UNBIASED variance into
# the running statistics (once the batch's loss is known to be finite, so that a batch
# that diverges leaves them as they were); ``forward`` reads the running statistics.
cdef double BN_EPS = 1e-5
cdef double BN_MOMENTUM = 0.1


cdef void _norm_train(floating* z, floating* xhat, floating* stats, const floating* gamma,
                      Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """mu := mean_rows(Z), var := mean_rows((Z - mu)^2), invstd := 1 / sqrt(var + eps)
    (into stats: mu, var, invstd), xhat := (Z - mu) invstd, Z := gamma xhat (beta is
    added with the activation)."""
    cdef Py_ssize_t i, j
    cdef floating* mean = stats
    cdef floating* var = stats + n
    cdef floating* invstd = stats + 2 * n
    cdef floating* row
    cdef floating* xrow
    cdef floating d
    for j in range(n):
        mean[j] = 0
        var[j] = 0
    # row by row, so that the loops vectorise
    for i in range(m):
        row = z + i * n
        for j in range(n):
            mean[j] = mean[j] + row[j]
    for j in range(n):
        mean[j] = mean[j] / m
    for i in range(m):
        row = z + i * n
        for j in range(n):
            d = row[j] - mean[j]
            var[j] = var[j] + d * d
    for j in range(n):
        var[j] = var[j] / m
        invstd[j] = 1 / <floating>sqrt(var[j] + <floating>BN_EPS)
    for i in range(m):
        row = z + i * n
        xrow = xhat + i * n
        for j in range(n):
            xrow[j] = (row[j] - mean[j]) * invstd[j]
            row[j] = gamma[j] * xrow[j]


cdef void _norm_running(const Net* net, const floating* stats, floating* running,
                        Py_ssize_t m) noexcept nogil:
    """For every hidden layer, from the batch's (mu, var) in ``stats`` (``_norm_train``;
    m >= 2): running_mean := (1 - momentum) running_mean + momentum mu, and running_var
    likewise with the unbiased var m / (m - 1)."""
    cdef Py_ssize_t l, j, n
    cdef floating keep = <floating>(1 - BN_MOMENTUM), mom = <floating>BN_MOMENTUM
    for l in range(net.n_layers - 1):
        n = net.sizes[l + 1]
        for j in range(n):
            running[j] = keep * running[j] + mom * stats[j]
            running[n + j] = keep * running[n + j] + mom * (stats[n + j] * m / (m - 1))
        stats += 3 * n
        running += 2 * n


cdef void _norm_eval(floating* z, const floating* gamma, const floating* running,
                     floating* invstd, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """invstd := 1 / sqrt(running_var + eps), Z := gamma (Z - running_mean) invstd
    (beta is added with the activation); ``running`` holds the running mean, then the
    running variance."""
    cdef Py_ssize_t i, j
    cdef floating* row
    for j in range(n):
        invstd[j] = 1 / <floating>sqrt(running[n + j] + <floating>BN_EPS)
    for i in range(m):
        row = z + i * n
        for j in range(n):
            row[j] = gamma[j] * ((row[j] - running[j]) * invstd[j])


cdef void _norm_backward(floating* delta, const floating* xhat, floating* stats,
                         const floating* gamma, floating* out, Py_ssize_t m, Py_ssize_t n,
                         floating alpha, floating beta_b) noexcept nogil:
    """From delta = dL/dy (m x n) of a normalised layer:
        dL/dgamma = sum_rows delta xhat,  dL/dbeta = sum_rows delta,
        delta := dL/dz = gamma invstd (delta - mean_rows(delta) - xhat mean_rows(delta xhat)),
    then out := alpha dL/dgamma + beta_b out (gamma's n numbers) and likewise dL/dbeta
    into out + n (beta's): the gradients (alpha 1, beta_b 0), or with out = gamma and
    alpha = -eta, beta_b = 1 gradient descent's step on gamma and beta (after delta,
    which reads gamma, is written). ``stats`` is the forward pass's (mu, var, invstd):
    its first two vectors receive the column sums."""
    cdef Py_ssize_t i, j
    cdef floating* sum_d = stats
    cdef floating* sum_dx = stats + n
    cdef const floating* invstd = stats + 2 * n
    cdef floating* row
    cdef const floating* xrow
    for j in range(n):
        sum_d[j] = 0
        sum_dx[j] = 0
    for i in range(m):
        row = delta + i * n
        xrow = xhat + i * n
        for j in range(n):
            sum_d[j] = sum_d[j] + row[j]
            sum_dx[j] = sum_dx[j] + row[j] * xrow[j]
    for i in range(m):
        row = delta + i * n
        xrow = xhat + i * n
        for j in range(n):
            row[j] = gamma[j] * invstd[j] * (row[j] - sum_d[j] / m - xrow[j] * (sum_dx[j] / m))
    for j in range(n):
        if beta_b == 0:
            out[j] = alpha * sum_dx[j]
            out[n + j] = alpha * sum_d[j]
        else:
            out[j] = beta_b * out[j] + alpha * sum_dx[j]
            out[n + j] = beta_b * out[n + j] + alpha * sum_d[j]


cdef void _forward_pass(const Net* net, const Work* work, const floating* x, Py_ssize_t m,
                        const floating* theta, int out_act) noexcept nogil:
    """A_l := act_l(A_{l-1} W_l^T + b_l) for every layer l into work.acts, A_0 = X (m rows);
    the output layer's act is ``out_act``. A hidden layer with batch normalization takes
    act_l(gamma_l xhat_l + beta_l) from the batch's statistics (``_norm_train``, keeping
    xhat_l and the batch's statistics in ``work.stats``).
    With ``work.factors``, the layers whose activation ``_keeps_prime`` keep act' there;
    with drop > 0, inverted dropout (see ``_batch``)."""
    cdef Py_ssize_t l, n_in, n_out, a_off = 0, s_off = 0, n_layers = net.n_layers
    cdef const Py_ssize_t* sizes = net.sizes
    cdef const Py_ssize_t* offsets = net.offsets
    cdef floating* acts = <floating*>work.acts
    cdef floating* factors = <floating*>work.factors
    cdef const floating* a_prev = x
    cdef floating* a_out
    cdef floating* prime
    cdef bint dropout = factors != NULL and work.drop > 0
    cdef int act
    for l in range(n_layers):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        a_out = acts + a_off
        act = net.hidden[l] if l < n_layers - 1 else out_act
        prime = factors + a_off if factors != NULL and _keeps_prime(act) else NULL
        if net.norm != NULL and l < n_layers - 1:
            _dense(a_prev, theta + offsets[2 * l], theta + offsets[2 * l + 1], a_out, m,
                   n_in, n_out, IDENTITY, net.wt, NULL)
            _norm_train(a_out, <floating*>work.xhats + a_off, <floating*>work.stats + s_off,
                        theta + net.norm[l], m, n_out)
            if prime != NULL:
                _bias_act_prime(a_out, theta + net.norm[l] + n_out, prime, m, n_out, act)
            else:
                _bias_act(a_out, theta + net.norm[l] + n_out, m, n_out, act)
            s_off += 3 * n_out
        else:
            _dense(a_prev, theta + offsets[2 * l], theta + offsets[2 * l + 1], a_out, m, n_in,
                   n_out, act, net.wt, prime)
        if dropout and l < n_layers - 1:
            _dropout(a_out, factors + a_off, m * n_out, act, work.drop, work.rng)
        a_prev = a_out
        a_off += m * n_out


cdef double _batch(const Net* net, const Work* work, const Rows* rows, floating* theta,
                   floating* grad, const Solver* s, int mode) noexcept nogil:
    """The forward pass, the loss and the backward pass of one mini-batch of m rows
    (of m_norm: see ``Rows``).

    mode LOSS_ONLY:  A_l := act(A_{l-1} W_l^T + b_l) for every layer; returns L
    mode GRADIENTS:  also grad := dL/dtheta (the flat layout of theta)
    mode FUSED_STEP: also the SGD step of ``s`` (rule SGD: W_l := (1 - lr decay) W_l
                     - lr dL/dW_l, b_l := b_l - lr dL/db_l, and gamma_l, beta_l like
                     b_l), layer by layer from the last, each W_l updated after it has
                     carried the delta back, so that the gradient is never stored; not
                     when L is not finite: theta is then left as it was
    Each hidden layer l has its own activation, net.hidden[l]. With ``work.factors``,
    the layers whose activation ``_keeps_prime`` keep act'(Z_l) there for the backward
    pass; and with drop > 0, inverted dropout: every hidden unit of every row is kept
    with probability 1 - drop (one draw of ``work.rng`` each, layer by layer, row by
    row), A := A * s with s = 1 / (1 - drop) if kept, else 0, and
    factors := act'(Z) * s carries the mask into the backward pass. With batch
    normalization (``net.norm``; never on half a batch: its statistics are the whole
    batch's), hidden layers normalise as ``_forward_pass`` says and carry the delta
    back through it with ``_norm_backward``; with ``work.running`` and a finite L, the
    batch's statistics update the running ones (``_norm_running``) before the backward
    pass reuses their room.
    """
    cdef Py_ssize_t l, n_in, n_out, a_off = 0, s_off = 0, m = rows.m, n_layers = net.n_layers
    cdef const Py_ssize_t* sizes = net.sizes
    cdef const Py_ssize_t* offsets = net.offsets
    cdef const floating* x = <const floating*>rows.x
    cdef floating* acts = <floating*>work.acts
    cdef floating* factors = <floating*>work.factors
    cdef const floating* a_prev
    cdef floating* d = <floating*>work.delta0
    cdef floating* d_prev = <floating*>work.delta1
    cdef floating* swap
    cdef double value
    cdef floating alpha = 1, beta = 0, beta_b = 0, eta
    cdef bint dropout = factors != NULL and work.drop > 0
    cdef int act
    _forward_pass(net, work, x, m, theta, IDENTITY)
    for l in range(n_layers):
        a_off += m * sizes[l + 1]
        if l < n_layers - 1:
            s_off += 3 * sizes[l + 1]
    value = _output_delta(acts + a_off - m * sizes[n_layers], <const floating*>rows.y,
                          rows.labels, <const floating*>rows.sw, rows.wsum, d, m,
                          rows.m_norm, sizes[n_layers], net.output, net.loss)
    if work.running != NULL and isfinite(value):
        _norm_running(net, <const floating*>work.stats, <floating*>work.running, m)
    if mode == LOSS_ONLY or (mode == FUSED_STEP and not isfinite(value)):
        return value
    if mode == FUSED_STEP:
        eta = <floating>s.lr
        alpha, beta, beta_b = -eta, 1 - eta * <floating>s.decay, 1
    for l in range(n_layers - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        a_off -= m * n_out
        a_prev = x if l == 0 else acts + a_off - m * n_in
        if net.norm != NULL and l < n_layers - 1:
            s_off -= 3 * n_out
            _norm_backward(d, <floating*>work.xhats + a_off, <floating*>work.stats + s_off,
                           theta + net.norm[l],
                           (theta if mode == FUSED_STEP else grad) + net.norm[l], m, n_out,
                           alpha, beta_b)
        if l > 0:
            act = net.hidden[l - 1]
            _hidden_delta(d, theta + offsets[2 * l], a_prev, d_prev, m, n_in, n_out, act,
                          net.wt, factors + (a_prev - acts)
                          if dropout or (factors != NULL and _keeps_prime(act)) else NULL)
        if mode == FUSED_STEP:
            _backward(d, a_prev, theta + offsets[2 * l], theta + offsets[2 * l + 1],
                      m, n_in, n_out, alpha, beta, beta_b, net.wt)
        else:
            _backward(d, a_prev, grad + offsets[2 * l], grad + offsets[2 * l + 1],
                      m, n_in, n_out, alpha, beta, beta_b, net.wt)
        swap = d
        d = d_prev
        d_prev = swap
    return value
