"""The estimators on data in Dask collections: the model goes to the data.

``fit`` with a ``dask.array`` (or dask dataframe) X keeps every partition on the worker
that holds it. Each partition is cast and its targets encoded there, once, and persisted
(``Partitions``); then

- L-BFGS (``objective``): each evaluation sends the weights out (inside each task, or
  broadcast for a model over BROADCAST_BYTES), every partition's sums of losses and
  gradients are computed where it lives with the compiled kernels, and the client adds
  them in partition order and runs scipy's L-BFGS on them:

      L(theta) = (sum_p S_p + alpha / 2 ||W||^2) / sum_p w_p,
      dL/dtheta = (sum_p G_p + alpha W) / sum_p w_p,

  with S_p, G_p the sample-weighted sums of partition p's losses and gradients and w_p
  its sum of sample weights: scikit-learn's objective over the concatenated data, summed
  in another order (the fitted model agrees to rounding, amplified by L-BFGS);
- sgd and adam (``epoch_runner``): each epoch is a chain of tasks, one per partition,
  each run where its partition lives, carrying the weights, the optimizer's state and
  the rows of a batch that straddles two partitions. With ``shuffle=False`` the batches
  are exactly those of a fit on the concatenated data; with shuffling, the partitions
  are visited in a random order and each one's rows shuffled within it, both drawn
  from the estimator's random state.

Only weights, gradients, optimizer state and at most one batch of rows cross the
network; the client never gathers X. ``predict`` and its kin map the fitted estimator
over X's blocks lazily (``predict``). A lost worker's partitions are recomputed by Dask
from X's graph, and a step whose results were lost with it runs again from the client's
state (``_retrying``); a step that keeps failing makes ``fit`` raise.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import optim
from ._sk_training import _architecture


def is_dask(obj: Any) -> bool:
    """Whether ``obj`` is a Dask collection (array, dataframe or series), without
    importing Dask."""
    return type(obj).__module__.split(".")[0] == "dask" and hasattr(obj, "__dask_graph__")


def _client():
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - dask without distributed
        raise ImportError(
            'fitting on Dask collections needs dask.distributed: pip install "backprop[dask]"'
        ) from None
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "fitting on Dask collections needs a dask.distributed Client: create one "
            "(Client() for a local cluster, Client('tcp://scheduler:8786') for an existing "
            "one) before calling fit"
        ) from None


def as_array(data, name: str, lengths: bool = True):
    """A dask array of ``data`` (dask arrays as they are; dataframes and series with
    their partitions' lengths computed, which reads no data to the client, or left
    unknown with ``lengths=False``, which computes nothing)."""
    import dask.array as da

    if isinstance(data, da.Array):
        return data
    if hasattr(data, "to_dask_array"):
        return data.to_dask_array(lengths=True) if lengths else data.to_dask_array()
    raise TypeError(f"{name}: expected a dask array, dataframe or series, got {type(data)}")


# --------------------------------------------------------------------------------------
# The partitions, persisted where they are
# --------------------------------------------------------------------------------------


@dataclass
class Partitions:
    """The training data as futures of ``(X_p, Y_p, sw_p)`` blocks on the workers, in
    row order, with each one's row count."""

    client: Any
    blocks: list
    rows: list[int]
    n_features: int
    n_outputs: int
    weighted: bool
    dtype: np.dtype

    @property
    def n_samples(self) -> int:
        return sum(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.n_features)

    def release(self) -> None:
        for block in self.blocks:
            block.release()


def _encode_block(raw, *, dtype, classes, n_outputs):
    """One partition as the kernels take it: X and sample weights C-contiguous in the
    dtype; Y the targets as columns, one-hot (or one column for two classes) for a
    classifier, as scikit-learn's LabelBinarizer encodes them."""
    X, y, sw = raw
    X = np.ascontiguousarray(X, dtype=dtype)
    y = np.asarray(y)
    if classes is not None:
        y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1:
            raise ValueError("a classifier fitted on Dask collections takes 1-d labels")
        index = np.searchsorted(classes, y)
        index[index >= len(classes)] = 0
        if not np.array_equal(classes[index], y):
            raise ValueError(f"y holds labels outside the classes {classes}")
        Y = np.zeros((len(y), n_outputs), dtype=dtype)
        if n_outputs == 1:
            Y[:, 0] = index == 1
        else:
            Y[np.arange(len(y)), index] = 1
    else:
        Y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("Input X or y contains NaN or infinity.")
    if sw is not None:
        sw = np.ascontiguousarray(sw, dtype=dtype)
        if not np.isfinite(sw).all():
            raise ValueError("Input sample_weight contains NaN or infinity.")
    return X, Y, sw


