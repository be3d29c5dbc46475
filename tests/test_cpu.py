"""The CPU targets: which ones this CPU runs (from the feature flags Linux lists), the one
``backprop._core`` imports, ``BACKPROP_CPU`` forcing one or refused with a message, pickles
that name no target, and every target this CPU runs against the reference (each other
than the one the suite runs on, in a child process forced to it).

Targets differ only in rounding (FMA contraction, vector widths changing the order of
sums): each must pass the tests against the reference at their usual tolerances
(forward, loss and gradients rtol 1e-12 in float64 and 1e-5 in float32; weights after
several epochs 1e-10 and 2e-4), so two targets agree to twice those.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_env

from backprop import Network, _core, _cpu, optim

ROOT = Path(__file__).resolve().parent.parent
# The tests each target runs against the reference, in a child forcing it: every kernel path
# (loops, tiles, BLAS, halves), both dtypes, the estimators' units cut in two; ~10 s.
REFERENCE_TESTS = ["tests/test_kernels.py", "tests/test_network.py", "tests/test_estimators.py",
                   "tests/test_activations.py"]  # fmt: skip
REFERENCE_SELECTION = (
    "test_kernel_paths or test_halves or test_cross_entropy_of_many or step_matches_reference"
    " or tutorial_worked_by_hand or (forward_loss_gradients_match_reference and sizes4 and tanh)"
    " or (fit_matches_reference and -11-) or parity_one_hidden_layer"
    " or activation_per_layer_matches_reference"
)

V2 = frozenset(_cpu.LEVEL_FLAGS["x86-64-v2"])
V3 = V2 | frozenset(_cpu.LEVEL_FLAGS["x86-64-v3"])
V4 = V3 | frozenset(_cpu.LEVEL_FLAGS["x86-64-v4"])

x86_only = pytest.mark.skipif(not _cpu.is_x86(), reason="x86-64 targets")


@x86_only
@pytest.mark.parametrize(
    "flags, expected",
    [
        (V2, ["x86-64-v2"]),
        (V3, ["x86-64-v2", "x86-64-v3"]),
        (V4, ["x86-64-v2", "x86-64-v3", "x86-64-v4"]),
        (V4 - {"avx2"}, ["x86-64-v2"]),  # a level needs every level below it
        (V3 - {"sse4_2"}, []),
    ],
)
def test_supported_targets_follow_the_flags(flags, expected):
    assert _cpu.supported(flags) == expected


@x86_only
def test_without_cpuinfo_only_the_baseline(monkeypatch):
    monkeypatch.setattr(_cpu, "cpu_flags", lambda: None)
    assert _cpu.supported() == ["x86-64-v2"]


@x86_only
def test_missing_flags_name_what_a_target_lacks():
    assert _cpu.missing_flags("x86-64-v4", V3 - {"fma"}) == [
        "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"
    ]  # fmt: skip


def test_flags_are_those_of_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert _cpu.read_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2"}
    assert _cpu.read_flags(str(tmp_path / "absent")) is None


@x86_only
@pytest.mark.parametrize(
    "listed, level, expected",
    [
        (V4, 3, ["x86-64-v2", "x86-64-v3"]),  # emulated without AVX-512 on an AVX-512 host
        (V4, 4, ["x86-64-v2", "x86-64-v3", "x86-64-v4"]),
        (V3, 4, ["x86-64-v2", "x86-64-v3"]),  # a flag the file lacks is not assumed
        (V4, 1, []),
        (None, 3, ["x86-64-v2", "x86-64-v3"]),  # no /proc/cpuinfo: CPUID alone
        (V3, None, ["x86-64-v2", "x86-64-v3"]),  # no CPUID helper: the file alone
    ],
)
def test_cpuid_overrules_the_levels_cpuinfo_lists(monkeypatch, listed, level, expected):
    monkeypatch.setattr(_cpu, "read_flags", lambda: listed)
    monkeypatch.setattr(_cpu, "cpuid_level", lambda: level)
    assert _cpu.supported() == expected


@x86_only
def test_cpuid_level_agrees_with_cpuinfo_here():
    """Outside emulation CPUID and /proc/cpuinfo describe the same CPU."""
    level = _cpu.cpuid_level()
    if level is None or _cpu.read_flags() is None:
        pytest.skip("no CPUID helper or no /proc/cpuinfo")
    by_file = [t for t in _cpu.X86_TARGETS if not _cpu.missing_flags(t, _cpu.read_flags())]
    assert len(by_file) + 1 == level


def test_this_cpu_runs_the_baseline():
    assert _cpu.supported()[:1] == [_cpu.platform_targets()[0]]


def child(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def runnable(target: str) -> None:
    """Skips unless ``target`` is built and this CPU runs it."""
    if target not in _cpu.built():
        pytest.skip(f"{target} is not built")
    lacking = _cpu.missing_flags(target, _cpu.cpu_flags())
    if lacking:
        pytest.skip(f"this CPU lacks {', '.join(lacking)}")


def test_core_imports_the_best_target_this_cpu_runs():
    # a module built as backprop._core alone (an older build left in place) would shadow it
    assert Path(_core.__file__).name == "_core.py"
    assert _core.TARGET == [t for t in _cpu.built() if t in _cpu.supported()][-1]


@pytest.mark.parametrize("target", _cpu.platform_targets())
def test_backprop_cpu_forces_the_target(target):
    runnable(target)
    done = child("from backprop import _core; print(_core.TARGET)", BACKPROP_CPU=target)
    assert (done.returncode, done.stdout) == (0, f"{target}\n"), done.stderr


@pytest.mark.parametrize("value", ["x86-64-v5", "native", "avx2"])
def test_an_unknown_target_is_an_import_error_naming_the_variable(value):
    done = child("import backprop", BACKPROP_CPU=value)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"ImportError: BACKPROP_CPU={value!r} is not a CPU target; ")
    assert f"expected one of {', '.join(_cpu.platform_targets())}" in message


def test_a_target_this_cpu_lacks_is_an_import_error_naming_the_flags():
    lacking = [t for t in _cpu.platform_targets() if t not in _cpu.supported()]
    if not lacking:
        pytest.skip("this CPU runs every target")
    target = lacking[-1]
    done = child("import backprop", BACKPROP_CPU=target)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    flags = ", ".join(_cpu.missing_flags(target, _cpu.cpu_flags()))
    assert message.startswith(f"ImportError: BACKPROP_CPU={target}: this CPU lacks {flags}; ")
    runs = [t for t in _cpu.built() if t in _cpu.supported()]
    assert message.endswith(f"of which this CPU runs {', '.join(runs)}")


@pytest.mark.parametrize("module", ["-m", "-mbackprop"])
def test_the_command_line_reports_a_bad_target_as_a_usage_error(module):
    argv = [module, "backprop", "info"] if module == "-m" else [module, "info"]
    done = subprocess.run(
        [sys.executable, *argv],
        env=child_env(BACKPROP_CPU="x86-64-v9"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("python -m backprop: error: BACKPROP_CPU='x86-64-v9' is not")
    assert "Traceback" not in done.stderr


def test_only_the_command_line_is_told_apart(monkeypatch):
    for argv, command in [
        (["python", "-m", "backprop", "info"], True),
        (["python", "-X", "importtime", "-m", "backprop"], True),
        (["python", "-mbackprop"], True),
        (["python", "-m", "pytest", "-m", "backprop"], False),
        (["python", "-c", "import backprop", "-m", "backprop"], False),
        (["python", "script.py", "-m", "backprop"], False),
        (["python"], False),
    ]:
        monkeypatch.setattr(sys, "orig_argv", argv)
        assert _cpu.run_as_command() == command, argv


def test_pickles_name_no_target_module():
    net = Network([2, 3, 1], seed=0)
    for value in (_core.Rule.ADAM, _core.Activation.RELU, optim.SGD(0.1, momentum=0.9), net):
        data = pickle.dumps(value)
        assert b"_core_" not in data
        assert type(pickle.loads(data)) is type(value)


@pytest.mark.parametrize("target", _cpu.platform_targets())
def test_every_target_matches_the_reference(target):
    runnable(target)
    if target == _core.TARGET:
        pytest.skip("the suite itself runs these tests on this target")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *REFERENCE_TESTS,
         "-k", REFERENCE_SELECTION],
        cwd=ROOT, env=child_env(BACKPROP_CPU=target), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
