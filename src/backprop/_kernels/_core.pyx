"""Compiled kernels of backprop.

Design
------
One extension module, built from one file per idea (``include``\\ d, so that every
helper stays inlinable); each level calls only the ones above it in this list:

``_types.pxi``        the enums both sides see (Activation, Loss, Mode, Status, Rule,
                      Path) and the structs a pass reads: Net (the network's shape),
                      Rows (a batch), Work (buffers), Data (a training set)
``_elementwise.pxi``  per-element and per-row helpers: exp, the activations and their
                      derivatives, softmax, RNG
``_threads.pxi``      the two-core paths' team of threads; kernel calls running at
                      once and BLAS's threads; Ctrl-C
``_gemm.pxi``         matrix products: plain loops, register tiles (tile_gemm.h) or
                      BLAS, by size; the thresholds and why
``_layers.pxi``       per-layer kernels (dense, deltas, gradients, dropout, batch
                      normalization) and ``_forward_pass`` and ``_batch``: one
                      mini-batch's forward pass, loss and backward pass
                      (each hidden layer with its own activation: the backward pass
                      takes act' from the layer's output A, or, where A does not give it
                      exactly, from the forward pass, which kept it in ``Work.factors``)
``_losses.pxi``       the output layer's loss and delta, one function per family
``_solvers.pxi``      the optimizers: SGD, momentum and Adam (PyTorch's and
                      scikit-learn's)
``_sample.pxi``       one row's fused SGD step through a tiny network, without
                      ``_batch``'s per-layer calls; runs of them through the tiniest,
                      weights in registers (tiny_run.h)
``_parallel.pxi``     the two-core paths: halves of rows, hidden units cut in two
``_stats.pxi``        per-epoch statistics of a training run: gradient norms, update
                      ratios
``_peak.pxi``         the arithmetic peak of the kernels' target (fma_peak.h), on the
                      team: what the benchmark measures its speeds against
``_loops.pxi``        the training loops: Network's epochs, the estimators' epoch
this file             ``Plan`` and the Python-callable entry points

A ``Plan`` is built once per call of ``fit``, ``forward``, ... from the network's
architecture, the batch size and the options: it decides the path (one core, halves,
units) once, owns the workspace, and is called with a few keyword arguments. The
kernels trust their inputs: ``backprop.network`` and ``backprop.estimators`` check
shapes, dtypes, contiguity and values first. Compiler directives (bounds checking
off, ...) are set once in setup.py; BACKPROP_DEBUG_CYTHON=1 turns the checks back on.
"""

import numpy as np

cimport cython
from cython cimport floating
from libc.math cimport (exp, expf, expm1, erfc, fma, fmaf, log, log1p, tanh, tanhf, fabs,
                        isfinite, sqrt, sqrtf, INFINITY)
from libc.string cimport memcpy, memset
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer

from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)
from os import register_at_fork as _register_at_fork

include "_types.pxi"
include "_elementwise.pxi"
include "_threads.pxi"
include "_gemm.pxi"
include "_layers.pxi"
include "_losses.pxi"
include "_solvers.pxi"
include "_sample.pxi"
include "_parallel.pxi"
include "_stats.pxi"
include "_peak.pxi"
include "_loops.pxi"

# Multiply-adds between two checks for Ctrl-C in a training loop (~1 ms of work), and
# what a batch costs besides its multiply-adds (calls, loops, the loss), counted in
# multiply-adds: without it a tiny network would check only every ~30 ms.
cdef Py_ssize_t SIGNAL_CHECK_WORK = 2_000_000
cdef Py_ssize_t BATCH_OVERHEAD = 1_000


