"""The benchmark's peers do the same work: from the same weights, on the same data, they end
with the same weights (to rounding), and the table has a row for each of them."""

import dataclasses
import importlib.util
import io

import numpy as np
import pytest

from backprop import _core, bench, reference

TOL = {"float64": 1e-10, "float32": 1e-4}

W1 = bench.WORKLOADS["W1"].scaled(0.01)  # 200 samples, batch 1
W2 = bench.WORKLOADS["W2"].scaled(0.01)  # 200 samples, batch 32
W3_SMALL = dataclasses.replace(
    bench.WORKLOADS["W3"],
    name="W3s",
    title="mnist-like small",
    sizes=(30, 16, 10),
    batch_size=8,
    n_samples=100,
)

# W5 in small: batch normalization and Adam
W5_SMALL = dataclasses.replace(
    bench.WORKLOADS["W5"], name="W5s", sizes=(30, 16, 12, 10), batch_size=8, n_samples=100
)


def needs(name: str):
    """Skip where the peer ``name`` is not installed (backprop itself is always needed)."""
    missing = importlib.util.find_spec(name) is None
    return pytest.mark.skipif(missing, reason=f"{name} is not installed")


def train(name: str, workload: bench.Workload) -> bench.Trainer:
    trainer = bench.make_trainer(name)
    trainer.prepare(workload, bench.make_data(workload), bench.initial_params(workload))
    trainer.run()
    return trainer


def assert_same_params(got: bench.Params, expected: bench.Params, tol: float) -> None:
    assert len(got.weights) == len(expected.weights)
    for layer, (W, V, b, c) in enumerate(
        zip(got.weights, expected.weights, got.biases, expected.biases, strict=True)
    ):
        assert W.shape == V.shape, f"layer {layer}"
        np.testing.assert_allclose(W, V, rtol=0, atol=tol, err_msg=f"weights[{layer}]")
        np.testing.assert_allclose(b, c, rtol=0, atol=tol, err_msg=f"biases[{layer}]")


@pytest.fixture(scope="module")
def numpy_results():
    return {w.name: train("numpy", w) for w in (W1, W2, W3_SMALL)}


def test_scaled_keeps_at_least_one_batch():
    assert bench.WORKLOADS["W1"].scaled(0.01).n_samples == 200
    assert bench.WORKLOADS["W4"].scaled(1e-6).n_samples == 256
    assert bench.WORKLOADS["W4"].n_samples == 20 * 256


def test_flops():
    w = bench.WORKLOADS["W3"]
    assert w.flops == 6 * 60_000 * (784 * 256 + 256 * 10)
    assert bench.WORKLOADS["W3f"].flops == w.flops // 3
    # the products: forward, weight gradients, the deltas of every layer but the first
    assert w.needed_flops == 60_000 * 2 * (2 * (784 * 256 + 256 * 10) + 256 * 10)
    assert bench.WORKLOADS["W3f"].needed_flops == w.flops // 3


# the probe's vector width in floats, by kernel target (SSE, AVX2, AVX-512)
PEAK_LANES = {"x86-64-v2": 4, "x86-64-v3": 8, "x86-64-v4": 16}


def test_peak_probe_counts_its_multiply_adds():
    lanes = PEAK_LANES.get(_core.TARGET, 4)
    # 12 chains of one vector, a multiply and an add per lane and step, on each thread
    assert _core.peak_flops(1000, False, 1) == 1000 * 12 * 2 * lanes
    assert _core.peak_flops(1000, True, 2) == 2 * 1000 * 12 * 2 * lanes // 2
    assert _core.peak_flops(0, False, 2) == 0
    for steps, threads in ((-1, 1), (10, 0), (10, 3)):
        with pytest.raises(ValueError, match="threads 1 or 2"):
            _core.peak_flops(steps, False, threads)
    peak = bench.peak_gflops(repeats=1, seconds=0.002)
    assert peak.target == _core.TARGET and peak.threads == _core.team_size()
    assert set(peak.gflops) == {"float32", "float64"} and min(peak.gflops.values()) > 0


