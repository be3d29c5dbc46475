"""The estimators on Dask collections (``backprop._dask``), on a local cluster of two worker
processes: L-BFGS over the partitions equals the fit on the concatenated NumPy data to
1e-10 (float64) with the same n_iter_; sgd and adam without shuffling equal it bit for bit
in the weights, with batches straddling partitions; shuffled fits are reproducible;
prediction is lazy; the client never receives X; a worker lost mid-fit does not change
the model or hang the fit.
"""

import os
import signal
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from backprop import MLPClassifier, MLPRegressor  # noqa: E402


def problem(n=600, d=12, classes=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5)
    return X, y % classes


def dask_inputs(X, y, chunks):
    return da.from_array(X, chunks=(chunks, -1)), da.from_array(y, chunks=chunks)


def assert_same_model(a, b, rtol=0.0):
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=0)
    assert a.n_iter_ == b.n_iter_


def test_without_a_client_fit_says_what_to_do():
    # first in this module: before the cluster fixture registers a client
    try:
        distributed.get_client()
    except ValueError:
        pass
    else:
        pytest.skip("a client is registered in this process")
    X, y = problem(n=50)
    with pytest.raises(ValueError, match="needs a dask.distributed Client"):
        MLPClassifier(max_iter=1).fit(*dask_inputs(X, y, 25))


@pytest.mark.parametrize("chunks", [150, 97])
def test_lbfgs_on_partitions_equals_the_numpy_fit(dask_client, chunks):
    X, y = problem()
    params = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=25, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = MLPClassifier(**params).fit(X, y)
        there = MLPClassifier(**params).fit(*dask_inputs(X, y, chunks))
    assert_same_model(here, there, rtol=1e-10)
    assert abs(there.loss_ - here.loss_) <= 1e-10 * here.loss_
    np.testing.assert_array_equal(there.classes_, here.classes_)


def test_lbfgs_regressor_with_sample_weights(dask_client):
    X, _ = problem(n=400, d=6)
    rng = np.random.default_rng(1)
    y = np.column_stack([X @ rng.standard_normal(6), np.sin(X[:, 0])])
    sw = rng.uniform(0.5, 2.0, len(X))
    params = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=20, random_state=0, alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = MLPRegressor(**params).fit(X, y, sample_weight=sw)
        Xd = da.from_array(X, chunks=(130, -1))
        yd = da.from_array(y, chunks=(130, -1))
        there = MLPRegressor(**params).fit(Xd, yd, sample_weight=da.from_array(sw, chunks=130))
    assert_same_model(here, there, rtol=1e-10)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("chunks", [120, 77])
def test_stochastic_solvers_visit_the_partitions_in_order(dask_client, solver, chunks):
    # batch_size 50 does not divide the partitions: batches straddle them, as they do in
    # the concatenated data
    X, y = problem()
    params = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=6, batch_size=50,
                  shuffle=False, random_state=0, alpha=1e-3)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = MLPClassifier(**params).fit(X, y)
        there = MLPClassifier(**params).fit(*dask_inputs(X, y, chunks))
    assert_same_model(here, there)
    np.testing.assert_allclose(there.loss_curve_, here.loss_curve_, rtol=1e-12)
    assert there.t_ == here.t_


def test_dataframes_partial_fit_and_float32(dask_client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = problem(n=400, d=5, dtype=np.float32)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    Xd = dd.from_pandas(frame, npartitions=3)
    yd = dd.from_pandas(pd.Series(y, name="y"), npartitions=3)
    params = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=40, shuffle=False,
                  random_state=0)  # fmt: skip
    here = MLPClassifier(**params)
    there = MLPClassifier(**params)
    for _ in range(3):
        here.partial_fit(frame, y, classes=np.unique(y))
        there.partial_fit(Xd, yd, classes=np.unique(y))
    assert there.coefs_[0].dtype == np.float32
    assert_same_model(here, there)
    np.testing.assert_array_equal(there.feature_names_in_, frame.columns)
    np.testing.assert_array_equal(there.predict(Xd).compute(), here.predict(frame))


def test_labels_outside_the_classes_are_refused(dask_client):
    X, y = problem(n=200)
    est = MLPClassifier(hidden_layer_sizes=(4,), solver="sgd", random_state=0)
    known = y < 2
    est.partial_fit(X[known], y[known], classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes_"):
        est.partial_fit(*dask_inputs(X, y, 50))


def test_shuffled_fits_are_reproducible_and_learn(dask_client):
    X, y = problem()
    params = dict(hidden_layer_sizes=(16,), solver="adam", max_iter=8, batch_size=32,
                  random_state=3, learning_rate_init=0.02)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**params).fit(*dask_inputs(X, y, 100))
        b = MLPClassifier(**params).fit(*dask_inputs(X, y, 100))
    assert_same_model(a, b)
    assert a.score(X, y) > 0.85


