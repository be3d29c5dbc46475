"""The scikit-learn estimators, compared with scikit-learn's own MLP.

Parity tests fit ``backprop.estimators`` and ``sklearn.neural_network`` side by side on
the same data, parameters and seed and compare everything a fit leaves behind.
"""

import math
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from conftest import finite_difference_gradients, force_path  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_digits,
    load_iris,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from backprop import _sk_training as training  # noqa: E402
from backprop import _sparse, optim  # noqa: E402
from backprop import estimators as bp  # noqa: E402

# Short runs stop at max_iter on purpose; every test that expects the warning says so.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

F64 = dict(rtol=1e-8, atol=1e-12)
F32 = dict(rtol=1e-3, atol=1e-4)


def _classification(n_classes=3, n_samples=120, random_state=0):
    return make_classification(
        n_samples=n_samples,
        n_features=8,
        n_informative=5,
        n_classes=n_classes,
        random_state=random_state,
    )


def _regression(n_targets=1, n_samples=100):
    X, y = make_regression(
        n_samples=n_samples, n_features=6, n_targets=n_targets, noise=0.5, random_state=0
    )
    return X, y / np.std(y)


def _poisson():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(100, 5))
    y = rng.poisson(np.exp(X @ rng.uniform(-0.5, 0.5, 5) + 1.0))
    return X, y


def _iris():
    X, y = load_iris(return_X_y=True)
    return X[::2], y[::2]


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:250] / 16.0, y[:250]


def _multilabel():
    X, Y = make_multilabel_classification(n_samples=100, n_features=8, n_classes=3, random_state=0)
    return X, Y


DATASETS = {
    "multiclass": lambda: _classification(3),
    "binary": lambda: _classification(2),
    "multilabel": _multilabel,
    "iris": _iris,
    "digits": _digits,
    "regression": lambda: _regression(1),
    "multioutput": lambda: _regression(2),
    "poisson": _poisson,
}


def _pair(name, **params):
    """The same estimator from both libraries."""
    return getattr(bp, name)(**params), getattr(sk, name)(**params)


def assert_same_fit(ours, theirs, tol=F64):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.n_layers_ == theirs.n_layers_
    assert ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        assert_allclose(a, b, **tol)
    assert_allclose(ours.loss_, theirs.loss_, **tol)
    for attr in ("loss_curve_", "validation_scores_", "best_loss_", "best_validation_score_"):
        mine, ref = getattr(ours, attr, None), getattr(theirs, attr, None)
        assert (mine is None) == (ref is None), attr
        if ref is not None:
            assert_allclose(mine, ref, **tol, err_msg=attr)


def assert_same_predictions(ours, theirs, X, y, tol=F64):
    if hasattr(theirs, "predict_proba"):
        assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), **tol)
        assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X), **tol)
        assert_array_equal(ours.predict(X), theirs.predict(X))
    else:
        assert_allclose(ours.predict(X), theirs.predict(X), **tol)
    assert_allclose(ours.score(X, y), theirs.score(X, y), **tol)


def _fit_both(name, data, params, fit_params=None):
    X, y = DATASETS[data]()
    ours, theirs = _pair(name, **params)
    ours.fit(X, y, **(fit_params or {}))
    theirs.fit(X, y, **(fit_params or {}))
    return ours, theirs, X, y


# --------------------------------------------------------------------------------------
# Parity with scikit-learn
# --------------------------------------------------------------------------------------

BASE = dict(hidden_layer_sizes=(12, 6), max_iter=15, random_state=1, learning_rate_init=0.01)


@pytest.fixture(params=["batches", "halves"])
def batch_path(request):
    """Fit as the sizes choose (whole batches here), and with every batch of two rows or
    more split in two halves (``Plan.sk_epoch`` on both cores)."""
    if request.param == "batches":
        yield request.param
        return
    with force_path("halves"):
        yield request.param


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize(
    "name, data", [("MLPClassifier", "multiclass"), ("MLPRegressor", "regression")]
)
def test_parity_solver_activation(name, data, solver, activation, batch_path):
    ours, theirs, X, y = _fit_both(name, data, dict(BASE, solver=solver, activation=activation))
    assert_same_fit(ours, theirs)
    assert_same_predictions(ours, theirs, X, y)


