"""The compiled peers (``backprop.bench.compiled``) do the work of backprop's trainer: from the
same weights, on the same batches, they end with the same weights (to the tolerance of the
eager peers' tests); their timed runs compile nothing; and every run starts from the initial
weights, whatever the warm-up in ``prepare`` did. Each test compiles its trainer once, on the
smallest workloads; torch.compile, slow to compile, has a single test."""

import dataclasses
import importlib.util
import logging

import numpy as np
import pytest
from test_bench import (
    TOL,
    W1,
    W2,
    W3_SMALL,
    W5_SMALL,
    assert_same_batch_norm_adam_params,
    assert_same_params,
    train,
)

from backprop import bench

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="no jax")


def prepared(name: str, workload: bench.Workload) -> tuple[bench.Trainer, bench.Params]:
    """A trainer of ``name`` prepared on ``workload``, and backprop's weights after its run."""
    data, params = bench.make_data(workload), bench.initial_params(workload)
    trainer = bench.make_trainer(name)
    trainer.prepare(workload, data, params)
    return trainer, bench.final_weights(train("backprop", workload))


def assert_runs_like_backprop(trainer: bench.Trainer, expected: bench.Params, run) -> None:
    """``run()`` twice, each time prepared afresh: both end with backprop's weights."""
    for _ in range(2):
        run()
        got = bench.final_weights(trainer)
        assert all(W.dtype == trainer.problem[0].dtype for W in got.weights + got.biases)
        assert_same_params(got, expected, TOL[trainer.problem[0].dtype])
        trainer.prepare(*trainer.problem)


# Both trainers share their loss and step (_jax_functions): between them they cover both
# losses, both dtypes and a shorter last batch (W2), one compilation per case.
@needs_jax
@pytest.mark.parametrize(
    "name,workload",
    [("jax", W2), ("jax", W3_SMALL), ("jax-step", W1), ("jax-step", W2)],
    ids=lambda case: getattr(case, "name", case),
)
def test_jax_matches_backprop_and_compiles_before_the_run(name, workload, caplog):
    import jax

    trainer, expected = prepared(name, workload)

    def run():
        with jax.log_compiles(), caplog.at_level(logging.WARNING, logger="jax"):
            trainer.run()
        assert not [r for r in caplog.records if "Compiling" in r.getMessage()]

    assert_runs_like_backprop(trainer, expected, run)
    reference = train("numpy", workload)
    assert trainer.epoch_loss == pytest.approx(reference.epoch_loss, rel=TOL[workload.dtype])


@needs_jax
def test_jax_matches_backprop_with_batch_norm_and_adam():
    """The scan carries Adam's moments and the running statistics through the epoch."""
    trainer, expected = prepared("jax", W5_SMALL)
    for _ in range(2):
        trainer.run()
        assert_same_batch_norm_adam_params(bench.final_weights(trainer), expected, W5_SMALL)
        trainer.prepare(*trainer.problem)


@needs_jax
def test_jax_forward_matches_numpy():
    w = bench.WORKLOADS["W3f"].scaled(0.001)
    data, params = bench.make_data(w), bench.initial_params(w)
    numpy_trainer = bench.make_trainer("numpy")
    numpy_trainer.prepare(w, data, params)
    trainer = bench.make_trainer("jax")
    trainer.prepare(w, data, params)
    trainer.run()
    got = trainer.functions["forward"](trainer.state, trainer.X)
    np.testing.assert_allclose(np.asarray(got), numpy_trainer.forward(data.X), rtol=0, atol=1e-5)
    assert not bench.JaxStepTrainer().supports(w)


def test_torch_compile_matches_backprop_and_compiles_before_the_run():
    if not bench.TorchCompileTrainer.available():
        pytest.skip("torch is not installed, or Inductor's C++ compiler is not found")
    import torch

    # one full batch of 32 and a last one of 8: both shapes compiled in prepare
    workload = dataclasses.replace(W2, n_samples=40)
    trainer, expected = prepared("torch-compile", workload)

    def run():
        with torch.compiler.set_stance("fail_on_recompile"):
            trainer.run()

    assert_runs_like_backprop(trainer, expected, run)
    reference = train("numpy", workload)
    assert trainer.epoch_loss == pytest.approx(reference.epoch_loss, rel=TOL[workload.dtype])
    assert not trainer.supports(bench.WORKLOADS["W3f"])


def test_the_compiled_peers_are_in_the_tables():
    assert {"jax", "jax-step", "torch-compile"} <= set(bench.TRAINERS)
    assert list(bench.TRAINERS)[:4] == ["backprop", "numpy", "torch", "sklearn"]