def set_thresholds(Py_ssize_t tile_min_work, Py_ssize_t blas_min_work,
                   Py_ssize_t narrow_blas_min_work, Py_ssize_t split_min_work,
                   split_min_rows=None, parts_min_work=None):
    """Set the sizes (multiply-adds) from which products use the tiles, BLAS gemm and,
    for narrow ones, BLAS gemm, and from which a batch uses both cores (halves also
    need ``split_min_rows`` rows; None keeps it), and from which a product not sent to
    BLAS is computed in parts on the team (``parts_min_work``; None keeps it); returns
    the previous six.

    (0, 0, 0, .) sends every product to BLAS; (0, huge, huge, .) every one to the tiles
    (in parts from ``parts_min_work``); (huge, huge, huge, .) every one to the plain
    loops. (., huge, huge, 0, 2) takes both cores for every batch of two rows or more;
    (., ., ., huge) for none.
    """
    global TILE_MIN_WORK, BLAS_MIN_WORK, NARROW_BLAS_MIN_WORK, SPLIT_MIN_WORK, SPLIT_MIN_ROWS
    global PARTS_MIN_WORK
    previous = (TILE_MIN_WORK, BLAS_MIN_WORK, NARROW_BLAS_MIN_WORK, SPLIT_MIN_WORK,
                SPLIT_MIN_ROWS, PARTS_MIN_WORK)
    TILE_MIN_WORK, BLAS_MIN_WORK = tile_min_work, blas_min_work
    NARROW_BLAS_MIN_WORK, SPLIT_MIN_WORK = narrow_blas_min_work, split_min_work
    if split_min_rows is not None:
        SPLIT_MIN_ROWS = max(2, <Py_ssize_t>split_min_rows)
    if parts_min_work is not None:
        PARTS_MIN_WORK = parts_min_work
    return previous