@pytest.mark.parametrize(
    "name, data",
    [
        ("MLPClassifier", "binary"),
        ("MLPClassifier", "multilabel"),
        ("MLPClassifier", "iris"),
        ("MLPClassifier", "digits"),
        ("MLPRegressor", "multioutput"),
    ],
)
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_parity_targets(name, data, solver):
    ours, theirs, X, y = _fit_both(name, data, dict(BASE, solver=solver, max_iter=10))
    assert_same_fit(ours, theirs)
    assert_same_predictions(ours, theirs, X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_parity_poisson(solver):
    params = dict(BASE, solver=solver, loss="poisson", learning_rate_init=0.001)
    ours, theirs, X, y = _fit_both("MLPRegressor", "poisson", params)
    assert_same_fit(ours, theirs)
    assert_same_predictions(ours, theirs, X, y)


@pytest.mark.parametrize("batch_size", ["auto", 1, 7, 33])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_parity_batch_size(batch_size, solver, shuffle, batch_path):
    params = dict(BASE, solver=solver, batch_size=batch_size, shuffle=shuffle, max_iter=5)
    ours, theirs, X, y = _fit_both("MLPClassifier", "multiclass", params)
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_parity_batch_larger_than_data(solver):
    X, y = _classification(3)
    ours, theirs = _pair("MLPClassifier", **dict(BASE, solver=solver, batch_size=500))
    for est in (ours, theirs):
        with pytest.warns(UserWarning, match="batch_size"):
            est.fit(X, y)
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("nesterovs_momentum", [True, False])
@pytest.mark.parametrize("learning_rate", ["constant", "invscaling", "adaptive"])
def test_parity_sgd_momentum_schedules(momentum, nesterovs_momentum, learning_rate):
    params = dict(
        BASE,
        solver="sgd",
        momentum=momentum,
        nesterovs_momentum=nesterovs_momentum,
        learning_rate=learning_rate,
        learning_rate_init=0.05,
        max_iter=25,
        n_iter_no_change=2,
        tol=1e-2,
    )
    ours, theirs, X, y = _fit_both("MLPRegressor", "regression", params)
    assert_same_fit(ours, theirs)
    assert ours._optimizer.learning_rate == theirs._optimizer.learning_rate


def test_parity_adaptive_schedule_lowers_the_rate():
    params = dict(
        BASE,
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.2,
        max_iter=40,
        n_iter_no_change=1,
        tol=0.05,
    )
    ours, theirs, _, _ = _fit_both("MLPClassifier", "multiclass", params)
    assert theirs._optimizer.learning_rate < 0.2
    assert_same_fit(ours, theirs)
    assert ours._optimizer.learning_rate == theirs._optimizer.learning_rate


@pytest.mark.parametrize(
    "name, data", [("MLPClassifier", "binary"), ("MLPClassifier", "multiclass")]
)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_parity_early_stopping_classifier(name, data, solver):
    params = dict(
        BASE,
        solver=solver,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        max_iter=40,
        learning_rate_init=0.1,
    )
    ours, theirs, X, y = _fit_both(name, data, params)
    assert_same_fit(ours, theirs)
    assert_same_predictions(ours, theirs, X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_parity_early_stopping_regressor(solver):
    params = dict(BASE, solver=solver, early_stopping=True, n_iter_no_change=2, max_iter=30)
    ours, theirs, X, y = _fit_both("MLPRegressor", "multioutput", params)
    assert_same_fit(ours, theirs)
    assert_same_predictions(ours, theirs, X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_parity_sample_weight(solver, early_stopping, batch_path):
    X, y = _classification(3)
    sample_weight = np.random.RandomState(0).uniform(0.2, 2.0, size=y.shape[0])
    params = dict(BASE, solver=solver, early_stopping=early_stopping, n_iter_no_change=3)
    ours, theirs, _, _ = _fit_both(
        "MLPClassifier", "multiclass", params, dict(sample_weight=sample_weight)
    )
    assert_same_fit(ours, theirs)


# One hidden layer of 32 units or more: on two cores its units are cut in two
# (``_core._units_epoch``); 40 units cut 16 + 24, 100 units 48 + 52.
@pytest.mark.parametrize("units", [40, 100])
@pytest.mark.parametrize(
    "name, data, activation, solver, extra",
    [
        ("MLPClassifier", "multiclass", "relu", "sgd", {}),
        ("MLPClassifier", "multiclass", "tanh", "sgd", dict(nesterovs_momentum=False)),
        ("MLPClassifier", "multiclass", "logistic", "adam", {}),
        ("MLPClassifier", "binary", "relu", "adam", dict(batch_size=7)),
        ("MLPClassifier", "multilabel", "tanh", "sgd", dict(alpha=0.1)),
        ("MLPRegressor", "multioutput", "relu", "adam", dict(batch_size=33)),
        ("MLPRegressor", "poisson", "tanh", "sgd", dict(loss="poisson", momentum=0)),
    ],
)
def test_parity_one_hidden_layer(units, name, data, activation, solver, extra, batch_path):
    params = dict(BASE, hidden_layer_sizes=(units,), activation=activation, solver=solver,
                  max_iter=8, **extra)  # fmt: skip
    if extra.get("loss") == "poisson":
        params["learning_rate_init"] = 0.001
    ours, theirs, X, y = _fit_both(name, data, params)
    assert_same_fit(ours, theirs)
    assert_same_predictions(ours, theirs, X, y)


# 70 units: 32 + 38, the second part padded with zero units to whole vectors
@pytest.mark.parametrize("units", [64, 70])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parity_one_hidden_layer_weighted(units, solver, dtype, batch_path):
    X, y = _classification(3)
    sample_weight = np.random.RandomState(0).uniform(0.2, 2.0, size=y.shape[0])
    params = dict(BASE, hidden_layer_sizes=(units,), solver=solver, max_iter=6)
    ours = bp.MLPClassifier(**params, dtype=dtype).fit(X, y, sample_weight=sample_weight)
    theirs = sk.MLPClassifier(**params).fit(X.astype(dtype), y, sample_weight=sample_weight)
    assert_same_fit(ours, theirs, F64 if dtype == np.float64 else F32)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_parity_sparse_input(solver):
    X, y = _classification(3)
    X[np.abs(X) < 0.8] = 0.0
    ours, theirs = _pair("MLPClassifier", **dict(BASE, solver=solver, max_iter=8))
    ours.fit(sp.csr_matrix(X), y)
    theirs.fit(sp.csr_matrix(X), y)
    # Sparse products sum in a different order than dense ones: equal up to rounding.
    assert_same_fit(ours, theirs, dict(rtol=1e-7, atol=1e-9))
    assert_array_equal(ours.predict(sp.csc_matrix(X)), theirs.predict(sp.csc_matrix(X)))


def test_parity_random_state_instance():
    X, y = _classification(3)
    ours = bp.MLPClassifier(**dict(BASE, random_state=np.random.RandomState(3), solver="sgd"))
    theirs = sk.MLPClassifier(**dict(BASE, random_state=np.random.RandomState(3), solver="sgd"))
    for _ in range(2):  # the second fit continues both random streams
        ours.fit(X, y)
        theirs.fit(X, y)
        assert_same_fit(ours, theirs)


def test_parity_string_labels():
    X, y = _classification(3)
    labels = np.array(["ant", "bee", "cat"])[y]
    params = dict(BASE, solver="adam", early_stopping=True, n_iter_no_change=2)
    ours, theirs = _pair("MLPClassifier", **params)
    ours.fit(X, labels)
    theirs.fit(X, labels)
    assert_same_fit(ours, theirs)
    assert_array_equal(ours.classes_, theirs.classes_)
    assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize(
    "name, data", [("MLPClassifier", "multiclass"), ("MLPRegressor", "regression")]
)
def test_parity_float32(name, data, solver, batch_path):
    X, y = DATASETS[data]()
    X = X.astype(np.float32)
    ours, theirs = _pair(name, **dict(BASE, solver=solver, max_iter=8))
    ours.fit(X, y)
    theirs.fit(X, y)
    assert all(a.dtype == np.float32 for a in ours.coefs_ + ours.intercepts_)
    assert ours.predict(X).dtype == (np.float32 if name == "MLPRegressor" else y.dtype)
    if name == "MLPClassifier" and solver != "lbfgs":
        assert_same_fit(ours, theirs, dict(rtol=1e-6, atol=1e-7))
    else:
        # scikit-learn keeps float64 regression targets (so float64 deltas) and returns
        # L-BFGS' float64 iterate as the weights; here both are rounded to float32.
        assert_same_fit(ours, theirs, F32)


def test_dtype_parameter():
    X, y = _regression(1)
    ours = bp.MLPRegressor(**dict(BASE, dtype="float32")).fit(X, y)
    assert all(a.dtype == np.float32 for a in ours.coefs_)
    reference = sk.MLPRegressor(**BASE).fit(X.astype(np.float32), y.astype(np.float32))
    assert_same_fit(ours, reference, F32)
    ours64 = bp.MLPRegressor(**dict(BASE, dtype=np.float64)).fit(X.astype(np.float32), y)
    assert ours64.coefs_[0].dtype == np.float64
    with pytest.raises(ValueError, match="dtype"):
        bp.MLPRegressor(dtype=np.int32).fit(X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_parity_warm_start(solver, early_stopping):
    X, y = _classification(3)
    params = dict(
        BASE, solver=solver, warm_start=True, early_stopping=early_stopping, n_iter_no_change=3
    )
    ours, theirs = _pair("MLPClassifier", **params)
    for max_iter in (5, 8, 3):
        ours.set_params(max_iter=max_iter).fit(X, y)
        theirs.set_params(max_iter=max_iter).fit(X, y)
        assert_same_fit(ours, theirs)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize(
    "name, data", [("MLPClassifier", "multiclass"), ("MLPRegressor", "multioutput")]
)
def test_parity_partial_fit_sequence(name, data, solver):
    X, y = DATASETS[data]()
    classes = dict(classes=np.unique(y)) if name == "MLPClassifier" else {}
    ours, theirs = _pair(name, **dict(BASE, solver=solver, momentum=0.8))
    chunks = [slice(0, 40), slice(40, 90), slice(90, None), slice(10, 70)]
    for i, chunk in enumerate(chunks):
        extra = classes if i == 0 else {}
        ours.partial_fit(X[chunk], y[chunk], **extra)
        theirs.partial_fit(X[chunk], y[chunk], **extra)
        assert_same_fit(ours, theirs)
    if solver == "adam":
        assert ours._optimizer.t == theirs._optimizer.t
    assert_same_predictions(ours, theirs, X, y)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_parity_partial_fit_after_fit(solver):
    X, y = _classification(3)
    ours, theirs = _pair("MLPClassifier", **dict(BASE, solver=solver))
    ours.fit(X, y)
    theirs.fit(X, y)
    for _ in range(3):
        ours.partial_fit(X[:60], y[:60])
        theirs.partial_fit(X[:60], y[:60])
    assert_same_fit(ours, theirs)


def test_parity_partial_fit_multilabel():
    X, Y = _multilabel()
    ours, theirs = _pair("MLPClassifier", **dict(BASE, solver="adam"))
    for chunk in (slice(0, 50), slice(50, None)):
        ours.partial_fit(X[chunk], Y[chunk], classes=np.arange(3))
        theirs.partial_fit(X[chunk], Y[chunk], classes=np.arange(3))
    assert_same_fit(ours, theirs)


def test_partial_fit_keeps_the_optimizer_state():
    X, y = _regression(1)
    est = bp.MLPRegressor(**dict(BASE, solver="adam"))
    est.partial_fit(X, y)
    state = est._optimizer
    m = state.optimizer.moment1.copy()
    est.partial_fit(X, y)
    assert est._optimizer is state
    assert state.t == 2 * math.ceil(X.shape[0] / min(200, X.shape[0]))
    assert not np.array_equal(state.optimizer.moment1, m)
    est.fit(X, y)  # fit starts a fresh optimizer
    assert est._optimizer is not state


# --------------------------------------------------------------------------------------
# The two kernels
# --------------------------------------------------------------------------------------


def _objective(layer_units, X, Y, alpha=0.0, **names):
    """The estimators' compiled L-BFGS objective: ``loss_grad(params, grad)``."""
    arch = training._architecture(layer_units, X.dtype, **names)
    plan = arch.plan(X.shape[0], optimizer=optim.GradientOnly(alpha), two_cores=False)
    return lambda params, grad: plan.sk_objective(params, X, Y, None, grad)


def _sgd_state(params, lr, alpha):
    """A scikit-learn 'sgd' solver without momentum, as an estimator's fit creates it."""
    optimizer = optim.SGD(lr, 0.0, False, weight_decay=alpha, convention="scikit-learn")
    optimizer.init_state(params.size, params.dtype)
    return training._OptimizerState("sgd", optimizer, lr, "constant", 0.5)


def _kernel_problem(loss, data, activation, alpha):
    X, y = DATASETS[data]()
    X = np.ascontiguousarray(X[:20])
    Y = np.eye(3)[y[:20]] if loss == "log_loss" else y[:20].reshape(20, -1).astype(np.float64)
    layer_units = [X.shape[1], 5, 4, Y.shape[1]]
    arch = training._architecture(layer_units, np.float64)
    params = np.random.RandomState(0).uniform(-0.5, 0.5, arch.n_params)
    if activation == "relu":  # biases keep every unit away from the kink
        params[arch.offsets[1] :] = 0.7
    out_activation = {
        "log_loss": "softmax",
        "binary_log_loss": "logistic",
        "squared_error": "identity",
        "poisson": "exp",
    }[loss]
    loss_grad = _objective(layer_units, X, Y, alpha, activation=activation,
                           out_activation=out_activation, loss=loss)  # fmt: skip
    scratch_grad = np.empty_like(params)

    def objective():
        return loss_grad(params, scratch_grad)

    grad = np.empty_like(params)
    loss_grad(params, grad)
    return params, grad, objective


@pytest.mark.parametrize(
    "loss, data",
    [
        ("log_loss", "multiclass"),
        ("binary_log_loss", "multilabel"),
        ("squared_error", "regression"),
        ("poisson", "poisson"),
    ],
)
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_loss_grad_matches_finite_differences(loss, data, activation):
    params, grad, objective = _kernel_problem(loss, data, activation, alpha=0.3)
    (numeric,) = finite_difference_gradients(objective, [params])
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_squared_error_gradient_sums_over_outputs():
    # As in scikit-learn, the reported squared error averages over outputs while the
    # gradient is that of the sum over outputs.
    params, grad, objective = _kernel_problem("squared_error", "multioutput", "tanh", alpha=0.0)
    (numeric,) = finite_difference_gradients(objective, [params])
    assert_allclose(grad, 2 * numeric, rtol=1e-5, atol=1e-7)


def test_tiny_network_by_hand():
    # One sample, 2 inputs, 1 logistic hidden unit, identity output, squared error:
    #   h = s(0.5*1 + (-1)*2 + 0.5) = s(-1);  o = 2h - 1;  loss = (o - y)^2 / 2
    #   dL/do = o - y;  dL/dw2 = (o - y) h;  dL/dz1 = (o - y) * 2 * h (1 - h)
    X = np.array([[1.0, 2.0]])
    Y = np.array([[0.25]])
    params = np.array([0.5, -1.0, 2.0, 0.5, -1.0])  # W0 (2x1), W1 (1x1), b0, b1
    h = 1 / (1 + math.exp(1.0))
    o = 2 * h - 1
    dz1 = (o - 0.25) * 2 * h * (1 - h)
    expected = np.array([dz1 * 1.0, dz1 * 2.0, (o - 0.25) * h, dz1, o - 0.25])
    grad = np.empty(5)
    loss_grad = _objective([2, 1, 1], X, Y, activation="logistic", out_activation="identity",
                           loss="squared_error")  # fmt: skip
    loss = loss_grad(params, grad)
    assert_allclose(loss, 0.5 * (o - 0.25) ** 2)
    assert_allclose(grad, expected)


@pytest.mark.parametrize("hidden", [4, 40])  # 40: on two cores, the units cut in two
def test_run_epoch_leaves_the_last_batch_gradient(hidden, batch_path):
    X, y = _regression(1)
    Y = y.reshape(-1, 1)
    layer_units = [X.shape[1], hidden, 1]
    names = dict(activation="tanh", out_activation="identity", loss="squared_error")
    arch = training._architecture(layer_units, np.float64, **names)
    params = np.random.RandomState(0).uniform(-0.5, 0.5, arch.n_params)
    order = np.random.RandomState(1).permutation(X.shape[0])
    batch_size = 30
    run, grad = training._epoch_runner(params, _sgd_state(params, 0.0, 1e-3), X, Y, None,
                                 arch=arch, batch_size=batch_size, **names)  # fmt: skip
    start = params.copy()
    total = run(order)
    assert_array_equal(params, start)  # a zero step changes nothing
    expected_total, expected_grad = 0.0, np.empty_like(params)
    for lo in range(0, X.shape[0], batch_size):
        idx = order[lo : lo + batch_size]
        loss_grad = _objective(layer_units, X[idx], Y[idx], 1e-3, **names)
        expected_total += loss_grad(params, expected_grad) * idx.shape[0]
    assert_allclose(total, expected_total, rtol=1e-12)
    assert_allclose(grad, expected_grad, rtol=1e-12)


@pytest.mark.parametrize("hidden", [(12, 6), (100,)])  # (100,): the units cut in two
def test_run_epoch_raises_an_interrupt_between_batches(hidden):
    """A signal that arrives during one long epoch is raised from inside it, between two
    batches, with the parameters written back (on two cores, both threads' parts)."""
    import _thread
    import threading
    import time

    rng = np.random.RandomState(0)
    X = rng.normal(size=(200_000, 64))
    Y = np.eye(10)[rng.randint(0, 10, 200_000)]
    names = dict(activation="relu", out_activation="softmax", loss="log_loss")
    arch = training._architecture([64, *hidden, 10], np.float64, **names)
    params = rng.uniform(-0.1, 0.1, arch.n_params)
    optimizer = optim.Adam(1e-3, weight_decay=1e-4, convention="scikit-learn")
    optimizer.init_state(params.size, params.dtype)
    state = training._OptimizerState("adam", optimizer, 1e-3, "constant", 0.5)
    run, _ = training._epoch_runner(params, state, X, Y, None, arch=arch, batch_size=200, **names)
    order = np.arange(X.shape[0])
    start = time.perf_counter()
    run(order)
    whole = time.perf_counter() - start
    before = params.copy()
    optimizer.t = 1000
    timer = threading.Timer(whole / 4, _thread.interrupt_main)
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(order)
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 0.75 * whole
    assert np.isfinite(params).all() and not np.array_equal(params, before)


# --------------------------------------------------------------------------------------
# scikit-learn API
# --------------------------------------------------------------------------------------


@parametrize_with_checks(
    [bp.MLPClassifier(max_iter=100), bp.MLPRegressor(max_iter=100)],
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_importing_backprop_does_not_import_sklearn():
    code = (
        "import sys, backprop; assert 'sklearn' not in sys.modules; "
        "from backprop import estimators; "
        "assert backprop.MLPClassifier is estimators.MLPClassifier"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pipeline_and_grid_search():
    X, y = _iris()
    pipe = make_pipeline(StandardScaler(), bp.MLPClassifier(**dict(BASE, solver="lbfgs")))
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3, n_jobs=2)
    search.fit(X, y)
    assert search.best_score_ > 0.8
    reference = GridSearchCV(
        make_pipeline(StandardScaler(), sk.MLPClassifier(**dict(BASE, solver="lbfgs"))),
        {"mlpclassifier__alpha": [1e-4, 1e-1]},
        cv=3,
    ).fit(X, y)
    assert_allclose(search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"])


def test_clone_and_pickle_round_trip():
    X, y = _classification(3)
    est = bp.MLPClassifier(**dict(BASE, solver="adam")).fit(X, y)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params()
    assert not hasattr(fresh, "coefs_")
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    # Training resumes from the restored weights and optimizer state.
    est.partial_fit(X, y)
    restored.partial_fit(X, y)
    assert_array_equal(restored.predict_proba(X), est.predict_proba(X))


def test_feature_names_are_kept():
    pd = pytest.importorskip("pandas")
    X, y = _classification(3)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = bp.MLPClassifier(**BASE).fit(frame, y)
    assert_array_equal(est.feature_names_in_, frame.columns)


class _Recorder:
    def __init__(self, stop_at=None):
        self.infos = []
        self.stop_at = stop_at

    def __call__(self, info):
        self.infos.append(info)
        return self.stop_at is not None and info.epoch >= self.stop_at


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_callbacks_see_every_epoch(solver):
    X, y = _classification(3)
    recorder = _Recorder()
    params = dict(BASE, solver=solver, early_stopping=True, n_iter_no_change=100)
    est = bp.MLPClassifier(**params, callbacks=[recorder]).fit(X, y)
    assert [info.epoch for info in recorder.infos] == list(range(1, est.n_iter_ + 1))
    assert [info.loss for info in recorder.infos] == est.loss_curve_
    assert [info.validation_score for info in recorder.infos] == est.validation_scores_
    assert all(len(info.grad_norms) == 3 for info in recorder.infos)
    assert all(norm > 0 for info in recorder.infos for norm in info.grad_norms)
    # Callbacks only observe: the model equals scikit-learn's.
    assert_same_fit(est, sk.MLPClassifier(**params).fit(X, y))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_callbacks_can_stop_training(solver):
    X, y = _classification(3)
    stopper, watcher = _Recorder(stop_at=4), _Recorder()
    params = dict(BASE, solver=solver, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop is not a failure
        est = bp.MLPClassifier(**params, callbacks=[stopper, watcher]).fit(X, y)
    assert est.n_iter_ == 4
    assert len(watcher.infos) == 4
    if solver != "lbfgs":
        assert len(est.loss_curve_) == 4
    else:
        assert watcher.infos[-1].loss == pytest.approx(est.loss_)


def test_callbacks_must_be_callable():
    X, y = _classification(3)
    with pytest.raises(TypeError, match="callables"):
        bp.MLPClassifier(callbacks=[1]).fit(X, y)


# verbose: what scikit-learn prints, word for word; early stopping, the stopping rules
# and the adaptive learning rate each print a line of their own.
STALLS = dict(max_iter=30, n_iter_no_change=1, tol=10.0)
VERBOSE_FITS = [
    dict(solver="sgd", max_iter=3),
    dict(STALLS, early_stopping=True),
    dict(STALLS, solver="sgd"),
    dict(STALLS, solver="sgd", learning_rate="adaptive"),
    dict(STALLS, solver="sgd", learning_rate="adaptive", learning_rate_init=1e-6),
]


@pytest.mark.parametrize("params", VERBOSE_FITS)
def test_verbose_prints_what_scikit_learn_prints(params, capsys):
    pytest.importorskip("tqdm")  # installed or not, verbose draws no bar
    X, y = _classification(3)
    params = dict(BASE, **params, verbose=True)
    sk.MLPClassifier(**params).fit(X, y)
    expected = capsys.readouterr()
    bp.MLPClassifier(**params).fit(X, y)
    captured = capsys.readouterr()
    assert "Iteration 1, loss = " in expected.out
    assert captured.out == expected.out
    assert captured.err == expected.err == ""


def test_verbose_lbfgs_prints_no_lines_of_its_own(capsys):
    X, y = _classification(3)
    bp.MLPClassifier(**dict(BASE, solver="lbfgs", max_iter=3, verbose=True)).fit(X, y)
    assert "Iteration" not in capsys.readouterr().out


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_progress_bar_is_a_tqdm_bar_on_stderr(solver, capsys):
    pytest.importorskip("tqdm")
    X, y = _classification(3)
    bp.MLPClassifier(**dict(BASE, solver=solver, max_iter=3, progress_bar=True)).fit(X, y)
    captured = capsys.readouterr()
    assert "3/3" in captured.err
    assert "loss=" in captured.err
    assert captured.out == ""  # the bar alone: verbose is off


def test_progress_bar_with_verbose_keeps_scikit_learns_lines(capsys):
    pytest.importorskip("tqdm")
    X, y = _classification(3)
    params = dict(BASE, solver="sgd", max_iter=3, verbose=True)
    sk.MLPClassifier(**params).fit(X, y)
    expected = capsys.readouterr().out
    bp.MLPClassifier(**params, progress_bar=True).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == expected
    assert "3/3" in captured.err


def test_progress_bar_without_tqdm_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = _classification(3)
    with pytest.raises(ImportError, match="tqdm"):
        bp.MLPClassifier(**dict(BASE, max_iter=2, progress_bar=True)).fit(X, y)


# Callbacks under L-BFGS see the iterate they are called for: a snapshot taken at
# iteration k is the model a fit with max_iter=k ends with.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_callbacks_see_the_model_of_their_iteration(dtype):
    X, y = _classification(3)
    params = dict(BASE, solver="lbfgs", max_iter=6, dtype=dtype)
    snapshots = {}

    def snapshot(info):
        snapshots[info.epoch] = dict(
            coefs=[c.copy() for c in est.coefs_],
            intercepts=[b.copy() for b in est.intercepts_],
            loss=info.loss,
            loss_=est.loss_,
            n_iter_=est.n_iter_,
            proba=est.predict_proba(X),
            score=est.score(X, y),
        )

    est = bp.MLPClassifier(**params, callbacks=[snapshot])
    est.fit(X, y)
    assert sorted(snapshots) == list(range(1, est.n_iter_ + 1))
    for k in (1, 3, est.n_iter_):
        stopped = bp.MLPClassifier(**dict(params, max_iter=k)).fit(X, y)
        seen = snapshots[k]
        for a, b in zip(seen["coefs"] + seen["intercepts"], stopped.coefs_ + stopped.intercepts_):
            assert_array_equal(a, b)
        assert seen["loss"] == seen["loss_"] == stopped.loss_
        assert seen["n_iter_"] == k
        assert_array_equal(seen["proba"], stopped.predict_proba(X))
        assert seen["score"] == stopped.score(X, y)
    # not the initial weights at every iteration, as callbacks once saw
    assert not np.array_equal(snapshots[3]["coefs"][0], snapshots[1]["coefs"][0])
    assert snapshots[est.n_iter_]["loss"] < snapshots[1]["loss"]


# float32 networks sum sample weights and losses in float64: a float32 running sum stops
# growing at 2^24, so that a weight of 2^24 followed by weights of 1 sums to 2^24 however
# many follow. 200_000 of them: the weight sum (and every mean over it) is 1.2% off.
def _drifting_weights(n=200_001):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))
    y = X @ np.array([1.0, -2.0]) + rng.normal(size=n)
    sample_weight = np.ones(n)
    sample_weight[0] = 2.0**24
    return X, y, sample_weight


@pytest.mark.parametrize("sparse", [False, True])
def test_float32_objective_sums_in_float64(sparse):
    X, y, sample_weight = _drifting_weights()
    if sparse:
        X = sp.csr_matrix(X)
    values = {}
    for dtype in (np.float64, np.float32):
        est = bp.MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=1,
                              alpha=1.0, random_state=0, dtype=dtype)  # fmt: skip
        est.fit(X[:10], y[:10])  # the weights; the objective is then taken on all of X
        theta = np.concatenate([c.ravel() for c in est.coefs_ + est.intercepts_])
        values[dtype] = est._loss_grad_lbfgs(theta, X, y, sample_weight, [], [], [], [])
    (loss64, grad64), (loss32, grad32) = values[np.float64], values[np.float32]
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert_allclose(grad32, grad64, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("path", ["one batch", "halves"])
def test_float32_epoch_sums_in_float64(path):
    X, y, sample_weight = _drifting_weights()
    # one batch of every sample, evaluated before its step: loss_ is the loss at the
    # initial weights, the same in both dtypes but for float32's rounding
    losses = {}
    for dtype in (np.float64, np.float32):
        est = bp.MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", batch_size=X.shape[0],
                              max_iter=1, shuffle=False, alpha=1.0, random_state=0,
                              dtype=dtype)  # fmt: skip
        if path == "halves":
            with force_path("halves"):
                est.fit(X, y, sample_weight=sample_weight)
        else:
            est.fit(X, y, sample_weight=sample_weight)
        losses[dtype] = est.loss_
    assert losses[np.float32] == pytest.approx(losses[np.float64], rel=1e-5)


def test_convergence_warning_at_max_iter():
    X, y = _classification(3)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        bp.MLPClassifier(**dict(BASE, max_iter=3)).fit(X, y)


def test_errors():
    X, y = _classification(3)
    with pytest.raises(ValueError, match="early_stopping"):
        bp.MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    assert not hasattr(bp.MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(bp.MLPRegressor(solver="lbfgs"), "partial_fit")
    est = bp.MLPClassifier(**dict(BASE, warm_start=True)).fit(X, y)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        est.fit(X, np.where(y == 2, 1, y))
    est = bp.MLPClassifier(**BASE).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not in classes_"):
        est.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="The validation set is too small"):
        bp.MLPRegressor(early_stopping=True).fit(X[:5], y[:5])
    for sizes in [(5.0,), (4, 2.5), (True,)]:
        with pytest.raises(TypeError, match="hidden_layer_sizes must hold whole numbers"):
            bp.MLPClassifier(**dict(BASE, hidden_layer_sizes=sizes)).fit(X, y)
    assert bp.MLPClassifier(**dict(BASE, hidden_layer_sizes=(np.int64(4),))).fit(X, y).coefs_


def test_plot_loss_curve():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    X, y = _classification(3)
    est = bp.MLPClassifier(**dict(BASE, early_stopping=True)).fit(X, y)
    ax = bp.plot_loss_curve(est)
    assert_allclose(ax.lines[0].get_ydata(), est.loss_curve_)
    with pytest.raises(ValueError, match="loss_curve_"):
        bp.plot_loss_curve(bp.MLPClassifier(**dict(BASE, solver="lbfgs")).fit(X, y))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_dense_input_trains_in_the_compiled_kernels(solver, monkeypatch):
    """Dense X never reaches the NumPy epoch or objective; sparse X does, with equal results."""
    X, y = _classification(3)
    params = dict(BASE, solver=solver, max_iter=5)
    expected = bp.MLPClassifier(**params).fit(X, y)

    def refuse(*args, **kwargs):
        raise AssertionError("the NumPy path ran for dense input")

    monkeypatch.setattr(_sparse, "run_epoch", refuse)
    monkeypatch.setattr(_sparse, "loss_grad", refuse)
    ours = bp.MLPClassifier(**params).fit(X, y)
    assert_same_fit(ours, expected, dict(rtol=0, atol=0))
    monkeypatch.undo()
    sparse = bp.MLPClassifier(**params).fit(sp.csr_matrix(X), y)
    assert_same_fit(sparse, expected, dict(rtol=1e-7, atol=1e-9))


@pytest.mark.parametrize("hidden", [(12, 6), (100,)])  # (100,): the units cut in two
def test_interrupt_main_during_fit_keeps_a_whole_model(hidden):
    """Ctrl-C in the compiled epoch ends fit as scikit-learn's does (a warning, the model
    of the last whole step), and on two cores it leaves both threads' parts written back."""
    import _thread
    import threading
    import time

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(2000, 64)), rng.randint(0, 10, 2000)
    est = bp.MLPClassifier(hidden_layer_sizes=hidden, max_iter=100_000, tol=0,
                           n_iter_no_change=100_000, random_state=0)  # fmt: skip
    timer = threading.Timer(0.3, _thread.interrupt_main)
    start = time.monotonic()
    timer.start()
    try:
        with pytest.warns(UserWarning, match="Training interrupted by the user"):
            est.fit(X, y)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 30  # ~an hour if the interrupt were ignored
    assert 0 < est.n_iter_ < 100_000
    assert all(np.isfinite(w).all() for w in est.coefs_ + est.intercepts_)
    assert est.predict(X).shape == (2000,)
    assert est.score(X, y) > 0.1


# small batches give the two threads many chances to race
@pytest.mark.parametrize(
    "hidden, batch_size", [((12, 6), "auto"), ((40,), "auto"), ((40,), 3), ((70,), 5)]
)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_halves_do_not_depend_on_the_number_of_threads(solver, hidden, batch_size):
    """Batches split in two halves, or one hidden layer's units cut in two, fit
    bit-identical models on one thread or two."""
    X, y = DATASETS["multiclass"]()
    fitted = []
    params = dict(BASE, solver=solver, hidden_layer_sizes=hidden, batch_size=batch_size,
                  max_iter=15 if batch_size == "auto" else 80)  # fmt: skip
    with force_path("halves"):
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="backprop"):
                fitted.append(_pair("MLPClassifier", **params)[0].fit(X, y))
    one, two = fitted
    for a, b in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert one.loss_curve_ == two.loss_curve_


def test_predict_follows_coefs_the_user_assigns():
    """As scikit-learn's MLP, whose predict reads coefs_: arrays assigned to coefs_ and
    intercepts_ (whole lists, one element, after pickling) are the model predict uses,
    dense or sparse."""
    import copy

    X, y = _classification(3)
    a = bp.MLPClassifier(**dict(BASE, random_state=0)).fit(X, y)
    b = bp.MLPClassifier(**dict(BASE, random_state=1)).fit(X, y)
    expected = b.predict_proba(X)
    a.coefs_ = [c.copy() for c in b.coefs_]
    a.intercepts_ = [c.copy() for c in b.intercepts_]
    assert_allclose(a.predict_proba(X), expected, rtol=1e-12)
    assert_allclose(a.predict_proba(sp.csr_matrix(X)), expected, rtol=1e-10)
    c = bp.MLPClassifier(**dict(BASE, random_state=0)).fit(X, y)
    c.coefs_[0] = np.zeros_like(c.coefs_[0])
    c.intercepts_[0] = np.zeros_like(c.intercepts_[0])
    assert_allclose(c.predict_proba(X), c.predict_proba(sp.csr_matrix(X)), rtol=1e-10)
    for clone_of in (lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy):
        d = clone_of(b)
        d.coefs_[-1][...] = 0
        d.intercepts_[-1][...] = 0
        assert_allclose(d.predict_proba(X), 1 / 3, rtol=1e-12)  # in place, after the copy
        assert_allclose(b.predict_proba(X), expected, rtol=0)  # the original unchanged
    e = bp.MLPClassifier(**dict(BASE, random_state=0)).fit(X, y)
    e.coefs_[1] = np.zeros((3, 6))
    with pytest.raises(ValueError, match=r"coefs_\[1\] has shape \(3, 6\)"):
        e.predict(X)
    e.coefs_[1] = np.zeros((12, 6))
    e.intercepts_[1] = np.zeros(1)
    with pytest.raises(ValueError, match=r"intercepts_\[1\] has shape \(1,\)"):
        e.predict(X)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_fit_from_its_own_callback_is_refused(solver):
    X, y = _classification(3)
    est = bp.MLPClassifier(**dict(BASE, solver=solver, max_iter=5))
    errors = []

    def refit(info):
        try:
            est.fit(X[:30], y[:30] % 2)
        except RuntimeError as error:
            errors.append(str(error))

    est.set_params(callbacks=[refit])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert errors and all("already being fitted" in e for e in errors)
    assert_array_equal(est.classes_, [0, 1, 2])
    twin = bp.MLPClassifier(**dict(BASE, solver=solver, max_iter=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        twin.fit(X, y)
    assert_array_equal(est.predict_proba(X), twin.predict_proba(X))
    est.set_params(callbacks=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:30], y[:30] % 2)  # and after it, fit works again
    assert_array_equal(est.classes_, [0, 1])
