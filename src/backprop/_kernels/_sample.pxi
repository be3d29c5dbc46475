# One row's training step for the tiniest networks (the tutorial's [2, 2, 1]): the work
# of ``_batch`` in mode FUSED_STEP for a batch of one row, in one function whose loops
# are each layer's few numbers. There ``_batch``'s calls, its loops over rows and its
# per-activation dispatch cost more than the arithmetic: W1's fit (the tutorial's
# network, batches of one row) took 1,568 instructions a sample through ``_batch``,
# 919 here. Each number is computed by the same operations in the same order, up to
# how the compiler fuses multiply-adds; ``Network.step`` on one row takes this function
# too, so a step is fit's step exactly.


cdef inline bint _takes_sample_step(const Net* net, const Work* work, Py_ssize_t m,
                                    int mode) noexcept nogil:
    """Whether a batch's step is ``_sample_step``'s: one row, plain SGD fused into the
    backward pass, weights stored (n_out, n_in), no dropout nor batch normalization, no
    activation that keeps its derivative from the forward pass, and every layer's
    products in ``_gemm``'s plain loops (fewer than TILE_MIN_WORK multiply-adds)."""
    cdef Py_ssize_t l
    if m != 1 or mode != FUSED_STEP or net.wt or work.factors != NULL or net.norm != NULL:
        return False
    for l in range(net.n_layers):
        if net.sizes[l] * net.sizes[l + 1] >= TILE_MIN_WORK:
            return False
        if l < net.n_layers - 1 and _keeps_prime(net.hidden[l]):
            return False
    return True


cdef double _sample_step(const Net* net, const Work* work, const Rows* rows,
                         floating* theta, const Solver* s) noexcept nogil:
    """``_batch(..., mode=FUSED_STEP)`` for one row x (``_takes_sample_step``):

    a_l := act_l(W_l a_{l-1} + b_l) from a_0 = x, L := loss(a_L, y), d_L := dL/dz_L; then
    for l = L .. 1: d_{l-1} := (W_l^T d_l) * act'_{l-1}(a_{l-1}) with W_l as it was, and
    W_l := (1 - lr decay) W_l - lr d_l a_{l-1}^T, b_l := b_l - lr d_l. Returns L; when L
    is not finite, theta is left as it was.
    """
    cdef Py_ssize_t l, i, j, n_in, n_out, a_off = 0, n_layers = net.n_layers
    cdef const Py_ssize_t* sizes = net.sizes
    cdef const Py_ssize_t* offsets = net.offsets
    cdef const floating* x = <const floating*>rows.x
    cdef floating* acts = <floating*>work.acts
    cdef floating* d = <floating*>work.delta0
    cdef floating* d_prev = <floating*>work.delta1
    cdef const floating* a_prev = x
    cdef floating* a_out
    cdef floating* w
    cdef floating* b
    cdef floating* swap
    cdef floating total, scaled
    cdef floating eta = <floating>s.lr
    cdef floating keep = 1 - eta * <floating>s.decay
    cdef double value
    cdef int act
    for l in range(n_layers):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        w = theta + offsets[2 * l]
        b = theta + offsets[2 * l + 1]
        a_out = acts + a_off
        act = net.hidden[l] if l < n_layers - 1 else IDENTITY
        for j in range(n_out):
            total = 0
            for i in range(n_in):
                total = total + a_prev[i] * w[j * n_in + i]
            a_out[j] = _act(total + b[j], act)
        a_prev = a_out
        a_off += n_out
    value = _output_delta(acts + a_off - sizes[n_layers], <const floating*>rows.y,
                          rows.labels, <const floating*>NULL, 1, d, 1, rows.m_norm,
                          sizes[n_layers], net.output, net.loss)
    if not isfinite(value):
        return value
    for l in range(n_layers - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        a_off -= n_out
        a_prev = x if l == 0 else acts + a_off - n_in
        w = theta + offsets[2 * l]
        b = theta + offsets[2 * l + 1]
        if l > 0:  # the delta carried back through W_l before W_l's step
            act = net.hidden[l - 1]
            for i in range(n_in):  # (from the first term, not 0: no call to memset)
                d_prev[i] = d[0] * w[i]
            for j in range(1, n_out):
                for i in range(n_in):
                    d_prev[i] = d_prev[i] + d[j] * w[j * n_in + i]
            for i in range(n_in):
                d_prev[i] = d_prev[i] * _act_prime(a_prev[i], act)
        if keep != 1:  # the decay, then the step: as _gemm scales C by beta first
            for i in range(n_in * n_out):
                w[i] = keep * w[i]
        for j in range(n_out):
            scaled = -eta * d[j]
            for i in range(n_in):
                w[j * n_in + i] = w[j * n_in + i] + scaled * a_prev[i]
            b[j] = 1 * b[j] + -eta * d[j]
        swap = d
        d = d_prev
        d_prev = swap
    return value
