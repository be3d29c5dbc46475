"""The contention benchmark (``python -m backprop bench --contention``): how backprop's fits
fare when something else wants the cores, on its default threads and on one, beside its peers.

Two workloads: the ``load_digits`` sgd fit (``digits.DIGITS["sgd"]``, backprop's
MLPClassifier against scikit-learn's) and W3 (one epoch, backprop against NumPy and PyTorch,
the peers that do its arithmetic on its data). Four scenarios (``SCENARIOS``): quiet (the
baseline), busy (a CPU-bound process beside the fits), numpy (a threaded NumPy product just
before each fit, in the fitting process) and torch (PyTorch imported, and a torch product just
before each fit, in the fitting process; skipped without PyTorch).

Each condition, a trainer with its environment (``CONDITIONS``), runs in a fresh process
(``isolated.call``): no thread pool or library state carries over from one to the next. In
it, ``measure`` fits once untimed, then ``repeats`` times timed, each timed fit right after
the scenario's action. "backprop 1 thread" sets ``BACKPROP_NUM_THREADS=1``, which limits
backprop's two-core paths to one thread and leaves ``OMP_NUM_THREADS``, and with it NumPy's
and scikit-learn's BLAS threads, alone; each row says how many threads the two-core paths of
its process would take (``_config.config()["threads"]``), so a build that does not read the
variable shows it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from .. import _config
from . import blas_env
from .digits import DIGITS, digits_data, digits_estimator, digits_missing, fit_quietly
from .isolated import busy_process, call
from .registry import make_trainer
from .report import _kernels, _load_average, _print_lines
from .workloads import WORKLOADS, initial_params, make_data

SCENARIOS = {
    "quiet": "nothing else running: the baseline",
    "busy": "a CPU-bound process (python -c 'while True: pass') running beside the fits",
    "numpy": "a threaded NumPy product (1000x1000 float64 @) just before each fit, in the "
    "same process",
    "torch": "import torch, then a torch product (1000x1000 float64 @) just before each fit, "
    "in the same process",
}
PRODUCT_SIZE = 1000
THREADS_VARIABLE = "BACKPROP_NUM_THREADS"
# The fits: a workload, then its conditions, each a trainer (a digits library or a bench
# trainer) and the variables its process gets (None: removed).
WORKLOADS_TIMED = ("digits", "W3")
DEFAULT: dict[str, str | None] = {THREADS_VARIABLE: None}
CONDITIONS: dict[str, dict[str, tuple[str, dict[str, str | None]]]] = {
    "digits": {
        "backprop": ("backprop", DEFAULT),
        "backprop 1 thread": ("backprop", {THREADS_VARIABLE: "1"}),
        "sklearn": ("sklearn", DEFAULT),
    },
    "W3": {
        "backprop": ("backprop", DEFAULT),
        "backprop 1 thread": ("backprop", {THREADS_VARIABLE: "1"}),
        "numpy": ("numpy", DEFAULT),
        "torch": ("torch", DEFAULT),
    },
}


def _action(scenario: str) -> Callable[[], Any]:
    """What runs just before each fit of ``scenario``, set up (and torch imported) now."""
    if scenario == "numpy":
        import numpy as np

        rng = np.random.default_rng(0)
        A, B = (rng.standard_normal((PRODUCT_SIZE, PRODUCT_SIZE)) for _ in range(2))
        return lambda: A @ B
    if scenario == "torch":
        import torch

        A, B = (torch.rand(PRODUCT_SIZE, PRODUCT_SIZE, dtype=torch.float64) for _ in range(2))
        return lambda: A @ B
    return lambda: None


def measure(scenario: str, workload: str, trainer: str, repeats: int, scale: float) -> dict:
    """In the condition's process: ``repeats`` timed fits of ``workload`` ("digits" or a
    bench workload's name) by ``trainer``, after an untimed one, each right after the
    scenario's action; the seconds of each and the threads the process's backprop reports."""
    action = _action(scenario)
    if workload == "digits":
        digits = DIGITS["sgd"].scaled(scale)
        X, y, _, _ = digits_data(digits)

        def fit() -> float:
            estimator = digits_estimator(trainer, digits)
            action()
            start = time.perf_counter()
            fit_quietly(estimator, X, y)
            return time.perf_counter() - start

    else:
        chosen = WORKLOADS[workload].scaled(scale)
        data, params = make_data(chosen), initial_params(chosen)
        peer = make_trainer(trainer)

        def fit() -> float:
            peer.prepare(chosen, data, params)
            action()
            start = time.perf_counter()
            peer.run()
            return time.perf_counter() - start

    fit()
    seconds = [fit() for _ in range(repeats)]
    config = _config.config()
    return {
        "seconds": seconds,
        "threads": config["threads"]["two-core paths"],
        "thread limit": config["threads"]["limit"],
        "blas threads": config["blas"]["threads"],
    }


@dataclasses.dataclass
class ContentionRow:
    """One condition of one workload in one scenario. ``threads``: the two-core paths'
    threads its process reported; ``vs_quiet``: its median / the same condition's median in
    the quiet scenario; ``vs_backprop``: its median / backprop's (default threads) median in
    the same scenario."""

    scenario: str
    workload: str
    condition: str
    trainer: str
    env: dict[str, str | None]
    seconds: list[float]
    threads: int
    thread_limit: int
    blas_threads: int | None
    vs_quiet: float = math.nan
    vs_backprop: float = math.nan

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclasses.dataclass
class Contention:
    """What one contention run measured: its rows, the scenarios skipped and why, and the
    1-minute load average before and after each scenario."""

    repeats: int
    scale: float
    rows: list[ContentionRow] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    load: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def contention_skips(
    scenarios: Sequence[str], workloads: Sequence[str], conditions: Sequence[str] | None
) -> dict[str, str]:
    """What cannot run here and why: scenarios, workloads and conditions, by name."""
    skips: dict[str, str] = {}
    torch_missing = importlib.util.find_spec("torch") is None
    if torch_missing and "torch" in scenarios:
        skips["torch"] = "PyTorch is not installed"
    if "digits" in workloads and (why := digits_missing()):
        skips["digits"] = why
    if torch_missing and "W3" in workloads and (conditions is None or "torch" in conditions):
        skips["W3 torch"] = "PyTorch is not installed"
    return skips


def run_contention(
    repeats: int = 5,
    scale: float = 1.0,
    progress: bool = True,
    file: TextIO | None = None,
    scenarios: Sequence[str] = tuple(SCENARIOS),
    workloads: Sequence[str] = WORKLOADS_TIMED,
    conditions: Sequence[str] | None = None,
) -> Contention:
    """Run each scenario on each workload's conditions (all, or those named in
    ``conditions``), each condition in its own process, and print a table per scenario."""
    file = sys.stdout if file is None else file
    result = Contention(repeats, scale, skipped=contention_skips(scenarios, workloads, conditions))
    plan = [
        (scenario, workload, name)
        for scenario in scenarios
        if scenario not in result.skipped
        for workload in workloads
        if workload not in result.skipped
        for name in CONDITIONS[workload]
        if (conditions is None or name in conditions) and f"{workload} {name}" not in result.skipped
    ]
    steps = iter(range(1, len(plan) + 1))
    print(
        f"backprop contention benchmark: {repeats} repeats, scale {scale:g}; "
        f"{_header_environment()}",
        file=file,
    )
    for scenario in scenarios:
        mine = [(w, name) for s, w, name in plan if s == scenario]
        if scenario in result.skipped:
            print(f"\nscenario {scenario}: skipped, {result.skipped[scenario]}", file=file)
            continue
        load_before = os.getloadavg()[0]
        with busy_process() if scenario == "busy" else contextlib.nullcontext():
            for workload, name in mine:
                if progress:
                    print(
                        f"[{next(steps)}/{len(plan)}] {scenario}: {_label(workload)}, {name} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                trainer, env = CONDITIONS[workload][name]
                task = dict(scenario=scenario, workload=workload, trainer=trainer)
                got = call(f"{__name__}:measure", dict(task, repeats=repeats, scale=scale), env)
                result.rows.append(
                    ContentionRow(
                        **task,
                        condition=name,
                        env=env,
                        seconds=got["seconds"],
                        threads=got["threads"],
                        thread_limit=got["thread limit"],
                        blas_threads=got["blas threads"],
                    )
                )
        result.load[scenario] = (load_before, os.getloadavg()[0])
        _compare(result.rows)
        _print_scenario(result, scenario, file)
    for name, why in result.skipped.items():
        if name not in SCENARIOS:
            print(f"\n{name}: skipped, {why}", file=file)
    print("\n" + _notes(result), file=file)
    return result


def _label(workload: str) -> str:
    return DIGITS["sgd"].label if workload == "digits" else WORKLOADS[workload].label


def _header_environment() -> str:
    parts = [f"cpus {os.cpu_count()}", _kernels()]
    if note := blas_env.describe():
        parts.append(note)
    return ", ".join(parts)


def _compare(rows: list[ContentionRow]) -> None:
    """Each row's ``vs_quiet`` and ``vs_backprop``, from the rows measured so far."""
    by_key = {(row.scenario, row.workload, row.condition): row for row in rows}
    for row in rows:
        quiet = by_key.get(("quiet", row.workload, row.condition))
        mine = by_key.get((row.scenario, row.workload, "backprop"))
        row.vs_quiet = row.median / quiet.median if quiet else math.nan
        row.vs_backprop = row.median / mine.median if mine else math.nan


