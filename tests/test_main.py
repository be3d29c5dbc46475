"""The command line: the demo prints the tutorial's numbers, computed by the library; every
option and environment variable is checked before work starts, a bad value ending with
argparse's usage and status 2; a reader closing the pipe early is not an error."""

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import child_env
from tutorial import by_hand

import backprop
from backprop import __main__ as cli
from backprop import bench
from backprop.__main__ import main, worked_example

# The smallest benchmark run: one repeat of W1 on one batch-sized slice, NumPy only.
TINY_BENCH = ["bench", "--repeats", "1", "--workloads", "W1", "--trainers", "numpy",
              "--gemm-size", "16", "--no-progress"]  # fmt: skip


# The command line in a child where PyTorch and scikit-learn do not import (as where they are
# not installed): the benchmark's header would otherwise import both, seconds of a test.
WITHOUT_PEERS = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = sys.modules["sklearn"] = None
    from backprop.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def backprop_command(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m backprop args`` in a child process importing the package under test."""
    return subprocess.run(
        [sys.executable, "-m", "backprop", *args],
        env=child_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


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
    done = backprop_command("demo", "--steps", "10")
    assert done.returncode == 0, done.stderr
    assert "Backward pass" in done.stdout and "y^ = sigmoid(z3)" in done.stdout


def test_bad_command_line_arguments_exit_with_usage():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["train"], ["demo", "--steps", "x"], ["demo", "extra"]])
def test_unknown_commands_and_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_no_command_prints_the_help():
    done = backprop_command()
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: backprop ")
    assert "demo" in done.stdout and "bench" in done.stdout and "--version" in done.stdout


def test_version_prints_the_version_of_this_copy():
    done = backprop_command("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"backprop {cli.version()}\n", "")
    assert re.fullmatch(r"\d+\.\d+\S*", cli.version())


class Distribution:
    """An installed distribution's metadata, holding ``files`` at ``root``."""

    def __init__(self, root, files, version="9.9.9"):
        self.root, self.version = root, version
        self.files = [importlib.metadata.PackagePath(f) for f in files]
        for f in self.files:
            f.dist = self

    def locate_file(self, path):
        return os.path.join(self.root, path)


def test_version_reads_the_metadata_only_of_the_copy_that_runs(monkeypatch):
    package = os.path.dirname(cli.__file__)
    here = Distribution(os.path.dirname(package), ["backprop/__init__.py", "backprop/__main__.py"])
    elsewhere = Distribution("/elsewhere/site-packages", ["backprop/__main__.py"])
    for distribution, expected in [(here, "9.9.9"), (elsewhere, backprop.__version__)]:
        monkeypatch.setattr(importlib.metadata, "distribution", lambda name, d=distribution: d)
        assert cli.version() == expected

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    assert cli.version() == backprop.__version__


BAD_VALUES = [
    (["demo", "--steps", "1e20"], {}, "--steps"),
    (["demo", "--steps", "1" + "0" * 20], {}, "--steps"),
    (["demo", "--steps", str(cli.MAX_STEPS + 1)], {}, "--steps"),
    (["demo", "--steps", "-3"], {}, "--steps"),
    ([*TINY_BENCH, "--scale", "nan"], {}, "--scale"),
    ([*TINY_BENCH, "--scale", "inf"], {}, "--scale"),
    ([*TINY_BENCH, "--scale", "1e9"], {}, "--scale"),
    ([*TINY_BENCH, "--scale", "0"], {}, "--scale"),
    ([*TINY_BENCH, "--scale", "-0.5"], {}, "--scale"),
    ([*TINY_BENCH, "--scale", "half"], {}, "--scale"),
    ([*TINY_BENCH, "--gemm-size", "-5"], {}, "--gemm-size"),
    ([*TINY_BENCH, "--gemm-size", "100000"], {}, "--gemm-size"),
    ([*TINY_BENCH, "--repeats", "0"], {}, "--repeats"),
    ([*TINY_BENCH, "--workloads", ","], {}, "--workloads"),
    ([*TINY_BENCH, "--trainers", ""], {}, "--trainers"),
    (TINY_BENCH, {"BACKPROP_BENCH_SCALE": "nan"}, "BACKPROP_BENCH_SCALE"),
    (TINY_BENCH, {"BACKPROP_BENCH_SCALE": "1e9"}, "BACKPROP_BENCH_SCALE"),
    (TINY_BENCH, {"BACKPROP_BENCH_SCALE": "-1"}, "BACKPROP_BENCH_SCALE"),
]


def assert_usage_error(argv, code, err, option):
    assert code == 2
    lines = err.splitlines()
    assert lines[0].startswith(f"usage: backprop {argv[0]}")
    assert re.fullmatch(rf"backprop {argv[0]}: error: .*{option}.*expected .*", lines[-1])
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,env,option", BAD_VALUES)
def test_bad_values_exit_with_usage_naming_the_option(argv, env, option, monkeypatch, capsys):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    assert_usage_error(argv, exc.value.code, captured.err, option)
    assert captured.out == ""  # nothing ran


@pytest.mark.parametrize(
    "argv,env,option",
    [case for case in BAD_VALUES if case[1] or case[0][-1] in ("nan", "inf", "1e9", "-5", "1e20")],
)
def test_bad_values_exit_with_usage_from_the_command(argv, env, option):
    done = backprop_command(*argv, env=env)
    assert_usage_error(argv, done.returncode, done.stderr, option)
    assert done.stdout == ""


def test_steps_run_from_one_to_max_steps(capsys):
    assert main(["demo", "--steps", "1"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", str(cli.MAX_STEPS + 1)])
    assert exc.value.code == 2 and f"{cli.MAX_STEPS:,}" in capsys.readouterr().err


def bench_without_peers(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PEERS, *args],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_scale_comes_from_the_environment_and_the_option_overrides_it():
    done = bench_without_peers(*TINY_BENCH, env={"BACKPROP_BENCH_SCALE": "0.0005"})
    assert done.returncode == 0, done.stderr
    assert "scale 0.0005;" in done.stdout and "W1 tiny-online" in done.stdout
    assert "torch" not in done.stdout  # the peers were hidden
    done = bench_without_peers(*TINY_BENCH, "--scale", "0.001", env={"BACKPROP_BENCH_SCALE": "9"})
    assert done.returncode == 0, done.stderr
    assert "scale 0.001;" in done.stdout


# The command itself (main() on the process's own arguments), the peers hidden as above.
AS_THE_COMMAND = WITHOUT_PEERS.replace("main(sys.argv[1:])", "main()")
OVERRIDES = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "262144"}


def test_bench_starts_again_without_openblas_overrides_unless_told_to_keep_them():
    tiny = [*TINY_BENCH[1:], "--scale", "0.0005"]
    command = [sys.executable, "-c", AS_THE_COMMAND, "bench"]
    run = dict(env=child_env(**OVERRIDES), capture_output=True, text=True, timeout=120)
    done = subprocess.run([*command, *tiny], **run)
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert header.endswith(
        "re-executed without OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE=262144"
    ), header
    assert "(OPENBLAS_CORETYPE=" not in header  # OpenBLAS loaded without it
    kept = subprocess.run([*command, *tiny, "--keep-blas-env"], **run)
    assert kept.returncode == 0, kept.stderr
    header = kept.stdout.splitlines()[0]
    assert "OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE=262144 in effect" in header, header


def test_bench_called_in_a_program_never_starts_again(monkeypatch, capsys):
    for name, value in OVERRIDES.items():
        monkeypatch.setenv(name, value)
    for trainer in (bench.TorchTrainer, bench.SklearnTrainer):
        monkeypatch.setattr(trainer, "available", classmethod(lambda cls: False))

    def refuse(*args):
        raise AssertionError("main(argv) replaced the process")

    monkeypatch.setattr(os, "execve", refuse)
    assert main([*TINY_BENCH, "--scale", "0.0005"]) == 0
    assert "OPENBLAS_L2_SIZE=262144 in effect" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--steps", "10"],
        ["--help"],
        ["--version"],
        [],
        ["bench", "--help"],
        [*TINY_BENCH, "--scale", "0.0005"],
    ],  # fmt: skip
    ids=["demo", "help", "version", "bare", "bench-help", "bench"],
)
def test_a_reader_closing_the_pipe_is_not_an_error(argv):
    command = ["-c", WITHOUT_PEERS] if argv[:1] == ["bench"] else ["-m", "backprop"]
    child = subprocess.Popen(
        [sys.executable, *command, *argv],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child.stdout.close()  # like `| head -0`: every write to stdout fails
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0 and err == ""


def fields_of(info: str) -> dict[str, str]:
    """The ``name: value`` lines of ``backprop info``'s output."""
    pairs = (line.partition(":") for line in info.splitlines() if line.startswith(" "))
    return {name.strip(): value.strip() for name, _, value in pairs}


def test_info_prints_the_version_cpu_targets_blas_and_threads():
    env = {"OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1", "BACKPROP_CPU": ""}
    done = backprop_command("info", env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["backprop:", f"  version: {backprop.__version__}"]
    assert [line for line in lines if not line.startswith(" ")] == [
        "backprop:",
        "cpu:",
        "blas:",
        "threads:",
    ]
    fields = fields_of(done.stdout)
    assert fields["target"].startswith(f"{backprop._core.TARGET} (backprop._core_")
    assert fields["target"].split()[0] in fields["supported targets"].split(", ")
    assert fields["target"].split()[0] in fields["built targets"].split(", ")
    assert fields["BACKPROP_CPU"] == "unset"
    assert fields["library"] != "unknown" and fields["version"] != "unknown"
    assert fields["OPENBLAS_CORETYPE"] == "Haswell"
    assert (fields["limit"], fields["two-core paths"]) == ("1", "1")


def test_info_describes_blas_without_threadpoolctl():
    script = (
        "import sys; sys.modules['threadpoolctl'] = None; import backprop; backprop.show_config()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    fields = fields_of(done.stdout)
    assert fields["described by"] == "scipy"
    assert fields["library"] != "unknown" and fields["version"] != "unknown"
    assert int(fields["threads"]) >= 1


def test_show_config_prints_config(capsys):
    backprop.show_config()
    out = capsys.readouterr().out
    config = backprop._config.config()
    assert out.count("\n") == len(config) + sum(map(len, config.values()))
    assert f"  two-core paths: {config['threads']['two-core paths']}\n" in out
    assert config["threads"]["two-core paths"] == min(2, config["threads"]["limit"])


def test_info_takes_no_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "extra"])
    assert exc.value.code == 2
    assert "unrecognized arguments: extra" in capsys.readouterr().err