cdef class Plan:
    """How one call computes a network: its shape, the path, the solver and the
    workspace, fixed when the plan is built.

    ``arch`` describes the network (``backprop._layout.Architecture``: sizes, offsets,
    transposed, dtype and the Activation/Loss codes, the hidden layers' one each);
    ``rows`` is the largest batch.
    ``optimizer`` (``backprop.optim``) gives the update rule; ``dropout`` and ``seed``
    inverted dropout's probability and mask stream; ``gather`` makes room for batches
    gathered from shuffled rows; ``two_cores`` lets mid-size batches use both cores
    (``path``: Path.HALVES or, for the estimators' epochs, Path.UNITS); ``backward=False``
    builds a plan for ``forward`` alone, which keeps no activations; ``stats=True`` makes
    room for ``train``'s per-epoch statistics. A network with batch normalization
    (``arch.batch_norm``) always runs on one core.
    """

    cdef Net net
    cdef Solver solver
    cdef Work work
    cdef readonly object dtype
    cdef int _path
    cdef readonly bint backward
    cdef readonly Py_ssize_t rows
    cdef readonly Py_ssize_t check_every
    cdef readonly object grad
    cdef readonly object rng_state
    cdef readonly Py_ssize_t n_running  # batch normalization's running statistics
    cdef readonly Py_ssize_t tiny_rows  # rows its calls have stepped in tiny runs
    cdef object _stats  # the statistics' gradient sum (float64) and theta's copy
    cdef object _keep  # what the pointers in net and work point into

    def __init__(self, arch, Py_ssize_t rows, *, optimizer=None, double dropout=0.0,
                 u64 seed=0, bint gather=False, bint two_cores=True, bint backward=True,
                 bint stats=False):
        cdef const Py_ssize_t[::1] sizes = arch.sizes_array
        cdef const Py_ssize_t[::1] offsets = arch.offsets
        cdef const int[::1] hidden = arch.hidden_array
        cdef const Py_ssize_t[::1] norm = arch.norm_offsets
        cdef Py_ssize_t m = max(rows, 1), n_layers = sizes.shape[0] - 1, l, n_params
        cdef Py_ssize_t width = 0, widest = 0, work = 0, halves = 0, size, at
        cdef Py_ssize_t blocks[11]
        cdef unsigned char[::1] raw
        cdef char* base
        cdef u64[::1] rng
        cdef bint keeps = False
        _bind_blas()
        dtype = np.dtype(arch.dtype)
        self.dtype, self.rows = dtype, m
        self.net.sizes = &sizes[0]
        self.net.offsets = &offsets[0]
        self.net.n_layers = n_layers
        self.net.wt = arch.transposed
        self.net.hidden = &hidden[0] if hidden.shape[0] > 0 else NULL
        self.net.norm = &norm[0] if norm.shape[0] > 0 else NULL
        self.net.output, self.net.loss = arch.output, arch.loss
        for l in range(hidden.shape[0]):
            keeps = keeps or _keeps_prime(hidden[l])
        n_params = _n_params(&self.net)
        for l in range(n_layers):
            width += sizes[l + 1]
            widest = max(widest, sizes[l + 1])
            work += sizes[l] * sizes[l + 1]
        self.check_every = max(1, SIGNAL_CHECK_WORK // (max(1, m * work) + BATCH_OVERHEAD))
        self._set_solver(optimizer)
        self.backward = backward

        self._path = ONE_CORE
        # Batch normalization's statistics couple every row of a batch: halves of rows
        # would each normalise by their own, and the units path cuts what they are over.
        if two_cores and backward and dropout == 0 and self.net.norm == NULL:
            # (an Adam epsilon that rounds to 0 would make the padding units' step 0 / 0)
            # (the units' kernels take act' from A alone: not for an activation that keeps it)
            if (self.solver.rule in (SK_MOMENTUM, SK_ADAM) and not keeps
                    and _units(&self.net, m)
                    and (self.solver.rule != SK_ADAM or dtype.type(optimizer.epsilon) > 0)):
                self._path = UNITS
                halves = _units_size(&self.net, m)
            elif _splits(&self.net, m):
                self._path = HALVES
                halves = 2 * n_params
        # One allocation, in 64-byte aligned blocks (in numbers of the dtype, but for the
        # labels): activations and two blocks of deltas with room for m + 1 rows (an odd
        # batch's two halves), the two-core workspace, the kept derivatives and dropout's
        # factors, a gathered batch's rows of X, Y, labels and sample weights, and batch
        # normalization's xhats (laid out like the activations) and statistics.
        blocks[0] = (m + 1) * width if backward else 0
        blocks[3] = (m + 1) * width if dropout > 0 or (keeps and backward) else 0
        blocks[1] = blocks[2] = (m + 1) * widest
        blocks[4] = halves
        blocks[5] = m * sizes[0] if gather else 0
        blocks[6] = m * sizes[n_layers] if gather else 0
        blocks[7] = m if gather else 0  # labels, Py_ssize_t
        blocks[8] = m if gather else 0
        blocks[9] = (m + 1) * width if self.net.norm != NULL and backward else 0
        blocks[10] = 3 * width if self.net.norm != NULL else 0
        size = 64
        for l in range(11):
            blocks[l] = _round_up(blocks[l] * (sizeof(Py_ssize_t) if l == 7 else dtype.itemsize),
                                  64)
            size += blocks[l]
        buffer = np.empty(size, dtype=np.uint8)
        raw = buffer
        base = <char*>_round_up(<Py_ssize_t>&raw[0], 64)
        at = 0
        pointers = []
        for l in range(11):
            pointers.append(<size_t>(base + at) if blocks[l] else 0)
            at += blocks[l]
        self.work.acts = <void*><size_t>pointers[0]
        self.work.delta0 = <void*><size_t>pointers[1]
        self.work.delta1 = <void*><size_t>pointers[2]
        self.work.factors = <void*><size_t>pointers[3]
        self.work.halves = <void*><size_t>pointers[4]
        self.work.x_batch = <void*><size_t>pointers[5]
        self.work.y_batch = <void*><size_t>pointers[6]
        self.work.label_batch = <Py_ssize_t*><size_t>pointers[7]
        self.work.sw_batch = <void*><size_t>pointers[8]
        self.work.xhats = <void*><size_t>pointers[9]
        self.work.stats = <void*><size_t>pointers[10]
        self.work.running = NULL
        self.n_running = 2 * (width - sizes[n_layers]) if self.net.norm != NULL else 0
        self.work.drop = dropout
        self.rng_state = np.array([seed], dtype=np.uint64)
        rng = self.rng_state
        self.work.rng = &rng[0]
        self.grad = None
        if self.solver.rule not in (NO_STEP, SGD) or stats:
            self.grad = np.zeros(n_params, dtype=dtype)
        self._stats = None
        if stats:
            self._stats = (np.zeros(n_params), np.zeros(n_params, dtype=dtype))
        self._keep = (arch, buffer)

    cdef _set_solver(self, optimizer):
        self.solver.rule = NO_STEP if optimizer is None else optimizer.rule
        self.solver.nesterov = False
        self.solver.l2_term = self.solver.rule in (SK_MOMENTUM, SK_ADAM, NO_STEP)
        self.solver.lr = self.solver.decay = self.solver.mu = self.solver.t_lr = 0
        self.solver.b1 = self.solver.b2 = self.solver.eps = 0
        if optimizer is not None:
            self.solver.nesterov = optimizer.nesterov
            self.solver.lr, self.solver.decay = optimizer.lr, optimizer.decay
            self.solver.mu = optimizer.momentum
            self.solver.b1, self.solver.b2 = optimizer.beta_1, optimizer.beta_2
            self.solver.eps = optimizer.epsilon

    @property
    def path(self):
        """How mid-size batches use the cores (Path)."""
        return Path(self._path)

    @property
    def tiny_runs(self):
        """Whether batches of one row run in tiny_run.h's runs (``_takes_tiny_run``)."""
        return _takes_tiny_run(&self.net, &self.work, 1, FUSED_STEP
                               if self.solver.rule == SGD and self._stats is None
                               else GRADIENTS)

    cdef _check(self, theta, X, bint whole_batch):
        """The arrays fit this plan: its dtype and shapes (the kernels trust them)."""
        n_in = self.net.sizes[0]
        if theta.dtype != self.dtype or theta.shape[0] != _n_params(&self.net):
            raise ValueError(f"parameters must be {_n_params(&self.net)} {self.dtype} numbers")
        if X.dtype != self.dtype or X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(f"X must be (n, {n_in}) {self.dtype}; got {X.shape} {X.dtype}")
        if whole_batch and X.shape[0] > self.rows:
            raise ValueError(f"X has {X.shape[0]} rows; this plan takes at most {self.rows}")
        if X.shape[0] == 0:
            raise ValueError("X has no rows")

    cdef _require(self, bint condition, what):
        if not condition:
            raise ValueError(f"this plan was not built for {what}")

    cdef _check_running(self, running, bint required):
        """``running`` fits the network's running statistics (None: not updated)."""
        if running is None:
            self._require(not required or self.n_running == 0, "a forward pass without "
                          "batch normalization's running statistics")
        elif (running.dtype != self.dtype or running.ndim != 1
                or running.shape[0] != self.n_running or self.n_running == 0):
            raise ValueError(f"running statistics must be {self.n_running} {self.dtype} "
                             f"numbers")

    def train(self, theta, X, targets, *, order=None, Py_ssize_t epochs=1, losses,
              optimizer, steps, bint check_input=False, running=None, grad_norms=None,
              update_ratios=None):
        """Run ``epochs`` epochs of mini-batch training on theta, in place (``_train``):
        X's rows in ``order`` (None: in order) in batches of ``rows``; ``targets`` is Y
        (n, k) or integer labels (n,); ``losses`` (float64) receives each epoch's mean
        loss; ``optimizer`` holds the moments the rule steps in place, and ``steps``
        (one intp) the count of steps taken, which each batch adds 1 to; ``running``,
        batch normalization's running statistics, updated by every batch. With
        ``grad_norms`` and ``update_ratios`` (float64, (epochs, n_layers); a plan built
        with ``stats``), each epoch's statistics (_stats.pxi), every batch's step then
        taken from its stored gradient. Returns (Status, epoch, batch)."""
        self._check(theta, X, False)
        self._check_running(running, False)
        if grad_norms is not None or update_ratios is not None:
            self._require(self._stats is not None, "statistics")
            for out in (grad_norms, update_ratios):
                if (not isinstance(out, np.ndarray) or out.dtype != np.float64
                        or out.shape != (epochs, self.net.n_layers)
                        or not out.flags.c_contiguous):
                    raise ValueError(f"grad_norms and update_ratios must be C-contiguous "
                                     f"float64 ({epochs}, {self.net.n_layers}) arrays")
        self._require(self.solver.rule in (SGD, MOMENTUM, ADAM), "Network's optimizers")
        self._require(order is None or self.work.x_batch != NULL, "gathered batches")
        self._require(self.backward, "training")
        if self.dtype == np.float32:
            return _train_call[cython.float](self, theta, X, targets, order, epochs, losses,
                                              optimizer, steps, check_input, running,
                                              grad_norms, update_ratios)
        return _train_call[cython.double](self, theta, X, targets, order, epochs, losses,
                                           optimizer, steps, check_input, running,
                                           grad_norms, update_ratios)

    def batch(self, theta, X, targets, *, int mode, grad=None, running=None):
        """One pass over the whole batch (X, targets): returns L; Mode.LOSS_ONLY the
        loss alone, GRADIENTS also grad := dL/dtheta, FUSED_STEP the optimizer's SGD
        step, as ``train`` takes it (two halves on two cores alike); ``running``, batch
        normalization's running statistics, updated by the pass (None: left alone)."""
        self._check(theta, X, True)
        self._check_running(running, False)
        self._require(mode != FUSED_STEP or self.solver.rule == SGD, "SGD's fused step")
        self._require(mode != GRADIENTS or grad is not None, "gradients without grad")
        self._require(self.backward, "a loss")
        if self.dtype == np.float32:
            return _batch_call[cython.float](self, theta, X, targets, mode, grad, running)
        return _batch_call[cython.double](self, theta, X, targets, mode, grad, running)

    def forward(self, theta, X, out, running=None):
        """out := the network's output for every row of X, ``rows`` rows at a time; batch
        normalization takes the ``running`` statistics (required with it)."""
        self._check(theta, X, False)
        self._check_running(running, True)
        if self.dtype == np.float32:
            _forward_call[cython.float](self, theta, X, out, running)
        else:
            _forward_call[cython.double](self, theta, X, out, running)

    def forward_training(self, theta, X, out):
        """out := the network's output for the rows of X as one batch, as a training
        pass computes it: batch normalization from the batch's statistics (the running
        ones are not read nor updated)."""
        self._check(theta, X, True)
        self._require(self.backward and self.work.drop == 0, "a training forward pass")
        if self.dtype == np.float32:
            _forward_training_call[cython.float](self, theta, X, out)
        else:
            _forward_training_call[cython.double](self, theta, X, out)

    def sk_epoch(self, params, X, Y, sample_weight, order, *, optimizer):
        """One epoch of the estimators' stochastic solver (``_sk_epoch``, or on the units
        path ``_units_epoch``) over X's rows in ``order``; ``optimizer`` holds the step
        size, the moments and the step count. Returns sum_B |B| L_B; ``self.grad`` is
        left holding the last batch's gradient."""
        self._check(params, X, False)
        self._require(self.solver.rule in (SK_MOMENTUM, SK_ADAM), "scikit-learn's solvers")
        self._require(order is not None and self.work.x_batch != NULL, "gathered batches")
        if self.dtype == np.float32:
            return _sk_epoch_call[cython.float](self, params, X, Y, sample_weight, order,
                                                 optimizer)
        return _sk_epoch_call[cython.double](self, params, X, Y, sample_weight, order,
                                              optimizer)

    def sk_objective(self, params, X, Y, sample_weight, grad):
        """scikit-learn's L-BFGS objective over the whole of (X, Y): returns
        L := mean loss + decay / (2 sum(sw)) sum_l ||W_l||^2, grad := dL/dparams."""
        self._check(params, X, True)
        self._require(self.solver.rule == NO_STEP and self.backward, "an objective")
        if self.dtype == np.float32:
            return _sk_objective_call[cython.float](self, params, X, Y, sample_weight, grad)
        return _sk_objective_call[cython.double](self, params, X, Y, sample_weight, grad)


cdef floating* _running_of(floating[::1] running) noexcept:
    return &running[0] if running is not None else NULL


cdef _train_call(Plan plan, floating[::1] theta, const floating[:, ::1] X, targets,
                 order, Py_ssize_t epochs, double[::1] losses, optimizer,
                 Py_ssize_t[::1] steps, bint check_input, floating[::1] running,
                 double[:, ::1] grad_norms, double[:, ::1] update_ratios):
    cdef const floating[:, ::1] Y = None
    cdef const Py_ssize_t[::1] labels = None
    cdef const Py_ssize_t[::1] rows = None
    cdef floating[::1] m1 = optimizer.moment1
    cdef floating[::1] m2 = optimizer.moment2
    cdef floating[::1] g = plan.grad
    cdef double[::1] grad_sum
    cdef floating[::1] start
    cdef Data data
    cdef Stats stats
    cdef Py_ssize_t where[2]
    cdef int status
    if targets.ndim == 1:
        labels = targets
    else:
        Y = targets
    if order is not None:
        rows = order
    data.X = &X[0, 0]
    data.Y = &Y[0, 0] if Y is not None and Y.shape[0] > 0 else NULL
    data.labels = &labels[0] if labels is not None else NULL
    data.sw = NULL
    data.order = &rows[0] if rows is not None and rows.shape[0] > 0 else NULL
    data.n = X.shape[0]
    data.batch_size = plan.rows
    data.check_every = plan.check_every
    plan.work.running = _running_of(running)
    data.stats = NULL
    if grad_norms is not None:
        grad_sum, start = plan._stats
        stats.grad_sum, stats.start = &grad_sum[0], &start[0]
        stats.grad_norms, stats.update_ratios = &grad_norms[0, 0], &update_ratios[0, 0]
        data.stats = &stats
    _calls_enter()
    try:
        with nogil:
            status = _train(&plan.net, &plan.work, &data, &plan.solver, &theta[0],
                            &g[0] if g is not None else NULL,
                            &m1[0] if m1 is not None else NULL,
                            &m2[0] if m2 is not None else NULL, &steps[0], epochs,
                            &losses[0], check_input, where, &plan.tiny_rows)
    finally:
        plan.work.running = NULL
        _calls_exit()
    if status == INTERRUPTED:
        _raise_pending()
    return Status(status), where[0], where[1]


cdef _batch_call(Plan plan, floating[::1] theta, const floating[:, ::1] X, targets, int mode,
                 grad, floating[::1] running):
    cdef const floating[:, ::1] Y = None
    cdef const Py_ssize_t[::1] labels = None
    cdef floating[::1] g = grad
    cdef floating* halves = <floating*>plan.work.halves
    cdef Rows rows
    cdef double value
    cdef double total = 0
    cdef Py_ssize_t done
    if targets.ndim == 1:
        labels = targets
    else:
        Y = targets
    rows.x = &X[0, 0]
    rows.y = &Y[0, 0] if Y is not None else NULL
    rows.labels = &labels[0] if labels is not None else NULL
    rows.sw = NULL
    rows.wsum = 1
    rows.m = rows.m_norm = X.shape[0]
    if mode == LOSS_ONLY:
        halves = NULL
    plan.work.running = _running_of(running)
    _calls_enter()
    try:
        with nogil:
            if _takes_tiny_run(&plan.net, &plan.work, rows.m, mode):  # as _train takes it
                value = _tiny_run(&plan.net, &plan.solver, &theta[0],
                                  <const floating*>rows.x, <const floating*>rows.y, NULL, 1,
                                  &total, &done)
                plan.tiny_rows += done
            elif _takes_sample_step(&plan.net, &plan.work, rows.m, mode):
                value = _sample_step(&plan.net, &plan.work, &rows, &theta[0], &plan.solver)
            else:
                value = _split_batch(&plan.net, &plan.work, &rows, &theta[0],
                                     &g[0] if g is not None else NULL, halves, &plan.solver,
                                     mode, NULL)
    finally:
        plan.work.running = NULL
        _calls_exit()
    return value


cdef _forward_call(Plan plan, const floating[::1] theta, const floating[:, ::1] X,
                   floating[:, ::1] out, const floating[::1] running):
    cdef Net* net = &plan.net
    cdef Py_ssize_t n = X.shape[0], n_layers = net.n_layers, chunk = plan.rows
    cdef Py_ssize_t start, m, l, r_off
    cdef const floating* beta
    cdef const floating* a_prev
    cdef floating* a_out
    # the hidden layers alternate between the two blocks of the deltas' workspace
    cdef floating* buf0 = <floating*>plan.work.delta0
    cdef floating* buf1 = <floating*>plan.work.delta1
    _calls_enter()
    try:
        with nogil:
            start = 0
            while start < n:
                m = min(chunk, n - start)
                a_prev = &X[start, 0]
                r_off = 0
                for l in range(n_layers):
                    if l == n_layers - 1:
                        a_out = &out[start, 0]
                    else:
                        a_out = buf0 if l % 2 == 0 else buf1
                    if net.norm != NULL and l < n_layers - 1:
                        # act(gamma (Z - running_mean) / sqrt(running_var + eps) + beta)
                        _dense(a_prev, &theta[net.offsets[2 * l]],
                               &theta[net.offsets[2 * l + 1]], a_out, m, net.sizes[l],
                               net.sizes[l + 1], IDENTITY, net.wt, NULL)
                        _norm_eval(a_out, &theta[net.norm[l]], &running[r_off],
                                   <floating*>plan.work.stats, m, net.sizes[l + 1])
                        beta = &theta[net.norm[l] + net.sizes[l + 1]]
                        _bias_act(a_out, beta, m, net.sizes[l + 1], net.hidden[l])
                        r_off += 2 * net.sizes[l + 1]
                    else:
                        _dense(a_prev, &theta[net.offsets[2 * l]],
                               &theta[net.offsets[2 * l + 1]], a_out, m, net.sizes[l],
                               net.sizes[l + 1],
                               net.output if l == n_layers - 1 else net.hidden[l], net.wt,
                               NULL)
                    a_prev = a_out
                start += m
    finally:
        _calls_exit()


cdef _forward_training_call(Plan plan, const floating[::1] theta,
                            const floating[:, ::1] X, floating[:, ::1] out):
    cdef Net* net = &plan.net
    cdef Py_ssize_t m = X.shape[0], k = net.sizes[net.n_layers], a_off = 0, l
    for l in range(net.n_layers - 1):
        a_off += m * net.sizes[l + 1]
    _calls_enter()
    try:
        with nogil:
            _forward_pass(net, &plan.work, &X[0, 0], m, &theta[0], net.output)
            memcpy(&out[0, 0], <floating*>plan.work.acts + a_off, m * k * sizeof(floating))
    finally:
        _calls_exit()


cdef Data _sk_data(const floating[:, ::1] X, const floating[:, ::1] Y,
                   const floating[::1] sample_weight, const Py_ssize_t[::1] order,
                   Plan plan):
    cdef Data data
    data.X = &X[0, 0]
    data.Y = &Y[0, 0]
    data.labels = NULL
    data.sw = &sample_weight[0] if sample_weight is not None else NULL
    data.order = &order[0] if order is not None else NULL
    data.n = order.shape[0] if order is not None else X.shape[0]
    data.batch_size = plan.rows
    data.check_every = plan.check_every
    data.stats = NULL
    return data


cdef _sk_epoch_call(Plan plan, floating[::1] params, const floating[:, ::1] X,
                    const floating[:, ::1] Y, sample_weight, const Py_ssize_t[::1] order,
                    optimizer):
    cdef const floating[::1] sw = sample_weight
    cdef floating[::1] grad = plan.grad
    cdef floating[::1] moment1 = optimizer.moment1
    cdef floating[::1] moment2 = optimizer.moment2 if optimizer.moment2 is not None else moment1
    cdef Data data = _sk_data(X, Y, sw, order, plan)
    cdef Solver s = plan.solver
    cdef Py_ssize_t step = optimizer.t
    cdef double total = 0
    cdef bint interrupted = False
    cdef int status = COMPLETED
    s.lr = optimizer.lr
    if data.n == 0:
        return 0.0
    _calls_enter()
    try:
        with nogil:
            if plan._path == UNITS:
                total = _units_epoch(&plan.net, s, &data, &params[0], &grad[0], &moment1[0],
                                     &moment2[0], step, <floating*>plan.work.halves,
                                     &interrupted)
                if interrupted:
                    status = INTERRUPTED
            else:
                status = _sk_epoch(&plan.net, &plan.work, &data, s, &params[0], &grad[0],
                                   &moment1[0], &moment2[0], step, &total)
    finally:
        _calls_exit()
    if status == INTERRUPTED:
        _raise_pending()
    return total


cdef _sk_objective_call(Plan plan, const floating[::1] params,
                        const floating[:, ::1] X, const floating[:, ::1] Y, sample_weight,
                        floating[::1] grad):
    cdef const floating[::1] sw = sample_weight
    cdef Py_ssize_t m = X.shape[0], i
    cdef double wsum = m  # float64 whatever the dtype: a float32 sum stops growing at 2^24
    cdef floating* theta = <floating*>&params[0]
    cdef Rows rows
    cdef double value
    rows.x = &X[0, 0]
    rows.y = &Y[0, 0]
    rows.labels = NULL
    rows.sw = NULL
    if sw is not None:
        rows.sw = &sw[0]
        wsum = 0
        for i in range(m):
            wsum = wsum + sw[i]
    rows.wsum = wsum
    rows.m = rows.m_norm = m
    _calls_enter()
    try:
        with nogil:
            value = _batch(&plan.net, &plan.work, &rows, theta, &grad[0], NULL, GRADIENTS)
            # NO_STEP: the gradient's normalisation alone; the moments are not touched
            # (params stands in for them)
            value += 0.5 * plan.solver.decay * _solver_steps(
                &plan.net, &plan.solver, theta, &grad[0], NULL, theta, theta,
                <floating>wsum, False) / wsum
    finally:
        _calls_exit()
    return value


def all_finite(const floating[::1] values):
    """True when no entry of ``values`` is NaN or infinite; one pass, no temporary array."""
    cdef bint result = True
    if values.shape[0] > 0:
        with nogil:
            result = _all_finite(&values[0], values.shape[0])
    return result


# Per-layer kernels, one call each: the steps of the worked example (Network.trace), and
# the units the kernel tests hold against the reference.

def dense(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
          floating[:, ::1] Z):
    """Z := X @ W.T + b."""
    _bind_blas()
    with nogil:
        _dense(&X[0, 0], &W[0, 0], &b[0], &Z[0, 0], X.shape[0], X.shape[1], W.shape[0],
               IDENTITY, False, NULL)


def activate(const floating[:, ::1] Z, floating[:, ::1] A, int act):
    """A := act(Z) (softmax row-wise)."""
    cdef Py_ssize_t i, j, m = Z.shape[0], n = Z.shape[1]
    with nogil:
        for i in range(m):
            for j in range(n):
                A[i, j] = Z[i, j] if act == SOFTMAX else _act(Z[i, j], act)
        if act == SOFTMAX and m > 0:
            _softmax_rows(&A[0, 0], m, n, NULL)


def activation_prime(const floating[:, ::1] Z, const floating[:, ::1] A,
                     floating[:, ::1] out, int act):
    """out := act'(Z), as the backward pass takes it: written from the activation
    A = act(Z), or from Z for the activations that keep it (``_keeps_prime``)."""
    cdef Py_ssize_t i, j
    cdef bint kept = _keeps_prime(act)
    with nogil:
        for i in range(A.shape[0]):
            for j in range(A.shape[1]):
                if kept:
                    _act_and_prime(Z[i, j], act, &out[i, j])
                else:
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
                              Z.shape[0], Z.shape[1], output, loss)
    return value