def _print_scenario(result: Contention, scenario: str, file: TextIO) -> None:
    rows = [row for row in result.rows if row.scenario == scenario]
    print("\n" + textwrap.fill(f"scenario {scenario}: {SCENARIOS[scenario]}", width=96), file=file)
    print(_load_average(*result.load[scenario]), file=file)
    header = f"{'workload':<22} {'condition':<18} {'threads':>7} {'median s':>10} "
    header += f"{'x quiet':>8} {'x backprop':>10}"
    lines = (
        f"{_label(row.workload):<22} {row.condition:<18} {row.threads:>7} {row.median:>10.4f} "
        f"{row.vs_quiet:>8.2f} {row.vs_backprop:>10.2f}"
        for row in rows
    )
    _print_lines(header, lines, file)


def _notes(result: Contention) -> str:
    notes = NOTES
    unlimited = sorted(
        {row.threads for row in result.rows if row.condition == "backprop 1 thread"} - {1}
    )
    if unlimited:
        notes += "\n" + textwrap.fill(
            f"This build's two-core paths took {', '.join(map(str, unlimited))} threads under "
            f"{THREADS_VARIABLE}=1: it does not read the variable, so the 1-thread rows ran on "
            "the default threads.",
            width=96,
        )
    return notes


NOTES = f"""\
Measured: median wall time of the fit over the repeats (the load_digits sgd fit of a fresh
MLPClassifier; one epoch of W3 from the shared initial weights, prepared untimed), after one
untimed fit, each condition in a fresh process of its own, each timed fit right after the
scenario's action (none in quiet and busy). In busy, the CPU-bound process runs for the whole
scenario and is killed after it. threads = the threads backprop's two-core paths take in that
process; "backprop 1 thread" runs with {THREADS_VARIABLE}=1 (OMP_NUM_THREADS, which would
also limit NumPy's and scikit-learn's BLAS, left as it is). x quiet = this median / the same
condition's median in the quiet scenario (> 1: slowed down by the contention); x backprop =
this median / backprop's median on its default threads in the same scenario (> 1: slower than
backprop)."""
