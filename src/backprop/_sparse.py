"""scikit-learn's MLP on sparse input, in NumPy: the estimators' path for CSR X.

The forward and backward passes are NumPy and scipy.sparse products in scikit-learn's
terms (its activation and loss names, weights (n_in, n_out) packed before all biases);
the step is the compiled solver family's (``_core.Plan.step``), the same as dense
input's. Dense input never comes here: it trains in the compiled plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, xlogy
from sklearn.utils.extmath import safe_sparse_dot

from ._layout import Architecture


@dataclass
class Scratch:
    """The NumPy path's buffers for batches of up to ``rows`` samples."""

    activations: list  # activations[i + 1] is the output of layer i, (rows, units[i + 1])
    deltas: list  # deltas[i] is dLoss/dZ of layer i, (rows, units[i + 1])
    tmp: np.ndarray  # (rows * max(units[1:]),) for derivative factors and the loss
    y: np.ndarray | None = None
    sample_weight: np.ndarray | None = None

    @classmethod
    def allocate(cls, layer_units: Sequence[int], rows: int, dtype, gather: bool) -> Scratch:
        """``gather`` adds room for a gathered batch of Y and sample weights, which an
        epoch needs and the full-batch objective (which reads them in place) does not."""
        units = list(layer_units)
        scratch = cls(
            activations=[None] + [np.empty((rows, u), dtype=dtype) for u in units[1:]],
            deltas=[np.empty((rows, u), dtype=dtype) for u in units[1:]],
            tmp=np.empty(rows * max(units[1:]), dtype=dtype),
        )
        if gather:
            scratch.y = np.empty((rows, units[-1]), dtype=dtype)
            scratch.sample_weight = np.empty(rows, dtype=dtype)
        return scratch


def activate(name: str, z: np.ndarray) -> None:
    """z := act(z), in place."""
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    elif name == "logistic":
        expit(z, out=z)
    elif name == "exp":
        np.exp(z, out=z)
    elif name == "softmax":
        # Shifting by the row maximum keeps exp from overflowing; the ratio is unchanged.
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)


def _apply_derivative(name: str, a: np.ndarray, delta: np.ndarray, tmp: np.ndarray) -> None:
    """delta := delta * act'(z), with the derivative written from the output a = act(z)."""
    if name == "relu":
        # a >= 0, so sign(a) is 1 where the unit is active and 0 where it is not.
        np.sign(a, out=tmp)
        delta *= tmp
    elif name == "tanh":
        np.multiply(a, a, out=tmp)
        np.subtract(1, tmp, out=tmp)
        delta *= tmp
    elif name == "logistic":
        delta *= a
        np.subtract(1, a, out=tmp)
        delta *= tmp


def _data_loss(loss: str, y: np.ndarray, p: np.ndarray, sw, tmp: np.ndarray):
    """Mean loss of the predictions p for the targets y, weighted by sw if given.

    Evaluated in float64 whatever the dtype of p (``tmp``, of p's shape, is used as
    scratch when that is float64). ``squared_error`` is half the squared error
    averaged over outputs (its gradient, p - y, is that of the sum over outputs: the
    two differ by the number of outputs, as in scikit-learn); ``poisson`` half the
    Poisson deviance summed over outputs; the log losses clip probabilities to
    [eps, 1 - eps] of p's dtype before taking logarithms.
    """
    out = tmp if tmp.dtype == np.float64 else None
    if loss == "squared_error":
        diff = np.subtract(y, p, out=out, dtype=np.float64)
        np.multiply(diff, diff, out=diff)
        return 0.5 * np.average(diff, weights=sw, axis=0).mean()
    if loss == "poisson":
        terms = xlogy(y, np.divide(y, p, dtype=np.float64), out=out, dtype=np.float64)
        return np.average(terms - y + p, weights=sw, axis=0).sum()
    eps = np.finfo(p.dtype).eps
    q = np.clip(p, eps, 1 - eps, out=tmp)
    if loss == "binary_log_loss":
        terms = xlogy(y, q, dtype=np.float64) + xlogy(1 - y, 1 - q, dtype=np.float64)
    else:
        terms = xlogy(y, q, out=out, dtype=np.float64)
    return -np.average(terms, weights=sw, axis=0).sum()


