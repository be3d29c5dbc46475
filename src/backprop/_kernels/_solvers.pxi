# One family of optimizers, for Network and the scikit-learn estimators alike. A
# ``Solver`` holds the rule and its hyper-parameters (float64, rounded to the
# parameters' dtype where used, as NumPy does with Python scalars); ``_solver_steps``
# applies it to every parameter of a network from its gradient.
#
# Every rule first forms g := (g + decay W) / wsum for weights and g := g / wsum for
# biases (wsum: the batch's sample-weight sum in scikit-learn's convention, whose
# gradients are sums; 1 in PyTorch's, whose are means), then:
#
#   NO_STEP      nothing more (the L-BFGS objective's gradient)
#   SGD          W := (1 - lr decay) W - lr g_W,  b := b - lr g_b  (g before the decay
#                term: the form ``_backward`` fuses into the gradient product)
#   MOMENTUM     PyTorch's: v := mu v + g;  theta := theta - lr v
#                (Nesterov: theta := theta - lr (g + mu v))
#   SK_MOMENTUM  scikit-learn's: v := mu v - lr g;  theta := theta + v
#                (Nesterov: theta := theta + mu v - lr g)
#   ADAM         PyTorch's (torch.optim.Adam): m := m + (1 - b1) (g - m);
#                v := b2 v + (1 - b2) g^2;
#                theta := theta - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#                at step t (Kingma and Ba 2015, algorithm 1, bias corrections applied
#                to the moments: eps is added to the corrected sqrt(v))
#   SK_ADAM      m := b1 m + (1 - b1) g;  v := b2 v + (1 - b2) g^2;
#                theta := theta - lr_t m / (sqrt(v) + eps),
#                lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) at step t (Kingma and Ba 2015,
#                section 2's efficient form, as scikit-learn takes it)
#
# moment1 holds v (momentum) or m (Adam), moment2 Adam's v.


# A step over at least this many parameters runs as two halves on both threads of the
# team (``_solver_steps``) in Network's training loop: a step of memory-bound passes
# over the parameters and the moments, which one core's share of the memory bandwidth
# limits (W5's Adam, 270,000 parameters a step; see README "Two cores").
cdef Py_ssize_t SOLVER_TWO_THREADS_MIN = 1 << 16


cdef struct Solver:
    int rule  # Rule
    bint nesterov
    bint l2_term  # report sum W^2 (scikit-learn's loss adds decay / (2 wsum) sum W^2)
    double lr, decay, mu, b1, b2, eps
    double t_lr  # Adam's step size at the current step (``_solver_begin``)
    double t_root  # PyTorch's Adam: sqrt(1 - b2^t) at the current step


cdef inline void _solver_begin(Solver* s, double t) noexcept nogil:
    """Prepares step t (from 1): Adam's step size (SK_ADAM: lr_t; ADAM: lr / (1 - b1^t)
    and sqrt(1 - b2^t))."""
    if s.rule == SK_ADAM:
        s.t_lr = s.lr * sqrt(1 - s.b2 ** t) / (1 - s.b1 ** t)
    elif s.rule == ADAM:
        s.t_lr = s.lr / (1 - s.b1 ** t)
        s.t_root = sqrt(1 - s.b2 ** t)


cdef double _solver_update(floating* params, floating* grad, floating* moment1,
                           floating* moment2, Py_ssize_t n, bint weights, floating wsum,
                           const Solver* s) noexcept nogil:
    """One step of ``s`` on n contiguous parameters, all weights or all biases; grad is
    left holding g. Returns sum W^2 over them before the step (with ``l2_term``; else
    0, as for biases)."""
    cdef Py_ssize_t i
    cdef floating g, v, den
    cdef floating decay = <floating>s.decay, lr = <floating>s.lr, mu = <floating>s.mu
    cdef floating b1 = <floating>s.b1, b2 = <floating>s.b2, eps = <floating>s.eps
    cdef floating c1 = <floating>(1 - s.b1), c2 = <floating>(1 - s.b2)
    cdef floating keep = 1 - lr * decay
    cdef floating step = <floating>s.t_lr, root = <floating>s.t_root
    cdef floating inv = 1 / wsum
    cdef double sq = 0
    # one branch-free loop per case, so that each vectorises
    if s.rule == SGD:
        if weights:
            for i in range(n):
                params[i] = keep * params[i] - lr * grad[i]
        else:
            for i in range(n):
                params[i] = params[i] - lr * grad[i]
        return 0
    if weights and s.l2_term:
        sq = _sum_squares(params, n)
    # the division by wsum without a divider (see _divide): 16 cycles for 8 doubles
    # otherwise, as much as the rest of an SGD step. Without decay, no pass adds it: a
    # pass over the weights and their gradient for nothing (a quarter of W5's Adam step)
    if weights and decay != 0 and wsum == 1:
        for i in range(n):
            grad[i] = grad[i] + decay * params[i]
    elif weights and decay != 0:
        for i in range(n):
            grad[i] = _divide(grad[i] + decay * params[i], wsum, inv)
    elif wsum != 1:
        for i in range(n):
            grad[i] = _divide(grad[i], wsum, inv)
    if s.rule == ADAM:
        # the operations of torch.optim.Adam, in its order and in the dtype: lerp for m
        # (in its two forms: for a weight 1 - b1 below 1/2 and above), then v, then (step m) / den
        for i in range(n):
            g = grad[i]
            if c1 < 0.5:
                moment1[i] = moment1[i] + c1 * (g - moment1[i])
            else:
                moment1[i] = g - (g - moment1[i]) * b1
            moment2[i] = b2 * moment2[i] + c2 * g * g
            if floating is float:  # in float, 8 lanes a vector (not through double)
                den = sqrtf(moment2[i]) / root + eps
            else:
                den = sqrt(moment2[i]) / root + eps
            params[i] = params[i] + -step * moment1[i] / den
    elif s.rule == SK_ADAM:
        for i in range(n):
            g = grad[i]
            moment1[i] = b1 * moment1[i] + c1 * g
            moment2[i] = b2 * moment2[i] + c2 * (g * g)
            # sqrt(v) + eps in the dtype, the step in float64, rounded once when added:
            # as scikit-learn forms them
            den = <floating>sqrt(<double>moment2[i]) + eps
            params[i] = <floating>(params[i] + -s.t_lr * moment1[i] / <double>den)
    elif s.rule == SK_MOMENTUM and s.nesterov:
        for i in range(n):
            v = mu * moment1[i] - lr * grad[i]
            moment1[i] = v
            params[i] = params[i] + (mu * v - lr * grad[i])
    elif s.rule == SK_MOMENTUM:
        for i in range(n):
            v = mu * moment1[i] - lr * grad[i]
            moment1[i] = v
            params[i] = params[i] + v
    elif s.rule == MOMENTUM and s.nesterov:
        for i in range(n):
            moment1[i] = mu * moment1[i] + grad[i]
            params[i] = params[i] - lr * (grad[i] + mu * moment1[i])
    elif s.rule == MOMENTUM:
        for i in range(n):
            moment1[i] = mu * moment1[i] + grad[i]
            params[i] = params[i] - lr * moment1[i]
    return sq


