# Per-epoch statistics of a training run (``_train`` given ``Data.stats``): the
# gradient of every batch's mean loss, summed over the epoch as the batches come (before
# the solver adds weight decay to it), and theta as the epoch started. At the epoch's
# end, for every layer l (its weights and biases together, and with batch normalization
# its gammas and betas), in float64:
#
#   grad_norms[e, l]    := || (1 / B) sum_B dL_B/dtheta_l ||   (the epoch's B batches)
#   update_ratios[e, l] := || theta_l(end) - theta_l(start) || / || theta_l(start) ||
#
# (Euclidean norms; a ratio is 0 when neither norm is above 0, infinite when only the
# start's is 0).


cdef void _stats_begin(const Net* net, Stats* st, const floating* theta) noexcept nogil:
    """start := theta;  grad_sum := 0"""
    cdef Py_ssize_t n = _n_params(net)
    memcpy(st.start, theta, n * sizeof(floating))
    memset(st.grad_sum, 0, n * sizeof(double))


cdef void _stats_add(const Net* net, Stats* st, const floating* grad) noexcept nogil:
    """grad_sum := grad_sum + grad"""
    cdef Py_ssize_t i
    cdef double* total = st.grad_sum
    for i in range(_n_params(net)):
        total[i] = total[i] + grad[i]


cdef void _stats_end(const Net* net, Stats* st, const floating* theta, Py_ssize_t batches,
                     Py_ssize_t e) noexcept nogil:
    """Row e of grad_norms and update_ratios (see above), over ``batches`` batches."""
    cdef const floating* start = <const floating*>st.start
    cdef Py_ssize_t l, i, lo, hi, n_layers = net.n_layers
    cdef int part_b
    cdef double g, moved, before, step
    for l in range(n_layers):
        g = moved = before = 0
        # the weights, then the biases (not always adjacent), then gammas and betas
        for part_b in range(3 if net.norm != NULL and l < n_layers - 1 else 2):
            if part_b == 2:  # gamma_l and beta_l, one after the other
                lo = net.norm[l]
                hi = lo + 2 * net.sizes[l + 1]
            else:
                lo = net.offsets[2 * l + part_b]
                hi = lo + (net.sizes[l + 1] if part_b else net.sizes[l] * net.sizes[l + 1])
            g += _sum_squares_d(st.grad_sum + lo, hi - lo)
            for i in range(lo, hi):  # (_sum_squares_f squares its tail in float32)
                step = <double>theta[i] - <double>start[i]
                moved += step * step
                before += <double>start[i] * <double>start[i]
        st.grad_norms[e * n_layers + l] = sqrt(g) / batches
        if before > 0:
            st.update_ratios[e * n_layers + l] = sqrt(moved / before)
        else:
            st.update_ratios[e * n_layers + l] = INFINITY if moved > 0 else 0
