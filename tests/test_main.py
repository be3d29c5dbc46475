"""The command line: the demo prints the tutorial's numbers, computed by the library."""

import re
import subprocess
import sys

import pytest
from tutorial import by_hand

from backprop.__main__ import main, worked_example


def test_worked_example_matches_the_hand_computation():
    v = by_hand()
    got = worked_example()
    assert set(got) == set(v)
    for name, value in got.items():
        assert value == pytest.approx(v[name], rel=1e-12, abs=1e-15), name


def test_demo_prints_every_quantity_to_1e_12(capsys):
    assert main(["demo", "--steps", "100"]) == 0
    out = capsys.readouterr().out
    v = by_hand()
    printed = dict(re.findall(r"^\s+(\S+)(?: = .*)?\s+= (-?[0-9.e+-]+)$", out, re.M))
    labels = {"z1": "z1", "h1": "h1", "z2": "z2", "h2": "h2", "z3": "z3", "y_hat": "y^",
              "loss": "L", "dL_dy_hat": "dL/dy^", "dy_hat_dz3": "sigmoid'(z3)",
              "delta3": "delta3", "delta1": "delta1", "delta2": "delta2",
              "dL_dw31": "dL/dw31", "dL_dw11": "dL/dw11", "dL_db2": "dL/db2",
              "w11": "w11", "w22": "w22", "w32": "w32", "b1": "b1", "b3": "b3"}  # fmt: skip
    for name, label in labels.items():
        assert float(printed[label]) == pytest.approx(v[name], rel=1e-12, abs=1e-15), label
    steps = [float(x) for x in re.findall(r"^\s+\d+\s+(\S+e[+-]\d+)$", out, re.M)]
    assert len(steps) >= 5 and steps == sorted(steps, reverse=True) and steps[-1] < steps[0] / 10


def test_command_line_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "backprop", "demo", "--steps", "10"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Backward pass" in done.stdout and "y^ = sigmoid(z3)" in done.stdout


def test_bad_command_line_arguments_exit_with_usage():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [[], ["train"], ["demo", "--steps", "x"], ["demo", "extra"]])
def test_unknown_commands_and_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err