cdef double _solver_range(const Net* net, const Solver* s, Py_ssize_t lo, Py_ssize_t hi,
                          floating* params, floating* grad, const floating* other,
                          floating* moment1, floating* moment2,
                          floating wsum) noexcept nogil:
    """``_solver_update`` on parameters lo .. hi - 1 (any mix of layers' weights and
    biases, and batch normalization's gammas and betas, which are stepped as biases are:
    without weight decay) after g := grad + other (the other half-batch's gradient)
    when other is not NULL; returns sum W^2 there."""
    cdef Py_ssize_t l, i, first, end, at, size
    cdef int part
    cdef double sq = 0
    for l in range(net.n_layers):
        # the weights, the biases (not always adjacent), then gamma and beta
        for part in range(3):
            if part < 2:
                at = net.offsets[2 * l + part]
                size = net.sizes[l + 1] if part else net.sizes[l] * net.sizes[l + 1]
            elif net.norm != NULL and l < net.n_layers - 1:
                at, size = net.norm[l], 2 * net.sizes[l + 1]
            else:
                continue
            first = max(lo, at)
            end = min(hi, at + size)
            if first >= end:
                continue
            if other != NULL:
                for i in range(first, end):
                    grad[i] = grad[i] + other[i]
            sq += _solver_update(&params[first], &grad[first], &moment1[first],
                                 &moment2[first], end - first, part == 0, wsum, s)
    return sq


cdef struct SolverHalves:
    # What ``_solver_part`` reads: ``_solver_steps``'s arguments (the dtype's numbers
    # behind the void pointers) and each half's sum W^2.
    const Net* net
    const Solver* s
    void* params
    void* grad
    const void* other
    void* moment1
    void* moment2
    double wsum
    double sq[2]
    bint doubles


cdef void _solver_part(void* ctx, int t) noexcept nogil:
    """Half t of ``_solver_steps``: parameters [0, n/2) or [n/2, n)."""
    cdef SolverHalves* c = <SolverHalves*>ctx
    cdef Py_ssize_t n_params = _n_params(c.net), h = n_params // 2
    cdef Py_ssize_t lo = 0 if t == 0 else h, hi = h if t == 0 else n_params
    if c.doubles:
        c.sq[t] = _solver_range(c.net, c.s, lo, hi, <double*>c.params, <double*>c.grad,
                                <const double*>c.other, <double*>c.moment1,
                                <double*>c.moment2, <double>c.wsum)
    else:
        c.sq[t] = _solver_range(c.net, c.s, lo, hi, <float*>c.params, <float*>c.grad,
                                <const float*>c.other, <float*>c.moment1,
                                <float*>c.moment2, <float>c.wsum)


cdef double _solver_steps(const Net* net, const Solver* s, floating* params,
                          floating* grad, const floating* other, floating* moment1,
                          floating* moment2, floating wsum, bint two_threads) noexcept nogil:
    """``_solver_range`` on all parameters, in two fixed halves (on both threads of the
    team if ``two_threads`` and it has two): sum W^2 = half 1's + half 2's either way."""
    cdef SolverHalves c
    c.net, c.s, c.params, c.grad, c.other = net, s, params, grad, other
    c.moment1, c.moment2, c.wsum = moment1, moment2, wsum
    c.doubles = floating is double
    _team_run(2, _solver_part, &c, _team_size() if two_threads else 1)
    return c.sq[0] + c.sq[1]
