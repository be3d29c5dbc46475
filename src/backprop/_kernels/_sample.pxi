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


# Runs of such steps through the tiniest of them (tiny_run.h): one hidden layer, every
# layer at most 4 wide, mean squared error on a sigmoid or identity output, the hidden
# activation one of the five below. The weights stay in registers for the whole run;
# the numbers are ``_sample_step``'s (up to where the compiler fuses multiply-adds). W1,
# the tutorial's [2, 2, 1]: 69 ns a row, against 105 ns through ``_sample_step``.

cdef extern from "tiny_run.h":
    const Py_ssize_t BP_TINY
    enum:
        BP_TINY_IDENTITY
        BP_TINY_SIGMOID
        BP_TINY_TANH
        BP_TINY_RELU
        BP_TINY_LEAKY_RELU
    ctypedef struct bp_tiny_net:
        Py_ssize_t n[3]
        Py_ssize_t offsets[4]
        int hidden
        int sigmoid_output
        double lr, decay
    double _tiny_run_d "bp_tiny_run_d"(const bp_tiny_net* net, double* theta,
                                       const double* X, const double* Y,
                                       const Py_ssize_t* order, Py_ssize_t count,
                                       double* total, Py_ssize_t* done) noexcept nogil
    double _tiny_run_s "bp_tiny_run_s"(const bp_tiny_net* net, float* theta,
                                       const float* X, const float* Y,
                                       const Py_ssize_t* order, Py_ssize_t count,
                                       double* total, Py_ssize_t* done) noexcept nogil

cdef extern from "target.h":
    const Py_ssize_t BP_VBYTES

# The runs need a target whose registers hold 4 doubles (AVX: x86-64-v3 and up). With
# SSE's 16-byte registers (x86-64-v2) each vector is two, the weights no longer fit, and
# W1 took 2.8 ms in runs against 2.3 ms through ``_sample_step``: there, the general
# step runs.
TINY_RUNS_TARGET = BP_VBYTES >= 32

# False sends these networks through ``_sample_step`` (``set_tiny_runs``: the tests
# compare the two)
cdef bint TINY_RUNS = True


def set_tiny_runs(bint on):
    """Whether one-row steps through the tiniest networks run in tiny_run.h's runs (on a
    target that takes them, ``TINY_RUNS_TARGET``); returns the previous setting."""
    global TINY_RUNS
    previous, TINY_RUNS = TINY_RUNS, on
    return previous


cdef inline int _tiny_activation(int act) noexcept nogil:
    """tiny_run.h's code for a hidden activation; -1 for one it does not take."""
    if act == SIGMOID:
        return BP_TINY_SIGMOID
    if act == TANH:
        return BP_TINY_TANH
    if act == RELU:
        return BP_TINY_RELU
    if act == LEAKY_RELU:
        return BP_TINY_LEAKY_RELU
    if act == IDENTITY:
        return BP_TINY_IDENTITY
    return -1


cdef inline bint _takes_tiny_run(const Net* net, const Work* work, Py_ssize_t m,
                                 int mode) noexcept nogil:
    """Whether one-row steps run in ``_tiny_run``: on a target with AVX, ``_sample_step``'s
    networks with one hidden layer, every layer at most BP_TINY wide, mean squared error on a sigmoid or
    identity output and a hidden activation ``_tiny_activation`` takes."""
    if not TINY_RUNS or BP_VBYTES < 32 or net.n_layers != 2 or net.loss != MSE:
        return False
    if net.output != SIGMOID and net.output != IDENTITY:
        return False
    if max(net.sizes[0], net.sizes[1], net.sizes[2]) > BP_TINY:
        return False
    return _tiny_activation(net.hidden[0]) >= 0 and _takes_sample_step(net, work, m, mode)


cdef double _tiny_run(const Net* net, const Solver* s, floating* theta, const floating* X,
                      const floating* Y, const Py_ssize_t* order, Py_ssize_t count,
                      double* total, Py_ssize_t* done) noexcept nogil:
    """``_sample_step`` on ``count`` rows in turn (``_takes_tiny_run``): rows of X and Y
    from the first (order NULL) or rows order[0 .. count - 1]; total += each row's loss;
    stops before the step of a row whose loss is not finite. done := the rows stepped;
    returns the last row's loss."""
    cdef bp_tiny_net tiny
    cdef int i
    for i in range(3):
        tiny.n[i] = net.sizes[i]
    for i in range(4):
        tiny.offsets[i] = net.offsets[i]
    tiny.hidden = _tiny_activation(net.hidden[0])
    tiny.sigmoid_output = net.output == SIGMOID
    tiny.lr, tiny.decay = s.lr, s.decay
    if floating is double:
        return _tiny_run_d(&tiny, theta, X, Y, order, count, total, done)
    else:
        return _tiny_run_s(&tiny, theta, X, Y, order, count, total, done)