def test_data_and_params():
    for w in (W1, W2, W3_SMALL):
        X, Y = bench.make_data(w)
        params = bench.initial_params(w)
        assert X.shape == (w.n_samples, w.sizes[0]) and X.dtype == w.dtype
        if w.loss == "cross_entropy":
            assert Y.shape == (w.n_samples,) and Y.dtype == np.int64
            assert 0 <= Y.min() and Y.max() < w.sizes[-1]
        else:
            assert Y.shape == (w.n_samples, 1) and ((0 < Y) & (Y < 1)).all()
        for W, b, n_in, n_out in zip(
            params.weights, params.biases, w.sizes[:-1], w.sizes[1:], strict=True
        ):
            assert W.shape == (n_out, n_in) and W.dtype == w.dtype
            assert np.abs(W).max() <= np.sqrt(6 / (n_in + n_out))
            assert not b.any()


def test_timed_digits_fits_follow_each_other_without_a_pause(monkeypatch):
    events = []
    monkeypatch.setattr(bench.digits.time, "sleep", lambda seconds: events.append("sleep"))
    fit = bench.fit_quietly

    def fit_and_note(estimator, X, y):
        events.append(type(estimator).__module__.split(".")[0])
        return fit(estimator, X, y)

    monkeypatch.setattr(bench.digits, "fit_quietly", fit_and_note)
    bench.measure_digits(bench.DIGITS["sgd"].scaled(0.05), repeats=2)
    untimed = ["backprop", "sklearn"]  # the first fit of each, for accuracy, n_iter_ and loss_
    assert events == untimed + ["backprop", "sklearn", "sklearn", "backprop"]


def test_prepare_restarts_from_the_initial_weights():
    trainer = train("numpy", W2)
    first = bench.final_weights(trainer).weights[0].copy()
    assert bench.measure(trainer, repeats=2)[0] > 0
    np.testing.assert_array_equal(bench.final_weights(trainer).weights[0], first)


def test_numpy_follows_the_reference():
    for w in (W1, dataclasses.replace(W2, n_samples=64)):
        X, Y = bench.make_data(w)
        params = bench.initial_params(w)
        net = reference.Network(
            list(w.sizes), activation=w.activation, output=w.output, loss=w.loss, seed=w.seed + 1
        )
        for W, V in zip(net.weights, params.weights, strict=True):
            np.testing.assert_array_equal(np.array(W), V)
        losses = net.fit(X, Y, epochs=1, batch_size=w.batch_size, lr=w.lr, shuffle=False)
        trainer = train("numpy", w)
        expected = bench.Params(
            [np.array(W) for W in net.weights], [np.array(b) for b in net.biases]
        )
        assert_same_params(bench.final_weights(trainer), expected, TOL["float64"])
        assert trainer.epoch_loss == pytest.approx(losses[-1], abs=1e-12)


@needs("torch")
@pytest.mark.parametrize("workload", [W1, W2, W3_SMALL], ids=lambda w: w.name)
def test_torch_matches_numpy(workload, numpy_results):
    expected = numpy_results[workload.name]
    trainer = train("torch", workload)
    assert_same_params(
        bench.final_weights(trainer), bench.final_weights(expected), TOL[workload.dtype]
    )
    assert trainer.epoch_loss == pytest.approx(expected.epoch_loss, rel=TOL[workload.dtype])


@needs("sklearn")
@pytest.mark.parametrize("workload", [W2, W3_SMALL], ids=lambda w: w.name)
def test_sklearn_matches_numpy_on_classifiers(workload, numpy_results):
    expected = numpy_results[workload.name]
    trainer = train("sklearn", workload)
    got = bench.final_weights(trainer)
    assert got.weights[0].dtype == workload.dtype
    assert_same_params(got, bench.final_weights(expected), TOL[workload.dtype])


@needs("sklearn")
def test_sklearn_runs_w1():
    """MLPRegressor has an identity output and a 1/2 in its loss: other math, so only run it."""
    trainer = train("sklearn", W1)
    initial = bench.initial_params(W1)
    got = bench.final_weights(trainer)
    assert [W.shape for W in got.weights] == [W.shape for W in initial.weights]
    assert not np.array_equal(got.weights[0], initial.weights[0])


@pytest.mark.parametrize("workload", [W1, W2, W3_SMALL], ids=lambda w: w.name)
def test_backprop_matches_numpy(workload, numpy_results):
    expected = numpy_results[workload.name]
    trainer = train("backprop", workload)
    assert_same_params(
        bench.final_weights(trainer), bench.final_weights(expected), TOL[workload.dtype]
    )
    assert trainer.epoch_loss == pytest.approx(expected.epoch_loss, rel=TOL[workload.dtype])


