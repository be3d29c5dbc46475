"""scikit-learn's MLP on sparse input, in NumPy: the estimators' path for CSR X.

The forward and backward passes are NumPy and scipy.sparse products in scikit-learn's
terms (its activation and loss names, weights (n_in, n_out) packed before all biases);
the step is scikit-learn's, term by term in NumPy, so that sparse fits equal
scikit-learn's bit for bit. Dense input never comes here: it trains in the compiled
plans and their solver family (``_kernels/_solvers.pxi``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, xlogy
from sklearn.utils.extmath import safe_sparse_dot

from . import _layout
from ._layout import Architecture


@dataclass
class Scratch:
    """The NumPy path's buffers for batches of up to ``rows`` samples."""

    activations: list  # activations[i + 1] is the output of layer i, (rows, units[i + 1])
    deltas: list  # deltas[i] is dLoss/dZ of layer i, (rows, units[i + 1])
    tmp: np.ndarray  # (rows * max(units[1:]),) for derivative factors and the loss
    update: np.ndarray  # (n_params,) optimizer step and L2 term
    denom: np.ndarray  # (n_params,) Adam denominator, Nesterov look-ahead
    y: np.ndarray | None = None
    sample_weight: np.ndarray | None = None

    @classmethod
    def allocate(cls, layer_units: Sequence[int], rows: int, dtype, gather: bool) -> Scratch:
        """``gather`` adds room for a gathered batch of Y and sample weights, which an
        epoch needs and the full-batch objective (which reads them in place) does not."""
        units = list(layer_units)
        n_params = _layout.n_params(units)
        scratch = cls(
            activations=[None] + [np.empty((rows, u), dtype=dtype) for u in units[1:]],
            deltas=[np.empty((rows, u), dtype=dtype) for u in units[1:]],
            tmp=np.empty(rows * max(units[1:]), dtype=dtype),
            update=np.empty(n_params, dtype=dtype),
            denom=np.empty(n_params, dtype=dtype),
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


def sum_squares(a) -> float:
    """sum a^2, accumulated in float64 whatever a's dtype."""
    a = np.asarray(a, dtype=np.float64).ravel()
    return float(np.dot(a, a))


def _dot(a, b, out):
    """out := a @ b, for a dense or sparse a."""
    if sp.issparse(a):
        out[...] = safe_sparse_dot(a, b)
    else:
        np.matmul(a, b, out=out)


def forward_backward(arch: Architecture, params, grad, scratch, x, y, sample_weight, names,
                     alpha):  # fmt: skip
    """Loss of one batch (mean data loss + alpha / (2 sum(sw)) sum_i ||W_i||^2);
    grad := its gradient (sum over the batch + alpha * W, over sum(sw)). ``names``:
    scikit-learn's (activation, out_activation, loss)."""
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
    squared_norm = sum(sum_squares(w) for w in coefs)
    # Sums in float64 whatever the dtype: a float32 sum of weights stops growing at 2^24.
    weight_sum = rows if sample_weight is None else float(sample_weight.sum(dtype=np.float64))
    batch_loss += (0.5 * alpha) * squared_norm / weight_sum

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
        penalty = scratch.update[: coefs[i].size].reshape(coefs[i].shape)
        np.multiply(coefs[i], alpha, out=penalty)
        coef_grads[i] += penalty
        coef_grads[i] /= weight_sum
        np.sum(deltas[i], axis=0, out=intercept_grads[i])
        intercept_grads[i] /= weight_sum
    return batch_loss


def run_epoch(arch, state, params, grad, scratch, X, Y, sample_weight, order, *,
              batch_size: int, names, alpha):  # fmt: skip
    """One epoch of mini-batch training of the network ``arch`` on (X, Y) in ``order``,
    updating ``params`` in place with scikit-learn's solver ``state.solver`` and the
    state of ``state.optimizer`` (``backprop.optim``: step size, moments, Adam's step
    count t, from which this epoch's steps count on); grad is left holding the last
    batch's gradient::

        sgd:   v := momentum v - lr g;  params += v, or with Nesterov
               params += momentum v - lr g
        adam:  t := t + batch number (from 1);  m := b1 m + (1 - b1) g;
               v := b2 v + (1 - b2) g^2;  lr_t := lr sqrt(1 - b2^t) / (1 - b1^t);
               params += -lr_t m / (sqrt(v) + epsilon), the step in float64

    in NumPy, term by term as scikit-learn writes them, so that sparse input trains to
    scikit-learn's numbers bit for bit (the compiled solvers of ``_solvers.pxi`` fuse
    multiply-adds). Returns the sum over batches of (batch loss x batch length).
    """
    opt = state.optimizer
    lr = opt.lr
    if state.solver == "adam":
        # Adam's step is formed in float64 whatever the dtype (as scikit-learn does):
        # m * lr_t / (sqrt(v) + eps) is then rounded once, when added to params.
        step64 = scratch.update if params.dtype == np.float64 else np.empty(params.shape)
    accumulated_loss = 0.0
    for batch, start in enumerate(range(0, order.shape[0], batch_size)):
        idx = order[start : start + batch_size]
        rows = idx.shape[0]
        x = X[idx]
        y = np.take(Y, idx, axis=0, out=scratch.y[:rows])
        sw = None
        if sample_weight is not None:
            sw = np.take(sample_weight, idx, out=scratch.sample_weight[:rows])
        batch_loss = forward_backward(arch, params, grad, scratch, x, y, sw, names, alpha)
        accumulated_loss += batch_loss * rows

        update, denom = scratch.update, scratch.denom
        if state.solver == "sgd":
            velocity = opt.moment1
            np.multiply(grad, lr, out=update)
            velocity *= opt.momentum
            velocity -= update
            if opt.nesterov:
                np.multiply(velocity, opt.momentum, out=denom)
                denom -= update
                params += denom
            else:
                params += velocity
        else:
            t = opt.t + batch + 1
            step_size = lr * math.sqrt(1 - opt.beta_2**t) / (1 - opt.beta_1**t)
            m, v = opt.moment1, opt.moment2
            m *= opt.beta_1
            np.multiply(grad, 1 - opt.beta_1, out=update)
            m += update
            v *= opt.beta_2
            np.multiply(grad, grad, out=update)
            update *= 1 - opt.beta_2
            v += update
            np.sqrt(v, out=denom)
            denom += opt.epsilon
            np.multiply(m, -step_size, out=step64, dtype=np.float64)
            step64 /= denom
            params += step64
    return accumulated_loss


def loss_grad(arch, params, grad, scratch, X, Y, sample_weight, *, names, alpha):
    """The full-batch objective, ``run_epoch``'s loss over all of X at once: returns it,
    grad := its gradient."""
    return forward_backward(arch, params, grad, scratch, X, Y, sample_weight, names, alpha)
