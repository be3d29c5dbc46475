"""backprop and its peers on the workloads of ``backprop.bench``, one group per workload.

    pytest benches/                                  # full size, 5 rounds per trainer
    BACKPROP_BENCH_SCALE=0.01 pytest benches/        # smoke run on 1% of the samples
    BACKPROP_BENCH_ROUNDS=10 pytest benches/ --benchmark-columns=min,median,max

Each round starts from the shared initial weights: ``prepare`` runs as pedantic's untimed
setup, ``run`` (exactly one epoch of training, or one forward pass) is what is timed. The
GFLOP/s of the median round is stored in each benchmark's extra_info. The compiled peers (jax,
jax-step, torch-compile) are in each group where installed: they compile in their first
setup, and each round reuses what that compiled.
"""

import pytest

from backprop import bench
from backprop._options import from_environment, integer, number
from backprop.bench.command import MAX_REPEATS, MAX_SCALE, SCALE_VARIABLE

# checked as the command line checks --scale and --repeats: a bad value names the variable
SCALE = from_environment(SCALE_VARIABLE, number(0.0, MAX_SCALE, low_included=False), 1.0)
ROUNDS = from_environment("BACKPROP_BENCH_ROUNDS", integer(1, MAX_REPEATS), 5)


@pytest.fixture(scope="module", params=list(bench.WORKLOADS))
def problem(request):
    """A workload with its data and initial weights, made once for all its trainers."""
    workload = bench.WORKLOADS[request.param].scaled(SCALE)
    return workload, bench.make_data(workload), bench.initial_params(workload)


@pytest.mark.parametrize("name", list(bench.TRAINERS))
def test_workload(benchmark, problem, name):
    workload = problem[0]
    trainer = bench.make_trainer(name)
    if not trainer.available():
        pytest.skip(f"{name} is not available")
    if not trainer.supports(workload):
        pytest.skip(f"{name} has no {workload.task} benchmark")
    benchmark.group = workload.label
    benchmark.extra_info.update(samples=workload.n_samples, flops=workload.flops)
    benchmark.pedantic(
        trainer.run, setup=lambda: trainer.prepare(*problem), rounds=ROUNDS, iterations=1
    )
    if benchmark.stats is not None:
        benchmark.extra_info["GFLOP/s"] = workload.flops / benchmark.stats.stats.median / 1e9