def hidden_delta(const floating[:, ::1] delta, const floating[:, ::1] W,
                 const floating[:, ::1] Z_prev, const floating[:, ::1] A_prev,
                 floating[:, ::1] delta_prev, int act):
    """delta_prev := (delta @ W) * act'(Z_prev), act' as ``activation_prime`` takes it."""
    cdef floating[:, ::1] factor = None
    cdef floating* kept = NULL
    if _keeps_prime(act):
        factor = np.empty((A_prev.shape[0], A_prev.shape[1]),
                          dtype=np.float32 if floating is float else np.float64)
        activation_prime(Z_prev, A_prev, factor, act)
        kept = &factor[0, 0]
    _bind_blas()
    with nogil:
        _hidden_delta(&delta[0, 0], &W[0, 0], &A_prev[0, 0], &delta_prev[0, 0],
                      delta.shape[0], W.shape[1], W.shape[0], act, False, kept)


def weight_gradients(const floating[:, ::1] delta, const floating[:, ::1] A_prev,
                     floating[:, ::1] grad_W, floating[::1] grad_b):
    """grad_W := delta^T @ A_prev;  grad_b := sum over rows of delta (delta is not changed)."""
    cdef floating[:, ::1] scratch = delta.copy()
    _bind_blas()
    with nogil:
        _backward(&scratch[0, 0], &A_prev[0, 0], &grad_W[0, 0], &grad_b[0], delta.shape[0],
                  A_prev.shape[1], delta.shape[1], <floating>1, <floating>0, <floating>0, False)