@pytest.mark.parametrize("workload", [W1, W3_SMALL], ids=lambda w: w.name)
def test_backprop_trainer_drives_the_network_api(workload, numpy_results, monkeypatch):
    """The backprop trainer through the pure-Python network, which has the same API."""
    monkeypatch.setattr(bench.BackpropTrainer, "load", classmethod(lambda cls: reference.Network))
    expected = numpy_results[workload.name]
    trainer = train("backprop", workload)
    assert_same_params(
        bench.final_weights(trainer), bench.final_weights(expected), TOL[workload.dtype]
    )
    assert trainer.epoch_loss == pytest.approx(expected.epoch_loss, rel=TOL[workload.dtype])


def assert_same_batch_norm_adam_params(
    got: bench.Params, expected: bench.Params, workload: bench.Workload
) -> None:
    """Weights, the output bias, gammas and betas to the dtype's tolerance; the hidden
    biases, which batch normalization subtracts again, only within the ~lr per step that
    Adam's normalised steps on their rounding-noise gradients move them (the same
    reasoning as tests/test_optim.py's torch oracle)."""
    tol = TOL[workload.dtype]
    steps = -(-workload.n_samples // workload.batch_size)
    for name in ("weights", "gammas", "betas"):
        for l, (a, b) in enumerate(zip(getattr(got, name), getattr(expected, name), strict=True)):
            np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=f"{name}[{l}]")
    np.testing.assert_allclose(got.biases[-1], expected.biases[-1], rtol=0, atol=tol)
    for a, b in zip(got.biases[:-1], expected.biases[:-1], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2 * workload.lr * steps)


@needs("torch")
def test_torch_matches_backprop_with_batch_norm_and_adam():
    expected = train("backprop", W5_SMALL)
    trainer = train("torch", W5_SMALL)
    assert_same_batch_norm_adam_params(
        bench.final_weights(trainer), bench.final_weights(expected), W5_SMALL
    )
    assert trainer.epoch_loss == pytest.approx(expected.epoch_loss, rel=TOL["float32"])
    for name in ("numpy", "sklearn"):  # plain SGD without batch normalization alone
        assert not bench.make_trainer(name).supports(W5_SMALL)


# NumPy's forward pass is the oracle the others are compared with.
@pytest.mark.parametrize("name", [pytest.param("torch", marks=needs("torch")), "backprop"])
def test_forward_peers_agree(name):
    w = bench.WORKLOADS["W3f"].scaled(0.001)
    data, params = bench.make_data(w), bench.initial_params(w)
    numpy_trainer = bench.make_trainer("numpy")
    numpy_trainer.prepare(w, data, params)
    expected = numpy_trainer.forward(data.X)
    np.testing.assert_allclose(expected.sum(axis=1), 1, rtol=1e-5)
    trainer = bench.make_trainer(name)
    trainer.prepare(w, data, params)
    trainer.run()  # runs the forward pass without error; its outputs are checked below
    if name == "torch":
        import torch

        with torch.inference_mode():
            got = trainer.model(trainer.X).numpy()
    else:
        got = np.asarray(trainer.net.forward(data.X))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


# The compiled peers take seconds to compile for each workload: test_bench_compiled.py has theirs.
EAGER = ["backprop", "numpy", "torch", "sklearn"]


def test_run_table_has_a_row_per_available_trainer(capsys):
    out = io.StringIO()
    rows = bench.run_table(
        scale=0.0005, repeats=1, progress=True, file=out, gemm_size=128, trainers=EAGER
    )
    table = out.getvalue()
    for name in bench.WORKLOADS:
        workload = bench.WORKLOADS[name]
        for trainer in set(bench.available_trainers(workload)) & set(EAGER):
            assert any(r.workload.name == name and r.trainer == trainer for r in rows)
            assert any(
                line.startswith(workload.label) and line.split()[-6] == trainer
                for line in table.splitlines()
            ), f"no row for {name} {trainer}"
    assert "gemm 128x128" in table and "peak (multiply-adds in x86-64-v" in table
    assert all(r.median > 0 and np.isfinite(r.ratio) for r in rows)
    assert "[1/" in capsys.readouterr().err


