"""What runs around a scikit-learn estimator's epochs: its network in scikit-learn's
layout, the epoch runner (a compiled plan for dense X, NumPy for sparse X), the
stochastic solver's state and learning-rate schedule, and what callbacks and progress
output see after each epoch."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from . import _layout, _names, _sparse, optim

# --------------------------------------------------------------------------------------
# Flat parameter layout
# --------------------------------------------------------------------------------------


def _architecture(layer_units: Sequence[int], dtype, activation: str = "identity",
                  out_activation: str = "identity", loss: str = "squared_error"):  # fmt: skip
    """The network in scikit-learn's layout: W_i (n_in, n_out) packed before all b_i."""
    sizes = tuple(int(u) for u in layer_units)
    return _cached_architecture(sizes, np.dtype(dtype), activation, out_activation, loss)


@lru_cache(maxsize=64)
def _cached_architecture(sizes, dtype, activation, out_activation, loss):
    # (a prediction of a few rows would otherwise spend as long building the layout's
    # offsets as computing the outputs)
    return _layout.Architecture(
        sizes=sizes,
        hidden=int(_names.SK_ACTIVATIONS[activation]),
        output=int(_names.SK_ACTIVATIONS[out_activation]),
        loss=int(_names.SK_LOSSES[loss]),
        dtype=dtype,
        transposed=True,
        grouped=True,
    )


def _unflatten(flat: np.ndarray, layer_units: Sequence[int]):
    """Views ``(coefs, intercepts)`` into ``flat``, in scikit-learn's shapes."""
    arch = _architecture(layer_units, flat.dtype)
    return arch.weights(flat), arch.biases(flat)


def _dense_inputs(X, Y, sample_weight, dtype):
    """X, Y and sample weights as the compiled kernels take them, or None for sparse X."""
    if sp.issparse(X):
        return None
    return (
        np.ascontiguousarray(X, dtype=dtype),
        np.ascontiguousarray(Y, dtype=dtype),
        None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=dtype),
    )


def _epoch_runner(params, state, X, Y, sample_weight, *, arch, batch_size, activation,
                  out_activation, loss):  # fmt: skip
    """One epoch of mini-batch training, with everything that stays the same from epoch
    to epoch bound once: returns ``(run, grad)``, ``run(order)`` -> the epoch's summed
    loss, ``grad`` the array that holds the last batch's gradient after it.

    Dense X runs in the compiled plan (``_core.Plan.sk_epoch``: every batch of the epoch
    in one call, without the GIL); sparse X in ``_sparse.run_epoch``. The step size,
    moments, step count and L2 coefficient (scikit-learn's alpha) are
    ``state.optimizer``'s.
    """
    optimizer = state.optimizer
    dense = _dense_inputs(X, Y, sample_weight, params.dtype)
    if dense is None:
        grad = np.zeros_like(params)
        scratch = _sparse.Scratch.allocate(arch.sizes, batch_size, params.dtype, gather=True)
        names = (activation, out_activation, loss)

        def run_sparse(order):
            return _sparse.run_epoch(arch, state, params, grad, scratch, X, Y, sample_weight,
                                     order, batch_size=batch_size, names=names,
                                     alpha=optimizer.weight_decay)  # fmt: skip

        return run_sparse, grad
    plan = arch.plan(batch_size, optimizer=optimizer, gather=True)
    X, Y, sw = dense

    def run(order):
        return plan.sk_epoch(params, X, Y, sw, order, optimizer=optimizer)

    return run, plan.grad


# --------------------------------------------------------------------------------------
# Optimizer state, progress and callbacks
# --------------------------------------------------------------------------------------


