"""The machinery the two scikit-learn estimators share: parameter validation,
initialisation, the stochastic and L-BFGS fits, early stopping and the stopping rules,
and prediction (``_BaseMLP``)."""

from __future__ import annotations

import functools
import threading
import warnings
import weakref
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    _fit_context,
    is_classifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import (
    _check_feature_names,
    _check_sample_weight,
    validate_data,
)

from . import _dask, _sparse, optim
from ._sk_training import (
    EpochInfo,
    _architecture,
    _dense_inputs,
    _epoch_runner,
    _grad_norms,
    _OptimizerState,
    _Progress,
    _run_callbacks,
    _unflatten,
)

_STOCHASTIC_SOLVERS = ("sgd", "adam")
# The estimators whose fit is running: a second fit of one of them (from a callback, or
# from another thread) would rebind the weights the first is training.
_FITTING: weakref.WeakSet = weakref.WeakSet()
_FITTING_LOCK = threading.Lock()


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
        "progress_bar": ["boolean"],
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
        self._views = (*self.coefs_, *self.intercepts_)

    def _live_params(self):
        """The flat parameters of the model ``coefs_`` and ``intercepts_`` hold now.

        They are views into ``_params`` until the user replaces one of them (scikit-learn's
        MLP reads ``coefs_`` at every prediction, so code written for it may assign them);
        then the arrays there are checked and copied into a new flat array.
        """
        current = (*self.coefs_, *self.intercepts_)
        views = getattr(self, "_views", ())
        if len(current) == len(views) and all(a is b for a, b in zip(current, views)):
            return self._params
        return self._flatten_attributes()

    def _flatten_attributes(self, dtype=None):
        """``coefs_`` and ``intercepts_`` in one new flat array of ``dtype`` (default: the
        network's), refused with ValueError unless they describe one network of this estimator's
        inputs and outputs."""
        coefs = [np.asarray(c) for c in self.coefs_]
        intercepts = [np.asarray(b) for b in self.intercepts_]
        if not coefs or len(coefs) != len(intercepts):
            raise ValueError(
                f"coefs_ and intercepts_ must hold one array per layer; got {len(coefs)} and "
                f"{len(intercepts)}"
            )
        for i, (w, b) in enumerate(zip(coefs, intercepts)):
            fan_in = self.n_features_in_ if i == 0 else coefs[i - 1].shape[1]
            fan_out = self.n_outputs_ if i == len(coefs) - 1 else None
            if w.ndim != 2 or w.shape[0] != fan_in or fan_out not in (None, w.shape[1]):
                raise ValueError(
                    f"coefs_[{i}] has shape {w.shape}; it must be ({fan_in}, "
                    f"{'n_units' if fan_out is None else fan_out})"
                )
            if b.shape != (w.shape[1],):
                raise ValueError(
                    f"intercepts_[{i}] has shape {b.shape}; it must be {(w.shape[1],)}"
                )
        dtype = self._params.dtype if dtype is None else dtype
        return _architecture(self._layer_units(), dtype).flatten(coefs, intercepts)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "coefs_" in self.__dict__ and "_params" in self.__dict__:
            # unpickled arrays are copies: coefs_ and intercepts_ become views again
            self._bind(self._flatten_attributes(), self._layer_units())

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
        params = self._live_params()
        return self._architecture().forward(params, X)

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
        with _FITTING_LOCK:
            if self in _FITTING:
                raise RuntimeError(
                    f"{type(self).__name__} is already being fitted (fit called from one of "
                    "its callbacks, or from another thread); fit a clone instead"
                )
            _FITTING.add(self)
        try:
            return self._fit_once(X, y, sample_weight, incremental)
        finally:
            with _FITTING_LOCK:
                _FITTING.discard(self)

    def _fit_once(self, X, y, sample_weight, incremental):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        for size in hidden_layer_sizes:
            if isinstance(size, (bool, np.bool_)) or not isinstance(size, Integral):
                raise TypeError(
                    f"hidden_layer_sizes must hold whole numbers of units, got {size!r} in "
                    f"{self.hidden_layer_sizes!r}."
                )
        hidden_layer_sizes = [int(size) for size in hidden_layer_sizes]
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(
                f"hidden_layer_sizes must contain only positive sizes, got {hidden_layer_sizes}."
            )
        callbacks = list(self.callbacks) if self.callbacks is not None else []
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables, got {cb!r}")

        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if _dask.is_dask(X) or _dask.is_dask(y):
            # the partitions stay on the workers (backprop._dask); Y only tells the width
            X = self._persist_dask(X, y, sample_weight, incremental, first_pass)
            Y = y_target = np.empty((0, X.n_outputs), dtype=X.dtype)
            sample_weight = None
        else:
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
        try:
            return self._fit_validated(
                X, Y, y_target, sample_weight, hidden_layer_sizes, callbacks, incremental,
                first_pass,
            )  # fmt: skip
        finally:
            if isinstance(X, _dask.Partitions):
                X.release()

    def _persist_dask(self, X, y, sample_weight, incremental, first_pass):
        """The dask collections' partitions, cast, encoded and persisted where they are
        (``backprop._dask.persist``), after the checks validate_data makes on arrays."""
        if not _dask.is_dask(X) or not _dask.is_dask(y):
            raise TypeError("X and y must both be Dask collections, or neither")
        X_array = _dask.as_array(X, "X")
        if first_pass:
            dtype = self._input_dtype()
            if isinstance(dtype, tuple):
                dtype = np.dtype(np.float32 if X_array.dtype == np.float32 else np.float64)
            self.n_features_in_ = int(X_array.shape[1])
            columns = getattr(X, "columns", None)
            if columns is not None and all(isinstance(c, str) for c in columns):
                self.feature_names_in_ = np.asarray(list(columns), dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            dtype = np.asarray(self.coefs_[0]).dtype
            if hasattr(X, "columns") and hasattr(X, "_meta"):
                # the columns must be those of the first fit, as validate_data checks
                _check_feature_names(self, X._meta, reset=False)
            if X_array.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X_array.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
        classes = functools.partial(self._dask_classes, incremental=incremental)
        return _dask.persist(
            X_array, y, sample_weight, dtype=dtype,
            classes=classes if is_classifier(self) else None,
        )  # fmt: skip

    def _dask_classes(self, found, incremental):
        """A classifier's classes to encode dask labels by, given the labels ``found``."""
        raise NotImplementedError

    def _fit_validated(
        self, X, Y, y_target, sample_weight, hidden_layer_sizes, callbacks, incremental,
        first_pass,
    ):  # fmt: skip
        dtype = X.dtype
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
            self._bind(self._flatten_attributes(dtype), layer_units)

        progress = _Progress(self.verbose, self.progress_bar, 1 if incremental else self.max_iter)
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
            # worded as scikit-learn's, which code and tests written for it match
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
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
            progress.epoch(state["n_iter"], loss, lines=False)
            if not callbacks:
                return
            if not np.array_equal(last.get("x"), intermediate_result.x):
                objective(intermediate_result.x)
            grad_norms = _grad_norms(last["grad"], layer_units)
            # The callbacks see the model of this iteration: coefs_, intercepts_ (views
            # of _params), predict and score are those a fit with max_iter=n_iter ends with.
            self._params[...] = intermediate_result.x
            self.n_iter_, self.loss_ = state["n_iter"], loss
            if _run_callbacks(callbacks, EpochInfo(state["n_iter"], loss, None, grad_norms)):
                state["stopped"] = True
                raise StopIteration

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            objective,
            # a copy: the callbacks write each iterate into _params
            self._params.astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            callback=on_iteration if (callbacks or progress.bar is not None) else None,
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

    def _loss_grad_lbfgs(
        self, packed_coef_inter, X, y, sample_weight, activations, deltas, coef_grads,
        intercept_grads,
    ):  # fmt: skip
        """scikit-learn's private L-BFGS objective, for code written against it: the
        loss and its gradient (float64, packed as ``packed_coef_inter``) at the packed
        weights, which become the estimator's, as in scikit-learn; coef_grads and
        intercept_grads (lists) receive the gradient's parts. ``activations`` and
        ``deltas``, scikit-learn's buffers, are not used."""
        layer_units = self._layer_units()
        dtype = self._params.dtype
        self._params[...] = packed_coef_inter
        X = X.tocsr().astype(dtype) if sp.issparse(X) else np.ascontiguousarray(X, dtype=dtype)
        Y = np.ascontiguousarray(y, dtype=dtype).reshape((X.shape[0], -1))
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
        grad = np.empty_like(self._params)
        value = self._objective(X, Y, sample_weight, layer_units)(self._params, grad)
        coefs, intercepts = _unflatten(grad, layer_units)
        coef_grads[:] = [c.copy() for c in coefs]
        intercept_grads[:] = [b.copy() for b in intercepts]
        return value, grad.astype(np.float64)

    def _objective(self, X, Y, sample_weight, layer_units):
        """L-BFGS's objective, bound once per fit: ``loss_grad(params, grad)`` -> the
        full-batch loss plus the L2 term, grad := its gradient. Dense X runs in the
        compiled plan (``_core.Plan.sk_objective``), sparse X in ``_sparse.loss_grad``,
        partitions on a Dask cluster in ``_dask.objective``."""
        if isinstance(X, _dask.Partitions):
            return _dask.objective(self, X, layer_units)
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
        distributed = isinstance(X, _dask.Partitions)
        if self.early_stopping and distributed:
            raise ValueError(
                "early_stopping=True is not supported on Dask collections: hold out a "
                "validation set and score it from a callback instead"
            )
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
                    "The validation set is too small. Increase 'validation_fraction' "
                    f"or the size of your dataset (it has {valid.shape[0]} sample(s); "
                    "at least 2 are needed)."
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
        if distributed:
            run_epoch, grad = _dask.epoch_runner(self, X, optimizer, layer_units, batch_size)
        else:
            run_epoch, grad = _epoch_runner(
                self._params, optimizer, X, Y, sample_weight,
                arch=self._architecture(layer_units), batch_size=batch_size,
                **self._kernel_args(),
            )  # fmt: skip
        sample_idx = np.arange(n_samples, dtype=np.intp)

        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                if distributed:
                    # partitions in a random order, rows shuffled within each (_dask)
                    accumulated_loss = run_epoch(self.shuffle)
                else:
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
                            f"Validation score did not improve more than tol={self.tol:f} "
                            f"for {self.n_iter_no_change} consecutive epochs."
                        )
                    else:
                        reason = (
                            f"Training loss did not improve more than tol={self.tol:f} "
                            f"for {self.n_iter_no_change} consecutive epochs."
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
