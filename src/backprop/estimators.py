"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for the estimators of the same names in
``sklearn.neural_network`` (scikit-learn 1.9): the same parameters, attributes and
validation, and the same fitted model for the same data, parameters and
``random_state`` -- the weights are drawn from the same random stream, the batches
come in the same order, and every update computes the same terms in the same order.
Two parameters are added: ``dtype`` (the floating type of the network) and
``callbacks`` (called after each epoch, able to stop training).

Design
------
All parameters of a network live in one flat vector, laid out as scikit-learn packs
them for L-BFGS (``backprop._layout``, ``grouped``)::

    params = [W_0.ravel(), ..., W_{L-1}.ravel(), b_0, ..., b_{L-1}]

with ``W_i`` of shape ``(units[i], units[i + 1])`` in C order and ``b_i`` of length
``units[i + 1]``. ``coefs_`` and ``intercepts_`` are views into it. Gradients and the
optimizer state (``backprop.optim``: SGD's velocity, Adam's moments) use the same layout.

Training reduces to two functions over flat arrays, each bound once per fit:

``_epoch_runner``
    every mini-batch step of one epoch: gather, forward, loss, backward, update;
``_BaseMLP._objective``
    the full-batch loss and gradient, the objective handed to L-BFGS.

The estimator owns the bookkeeping (validation, schedules, stopping rules, early
stopping, callbacks). Dense input runs in a compiled plan (``_core.Plan.sk_epoch``,
``sk_objective``, ``forward``); sparse input in NumPy (``backprop._sparse``), in
scikit-learn's own terms.
"""

from __future__ import annotations

import math
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    is_classifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _layout, _names, _sparse, optim

__all__ = ["EpochInfo", "MLPClassifier", "MLPRegressor", "plot_loss_curve"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")


# --------------------------------------------------------------------------------------
# Flat parameter layout
# --------------------------------------------------------------------------------------


def _architecture(layer_units: Sequence[int], dtype, activation: str = "identity",
                  out_activation: str = "identity", loss: str = "squared_error"):  # fmt: skip
    """The network in scikit-learn's layout: W_i (n_in, n_out) packed before all b_i."""
    return _layout.Architecture(
        sizes=tuple(int(u) for u in layer_units),
        hidden=int(_names.SK_ACTIVATIONS[activation]),
        output=int(_names.SK_ACTIVATIONS[out_activation]),
        loss=int(_names.SK_LOSSES[loss]),
        dtype=np.dtype(dtype),
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
            optimizer = optim.Adam(est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon)
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
            progress.message(f"{reason} The learning rate is already small; stopping.")
            return True
        self.optimizer.lr /= 5.0
        progress.message(f"{reason} Learning rate lowered to {self.optimizer.lr:f}.")
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
        math.sqrt(float(np.dot(gw.ravel(), gw.ravel())) + float(np.dot(gb, gb)))
        for gw, gb in zip(coef_grads, intercept_grads)
    )


class _Progress:
    """Progress output for ``verbose``: a tqdm bar when tqdm is installed, else lines."""

    def __init__(self, enabled, total):
        self.enabled = bool(enabled)
        self.bar = None
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, unit="epoch", leave=True)

    def epoch(self, n_iter, loss, validation_score=None):
        if not self.enabled:
            return
        if self.bar is not None:
            postfix = {"loss": f"{loss:.6f}"}
            if validation_score is not None:
                postfix["validation"] = f"{validation_score:.4f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
            return
        print(f"Iteration {n_iter}, loss = {loss:.8f}")
        if validation_score is not None:
            print(f"Validation score: {validation_score:f}")

    def message(self, text):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------