@dataclass
class _OptimizerState:
    """The stochastic solver: a ``backprop.optim`` optimizer (its step size, moments and
    step count, in the estimator's flat layout) and scikit-learn's learning-rate
    schedule around it.

    ``fit`` creates a fresh state; ``partial_fit`` keeps the existing one, so the
    velocity, Adam's moments and step counter, and the current learning rate carry
    over from call to call.
    """

    solver: str
    optimizer: optim.Optimizer
    learning_rate_init: float
    lr_schedule: str
    power_t: float

    @classmethod
    def create(cls, est, n_params, dtype):
        if est.solver == "adam":
            optimizer = optim.Adam(
                est.learning_rate_init,
                (est.beta_1, est.beta_2),
                est.epsilon,
                convention="scikit-learn",
            )
        else:
            optimizer = optim.SGD(est.learning_rate_init, est.momentum, est.nesterovs_momentum,
                                  convention="scikit-learn")  # fmt: skip
        return cls(
            solver=est.solver,
            optimizer=optimizer.init_state(n_params, dtype),
            learning_rate_init=est.learning_rate_init,
            lr_schedule=est.learning_rate,
            power_t=est.power_t,
        )

    @property
    def t(self) -> int:
        """Steps taken (Adam's bias correction counts them)."""
        return self.optimizer.t

    @property
    def learning_rate(self) -> float:
        """The step size the next epoch starts with ('sgd'; 'adam' scales it by its bias
        correction at each step, in the compiled solver)."""
        return self.optimizer.lr

    def epoch_ends(self, n_batches, samples_seen):
        if self.solver == "adam":
            self.optimizer.t += n_batches
        elif self.lr_schedule == "invscaling":
            self.optimizer.lr = float(self.learning_rate_init) / (samples_seen + 1) ** self.power_t

    def should_stop(self, reason, progress) -> bool:
        """Called when the loss stopped improving: stop, or (adaptive sgd) shrink the rate."""
        if self.solver == "adam" or self.lr_schedule != "adaptive":
            progress.message(f"{reason} Stopping.")
            return True
        if self.optimizer.lr <= 1e-6:
            progress.message(f"{reason} Learning rate too small. Stopping.")
            return True
        self.optimizer.lr /= 5.0
        progress.message(f"{reason} Setting learning rate to {self.optimizer.lr:f}")
        return False


@dataclass(frozen=True)
class EpochInfo:
    """What a callback receives after each epoch (each iteration for ``solver='lbfgs'``).

    ``epoch`` counts from 1 within the current call to ``fit``/``partial_fit``;
    ``loss`` is that epoch's training loss; ``validation_score`` the held-out score
    when ``early_stopping=True``, else None; ``grad_norms`` the Euclidean norm of the
    gradient of each layer's weights and bias together, input layer first (for
    stochastic solvers, of the epoch's last mini-batch).
    """

    epoch: int
    loss: float
    validation_score: float | None
    grad_norms: tuple[float, ...]


def _grad_norms(grad, layer_units):
    coef_grads, intercept_grads = _unflatten(grad, layer_units)
    return tuple(
        math.sqrt(_sparse.sum_squares(gw) + _sparse.sum_squares(gb))
        for gw, gb in zip(coef_grads, intercept_grads)
    )


class _Progress:
    """Progress output. ``verbose`` prints what scikit-learn's MLP prints, on stdout:
    ``Iteration N, loss = ...`` after each epoch of a stochastic solver, the validation
    score with early stopping, and why training stopped ('lbfgs' leaves its output to
    scipy). ``progress_bar`` draws a tqdm bar on stderr, an epoch ('lbfgs': an
    iteration) a step; the lines then go through the bar, which keeps them apart."""

    def __init__(self, verbose, progress_bar, total):
        self.verbose = bool(verbose)
        self.bar = None
        if progress_bar:
            try:
                from tqdm.auto import tqdm
            except ImportError as err:
                raise ImportError(
                    'progress_bar=True needs tqdm; install it with "pip install tqdm".'
                ) from err
            self.bar = tqdm(total=total, unit="epoch", leave=True)

    def epoch(self, n_iter, loss, validation_score=None, lines=True):
        """After epoch (iteration) ``n_iter``; ``lines=False`` updates the bar only."""
        if self.bar is not None:
            postfix = {"loss": f"{loss:.6f}"}
            if validation_score is not None:
                postfix["validation"] = f"{validation_score:.4f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        if lines:
            self.message(f"Iteration {n_iter}, loss = {loss:.8f}")
            if validation_score is not None:
                self.message(f"Validation score: {validation_score:f}")

    def message(self, text):
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _run_callbacks(callbacks, info) -> bool:
    """Call every callback; True when any of them asks to stop."""
    stop = False
    for cb in callbacks:
        stop = bool(cb(info)) or stop
    return stop