def _dot(a, b, out):
    """out := a @ b, for a dense or sparse a."""
    if sp.issparse(a):
        out[...] = safe_sparse_dot(a, b)
    else:
        np.matmul(a, b, out=out)


def forward_backward(arch: Architecture, params, grad, scratch, x, y, sample_weight, names):
    """The data loss of one batch (mean over samples); grad := its gradient summed over
    the batch's sample-weighted rows (the solver adds the L2 term and divides by the
    weight sum). ``names``: scikit-learn's (activation, out_activation, loss)."""
    activation, out_activation, loss = names
    coefs, intercepts = arch.weights(params), arch.biases(params)
    coef_grads, intercept_grads = arch.weights(grad), arch.biases(grad)
    n_layers = len(coefs)
    rows = x.shape[0]
    acts = [x] + [a[:rows] for a in scratch.activations[1:]]
    deltas = [d[:rows] for d in scratch.deltas]

    for i in range(n_layers):
        _dot(acts[i], coefs[i], acts[i + 1])
        acts[i + 1] += intercepts[i]
        activate(out_activation if i == n_layers - 1 else activation, acts[i + 1])

    out = acts[-1]
    batch_loss = _data_loss(loss, y, out, sample_weight, scratch.tmp[: out.size].reshape(out.shape))

    # With a canonical link (identity/squared, logistic/binary log loss, softmax/log
    # loss, exp/Poisson) the output delta is simply prediction - target.
    np.subtract(out, y, out=deltas[-1])
    if sample_weight is not None:
        deltas[-1] *= sample_weight[:, np.newaxis]
    for i in range(n_layers - 1, -1, -1):
        if i < n_layers - 1:
            np.matmul(deltas[i + 1], coefs[i + 1].T, out=deltas[i])
            tmp = scratch.tmp[: deltas[i].size].reshape(deltas[i].shape)
            _apply_derivative(activation, acts[i + 1], deltas[i], tmp)
        if sp.issparse(acts[i]):
            coef_grads[i][...] = safe_sparse_dot(acts[i].T, deltas[i])
        else:
            np.matmul(acts[i].T, deltas[i], out=coef_grads[i])
        np.sum(deltas[i], axis=0, out=intercept_grads[i])
    return batch_loss


def _weight_sum(rows: int, sample_weight):
    return rows if sample_weight is None else sample_weight.sum()


def run_epoch(arch, plan, optimizer, params, grad, scratch, X, Y, sample_weight, order, *,
              batch_size: int, names):  # fmt: skip
    """One epoch of mini-batch training of the network ``arch`` on (X, Y) in ``order``,
    updating ``params`` in place by ``plan``'s solver with ``optimizer``'s state (Adam's
    step t counting on from optimizer.t); grad is left holding the last batch's
    gradient. Returns the sum over batches of (batch loss x batch length), the loss
    with scikit-learn's L2 term alpha / (2 sum(sw)) sum_i ||W_i||^2."""
    accumulated_loss = 0.0
    for batch, start in enumerate(range(0, order.shape[0], batch_size)):
        idx = order[start : start + batch_size]
        rows = idx.shape[0]
        x = X[idx]
        y = np.take(Y, idx, axis=0, out=scratch.y[:rows])
        sw = None
        if sample_weight is not None:
            sw = np.take(sample_weight, idx, out=scratch.sample_weight[:rows])
        batch_loss = forward_backward(arch, params, grad, scratch, x, y, sw, names)
        wsum = _weight_sum(rows, sw)
        sq = plan.step(params, grad, optimizer, wsum=wsum, t=optimizer.t + batch + 1)
        accumulated_loss += (batch_loss + 0.5 * optimizer.decay * sq / wsum) * rows
    return accumulated_loss


def loss_grad(arch, plan, objective, params, grad, scratch, X, Y, sample_weight, *, names):
    """The full-batch objective, ``run_epoch``'s loss over all of X at once: returns it,
    grad := its gradient. ``objective`` is the ``optim.GradientOnly`` of the L2 term."""
    data_loss = forward_backward(arch, params, grad, scratch, X, Y, sample_weight, names)
    wsum = _weight_sum(X.shape[0], sample_weight)
    sq = plan.step(params, grad, objective, wsum=wsum, t=1)
    return data_loss + 0.5 * objective.decay * sq / wsum
