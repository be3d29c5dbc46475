# The names that cross the kernel boundary: enums both Python and the kernels see
# (``cpdef enum``: a C enum here, an IntEnum class of the same name in Python), and the
# network's shape as the kernels read it.

ctypedef unsigned long long u64


cpdef enum Activation:
    # each as PyTorch defines it (torch.nn.functional); the codes are stable: pickled
    # networks hold them
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4  # output only
    EXP = 5  # output only (scikit-learn's Poisson loss)
    LEAKY_RELU = 6  # negative slope 0.01
    ELU = 7  # alpha 1
    GELU = 8  # the exact form, z Phi(z)
    SOFTPLUS = 9  # beta 1, linear above 20
    SILU = 10


cpdef enum Loss:
    MSE = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2
    # scikit-learn's conventions: delta = (p - y) sw_i, not normalised (see _sk_loss)
    SK_SQUARED_ERROR = 3
    SK_LOG_LOSS = 4
    SK_BINARY_LOG_LOSS = 5
    SK_POISSON = 6


cpdef enum Mode:
    # what a pass over one batch computes (``_batch``)
    LOSS_ONLY = 0
    GRADIENTS = 1
    FUSED_STEP = 2  # plain SGD's update fused into the gradient products


cpdef enum Status:
    # how a training run ended (``Plan.train``)
    COMPLETED = 0
    LOSS_NOT_FINITE = 1  # a batch's loss; stopped before its step
    WEIGHTS_NOT_FINITE = 2  # after the last step of the run
    INPUT_NOT_FINITE = 3  # a row of X, found by the first epoch's check
    INTERRUPTED = 4  # a signal (Ctrl-C) came; its exception is pending


cpdef enum Rule:
    # an optimizer's update (``Solver``; _solvers.pxi)
    NO_STEP = 0
    SGD = 1
    MOMENTUM = 2  # PyTorch's
    SK_MOMENTUM = 3  # scikit-learn's
    SK_ADAM = 4  # scikit-learn's
    ADAM = 5  # PyTorch's


cpdef enum Path:
    # how a batch uses the cores (``Plan.path``)
    ONE_CORE = 0
    HALVES = 1  # two halves of rows, gradients added (_split_batch)
    UNITS = 2  # one hidden layer's units cut in two (_units_epoch)


cdef struct Net:
    # A network as the kernels read it: sizes[0 .. n_layers] are the layer widths,
    # input first; parameters live in one flat array, W_l at offsets[2 l] and b_l at
    # offsets[2 l + 1] (gradients and optimizer moments alike). W_l is (n_out, n_in)
    # row-major, or (n_in, n_out) when ``wt`` (scikit-learn's coefs_). With batch
    # normalization (``norm`` not NULL), hidden layer l's gamma_l is at norm[l] and its
    # beta_l right after it (sizes[l + 1] numbers each).
    const Py_ssize_t* sizes
    const Py_ssize_t* offsets
    const Py_ssize_t* norm  # NULL: no batch normalization
    Py_ssize_t n_layers
    bint wt
    const int* hidden  # Activation of each hidden layer, hidden[0 .. n_layers - 2]
    int output  # Activation of the output layer
    int loss  # Loss


cdef struct Rows:
    # One batch: m rows of X and of the targets (Y, or integer labels), with sample
    # weights sw summing to wsum (NULL: every weight 1). Means are taken over m_norm
    # rows: m, but for half a batch (_split_batch). The pointers are to the dtype's
    # numbers: the kernels cast them back.
    const void* x
    const void* y  # NULL with labels
    const Py_ssize_t* labels  # NULL with y
    const void* sw
    double wsum
    Py_ssize_t m
    Py_ssize_t m_norm


cdef struct Work:
    # A plan's buffers (the dtype's numbers behind the void pointers):
    void* acts  # A_1 .. A_L of a batch, one after the other (m * sizes[l] each)
    void* delta0  # the backward pass's deltas: two blocks of m x the widest layer
    void* delta1
    void* factors  # act'(Z) of the hidden layers, laid out like acts, for the layers whose
                   # activation keeps it (_keeps_prime) and, times the mask, for every
                   # hidden layer with dropout; NULL: neither
    double drop  # dropout's probability
    u64* rng  # the SplitMix64 state the masks are drawn from
    void* x_batch  # a gathered batch's rows of X, Y (or labels) and sample weights
    void* y_batch
    Py_ssize_t* label_batch
    void* sw_batch
    void* halves  # the two-core paths' workspace; NULL: one core
    # batch normalization (NULL without it):
    void* xhats  # every hidden layer's normalised pre-activations, laid out like acts
    void* stats  # 3 vectors of each hidden layer's width, one layer after the other: the
                 # batch mean, its biased variance and 1 / sqrt(var + eps); the backward
                 # pass reuses the first two for its column sums
    void* running  # each hidden layer's running mean, then running variance, one layer
                   # after the other; NULL: a pass that does not update them


cdef struct Stats:
    # What ``_train`` measures at each epoch's end (_stats.pxi), in float64:
    double* grad_sum  # n_params: the sum over the epoch's batches of dL_B/dtheta
    void* start  # n_params of the dtype: theta at the epoch's start
    double* grad_norms  # epochs x n_layers, out
    double* update_ratios  # epochs x n_layers, out


cdef struct Data:
    # A training set as an epoch visits it: n rows of X and of the targets (Y, or
    # labels; sample weights sw, NULL: every weight 1), in ``order`` (NULL: 0 .. n - 1),
    # in batches of batch_size rows; pending signals (Ctrl-C) are checked every
    # check_every batches. ``stats``: per-epoch statistics to take (NULL: none).
    const void* X
    const void* Y
    const Py_ssize_t* labels
    const void* sw
    const Py_ssize_t* order
    Py_ssize_t n
    Py_ssize_t batch_size
    Py_ssize_t check_every
    Stats* stats


cdef inline Py_ssize_t _n_params(const Net* net) noexcept nogil:
    return net.offsets[2 * net.n_layers - 1] + net.sizes[net.n_layers]


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t v) noexcept nogil:
    return (n + v - 1) // v * v
