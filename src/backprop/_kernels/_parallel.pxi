# The two-core paths. Products too small for BLAS's threads to pay off leave the second
# core idle; a mid-size batch (at least SPLIT_MIN_WORK multiply-adds forward, every
# product on one thread) runs on both cores instead, one of two ways: one hidden layer
# of 32 units or more in the estimators' epochs has its units cut in two (_units_epoch);
# other batches of at least SPLIT_MIN_ROWS rows are split in two halves of rows
# (_split_batch). Measured (README "Two cores"): units 1.2-1.8x faster from 2^18
# multiply-adds a batch, about even below; halves 1.3-1.5x faster on batches of 200
# rows, 0.9x on 64 and 0.5x on 32, where the gradient that crosses between the cores
# costs more than half a batch.
#
# Both run as parts on the library's team of two threads (team.h): the caller and one
# worker claim the parts of each run, so a worker that is late on a busy machine costs
# only the parts the caller then runs itself, and a waiting thread sleeps after 50 us.
# The arithmetic does not depend on the number of threads: a part computes the same
# numbers whichever thread runs it.

cdef Py_ssize_t SPLIT_MIN_WORK = 1 << 18
cdef Py_ssize_t SPLIT_MIN_ROWS = 128

cdef bint _splits(const Net* net, Py_ssize_t m) noexcept nogil:
    """Whether a batch of m rows is trained as two halves (see ``_split_batch``)."""
    return m >= SPLIT_MIN_ROWS and _two_cores(net, m, (m + 1) // 2)


cdef bint _two_cores(const Net* net, Py_ssize_t m, Py_ssize_t h) noexcept nogil:
    """Whether a batch of m rows is worth both cores when each runs products of h rows
    (of the whole layer's width at most)."""
    cdef Py_ssize_t l, work = 0, product, n_in, n_out
    if m < 2:
        return False
    for l in range(net.n_layers):
        n_in, n_out = net.sizes[l], net.sizes[l + 1]
        product = h * n_in * n_out
        # No half may hold a product that would take both cores itself (the team's
        # parts, BLAS's threads): it takes them better alone. Nor a narrow one (a
        # dimension under a strip) large enough for BLAS's chunks.
        if product >= min(PARTS_MIN_WORK, BLAS_MIN_WORK) or (
                product >= BLAS_ONE_THREAD_WORK and min(n_in, n_out) < BP_STRIP_BYTES // 4):
            return False
        work += m * n_in * n_out
    return work >= SPLIT_MIN_WORK


cdef double _half_batch(int t, const Net* net, const Work* work, const Rows* rows,
                        floating* theta, floating* grad) noexcept nogil:
    """``_batch`` in gradient mode on half t (0 or 1) of a batch of m rows: rows
    [0, h) or [h, m) with h = ceil(m / 2), each half in its own part of the workspace."""
    cdef Py_ssize_t m = rows.m, h = (m + 1) // 2, l, width = 0, widest = 0
    cdef Py_ssize_t r0 = 0 if t == 0 else h
    cdef Py_ssize_t n_in = net.sizes[0], k = net.sizes[net.n_layers]
    cdef Rows half = rows[0]
    cdef Work part = work[0]
    for l in range(net.n_layers):
        width += net.sizes[l + 1]
        widest = max(widest, net.sizes[l + 1])
    half.x = <const floating*>rows.x + r0 * n_in
    if rows.y != NULL:
        half.y = <const floating*>rows.y + r0 * k
    if rows.labels != NULL:
        half.labels = rows.labels + r0
    if rows.sw != NULL:
        half.sw = <const floating*>rows.sw + r0
    half.m = h if t == 0 else m - h
    half.m_norm = m
    part.acts = <floating*>work.acts + t * h * width
    part.delta0 = <floating*>work.delta0 + t * h * widest
    part.delta1 = <floating*>work.delta1 + t * h * widest
    if work.factors != NULL:
        part.factors = <floating*>work.factors + t * h * width
    return _batch(net, &part, &half, theta, grad, NULL, GRADIENTS)


cdef struct Halves:
    # What ``_half_part`` reads: a batch and where each half's gradient and loss go (the
    # dtype's numbers behind the void pointers).
    const Net* net
    const Work* work
    const Rows* rows
    void* theta
    void* grads[2]
    double values[2]
    bint doubles


cdef void _half_part(void* ctx, int t) noexcept nogil:
    """Part t of a split batch: ``_half_batch`` on half t."""
    cdef Halves* c = <Halves*>ctx
    if c.doubles:
        c.values[t] = _half_batch(t, c.net, c.work, c.rows, <double*>c.theta,
                                  <double*>c.grads[t])
    else:
        c.values[t] = _half_batch(t, c.net, c.work, c.rows, <float*>c.theta,
                                  <float*>c.grads[t])


cdef double _split_batch(const Net* net, const Work* work, const Rows* rows,
                         floating* theta, floating* grad, floating* halves,
                         const Solver* s, int mode, bint* was_split) noexcept nogil:
    """``_batch`` (mode GRADIENTS or FUSED_STEP) on both cores, as two halves of rows,
    each run through the forward and backward pass on its own:
        L = L_1 + L_2,  g = g_1 + g_2  (each half's mean taken over all m rows)
    then grad := g, or the SGD step of ``s`` with g as ``_batch``'s fused one.
    ``halves`` holds two gradients (2 n_params; n_params in mode GRADIENTS); NULL,
    dropout or a batch that ``_splits`` rejects runs ``_batch`` as it is. The workspace
    holds m + 1 rows. With ``was_split`` (mode GRADIENTS), g_1 is left in ``halves`` and
    g_2 in ``grad`` for the caller to add, and *was_split says whether the batch was split.
    """
    cdef Py_ssize_t n_params = _n_params(net), i
    cdef floating* g0
    cdef floating* g1
    cdef Halves c
    cdef double value
    if was_split != NULL:
        was_split[0] = False
    if halves == NULL or work.drop > 0 or not _splits(net, rows.m):
        return _batch(net, work, rows, theta, grad, s, mode)
    if mode == GRADIENTS:
        g0, g1 = grad, halves
    else:
        g0, g1 = halves, halves + n_params
    c.net, c.work, c.rows, c.theta = net, work, rows, theta
    c.grads[0], c.grads[1] = g0, g1
    c.doubles = floating is double
    _team_run(2, _half_part, &c, _team_size())
    value = c.values[0] + c.values[1]
    if was_split != NULL:
        was_split[0] = True
    elif mode == GRADIENTS:
        for i in range(n_params):
            grad[i] = g0[i] + g1[i]
    elif isfinite(value):
        _solver_steps(net, s, theta, g0, g1, NULL, NULL, 1, False)
    return value


cdef Py_ssize_t _units_cut(const Net* net) noexcept nogil:
    """Where ``_units_epoch`` cuts the hidden layer's units between two threads: the
    multiple of 16 (whole vectors in either dtype) nearest half of them, so that each
    part has at least 16; or 0 when it does not apply: one hidden layer of at least 32
    units."""
    if net.n_layers != 2 or net.sizes[1] < 32:
        return 0
    return (net.sizes[1] + 16) // 32 * 16


cdef bint _units(const Net* net, Py_ssize_t m) noexcept nogil:
    """Whether ``_sk_epoch`` runs batches of m rows with the units cut in two: one hidden
    layer of 32 units or more, at least SPLIT_MIN_WORK multiply-adds a batch, and every
    product a part makes (``_units_forward``, ``_units_backward``) on its own thread:
    two threaded BLAS calls at once would share the cores. The widths checked are padded
    to 16, at least the part's padding to vectors (``_units_epoch``) on any target."""
    cdef const Py_ssize_t* sizes = net.sizes
    cdef Py_ssize_t n_in, h, k, w, t, cut = _units_cut(net)
    if cut == 0 or m * (sizes[0] + sizes[2]) * sizes[1] < SPLIT_MIN_WORK:
        return False
    n_in, h, k = sizes[0], sizes[1], sizes[2]
    for t in range(2):
        w = _round_up(cut if t == 0 else h - cut, 16)
        if not (_one_thread_product(m, w, n_in, c'N') and _one_thread_product(m, k, w, c'N')
                and _one_thread_product(w, k, m, c'N') and _one_thread_product(m, w, k, c'T')
                and _one_thread_product(n_in, w, m, c'N')):
            return False
    return True


cdef inline Py_ssize_t _part_size(Py_ssize_t n_in, Py_ssize_t wp, Py_ssize_t k) noexcept nogil:
    """Numbers in a packed part (see ``_units_pack``) of wp (padded) units."""
    return _round_up((n_in + 1 + k) * wp, 16)


cdef Py_ssize_t _units_size(const Net* net, Py_ssize_t m) noexcept nogil:
    """Length of ``_units_epoch``'s workspace for batches of up to m rows (0: no cut);
    every block padded to 16 numbers (64 bytes in float32, 128 in float64) and the parts
    to 16 units, at least their padding to vectors in either dtype on any target."""
    cdef Py_ssize_t n_in = net.sizes[0], h = net.sizes[1], k = net.sizes[2]
    cdef Py_ssize_t cut = _units_cut(net), w0, w1
    if cut == 0:
        return 0
    w0, w1 = _round_up(cut, 16), _round_up(h - cut, 16)
    # three gathered batches (X, Y, weights; by batch modulo 3); the output layer's Z
    # and delta; per part A and delta of its units and its partial output; parameters,
    # moments and gradients of both parts
    return (16 + 3 * (_round_up(m * n_in, 16) + _round_up(m * k, 16) + _round_up(m, 16))
            + 2 * _round_up(m * k, 16)
            + 2 * (_round_up(m * w0, 16) + _round_up(m * w1, 16) + 2 * _round_up(m * k, 16))
            + 4 * (_part_size(n_in, w0, k) + _part_size(n_in, w1, k)))


cdef void _units_pack(Py_ssize_t j0, Py_ssize_t width, Py_ssize_t wp, const Net* net,
                      floating* flat, floating* part, bint unpack) noexcept nogil:
    """part := the parameters of units j0 .. j0 + width - 1 in ``flat`` (the layout of
    params), contiguous and padded to wp units: W1[:, J] row by row (n_in x wp), b1[J]
    (wp), W2[J, :] (wp x k), the padding zero; or, with ``unpack``, the reverse (the
    padding dropped). Each thread then writes only its own cache lines (rows of W1 hold
    both threads' units), its rows start on vector boundaries, and its parameters are
    stepped in three contiguous runs.

    A padding unit has zero weights in and out and a zero bias: it adds exact zeros to
    the output, gets a zero gradient (its row of grad W2 is never written), and every
    solver's step leaves a parameter with zero value, gradient and moments at zero.
    """
    cdef Py_ssize_t n_in = net.sizes[0], h = net.sizes[1], k = net.sizes[2], r
    cdef Py_ssize_t row = width * sizeof(floating)
    cdef const Py_ssize_t* offsets = net.offsets
    if unpack:
        for r in range(n_in):
            memcpy(flat + offsets[0] + r * h + j0, part + r * wp, row)
        memcpy(flat + offsets[1] + j0, part + n_in * wp, row)
        memcpy(flat + offsets[2] + j0 * k, part + (n_in + 1) * wp, k * row)
        return
    memset(part, 0, (n_in + 1 + k) * wp * sizeof(floating))
    for r in range(n_in):
        memcpy(part + r * wp, flat + offsets[0] + r * h + j0, row)
    memcpy(part + n_in * wp, flat + offsets[1] + j0, row)
    memcpy(part + (n_in + 1) * wp, flat + offsets[2] + j0 * k, k * row)


cdef void _units_forward(const Net* net, const floating* part, Py_ssize_t wp,
                          const floating* x, Py_ssize_t m, floating* a1,
                          floating* partial) noexcept nogil:
    """A thread's part of the forward pass, for its units J (wp of them with the
    padding; parameters ``part`` as ``_units_pack`` lays them out):
    A_J := act(X W1[:, J] + b1[J]) (m x wp, into a1) and the units' share of the output,
    partial := A_J W2[J, :] (m x k)."""
    cdef Py_ssize_t n_in = net.sizes[0], k = net.sizes[2]
    _gemm(c'N', c'N', m, wp, n_in, <floating>1, x, n_in, part, wp, <floating>0, a1, wp)
    _bias_act(a1, part + n_in * wp, m, wp, net.hidden[0])
    _gemm(c'N', c'N', m, k, wp, <floating>1, a1, wp, part + (n_in + 1) * wp, k,
          <floating>0, partial, k)


cdef double _units_backward(const Net* net, const Solver* s, bint first, Py_ssize_t width,
                            Py_ssize_t wp, floating** part, floating** flat,
                            const floating* x, const floating* delta, Py_ssize_t m,
                            floating* a1, floating* d1, floating wsum) noexcept nogil:
    """A thread's part of the backward pass and the step, on its units J only
    (its parameters, moment1, moment2 and gradient in part[0 .. 3], laid out by
    ``_units_pack``; the same four in the flat layout in flat[0 .. 3]):
        grad W2[J, :] := A_J^T delta,  delta_J := (delta W2[J, :]^T) * act'(A_J),
        grad W1[:, J] := X^T delta_J,  grad b1[J] := sum_rows delta_J,
        the ``first`` part also grad b2 := sum_rows delta (b2 stays in params, its
        gradient in grad),
    then the solver's step on W1[:, J], b1[J], W2[J, :] and (first part) b2.
    delta (the output layer's, m x k) is read, not changed. Returns sum W^2 over the
    weights it stepped."""
    cdef Py_ssize_t n_in = net.sizes[0], k = net.sizes[2], b2_at = net.offsets[3]
    cdef Py_ssize_t b_at = n_in * wp, w2_at = (n_in + 1) * wp
    cdef floating* part_g = part[3]
    cdef floating* gb2 = flat[3] + b2_at
    cdef double sq = 0
    cdef Solver step
    cdef Py_ssize_t r
    # the padding's rows of grad W2 stay zero
    _gemm(c'T', c'N', width, k, m, <floating>1, a1, wp, delta, k, <floating>0,
          part_g + w2_at, k)
    _hidden_delta(delta, part[0] + w2_at, a1, d1, m, wp, k, net.hidden[0], True, NULL)
    _backward(d1, x, part_g, part_g + b_at, m, n_in, wp, 1, 0, 0, True)
    if first:
        _column_sums(delta, m, k, gb2)
    # sum W^2 over the part's real units only, W1[:, J] a row at a time, so that it does
    # not depend on the padding (which follows the target's vectors): the steps below
    # take a solver that does not sum it again
    step = s[0]
    if step.l2_term and step.rule != SGD:  # as _solver_update reports it
        for r in range(n_in):
            sq += _sum_squares(part[0] + r * wp, width)
        sq += _sum_squares(part[0] + w2_at, width * k)
    step.l2_term = False
    _solver_update(part[0], part_g, part[1], part[2], b_at, True, wsum, &step)
    _solver_update(part[0] + b_at, part_g + b_at, part[1] + b_at, part[2] + b_at, wp, False,
                   wsum, &step)
    _solver_update(part[0] + w2_at, part_g + w2_at, part[1] + w2_at, part[2] + w2_at, wp * k,
                   True, wsum, &step)
    if first:
        _solver_update(flat[0] + b2_at, gb2, flat[1] + b2_at, flat[2] + b2_at, k, False, wsum,
                       &step)
    return sq


cdef inline floating* _take(floating** cursor, Py_ssize_t n) noexcept nogil:
    """The next block of n numbers (rounded up to 16) from a workspace cursor."""
    cdef floating* block = cursor[0]
    cursor[0] = block + _round_up(n, 16)
    return block


cdef enum UnitsJob:
    # what a run of ``_units_part`` does on its part, in this order
    PACK = 1  # copy the part's parameters and moments in, zero its gradient
    BACKWARD = 2  # the previous batch's backward pass and step
    FORWARD = 4  # this batch's forward pass
    UNPACK = 8  # copy the part's parameters, moments and gradient back


# A run's parts: the two parts of units, then (but in the epoch's last run) the two halves
# of the next batch's rows, which the first thread done with its units copies while the
# other still computes. The team hands out parts in order, so a thread claims a half only
# once both parts of units have been claimed.
cdef enum:
    UNITS_PARTS = 2
    GATHER_PARTS = 2


cdef struct Units:
    # What the parts of a ``_units_epoch`` run read ([t]: part t's; [q]: by batch
    # modulo 3; the dtype's numbers behind the void pointers).
    const Net* net
    int jobs  # UnitsJob flags
    Py_ssize_t batch  # b: FORWARD runs batch b, BACKWARD batch b - 1
    Py_ssize_t j0s[2]
    Py_ssize_t widths[2]
    Py_ssize_t wps[2]  # widths padded to whole vectors
    void* flats[4]  # params, moment1, moment2, gradient in the flat layout
    void* parts[2][4]  # the same, as each part's packed copy
    void* a1s[2]  # A and delta of the part's units
    void* d1s[2]
    void* partials[2]  # the part's share of the output, A_J W2[J, :]
    void* xs[3]  # the batch's rows of X, of Y and their sample weights
    void* ys[3]
    void* sws[3]
    void* delta  # the output layer's delta of batch b - 1
    Py_ssize_t ms[3]  # the batch's rows
    double wsums[3]  # its weight sum
    Solver solvers[3]  # its step (Adam's step size changes with the batch)
    const void* X  # the data, and (parts 2 and 3) batch b + 1's rows of it
    const void* Y
    const void* sw
    const Py_ssize_t* next_rows
    double l2[2]  # the part's running L2 term: sum_B |B| decay / (2 wsum_B) sum W_J^2
    bint doubles


cdef void _units_gather(Units* u, int half, floating* params) noexcept nogil:
    """Half ``half`` of batch b + 1's rows (the first ceil(m / 2), or the rest) of X, Y
    and the sample weights, into the buffers of batch b + 1 (its weight sum is the
    caller's, summed in the rows' order)."""
    cdef Py_ssize_t n_in = u.net.sizes[0], k = u.net.sizes[2], g = (u.batch + 1) % 3
    cdef Py_ssize_t m = u.ms[g], r0 = 0 if half == 0 else (m + 1) // 2
    cdef Py_ssize_t r1 = (m + 1) // 2 if half == 0 else m
    _gather(<const floating*>u.X, <const floating*>u.Y, NULL, <const floating*>u.sw,
            u.next_rows + r0, r1 - r0, n_in, k, <floating*>u.xs[g] + r0 * n_in,
            <floating*>u.ys[g] + r0 * k, NULL, <floating*>u.sws[g] + r0)


cdef void _units_job(Units* u, int t, floating* params) noexcept nogil:
    """Part t's share of a run (``u.jobs``), on units J_t; ``params`` is u.flats[0]."""
    cdef floating* part[4]
    cdef floating* flat[4]
    cdef Py_ssize_t n_in = u.net.sizes[0], k = u.net.sizes[2], wp
    cdef Py_ssize_t q = u.batch % 3, p = (u.batch + 2) % 3
    cdef double sq
    cdef int a
    if t >= UNITS_PARTS:
        _units_gather(u, t - UNITS_PARTS, params)
        return
    wp = u.wps[t]
    for a in range(4):
        part[a] = <floating*>u.parts[t][a]
        flat[a] = <floating*>u.flats[a]
    if u.jobs & PACK:
        for a in range(3):
            _units_pack(u.j0s[t], u.widths[t], wp, u.net, flat[a], part[a], False)
        memset(part[3], 0, (n_in + 1 + k) * wp * sizeof(floating))
    if u.jobs & BACKWARD:
        sq = _units_backward(u.net, &u.solvers[p], t == 0, u.widths[t], wp, part, flat,
                             <floating*>u.xs[p], <floating*>u.delta, u.ms[p],
                             <floating*>u.a1s[t], <floating*>u.d1s[t], <floating>u.wsums[p])
        u.l2[t] += 0.5 * u.solvers[p].decay * sq / u.wsums[p] * u.ms[p]
    if u.jobs & FORWARD:
        _units_forward(u.net, part[0], wp, <floating*>u.xs[q], u.ms[q], <floating*>u.a1s[t],
                       <floating*>u.partials[t])
    if u.jobs & UNPACK:
        # moment2 is moment1 for SGD: unpacked once, from the copy that was stepped
        for a in range(4):
            if a != 2 or flat[2] != flat[1]:
                _units_pack(u.j0s[t], u.widths[t], wp, u.net, flat[a], part[a], True)


cdef void _units_part(void* ctx, int t) noexcept nogil:
    """Part t of a ``_units_epoch`` run, in the run's dtype: units J_t (t < 2), or
    half t - 2 of the next batch's rows."""
    cdef Units* u = <Units*>ctx
    if u.doubles:
        _units_job(u, t, <double*>u.flats[0])
    else:
        _units_job(u, t, <float*>u.flats[0])


cdef double _units_epoch(const Net* net, Solver s, const Data* data, floating* params,
                         floating* grad, floating* moment1, floating* moment2,
                         Py_ssize_t step, floating* work, bint* interrupted) noexcept nogil:
    """``_sk_epoch`` for one hidden layer, on two cores with the hidden units cut in two.

    Part t owns units J_t and the parameters that touch only them (W1[:, J_t], b1[J_t],
    W2[J_t, :]; part 0 also b2), so parameters never cross between the cores; for the
    epoch it keeps them, their moments and their gradient in contiguous copies padded to
    whole vectors (``_units_pack``). One run of both parts per batch b: each part steps
    its parameters with batch b - 1's backward pass (``_units_backward``) and runs batch
    b's forward pass (``_units_forward``); then the caller forms Z2 = (P_0 + P_1) + b2
    from both partial outputs and takes the loss and delta of the whole output layer
    (only the m x k partials, b2 and delta cross between the cores). A last run steps the
    last batch and copies the parameters back. The run of batch b also gathers batch
    b + 1's rows (``_units_gather``), in two halves the threads take when done with their
    units, so the copies, as long as a tenth of the run (from X's rows in random order),
    leave the caller's serial work; the batches rotate among three buffers, since a run
    reads batch b - 1's rows and batch b's and writes batch b + 1's. Returns
    sum_B |B| L_B as ``_sk_epoch``; a pending signal sets *interrupted and stops the epoch
    after the batch it came in (its step taken).
    """
    cdef Py_ssize_t n_in = net.sizes[0], h = net.sizes[1], k = net.sizes[2]
    cdef Py_ssize_t n = data.n, batch_size = data.batch_size, b2_at = net.offsets[3]
    cdef const floating* X = <const floating*>data.X
    cdef const floating* Y = <const floating*>data.Y
    cdef const floating* sample_weight = <const floating*>data.sw
    cdef Py_ssize_t cut = _units_cut(net)
    # a part's units padded to whole vectors: to whole strips, one part did up to a
    # vector more than it needed (h = 100 in float64 with AVX2: 56 units against 48)
    cdef Py_ssize_t vec = BP_VBYTES // sizeof(floating)
    cdef floating* cursor = <floating*>_round_up(<Py_ssize_t>work, 64)
    cdef floating* zb
    cdef floating* p0
    cdef floating* p1
    cdef Units u
    cdef double total = 0, value, wsum
    cdef floating* ys
    cdef floating* sws
    cdef Py_ssize_t start = 0, m, i, j, b = 0
    cdef int t, a, q, parts
    u.net = net
    u.doubles = floating is double
    u.j0s[0], u.j0s[1], u.widths[0], u.widths[1] = 0, cut, cut, h - cut
    u.flats[0], u.flats[1], u.flats[2], u.flats[3] = params, moment1, moment2, grad
    u.l2[0] = u.l2[1] = 0
    u.X, u.Y, u.sw = X, Y, sample_weight
    for q in range(3):
        u.xs[q] = _take(&cursor, batch_size * n_in)
        u.ys[q] = _take(&cursor, batch_size * k)
        u.sws[q] = _take(&cursor, batch_size)
    zb = _take(&cursor, batch_size * k)
    u.delta = _take(&cursor, batch_size * k)
    for t in range(2):
        u.wps[t] = _round_up(u.widths[t], vec)
        u.a1s[t] = _take(&cursor, batch_size * u.wps[t])
        u.d1s[t] = _take(&cursor, batch_size * u.wps[t])
        u.partials[t] = _take(&cursor, batch_size * k)
        for a in range(4):
            u.parts[t][a] = _take(&cursor, _part_size(n_in, u.wps[t], k))
    p0, p1 = <floating*>u.partials[0], <floating*>u.partials[1]
    interrupted[0] = False
    u.jobs = PACK
    u.ms[0] = min(batch_size, n)
    _gather(X, Y, NULL, sample_weight, data.order, u.ms[0], n_in, k, <floating*>u.xs[0],
            <floating*>u.ys[0], NULL, <floating*>u.sws[0])
    while start < n:
        q = b % 3
        m = u.ms[q]
        ys, sws = <floating*>u.ys[q], <floating*>u.sws[q]
        wsum = m
        if sample_weight != NULL:  # as _gather sums it
            wsum = 0
            for i in range(m):
                wsum = wsum + sws[i]
        u.wsums[q] = wsum
        u.solvers[q] = s
        _solver_begin(&u.solvers[q], step + b + 1)
        u.batch = b
        u.jobs = u.jobs | FORWARD
        parts = UNITS_PARTS
        if start + m < n:
            u.ms[(b + 1) % 3] = min(batch_size, n - start - m)
            u.next_rows = data.order + start + m
            parts += GATHER_PARTS
        _team_run(parts, _units_part, &u, _team_size())
        for i in range(m * k):
            zb[i] = p0[i] + p1[i]
        for i in range(m):
            for j in range(k):
                zb[i * k + j] = zb[i * k + j] + params[b2_at + j]
        value = _output_delta(zb, ys, NULL, sws if sample_weight != NULL else NULL,
                              u.wsums[q], <floating*>u.delta, m, m, k, net.output, net.loss)
        total += value * m
        u.jobs = BACKWARD
        b += 1
        start += m
        if b % data.check_every == 0:
            with gil:
                if _check_signals() < 0:
                    interrupted[0] = True
                    break
    u.batch = b
    u.jobs = u.jobs | UNPACK
    _team_run(UNITS_PARTS, _units_part, &u, _team_size())
    return total + u.l2[0] + u.l2[1]
