"""The estimators with the Dask tools users combine with scikit-learn estimators, on a
local cluster of two worker processes: dask-ml's ``Incremental`` equals a loop of
``partial_fit`` over the same blocks, bit for bit; scikit-learn's ``GridSearchCV`` on
joblib's Dask backend equals the search in one process, bit for bit, and so does dask-ml's
``GridSearchCV``; an estimator carried from worker to worker between ``partial_fit`` calls
keeps its optimizer state and ends bit-identical to the same calls in one process.

dask-ml's adaptive searches (IncrementalSearchCV, HyperbandSearchCV and the others built on
``dask_ml.model_selection._incremental.fit``) are not here: dask-ml 2025.1 calls
``dask.persist`` inside the client's event loop, which Dask refuses since 2025.3, so they
fail before any estimator is fitted, scikit-learn's SGDClassifier alike (dask/dask-ml#1016).
"""

import operator

import numpy as np
import pytest

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
pytest.importorskip("dask_ml")

import joblib  # noqa: E402
from dask_ml.model_selection import GridSearchCV as DaskGridSearchCV  # noqa: E402
from dask_ml.wrappers import Incremental  # noqa: E402
from numpy.testing import assert_array_equal  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from backprop import MLPClassifier, MLPRegressor  # noqa: E402

CLASSES = np.array([0, 1, 2])
# blocks of 70, 70, 70, 70 and 20 rows; batches of 16 fit in the last one
N_ROWS, BLOCK, BATCH = 300, 70, 16
SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.9, learning_rate="invscaling", learning_rate_init=0.05),
    "adam": dict(solver="adam", learning_rate_init=0.01),
}
# the cross-validated searches: lbfgs converges on every split well within max_iter (with
# relu it does not), so no fit warns, in this process or on a worker
SEARCH = dict(
    estimator=MLPClassifier(activation="tanh", solver="lbfgs", max_iter=500, random_state=0),
    param_grid={"alpha": [0.1, 1.0], "hidden_layer_sizes": [(4,), (12,)]},
    cv=3,
    scoring="neg_log_loss",
)


def classification(n=N_ROWS, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5)
    return X, y


def regression(n=N_ROWS, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, X @ rng.standard_normal(d) + np.sin(X[:, 0])


def blocks(X, y):
    return [(X[s : s + BLOCK], y[s : s + BLOCK]) for s in range(0, len(X), BLOCK)]


def assert_same_model(a, b):
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert_array_equal(wa, wb)
    assert a.t_ == b.t_
    assert_array_equal(a.loss_curve_, b.loss_curve_)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_incremental_equals_a_partial_fit_loop_over_the_blocks(dask_client, kind, solver):
    # What keeps Incremental's order the loop's: shuffle_blocks=False (it shuffles the
    # blocks by default), X in one block of columns (Incremental hands partial_fit the
    # first column block of each row block only), y in X's row blocks. The rows within a
    # block are shuffled by partial_fit itself, from the integer random_state afresh at
    # every call, so alike in any process.
    Estimator, (X, y) = {
        "classifier": (MLPClassifier, classification()),
        "regressor": (MLPRegressor, regression()),
    }[kind]
    fit_params = {"classes": CLASSES} if kind == "classifier" else {}
    params = dict(hidden_layer_sizes=(10,), batch_size=BATCH, random_state=0, **SOLVERS[solver])

    here = Estimator(**params)
    for X_block, y_block in blocks(X, y):
        here.partial_fit(X_block, y_block, **fit_params)

    Xd = da.from_array(X, chunks=(BLOCK, -1))
    yd = da.from_array(y, chunks=BLOCK)
    wrapper = Incremental(Estimator(**params), shuffle_blocks=False).fit(Xd, yd, **fit_params)
    there = wrapper.estimator_
    assert there.n_features_in_ == X.shape[1]
    assert len(there.loss_curve_) == len(blocks(X, y))
    assert_same_model(here, there)
    assert_array_equal(wrapper.predict(Xd).compute(), here.predict(X))


def test_grid_search_on_the_dask_joblib_backend_equals_the_local_search(dask_client):
    X, y = classification(n=240)
    here = GridSearchCV(**SEARCH, return_train_score=True, n_jobs=1).fit(X, y)
    with distributed.get_task_stream(dask_client) as tasks, joblib.parallel_backend("dask"):
        there = GridSearchCV(**SEARCH, return_train_score=True, n_jobs=-1).fit(X, y)
    assert tasks.data, "the search did not run on the cluster"

    scores = [k for k in here.cv_results_ if k.endswith(("test_score", "train_score"))]
    assert len(scores) == 2 * (3 + 2) + 1  # splits, mean and std of both; test rank
    for key in scores:
        assert_array_equal(there.cv_results_[key], here.cv_results_[key], err_msg=key)
    assert there.best_params_ == here.best_params_
    assert there.best_index_ == here.best_index_
    best, expected = there.best_estimator_, here.best_estimator_
    for wa, wb in zip(best.coefs_ + best.intercepts_, expected.coefs_ + expected.intercepts_):
        assert_array_equal(wa, wb)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_partial_fit_carried_between_workers_equals_one_process(dask_client, solver):
    X, y = classification()
    params = dict(hidden_layer_sizes=(10,), batch_size=BATCH, random_state=0, **SOLVERS[solver])
    here = MLPClassifier(**params)
    for X_block, y_block in blocks(X, y):
        here.partial_fit(X_block, y_block, classes=CLASSES)

    workers = sorted(dask_client.scheduler_info()["workers"])
    assert len(workers) == 2
    model, steps = MLPClassifier(**params), []
    with distributed.get_task_stream(dask_client) as tasks:
        for i, (X_block, y_block) in enumerate(blocks(X, y)):
            # each call unpickles the estimator the other worker returned
            step = operator.methodcaller("partial_fit", X_block, y_block, classes=CLASSES)
            model = dask_client.submit(step, model, workers=[workers[i % 2]], pure=False)
            steps.append(model.key)
        there = model.result()
    ran_on = {task["key"]: task["worker"] for task in tasks.data}
    assert [ran_on[key] for key in steps] == [workers[i % 2] for i in range(len(steps))]

    assert_same_model(here, there)
    ours, theirs = here._optimizer, there._optimizer
    assert theirs.t == ours.t and theirs.learning_rate == ours.learning_rate
    for name in ("moment1", "moment2"):
        moment = getattr(ours.optimizer, name)
        if moment is not None:
            assert np.any(moment != 0)
            assert_array_equal(getattr(theirs.optimizer, name), moment, err_msg=name)
    assert_array_equal(there.predict_proba(X), here.predict_proba(X))


def test_dask_ml_grid_search_equals_scikit_learns(dask_client):
    X, y = classification(n=300)
    X_train, y_train, X_test, y_test = X[:240], y[:240], X[240:], y[240:]
    here = GridSearchCV(**SEARCH, n_jobs=1).fit(X_train, y_train)
    with distributed.get_task_stream(dask_client) as tasks:
        there = DaskGridSearchCV(**SEARCH).fit(X_train, y_train)
    assert tasks.data, "the search did not run on the cluster"

    for split in range(3):
        key = f"split{split}_test_score"
        assert_array_equal(there.cv_results_[key], here.cv_results_[key], err_msg=key)
    assert there.best_params_ == here.best_params_
    best, expected = there.best_estimator_, here.best_estimator_
    for wa, wb in zip(best.coefs_ + best.intercepts_, expected.coefs_ + expected.intercepts_):
        assert_array_equal(wa, wb)
    assert best.score(X_test, y_test) > 0.85
