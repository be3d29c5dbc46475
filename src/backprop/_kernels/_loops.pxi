# The training loops: every epoch and batch of a fit in one call without the GIL.
# ``_train`` is Network's (its losses, dropout, divergence and input checks);
# ``_sk_epoch`` the scikit-learn estimators' (sample weights, the L2 term in the loss,
# Adam's step count). Both gather a shuffled batch with ``_gather`` and step with the
# solver family (_solvers.pxi).


cdef double _gather(const floating* X, const floating* Y, const Py_ssize_t* labels,
                    const floating* sw, const Py_ssize_t* order, Py_ssize_t m,
                    Py_ssize_t n_in, Py_ssize_t k, floating* xb, floating* yb,
                    Py_ssize_t* lb, floating* swb) noexcept nogil:
    """Rows order[0 .. m-1] of X and of Y (or of labels, when not NULL), and of sw
    (when not NULL), copied into the batch buffers; returns the batch's weight sum
    sum_i sw_i (m without weights), summed in float64 whatever the dtype."""
    cdef Py_ssize_t i, row
    cdef double wsum = m
    for i in range(m):
        row = order[i]
        memcpy(xb + i * n_in, X + row * n_in, n_in * sizeof(floating))
        if labels != NULL:
            lb[i] = labels[row]
        else:
            memcpy(yb + i * k, Y + row * k, k * sizeof(floating))
    if sw != NULL:
        wsum = 0
        for i in range(m):
            swb[i] = sw[order[i]]
            wsum = wsum + swb[i]
    return wsum


cdef int _tiny_epoch(const Net* net, const Data* data, const Solver* s, floating* theta,
                     Py_ssize_t e, bint check_input, double* total, Py_ssize_t* step,
                     Py_ssize_t* batches, Py_ssize_t* where,
                     Py_ssize_t* tiny_rows) noexcept nogil:
    """One epoch of ``_train`` in batches of one row through ``_tiny_run``: the rows
    between two checks for signals as one run; tiny_rows[0] += the rows stepped.
    Returns what ``_train`` would when it stops (where := the epoch and the row, which
    is the batch), else COMPLETED."""
    cdef Py_ssize_t n = data.n, n_in = net.sizes[0], k = net.sizes[net.n_layers]
    cdef Py_ssize_t start = 0, count, r, row, done
    cdef const floating* X = <const floating*>data.X
    cdef const floating* Y = <const floating*>data.Y
    cdef const floating* xs
    cdef const floating* ys
    cdef const Py_ssize_t* order
    cdef bint bad
    cdef int status
    while start < n:
        count = min(n - start, data.check_every - batches[0] % data.check_every)
        bad = False
        if check_input and e == 0:  # the run ends before the first row not finite
            for r in range(count):
                row = data.order[start + r] if data.order != NULL else start + r
                if not _all_finite(X + row * n_in, n_in):
                    count, bad = r, True
                    break
        if data.order != NULL:  # rows order[start ..] of X and Y
            xs, ys, order = X, Y, data.order + start
        else:  # rows start .. of X and Y
            xs, ys, order = X + start * n_in, Y + start * k, NULL
        _tiny_run(net, s, theta, xs, ys, order, count, total, &done)
        step[0] += done
        batches[0] += done
        tiny_rows[0] += done
        start += done
        status = COMPLETED
        if done < count:
            status = LOSS_NOT_FINITE
        elif bad:
            status = INPUT_NOT_FINITE
        elif batches[0] % data.check_every == 0:
            with gil:
                if _check_signals() < 0:
                    status = INTERRUPTED
        if status != COMPLETED:
            where[0], where[1] = e, start
            return status
    return COMPLETED