def _raw_block(X, y, sw):
    return X, y, sw


def _labels(block) -> np.ndarray:
    """The distinct labels of one persisted partition."""
    y = np.asarray(block[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError("a classifier fitted on Dask collections takes 1-d labels")
    return np.unique(y)


def persist(X, y, sample_weight, *, dtype, classes=None) -> Partitions:
    """Computes the partitions of (X, y, sample_weight) on the workers and keeps them
    there, cast and encoded (``_encode_block``); checks their shapes. ``classes``, for a
    classifier: called with the sorted labels found in y (gathered from the partitions'
    distinct labels), returns the classes to encode them by."""
    import dask

    client = _client()
    X = as_array(X, "X")
    y = as_array(y, "y")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-d dask array X, got {X.ndim} dimension(s)")
    if y.ndim not in (1, 2):
        raise ValueError(f"y should be a 1-d or 2-d dask array, got {y.ndim} dimensions")
    if math.isnan(X.shape[0]) or X.shape[0] != y.shape[0]:
        unknown = math.isnan(X.shape[0]) or math.isnan(y.shape[0])
        raise ValueError(
            f"X and y need the same known number of rows, got {X.shape[0]} and {y.shape[0]}"
            + (
                " (chunk sizes unknown, as after boolean indexing: call "
                "compute_chunk_sizes() on the dask arrays first)"
                if unknown
                else ""
            )
        )
    X = X.rechunk({1: -1})
    y = y.rechunk({0: X.chunks[0], **({1: -1} if y.ndim == 2 else {})})
    sw_blocks = [None] * len(X.chunks[0])
    if sample_weight is not None:
        distributed = is_dask(sample_weight)
        sw = as_array(sample_weight, "sample_weight") if distributed else np.asarray(sample_weight)
        if sw.shape != (X.shape[0],):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(X.shape[0],)}")
        if distributed:
            sw_blocks = list(sw.rechunk({0: X.chunks[0]}).to_delayed().ravel())
        else:
            bounds = np.cumsum((0,) + X.chunks[0])
            sw_blocks = [sw[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    rows = [int(r) for r in X.chunks[0]]
    if not any(rows):
        raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
    block = dask.delayed(_raw_block, pure=True)
    parts = zip(X.to_delayed().ravel(), y.to_delayed().ravel(), sw_blocks, rows)
    raw = client.compute([block(xb, yb, sb) for xb, yb, sb, r in parts if r > 0])
    rows = [r for r in rows if r > 0]
    blocks = []
    try:
        if classes is not None:
            found = client.gather(client.map(_labels, raw, pure=False))
            classes = np.asarray(classes(np.unique(np.concatenate(found))))
            n_outputs = 1 if len(classes) <= 2 else len(classes)
        else:
            n_outputs = 1 if y.ndim == 1 else int(y.shape[1])
        blocks = client.map(
            _encode_block, raw, dtype=np.dtype(dtype), classes=classes, n_outputs=n_outputs
        )
        checks = client.map(_check_block, blocks, pure=False)
        try:
            client.gather(checks)  # raises the first error
        finally:
            for future in checks:
                future.release()
    except BaseException:
        # the partitions that passed would stay on the workers as long as the
        # traceback (kept by an interactive session) holds these futures
        for future in blocks:
            future.release()
        raise
    finally:
        for future in raw:
            future.release()
    return Partitions(
        client=client,
        blocks=blocks,
        rows=rows,
        n_features=int(X.shape[1]),
        n_outputs=n_outputs,
        weighted=sample_weight is not None,
        dtype=np.dtype(dtype),
    )


def _check_block(block) -> None:
    """Nothing: a task that depends on an encoded partition, so that a partition that
    failed its checks raises its error in ``fit`` at once."""


#: How many times a step whose results were lost with a worker is run again.
RETRIES = 2


def _retrying(step, what: str):
    """``step()``, run again from the client's state when a worker's loss cancelled its
    results (Dask recomputes lost partitions from their graph); raises RuntimeError after
    RETRIES more tries."""
    from distributed.client import FutureCancelledError

    for attempt in range(RETRIES + 1):
        try:
            return step()
        except FutureCancelledError as error:
            if attempt == RETRIES:
                raise RuntimeError(
                    f"{what} on the Dask cluster failed {RETRIES + 1} times: results were "
                    f"lost with the workers that held them ({error}); the model is left as "
                    "it was before it"
                ) from error


# --------------------------------------------------------------------------------------
# L-BFGS: the partitions' sums, added on the client
# --------------------------------------------------------------------------------------


#: Weights up to this size go to the workers inside each task, larger ones by broadcast.
BROADCAST_BYTES = 1 << 20

#: Rows per compiled call of a partition's objective: bounds a worker's workspace (the
#: activations of that many rows) whatever the partitions' size.
OBJECTIVE_ROWS = 65536


def _network(est, layer_units) -> tuple:
    """The arguments of ``_architecture`` for the estimator's network: what the workers
    rebuild it from (small, and hashable for their plan cache)."""
    return (
        tuple(layer_units),
        est._params.dtype.str,
        est.activation,
        est.out_activation_,
        est._loss_name(),
    )


@functools.lru_cache(maxsize=8)
def _objective_plan(network, rows):
    """A worker's compiled plan for a partition's objective (kept between iterations)."""
    return _architecture(*network).plan(rows, optimizer=optim.GradientOnly(0.0), two_cores=False)


def _partition_sums(block, params, network):
    """(S_p, G_p, w_p) of one partition: its sample-weighted loss and gradient sums and
    its weight sum, from the kernels' means (alpha = 0) over OBJECTIVE_ROWS rows at a
    time, each scaled back by its weight sum."""
    X, Y, sw = block
    rows = min(X.shape[0], OBJECTIVE_ROWS)
    plan = _objective_plan(network, rows)
    grad = np.empty_like(params)
    loss, gradient, weight = 0.0, np.zeros(params.shape[0]), 0.0
    for a in range(0, X.shape[0], rows):
        part = None if sw is None else sw[a : a + rows]
        mean = plan.sk_objective(params, X[a : a + rows], Y[a : a + rows], part, grad)
        w = float(min(rows, X.shape[0] - a) if part is None else np.sum(part, dtype=np.float64))
        loss += mean * w
        gradient += grad * w
        weight += w
    return loss, gradient, weight


def objective(est, data: Partitions, layer_units):
    """L-BFGS's objective over the partitions: ``loss_grad(params, grad)`` as
    ``_BaseMLP._objective`` returns it (see the module docstring)."""
    dtype = est._params.dtype
    arch = est._architecture(layer_units)
    decayed = np.zeros(arch.n_params, dtype=np.float64)
    for w in arch.weights(decayed):
        w[...] = 1.0
    network = _network(est, layer_units)
    client, alpha = data.client, float(est.alpha)

    def loss_grad(params, grad):
        theta = np.array(params, dtype=dtype)
        # a small model travels inside each task (one round trip); a large one is
        # broadcast to the workers once
        sent = (
            theta
            if theta.nbytes <= BROADCAST_BYTES
            else client.scatter(theta, broadcast=True, hash=False)
        )

        def evaluate():
            parts = client.map(
                _partition_sums, data.blocks, params=sent, network=network, pure=False
            )
            return client.gather(parts)

        try:
            sums = _retrying(evaluate, "an evaluation of the objective")
        finally:
            if sent is not theta:
                sent.release()
        total, gradient, weight = 0.0, np.zeros(arch.n_params), 0.0
        for s, g, w in sums:  # in partition order
            total += s
            gradient += g
            weight += w
        theta = np.asarray(params, dtype=np.float64)
        value = (total + 0.5 * alpha * float(np.dot(theta * decayed, theta))) / weight
        grad[...] = (gradient + alpha * decayed * theta) / weight
        return value

    return loss_grad


# --------------------------------------------------------------------------------------
# sgd and adam: each epoch a chain of tasks over the partitions
# --------------------------------------------------------------------------------------


@dataclass
class _Carry:
    """What one partition's task hands the next: the weights, the optimizer's state, the
    rows of a batch begun and not finished, the epoch's summed loss, and the last
    batch's gradient."""

    params: np.ndarray
    optimizer: optim.Optimizer
    X: np.ndarray
    Y: np.ndarray
    sw: np.ndarray | None
    loss: float
    grad: np.ndarray | None


def _run(arch, batch_size, carry, X, Y, sw, order):
    """sk_epoch over ``order``'s rows of (X, Y, sw) in batches, stepping ``carry``."""
    if len(order) == 0:
        return
    plan = arch.plan(batch_size, optimizer=carry.optimizer, gather=True)
    carry.loss += plan.sk_epoch(carry.params, X, Y, sw, order, optimizer=carry.optimizer)
    carry.optimizer.t += -(-len(order) // batch_size)
    carry.grad = np.array(plan.grad)


def _partition_epoch(carry: _Carry, block, order, network, batch_size, last):
    """One partition's part of an epoch, where the partition lives: the batch the last
    partition left unfinished is completed with this one's first rows, then this one's
    whole batches are run in place; the rows left over go on to the next partition (the
    last partition runs them as the epoch's last batch). The inputs are not changed:
    Dask may hand the same objects to a recomputation."""
    X, Y, sw = block
    arch = _architecture(*network)
    carry = copy.deepcopy(carry)
    order = np.arange(X.shape[0], dtype=np.intp) if order is None else order
    done = 0
    if len(carry.X):
        head = order[: batch_size - len(carry.X)]
        done = len(head)
        carry.X = np.concatenate([carry.X, X[head]])
        carry.Y = np.concatenate([carry.Y, Y[head]])
        carry.sw = None if sw is None else np.concatenate([carry.sw, sw[head]])
        if len(carry.X) < batch_size and not (last and done == len(order)):
            return carry  # this partition did not finish the batch
        batch = np.arange(len(carry.X), dtype=np.intp)
        _run(arch, batch_size, carry, carry.X, carry.Y, carry.sw, batch)
        carry.X, carry.Y = carry.X[:0], carry.Y[:0]
        carry.sw = None if carry.sw is None else carry.sw[:0]
    rest = order[done:]
    whole = len(rest) if last else len(rest) // batch_size * batch_size
    _run(arch, batch_size, carry, X, Y, sw, rest[:whole])
    tail = rest[whole:]
    if len(tail):
        carry.X, carry.Y = X[tail], Y[tail]
        carry.sw = None if sw is None else sw[tail]
    return carry


def epoch_runner(est, data: Partitions, state, layer_units, batch_size):
    """One epoch over the partitions: returns ``(run, grad)`` as ``_epoch_runner`` does;
    ``run(shuffle)`` trains one epoch and returns its summed loss, drawing the visiting
    order and each partition's row order from the estimator's random state when
    ``shuffle`` is set."""
    params, dtype = est._params, est._params.dtype
    network = _network(est, layer_units)
    grad = np.zeros_like(params)
    n_features, n_outputs = data.n_features, data.n_outputs
    client = data.client

    def run(shuffle: bool) -> float:
        visit = list(range(len(data.blocks)))
        orders: list[np.ndarray | None] = [None] * len(visit)
        if shuffle:
            est._random_state.shuffle(visit)
            for p in visit:
                order = np.arange(data.rows[p], dtype=np.intp)
                est._random_state.shuffle(order)
                orders[p] = order
        start_t = state.optimizer.t
        carry = _Carry(
            params=params.copy(),
            optimizer=state.optimizer,
            X=np.empty((0, n_features), dtype=dtype),
            Y=np.empty((0, n_outputs), dtype=dtype),
            sw=None,
            loss=0.0,
            grad=None,
        )
        if data.weighted:
            carry.sw = np.empty(0, dtype=dtype)

        def epoch():
            # the first task holds the epoch's starting state itself, not a scattered
            # copy: a lost worker's results can then always be recomputed
            future = carry
            for i, p in enumerate(visit):
                last = i == len(visit) - 1
                future = client.submit(
                    _partition_epoch, future, data.blocks[p], orders[p], network, batch_size,
                    last, pure=False,
                )  # fmt: skip
            return client.gather(future)

        carry = _retrying(epoch, "an epoch")
        params[...] = carry.params
        state.optimizer = carry.optimizer
        state.optimizer.t = start_t  # _OptimizerState.epoch_ends counts the epoch's steps
        if carry.grad is not None:
            grad[...] = carry.grad
        return carry.loss

    return run, grad


# --------------------------------------------------------------------------------------
# Prediction, lazily
# --------------------------------------------------------------------------------------


def predict(est, method: str, X):
    """``est.<method>`` mapped over the blocks of a dask X: a dask array, nothing computed
    (for a dataframe, the partitions' lengths are left unknown). A dataframe's columns
    are checked against the names seen in fit, as scikit-learn checks a pandas X's."""
    frame = X
    X = as_array(X, "X", lengths=False)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-d dask array X, got {X.ndim} dimension(s)")
    if hasattr(frame, "columns") and hasattr(frame, "_meta"):
        from sklearn.utils.validation import _check_feature_names

        _check_feature_names(est, frame._meta, reset=False)
    X = X.rechunk({1: -1})
    if X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )
    sample = _predict_block(est, method, np.zeros((1, X.shape[1]), dtype=X.dtype))
    call = functools.partial(_predict_block, est, method)
    if sample.ndim == 1:
        return X.map_blocks(call, drop_axis=1, dtype=sample.dtype, meta=sample[:0])
    return X.map_blocks(
        call, chunks=(X.chunks[0], (sample.shape[1],)), dtype=sample.dtype, meta=sample[:0]
    )


def _predict_block(est, method, block):
    # the blocks are arrays: a model fitted on a dataframe would warn of their lack of
    # feature names on every block
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return getattr(est, method)(block)
