"""backprop.MLPClassifier against scikit-learn's on load_digits, one group per solver.

    pytest benches/test_digits.py                                # full size, 5 rounds each
    BACKPROP_BENCH_SCALE=0.05 pytest benches/test_digits.py      # smoke run: 100 samples, 10 iters

Each round fits a fresh estimator, made in pedantic's untimed setup; what is timed is ``fit``
(ConvergenceWarning silenced), after one untimed warm-up round. The rounds follow each other
with no pause, as fits in a program do. The test accuracy and n_iter_
of the last fit are stored in each benchmark's extra_info: both libraries should fit the same
model, so they should agree.
"""

import pytest

from backprop import bench
from backprop._options import from_environment, integer, number
from backprop.bench.command import MAX_REPEATS, MAX_SCALE, SCALE_VARIABLE

# checked as the command line checks --scale and --repeats: a bad value names the variable
SCALE = from_environment(SCALE_VARIABLE, number(0.0, MAX_SCALE, low_included=False), 1.0)
ROUNDS = from_environment("BACKPROP_BENCH_ROUNDS", integer(1, MAX_REPEATS), 5)

if (reason := bench.digits_missing()) is not None:
    pytest.skip(f"digits benchmark: {reason}", allow_module_level=True)


@pytest.fixture(scope="module", params=list(bench.DIGITS))
def digits(request):
    """A solver's workload with its data, loaded once for both libraries."""
    workload = bench.DIGITS[request.param].scaled(SCALE)
    return workload, bench.digits_data(workload)


@pytest.mark.parametrize("library", bench.DIGITS_LIBRARIES)
def test_digits(benchmark, digits, library):
    workload, (X, y, X_test, y_test) = digits
    benchmark.group = workload.label
    fitted = []

    def setup():
        return (bench.digits_estimator(library, workload),), {}

    def fit(estimator):
        fitted.append(bench.fit_quietly(estimator, X, y))

    benchmark.pedantic(fit, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    estimator = fitted[-1]
    benchmark.extra_info.update(
        samples=len(X),
        max_iter=workload.max_iter,
        n_iter=int(estimator.n_iter_),
        accuracy=float(estimator.score(X_test, y_test)),
    )