cdef int _train(const Net* net, const Work* work, const Data* data, const Solver* s,
                floating* theta, floating* grad, floating* moment1, floating* moment2,
                Py_ssize_t* step, Py_ssize_t epochs, double* epoch_losses,
                bint check_input, Py_ssize_t* where, Py_ssize_t* tiny_rows) noexcept nogil:
    """Runs ``epochs`` epochs of mini-batch gradient descent on theta, in place.

    For every epoch e and batch B (consecutive runs of batch_size entries of
    data.order, or of 0 .. n-1):
        L_B := loss(X[B], Y[B]), then the step of ``s`` on dL_B/dtheta (rule SGD: fused
        into the backward pass; MOMENTUM, ADAM: through ``grad`` and the optimizer's
        moments, ``moment1`` and ``moment2``), step[0] := step[0] + 1 (the steps taken,
        which Adam's bias corrections count)
    and epoch_losses[e] := sum_B |B| L_B / n. With ``data.stats``, every rule steps
    through ``grad`` (plain SGD then differs from the fused step by rounding), and each
    epoch's gradient norms and update ratios are taken (_stats.pxi), a row per epoch.
    Rows of a shuffled batch are gathered into the workspace; unshuffled batches are
    read in place; with ``work.halves``, mid-size batches run as two halves on two cores
    (``_split_batch``); batches of one row through a tiny network take ``_sample_step``,
    through the tiniest ``_tiny_run`` (``_tiny_epoch``).

    Returns a Status, with where[0], where[1] := the epoch and batch it stopped at:
    COMPLETED; LOSS_NOT_FINITE before that batch's step (theta is what the previous
    step left, which is not finite if that step overflowed); WEIGHTS_NOT_FINITE when a
    full run's last step left theta not finite; INPUT_NOT_FINITE when, with
    ``check_input``, the first epoch finds NaN or infinity in the rows of a batch just
    before they are used (they are in cache then, and the first epoch visits every
    row); INTERRUPTED between two batches, a signal's exception pending. tiny_rows[0] +=
    the rows stepped in ``_tiny_run``'s runs.
    """
    cdef Py_ssize_t n = data.n, n_in = net.sizes[0], k = net.sizes[net.n_layers]
    cdef Py_ssize_t e, start, m, b, batches = 0
    cdef const floating* X = <const floating*>data.X
    cdef const floating* Y = <const floating*>data.Y
    cdef floating* x_batch = <floating*>work.x_batch
    cdef floating* y_batch = <floating*>work.y_batch
    cdef floating* halves = <floating*>work.halves
    cdef Stats* stats = data.stats
    cdef int mode = FUSED_STEP if s.rule == SGD and stats == NULL else GRADIENTS
    cdef bint sample = _takes_sample_step(net, work, data.batch_size, mode)
    cdef bint tiny = _takes_tiny_run(net, work, data.batch_size, mode)
    cdef int status
    cdef bint step_threads = _n_params(net) >= SOLVER_TWO_THREADS_MIN
    cdef double value, total
    cdef Solver solver = s[0]
    cdef Rows rows
    rows.sw = NULL
    rows.wsum = 1
    where[0] = where[1] = 0
    for e in range(epochs):
        total = 0
        b = 0
        start = 0
        if stats != NULL:
            _stats_begin(net, stats, theta)
        if tiny:
            status = _tiny_epoch(net, data, s, theta, e, check_input, &total, step, &batches,
                                 where, tiny_rows)
            if status != COMPLETED:
                return status
            start = n  # every row stepped: no batch left for the loop below
        while start < n:
            m = min(data.batch_size, n - start)
            rows.m = rows.m_norm = m
            rows.y = NULL
            rows.labels = NULL
            if data.order != NULL:
                _gather(X, Y, data.labels, <const floating*>NULL, data.order + start, m,
                        n_in, k, x_batch, y_batch, work.label_batch, NULL)
                rows.x = x_batch
                if data.labels != NULL:
                    rows.labels = work.label_batch
                else:
                    rows.y = y_batch
            else:
                rows.x = X + start * n_in
                if data.labels != NULL:
                    rows.labels = data.labels + start
                else:
                    rows.y = Y + start * k
            if check_input and e == 0 and not _all_finite(<const floating*>rows.x, m * n_in):
                where[0], where[1] = e, b
                return INPUT_NOT_FINITE
            if sample:  # batches of one row through a tiny network
                value = _sample_step(net, work, &rows, theta, s)
            elif halves == NULL:  # the common case, without the halves' call in between
                value = _batch(net, work, &rows, theta, grad, s, mode)
            else:
                value = _split_batch(net, work, &rows, theta, grad, halves, s, mode, NULL)
            if not isfinite(value):
                where[0], where[1] = e, b
                return LOSS_NOT_FINITE
            if mode == GRADIENTS:
                if stats != NULL:  # before the step, which adds the decay term to grad
                    _stats_add(net, stats, grad)
                _solver_begin(&solver, step[0] + 1)
                _solver_steps(net, &solver, theta, grad, NULL, moment1, moment2, 1,
                              step_threads)
            step[0] += 1
            total += value * m
            b += 1
            batches += 1
            if batches % data.check_every == 0:
                with gil:
                    if _check_signals() < 0:
                        where[0], where[1] = e, b
                        return INTERRUPTED
            start += m
        epoch_losses[e] = total / n
        if stats != NULL:
            _stats_end(net, stats, theta, b, e)
    where[0] = epochs
    if not _all_finite(theta, _n_params(net)):
        return WEIGHTS_NOT_FINITE
    return COMPLETED


cdef int _sk_epoch(const Net* net, const Work* work, const Data* data, Solver s,
                   floating* params, floating* grad, floating* moment1, floating* moment2,
                   Py_ssize_t step, double* total) noexcept nogil:
    """One epoch of scikit-learn's stochastic solvers; total := sum_B |B| L_B.

    For each batch B (runs of batch_size entries of data.order):
        g := dL_B/dparams, L_B := mean loss + decay / (2 sum(sw_B)) sum_l ||W_l||^2,
    then the step of ``s`` (SK_MOMENTUM or SK_ADAM, at step ``step`` + the batch's number,
    from 1). ``grad`` is left holding the last batch's gradient. With
    ``work.halves``, a mid-size batch runs as two halves of rows on two cores, which
    then share the step. Returns COMPLETED, or INTERRUPTED between two batches.
    """
    cdef Py_ssize_t n = data.n, n_in = net.sizes[0], k = net.sizes[net.n_layers]
    cdef Py_ssize_t start = 0, m, b = 0
    cdef floating* halves = <floating*>work.halves
    cdef bint split = False
    cdef double value, sq
    cdef Rows rows
    rows.x = work.x_batch
    rows.y = work.y_batch
    rows.labels = NULL
    rows.sw = work.sw_batch if data.sw != NULL else NULL
    total[0] = 0
    while start < n:
        m = min(data.batch_size, n - start)
        rows.m = rows.m_norm = m
        rows.wsum = _gather(<const floating*>data.X, <const floating*>data.Y, NULL,
                            <const floating*>data.sw, data.order + start, m, n_in, k,
                            <floating*>work.x_batch, <floating*>work.y_batch, NULL,
                            <floating*>work.sw_batch)
        value = _split_batch(net, work, &rows, params, grad, halves, NULL, GRADIENTS, &split)
        _solver_begin(&s, step + b + 1)
        # a split batch has both threads awake: they share the step as well
        sq = _solver_steps(net, &s, params, grad, halves if split else NULL, moment1,
                           moment2, <floating>rows.wsum, split)
        value += 0.5 * s.decay * sq / rows.wsum
        total[0] += value * m
        b += 1
        start += m
        if b % data.check_every == 0:
            with gil:
                if _check_signals() < 0:
                    return INTERRUPTED
    return COMPLETED
