"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for the estimators of the same names in
``sklearn.neural_network`` (scikit-learn 1.9): the same parameters, attributes and
validation, and the same fitted model for the same data, parameters and
``random_state`` -- the weights are drawn from the same random stream, the batches
come in the same order, and every update computes the same terms in the same order.
Three parameters are added: ``dtype`` (the floating type of the network),
``callbacks`` (called after each epoch, able to stop training) and ``progress_bar``
(a tqdm bar; ``verbose`` prints scikit-learn's lines).

Design
------
All parameters of a network live in one flat vector, laid out as scikit-learn packs
them for L-BFGS (``backprop._layout``, ``grouped``)::

    params = [W_0.ravel(), ..., W_{L-1}.ravel(), b_0, ..., b_{L-1}]

with ``W_i`` of shape ``(units[i], units[i + 1])`` in C order and ``b_i`` of length
``units[i + 1]``. ``coefs_`` and ``intercepts_`` are views into it. Gradients and the
optimizer state (``backprop.optim``: SGD's velocity, Adam's moments) use the same layout.

The code is in three modules:

``estimators`` (this one)
    the two public classes: their parameters, labels and targets, predictions;
``_sk_base``
    ``_BaseMLP``, what they share: validation, initialisation, the stochastic and
    L-BFGS fits, early stopping and the stopping rules; L-BFGS's objective is bound
    once per fit (``_BaseMLP._objective``);
``_sk_training``
    the network in scikit-learn's layout, the epoch runner (every mini-batch step of
    one epoch, bound once per fit), the solver's state and schedule, callbacks' and
    progress output.

Dense input runs in a compiled plan (``_core.Plan.sk_epoch``, ``sk_objective``,
``forward``); sparse input in NumPy (``backprop._sparse``), in scikit-learn's own
terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import sklearn  # noqa: F401
except ModuleNotFoundError as err:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        "backprop's MLPClassifier and MLPRegressor need scikit-learn, which is not "
        'installed; install it with: pip install "backprop[sklearn]"'
    ) from err

from sklearn.base import (
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _dask
from ._sk_base import _BaseMLP
from ._sk_training import EpochInfo

__all__ = ["EpochInfo", "MLPClassifier", "MLPRegressor", "plot_loss_curve"]


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
        Print progress on stdout as scikit-learn does: ``Iteration N, loss = ...`` after
        each epoch of 'sgd' and 'adam' (with early stopping also the validation score)
        and why training stopped; 'lbfgs' leaves its output to scipy.
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
        (every iteration for 'lbfgs'); training stops when one returns True. During
        the call the estimator holds that epoch's (iteration's) model: ``coefs_``,
        ``intercepts_``, ``loss_``, ``n_iter_``, ``predict`` and ``score`` are those
        of a fit stopped there. A callback reads the model; what it writes into
        ``coefs_`` is used by the next epoch of 'sgd' and 'adam', but not by 'lbfgs'
        (scipy keeps its own iterate). Fitting the same estimator from a callback
        raises RuntimeError: fit a clone.
    progress_bar : bool, default=False
        Draw a tqdm progress bar on stderr, one step per epoch ('lbfgs': iteration).
        Needs tqdm.
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
        progress_bar=False,
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
        self.progress_bar = progress_bar

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
                    # worded as scikit-learn's, which code and tests written for it match
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"y has classes {classes}, some of them not in classes_ {self.classes_}."
                )
        Y = self._label_binarizer.transform(y)
        return X, Y, Y.astype(bool)

    def _dask_classes(self, classes, incremental):
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif self.warm_start and set(classes) != set(self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
            )
        elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
            raise ValueError(
                f"y has classes {classes}, some of them not in classes_ {self.classes_}."
            )
        return np.asarray(self.classes_)

    def predict(self, X):
        """Predict class labels for X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            (a dask array, computed lazily, for dask X)
        """
        check_is_fitted(self)
        if _dask.is_dask(X):
            return _dask.predict(self, "predict", X)
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
            if not _dask.is_dask(y) and type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities for X.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes) (a dask array, computed lazily,
            for dask X)
        """
        check_is_fitted(self)
        if _dask.is_dask(X):
            return _dask.predict(self, "predict_proba", X)
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
        log_proba : ndarray of shape (n_samples, n_classes) (a dask array, computed
            lazily, for dask X)
        """
        if _dask.is_dask(X):
            check_is_fitted(self)
            return _dask.predict(self, "predict_log_proba", X)
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
        progress_bar=False,
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
        self.progress_bar = progress_bar

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
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs) (a dask array,
            computed lazily, for dask X)
        """
        check_is_fitted(self)
        if _dask.is_dask(X):
            return _dask.predict(self, "predict", X)
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