class _BaseMLP(BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of ``MLPClassifier`` and ``MLPRegressor``; not for direct use."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"}), type, np.dtype],
        "callbacks": [None, list, tuple],
    }

    @abstractmethod
    def _loss_name(self) -> str:
        """Name of the training loss."""

    # ---- network ---------------------------------------------------------------------

    def _layer_units(self):
        return [c.shape[0] for c in self.coefs_] + [self.coefs_[-1].shape[1]]

    def _bind(self, params, layer_units):
        """Make ``params`` the live weights, with coefs_/intercepts_ as views into it."""
        self._params = params
        self.coefs_, self.intercepts_ = _unflatten(params, layer_units)

    def _forward_pass_fast(self, X, check_input=True):
        """Output of the network for X, without keeping hidden activations."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        if sp.issparse(X):
            a = X
            last = len(self.coefs_) - 1
            for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_)):
                a = safe_sparse_dot(a, w)
                a += b
                _sparse.activate(self.out_activation_ if i == last else self.activation, a)
            return a
        X = np.ascontiguousarray(X, dtype=self._params.dtype)
        return self._architecture().forward(self._params, X)

    def _architecture(self, layer_units=None):
        """The network as the compiled kernels see it (``backprop._layout``)."""
        return _architecture(
            self._layer_units() if layer_units is None else layer_units,
            self._params.dtype,
            self.activation,
            self.out_activation_,
            self._loss_name(),
        )

    def _initialize(self, Y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"

        # Glorot and Bengio's uniform initialisation, with the bound doubled in
        # variance for the logistic activation; W_i then b_i, layer by layer.
        factor = 2.0 if self.activation == "logistic" else 6.0
        params = np.empty(_architecture(layer_units, dtype).n_params, dtype=dtype)
        coefs, intercepts = _unflatten(params, layer_units)
        for i, (fan_in, fan_out) in enumerate(zip(layer_units[:-1], layer_units[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs[i][...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercepts[i][...] = self._random_state.uniform(-bound, bound, fan_out)
        self._bind(params, layer_units)
        self._best_params = params.copy()

        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _input_dtype(self):
        if self.dtype is None:
            return (np.float64, np.float32)
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be None, float32 or float64, got {self.dtype!r}")
        return dtype

    # ---- fitting ---------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(
                f"hidden_layer_sizes must contain only positive sizes, got {hidden_layer_sizes}."
            )
        callbacks = list(self.callbacks) if self.callbacks is not None else []
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables, got {cb!r}")

        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y, y_target = self._validate_input(X, y, incremental, reset=first_pass)
        dtype = X.dtype if first_pass else np.asarray(self.coefs_[0]).dtype
        if sp.issparse(X):
            X = X.tocsr().astype(dtype, copy=False)
        else:
            X = np.ascontiguousarray(X, dtype=dtype)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=dtype)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        Y = np.ascontiguousarray(y, dtype=dtype)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, dtype)
        else:
            if self._layer_units() != layer_units:
                raise ValueError(
                    f"The network has layers {self._layer_units()} but these data and "
                    f"hidden_layer_sizes need {layer_units}; set warm_start=False to start over."
                )
            arch = _architecture(layer_units, dtype)
            self._bind(arch.flatten(self.coefs_, self.intercepts_), layer_units)

        progress = _Progress(self.verbose, 1 if incremental else self.max_iter)
        try:
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(
                    X, Y, y_target, sample_weight, layer_units, incremental, callbacks, progress
                )
            else:
                self._fit_lbfgs(X, Y, sample_weight, layer_units, callbacks, progress)
        finally:
            progress.close()

        if not np.isfinite(self._params).all():
            raise ValueError(
                "The solver produced non-finite weights; the input data may hold very "
                "large values and need scaling."
            )
        return self

    def _kernel_args(self):
        return dict(
            activation=self.activation,
            out_activation=self.out_activation_,
            loss=self._loss_name(),
        )

    def _fit_lbfgs(self, X, Y, sample_weight, layer_units, callbacks, progress):
        # L-BFGS-B iterates in float64; the objective is evaluated in the network's
        # dtype at the iterate rounded to it, as scipy hands it to scikit-learn.
        dtype = self._params.dtype
        grad = np.empty_like(self._params)
        loss_grad = self._objective(X, Y, sample_weight, layer_units)
        last = {}

        def objective(x):
            params = x.astype(dtype, copy=False)
            value = loss_grad(params, grad)
            if callbacks:
                # Callbacks report the gradient at the accepted iterate, usually the
                # last point evaluated.
                last["x"], last["grad"] = x.copy(), grad.copy()
            return value, grad.astype(np.float64)

        state = {"n_iter": 0, "stopped": False}

        def on_iteration(intermediate_result):
            state["n_iter"] += 1
            loss = float(intermediate_result.fun)
            progress.epoch(state["n_iter"], loss)
            if not callbacks:
                return
            if not np.array_equal(last.get("x"), intermediate_result.x):
                objective(intermediate_result.x)
            grad_norms = _grad_norms(last["grad"], layer_units)
            if _run_callbacks(callbacks, EpochInfo(state["n_iter"], loss, None, grad_norms)):
                state["stopped"] = True
                raise StopIteration

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            objective,
            self._params,
            method="L-BFGS-B",
            jac=True,
            callback=on_iteration if (callbacks or progress.enabled) else None,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
        if state["stopped"]:
            self.n_iter_ = min(result.nit, self.max_iter)
        else:
            self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        self._params[...] = result.x

    def _objective(self, X, Y, sample_weight, layer_units):
        """L-BFGS's objective, bound once per fit: ``loss_grad(params, grad)`` -> the
        full-batch loss plus the L2 term, grad := its gradient. Dense X runs in the
        compiled plan (``_core.Plan.sk_objective``), sparse X in ``_sparse.loss_grad``."""
        dtype = self._params.dtype
        arch = self._architecture(layer_units)
        dense = _dense_inputs(X, Y, sample_weight, dtype)
        if dense is None:
            scratch = _sparse.Scratch.allocate(layer_units, X.shape[0], dtype, gather=False)
            names = (self.activation, self.out_activation_, self._loss_name())

            def loss_grad_sparse(params, grad):
                return _sparse.loss_grad(arch, params, grad, scratch, X, Y, sample_weight,
                                         names=names, alpha=self.alpha)  # fmt: skip

            return loss_grad_sparse
        objective = optim.GradientOnly(self.alpha)
        plan = arch.plan(X.shape[0], optimizer=objective, two_cores=False)
        X, Y, sw = dense

        def loss_grad(params, grad):
            return plan.sk_objective(params, X, Y, sw, grad)

        return loss_grad

    def _fit_stochastic(
        self, X, Y, y_target, sample_weight, layer_units, incremental, callbacks, progress
    ):
        dtype = self._params.dtype
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _OptimizerState.create(self, self._params.size, dtype)
        optimizer = self._optimizer

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        X_val = y_val = sw_val = None
        if early_stopping:
            # The split draws from the estimator's random stream, as scikit-learn's does:
            # stratified for single-output classification only.
            stratify = Y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
            train, valid = train_test_split(
                np.arange(X.shape[0]),
                random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
            if valid.shape[0] < 2:
                raise ValueError(
                    f"The validation set has {valid.shape[0]} sample(s); at least 2 are "
                    "needed. Increase validation_fraction or provide more data."
                )
            X, X_val = X[train], X[valid]
            Y, y_val = Y[train], y_target[valid]
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            if sample_weight is not None:
                sample_weight, sw_val = sample_weight[train], sample_weight[valid]

        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    f"batch_size={self.batch_size} is larger than the {n_samples} training "
                    "samples; using batches of all of them.",
                    UserWarning,
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        n_batches = -(-n_samples // batch_size)

        # the L2 term is the estimator's current alpha, also for partial_fit's later calls
        optimizer.optimizer.weight_decay = self.alpha
        run_epoch, grad = _epoch_runner(
            self._params, optimizer, X, Y, sample_weight,
            arch=self._architecture(layer_units), batch_size=batch_size,
            **self._kernel_args(),
        )  # fmt: skip
        sample_idx = np.arange(n_samples, dtype=np.intp)

        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                if self.shuffle:
                    # sklearn.utils.shuffle(sample_idx, random_state=...) without its
                    # input checks: the same draws, the same order
                    permutation = np.arange(n_samples)
                    self._random_state.shuffle(permutation)
                    sample_idx = sample_idx[permutation]
                accumulated_loss = run_epoch(sample_idx)
                self.n_iter_ += 1
                self.loss_ = accumulated_loss / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)

                validation_score = self._update_no_improvement_count(
                    early_stopping, X_val, y_val, sw_val
                )
                progress.epoch(self.n_iter_, self.loss_, validation_score)
                optimizer.epoch_ends(n_batches, self.t_)

                stop_requested = False
                if callbacks:
                    info = EpochInfo(
                        self.n_iter_, self.loss_, validation_score, _grad_norms(grad, layer_units)
                    )
                    stop_requested = _run_callbacks(callbacks, info)

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        reason = (
                            f"Validation score did not improve by tol={self.tol:f} for "
                            f"{self.n_iter_no_change} consecutive epochs."
                        )
                    else:
                        reason = (
                            f"Training loss did not improve by tol={self.tol:f} for "
                            f"{self.n_iter_no_change} consecutive epochs."
                        )
                    if optimizer.should_stop(reason, progress):
                        break
                    self._no_improvement_count = 0
                if stop_requested:
                    progress.message("A callback asked to stop training.")
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic optimizer: reached max_iter={self.max_iter} epochs "
                        "before the loss converged.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by the user.", stacklevel=3)

        if early_stopping:
            # _best_params is None when the best weights are the live ones.
            if self._best_params is not None:
                self._params[...] = self._best_params
            self._best_params = None

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        """Track improvement of the validation score or training loss; return the score."""
        if early_stopping:
            score = self._score(X_val, y_val, sample_weight=sw_val)
            self.validation_scores_.append(score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self._params.copy()
            return score
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]
        return None

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to X and y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classification) or real targets (regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights of the loss.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit needs a stochastic solver ('sgd' or 'adam'), got "
                f"solver={self.solver!r}."
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _run_callbacks(callbacks, info) -> bool:
    """Call every callback; True when any of them asks to stop."""
    stop = False
    for cb in callbacks:
        stop = bool(cb(info)) or stop
    return stop


_PARAMETERS_DOC = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Number of units of each hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        Weight optimizer: L-BFGS-B (full batch), mini-batch SGD with momentum, or Adam.
    alpha : float, default=0.0001
        Strength of the L2 penalty, alpha / (2 n) * sum of squared weights per batch of n.
    batch_size : int or 'auto', default='auto'
        Mini-batch size of the stochastic solvers; 'auto' is min(200, n_samples).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Step-size schedule of 'sgd'. 'invscaling' uses learning_rate_init / (t + 1) ** power_t
        after each epoch, t the number of samples seen; 'adaptive' divides the rate by 5
        whenever the loss (or validation score) stalls for n_iter_no_change epochs.
    learning_rate_init : float, default=0.001
        Initial step size of 'sgd' and 'adam'.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Maximum number of epochs (stochastic solvers) or iterations ('lbfgs').
    shuffle : bool, default=True
        Shuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the early-stopping split and the batch order.
    tol : float, default=1e-4
        Improvement below which an epoch counts as stalled; gradient tolerance of 'lbfgs'.
    verbose : bool, default=False
        Report progress: a tqdm bar when tqdm is installed, else one line per epoch.
    warm_start : bool, default=False
        Continue from the current weights on the next call to fit.
    momentum : float, default=0.9
        Momentum of 'sgd', in [0, 1].
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with 'sgd'.
    early_stopping : bool, default=False
        Hold out validation_fraction of the data and stop when its score stalls; the
        weights of the best epoch are kept.
    validation_fraction : float, default=0.1
        Fraction of the data held out when early_stopping is on.
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of Adam's first and second moment estimates.
    epsilon : float, default=1e-8
        Adam's denominator offset.
    n_iter_no_change : int, default=10
        Number of stalled epochs tolerated before stopping (or, 'adaptive', slowing down).
    max_fun : int, default=15000
        Maximum number of loss evaluations of 'lbfgs'.
    dtype : {None, 'float32', 'float64'} or numpy float type, default=None
        Floating type of the network. None keeps float32 input as float32 and
        converts everything else to float64.
    callbacks : list of callables, default=None
        Each is called as ``cb(info)`` with an :class:`EpochInfo` after every epoch
        (every iteration for 'lbfgs'); training stops when one returns True.
"""