def test_main_parses_its_options(capsys):
    assert (
        bench.main(
            [
                "--scale",
                "0.001",
                "--repeats",
                "1",
                "--workloads",
                "W1,W2",
                "--trainers",
                "numpy",
                "--gemm-size",
                "64",
                "--no-progress",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "W1 tiny-online" in captured.out and "W2 small-batch" in captured.out
    assert "W3 mnist-size" not in captured.out and "digits" not in captured.out
    assert captured.err == ""
    with pytest.raises(SystemExit):
        bench.main(["--workloads", "W9"])


def test_digits_scaled():
    sgd = bench.DIGITS["sgd"]
    assert (sgd.n_train, sgd.max_iter, sgd.hidden_layer_sizes) == (1347, 200, (100,))
    assert sgd.scaled(1) == sgd.scaled(3) == sgd
    assert (sgd.scaled(0.5).n_train, sgd.scaled(0.5).max_iter) == (674, 100)
    assert (sgd.scaled(0.05).n_train, sgd.scaled(0.05).max_iter) == (100, 10)
    assert (sgd.scaled(1e-6).n_train, sgd.scaled(1e-6).max_iter) == (100, 1)
    assert bench.DIGITS["lbfgs"].scaled(0.05).params == dict(
        hidden_layer_sizes=(100,), solver="lbfgs", max_iter=10, random_state=0
    )


DIGITS_COLUMNS = ("median", "cpu", "accuracy", "n_iter", "loss", "ratio")


def digits_lines(table: str) -> dict[tuple[str, str], dict[str, float]]:
    """(solver, library) -> the numbers of that row of the printed digits table."""
    lines = {}
    for line in table.splitlines():
        if line.startswith("digits ") and not line.startswith("digits:"):
            _, solver, library, *numbers = line.split()
            lines[solver, library] = dict(zip(DIGITS_COLUMNS, map(float, numbers), strict=True))
    return lines


@needs("sklearn")
def test_digits_table_has_both_libraries_fitting_the_same_model(capsys):
    out = io.StringIO()
    rows = bench.run_table(["digits"], scale=0.05, repeats=2, file=out)
    table = out.getvalue()
    printed = digits_lines(table)
    assert sorted(printed) == sorted(
        (solver, library) for solver in bench.DIGITS for library in bench.DIGITS_LIBRARIES
    )
    for solver in bench.DIGITS:
        mine, theirs = printed[solver, "backprop"], printed[solver, "sklearn"]
        assert mine["accuracy"] == theirs["accuracy"] > 0
        assert mine["n_iter"] == theirs["n_iter"] <= 10
        assert theirs["ratio"] == 1
    assert len(rows) == 6
    for row in rows:
        assert isinstance(row, bench.DigitsRow) and len(row.seconds) == len(row.cpu_seconds) == 2
        assert row.median > 0 and np.isfinite(row.ratio)
    backprop_rows = {r.workload.solver: r for r in rows if r.trainer == "backprop"}
    for row in rows:
        assert row.loss == pytest.approx(backprop_rows[row.workload.solver].loss, rel=1e-10)
    assert "100 training and 450 test samples" in table and "max_iter=10" in table
    assert "load average" in table and "W1 tiny-online" not in table and "gemm" not in table
    err = capsys.readouterr().err
    assert "[1/3] digits sgd" in err and "[3/3] digits lbfgs" in err


def test_digits_skipped_without_sklearn(monkeypatch, capsys):
    monkeypatch.setattr(bench.SklearnTrainer, "available", classmethod(lambda cls: False))
    out = io.StringIO()
    assert bench.run_table(["digits"], scale=0.05, repeats=1, file=out) == []
    assert "digits: skipped, scikit-learn is not installed" in out.getvalue()
    assert capsys.readouterr().err == ""


@needs("sklearn")
def test_main_runs_digits_alone(capsys):
    assert bench.main(["--workloads", "digits", "--scale", "0.01", "--repeats", "1"]) == 0
    captured = capsys.readouterr()
    assert set(digits_lines(captured.out)) == {
        (solver, library) for solver in bench.DIGITS for library in bench.DIGITS_LIBRARIES
    }
    assert "max_iter=2" in captured.out and "W1 tiny-online" not in captured.out
    assert "[3/3] digits lbfgs" in captured.err
    with pytest.raises(SystemExit):
        bench.main(["--workloads", "W1,digit"])