def test_prediction_is_lazy_and_equals_numpy(dask_client):
    X, y = problem()
    est = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    Xd = da.from_array(X, chunks=(100, -1))
    for method in ("predict", "predict_proba", "predict_log_proba"):
        lazy = getattr(est, method)(Xd)
        assert isinstance(lazy, da.Array)
        np.testing.assert_array_equal(lazy.compute(), getattr(est, method)(X))


def test_the_client_never_receives_x(dask_client, monkeypatch):
    X, y = problem(n=300)
    Xd, yd = dask_inputs(X, y, 100)
    gathered = []
    gather = type(dask_client).gather

    def spy(self, futures, *args, **kwargs):
        result = gather(self, futures, *args, **kwargs)
        gathered.append(result)
        return result

    monkeypatch.setattr(type(dask_client), "gather", spy)
    est = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(Xd, yd)
    assert gathered

    def arrays(value):
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from arrays(v)

    for result in gathered:
        for array in arrays(result):
            assert array.ndim == 1 and array.size <= est._params.size, array.shape


def test_a_worker_lost_mid_fit_changes_nothing(dask_client):
    X, y = problem(n=2000)
    params = dict(hidden_layer_sizes=(32,), solver="sgd", max_iter=40, batch_size=64,
                  shuffle=False, random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = MLPClassifier(**params).fit(X, y)
    est = MLPClassifier(**params)
    done = {}

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                done["model"] = est.fit(*dask_inputs(X, y, 250))
            except Exception as error:  # noqa: BLE001 - reported below
                done["error"] = error

    pids = dask_client.run(os.getpid)
    worker = threading.Thread(target=fit)
    worker.start()
    # a worker process is killed while the fit runs; its nanny starts another
    threading.Event().wait(1.0)
    assert worker.is_alive(), "the fit ended before the worker could be killed"
    os.kill(pids[sorted(pids)[0]], signal.SIGKILL)
    worker.join(timeout=240)
    assert not worker.is_alive(), "the fit hung after a worker was lost"
    if "error" in done:  # allowed: a clear error, never a model trained part-way
        error = done["error"]
        assert type(error).__name__ == "KilledWorker" or "on the Dask cluster" in str(error)
    else:
        assert_same_model(here, done["model"])
    dask_client.wait_for_workers(2, timeout=120)


def test_bad_inputs_are_refused_and_leave_nothing_on_the_workers(dask_client):
    X, y = problem(n=300)
    Xd, yd = dask_inputs(X, y, 100)
    est = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5, random_state=0)
    sw = np.ones(len(X))
    sw[5] = np.nan
    # as the NumPy fit refuses it; the fit used to return an untrained model
    with pytest.raises(ValueError, match="sample_weight contains NaN"):
        est.fit(Xd, yd, sample_weight=da.from_array(sw, chunks=50))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        est.fit(Xd[Xd[:, 0] > 0], yd[Xd[:, 0] > 0])
    bad = X.copy()
    bad[250, 2] = np.nan
    with pytest.raises(ValueError, match="contains NaN") as error:
        est.fit(da.from_array(bad, chunks=(100, -1)), yd)
    # the traceback, still held here, keeps no encoded partition on the workers
    assert error.value is not None

    def held(dask_worker):
        return len(dask_worker.data)

    deadline = threading.Event()
    for _ in range(20):
        if not any(dask_client.run(held).values()):
            break
        deadline.wait(0.1)
    assert not any(dask_client.run(held).values())


def test_dataframe_columns_are_checked_and_prediction_computes_nothing(dask_client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = problem(n=300, d=5)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    Xd = dd.from_pandas(frame, npartitions=3)
    yd = da.from_array(y, chunks=100)
    est = MLPClassifier(hidden_layer_sizes=(4,), solver="sgd", batch_size=50, shuffle=False,
                        random_state=0).partial_fit(Xd, yd, classes=[0, 1, 2])  # fmt: skip
    swapped = Xd[list(frame.columns[::-1])]
    for call in (est.predict, est.predict_proba, lambda X: est.partial_fit(X, yd)):
        # the same columns in another order: refused, as for a pandas X
        with pytest.raises(ValueError, match="feature names should match"):
            call(swapped)
    with pytest.raises(ValueError, match="2-d"):
        est.predict(Xd["f0"])
    with distributed.get_task_stream(dask_client) as tasks:
        lazy = est.predict_proba(Xd)
    assert not tasks.data
    np.testing.assert_array_equal(lazy.compute(), est.predict_proba(frame))