_ATTRIBUTES_DOC = """
    loss_ : float
        Loss of the last epoch (or of the final 'lbfgs' iterate).
    best_loss_ : float or None
        Lowest training loss seen; None with early stopping.
    loss_curve_ : list of float
        Training loss of every epoch (stochastic solvers).
    validation_scores_ : list of float or None
        Held-out score of every epoch with early stopping, else None.
    best_validation_score_ : float or None
        Best held-out score with early stopping, else None.
    t_ : int
        Number of training samples seen by the stochastic solver.
    coefs_ : list of ndarray
        coefs_[i] is the weight matrix from layer i to layer i + 1, of shape (n_in, n_out).
    intercepts_ : list of ndarray
        intercepts_[i] is the bias vector of layer i + 1.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string feature names.
    n_iter_ : int
        Number of epochs (iterations for 'lbfgs') run by the last call to fit.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of outputs.
    out_activation_ : str
        Activation of the output layer.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        """Multilayer perceptron classifier trained on the log loss.

    A drop-in replacement for ``sklearn.neural_network.MLPClassifier``: same parameters,
    attributes and fitted model. Handles binary, multiclass and multilabel targets.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels of each output."""
        + _ATTRIBUTES_DOC
    )

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
        callbacks=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.callbacks = callbacks

    def _loss_name(self):
        if getattr(self, "out_activation_", None) == "logistic":
            return "binary_log_loss"
        return "log_loss"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=self._input_dtype(),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)

        # A fresh fit (re)defines the classes; warm starts must see the same classes and
        # partial_fit only known ones.
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start needs y to have the classes of the previous fit: "
                        f"expected {self.classes_}, got {classes}."
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"y has classes {classes}, some of them not in classes_ {self.classes_}."
                )
        Y = self._label_binarizer.transform(y)
        return X, Y, Y.astype(bool)

    def predict(self, X):
        """Predict class labels for X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Run one epoch over X and y, keeping the weights and the optimizer's state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            All classes; required on the first call, ignored after.

        Returns
        -------
        self : object
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities for X.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities for X.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        """Multilayer perceptron regressor.

    A drop-in replacement for ``sklearn.neural_network.MLPRegressor``: same parameters,
    attributes and fitted model, single or multiple outputs.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        Half the squared error with an identity output, or half the Poisson deviance
        with an exponential output."""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
    )

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
        callbacks=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.callbacks = callbacks

    def _loss_name(self):
        return self.loss

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=self._input_dtype(),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, y.reshape((-1, 1)) if y.ndim == 1 else y

    def predict(self, X):
        """Predict targets for X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch over X and y, keeping the weights and the optimizer's state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


# --------------------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------------------


def plot_loss_curve(estimator: _BaseMLP, ax: Any = None) -> Any:
    """Plot a fitted estimator's ``loss_curve_`` and, if any, its ``validation_scores_``.

    The validation scores go on a second y axis sharing the epochs. Needs matplotlib.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        Fitted with solver 'sgd' or 'adam'.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure's axes when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes holding the loss curve.
    """
    check_is_fitted(estimator)
    if getattr(estimator, "loss_curve_", None) is None:
        raise ValueError(
            f"{type(estimator).__name__} has no loss_curve_: only solver='sgd' or "
            f"'adam' record one, this estimator used solver={estimator.solver!r}."
        )
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    epochs = np.arange(1, len(estimator.loss_curve_) + 1)
    ax.plot(epochs, estimator.loss_curve_, label="training loss", color="C0")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    scores = getattr(estimator, "validation_scores_", None)
    if scores:
        score_ax = ax.twinx()
        score_ax.plot(epochs[-len(scores) :], scores, label="validation score", color="C1")
        score_ax.set_ylabel("validation score")
        handles = ax.get_legend_handles_labels()[0] + score_ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles)
    else:
        ax.legend()
    return ax
