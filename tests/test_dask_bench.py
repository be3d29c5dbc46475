"""``backprop bench --dask`` (``backprop.bench.dask_bench``): at a tiny scale, in a child
process, it prints a row per solver and cluster size, and an L-BFGS evaluation sends each
partition's gradient once and copies no weights between workers (the tiny model travels
inside the tasks); without dask
it says what to install; it refuses the other tables' options."""

import re
import subprocess
import sys

import pytest
from conftest import child_env

from backprop.bench import dask_bench, main

WITHOUT_DASK = """
import sys
sys.modules["dask"] = sys.modules["distributed"] = sys.modules["sklearn"] = None
from backprop.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def run(*args, code=None) -> subprocess.CompletedProcess:
    command = ["-m", "backprop"] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *command, *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_tiny_run_has_a_row_per_solver_and_cluster():
    missing = dask_bench.dask_missing()
    if missing:
        pytest.skip(missing)
    done = run("bench", "--dask", "--scale", "0.001", "--repeats", "1", "--no-progress")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "4,000 x 100 float32 (1.6 MB)" in out and "in 4 partitions" in out
    assert "X is within one worker's memory limit" in out
    row = re.compile(r"^(lbfgs|sgd) +(\d) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) ", re.M)
    rows = {(m[1], int(m[2])): tuple(map(float, m.groups()[2:])) for m in row.finditer(out)}
    assert set(rows) == {(s, w) for s in dask_bench.SOLVERS for w in dask_bench.CLUSTER_SIZES}
    for (solver, _), (median, compute, cpu, passes) in rows.items():
        assert median > 0 and compute > 0 and cpu >= 0
        assert passes == 1 if solver == "sgd" else passes >= 1
    evaluation = re.compile(r"^ +(\d) +(\d+) +[\d.]+ \S?B +[\d.]+ \S?B +([\d.]+) +([\d.]+) ", re.M)
    per_evaluation = {int(m[1]): m.groups()[1:] for m in evaluation.finditer(out)}
    assert set(per_evaluation) == set(dask_bench.CLUSTER_SIZES)
    for partitions, gradients, weights in per_evaluation.values():
        assert int(partitions) <= float(gradients) < 1.05 * int(partitions)
        assert float(weights) == 0  # under BROADCAST_BYTES: inside each task
    assert out.count("none restarted") == 2 and "Measured:" in out


def test_without_dask_it_says_what_to_install():
    done = run("bench", "--dask", code=WITHOUT_DASK)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "dask benchmark: skipped, dask, distributed and scikit-learn are not installed: "
        'pip install "backprop[dask]"\n'
    )


@pytest.mark.parametrize("option", [["--workloads", "W1"], ["--trainers", "numpy"],
                                    ["--gemm-size", "64"]])  # fmt: skip
def test_it_refuses_the_options_of_the_other_tables(option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--dask", *option])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.splitlines()[-1].startswith(
        f"backprop bench: error: argument --dask: expected no {option[0]}"
    )
