"""The tables the benchmark prints (``run_tables``): the workloads, every trainer on each,
and the digits fits; what they measured, as a ``Tables``."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import numpy as np

from .. import _config, _core, _cpu
from . import blas_env
from .digits import (
    DIGITS,
    DIGITS_LIBRARIES,
    DigitsRow,
    DigitsWorkload,
    digits_data,
    digits_missing,
    measure_digits,
)
from .peak import Peak, peak_gflops
from .registry import TRAINERS, make_trainer
from .trainers import gemm_gflops, measure
from .workloads import WORKLOADS, Data, Params, Workload, initial_params, make_data

# --- the table ------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    workload: Workload
    trainer: str
    seconds: list[float]
    ratio: float = math.nan

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def samples_per_second(self) -> float:
        return self.workload.n_samples / self.median

    @property
    def gflops(self) -> float:
        return self.workload.flops / self.median / 1e9

    def of_peak(self, peak: Peak | None) -> float:
        """The workload's needed flops a second over the peak of its dtype (NaN without)."""
        if peak is None:
            return math.nan
        return self.workload.needed_flops / self.median / 1e9 / peak.gflops[self.workload.dtype]


def _environment() -> str:
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    parts = [
        f"cpus {os.cpu_count()}",
        _kernels(),
        f"numpy {np.__version__} ({blas.get('name', '?')})",
    ]
    for name in ("torch", "sklearn"):
        if TRAINERS[name].available():
            module = importlib.import_module(name)
            parts.append(f"{name} {module.__version__}")
            if name == "torch":
                parts[-1] += f" ({module.get_num_threads()} threads)"
    try:  # from its metadata: importing JAX takes seconds, and only its trainers need it
        parts.append(f"jax {importlib.metadata.version('jax')}")
    except importlib.metadata.PackageNotFoundError:
        pass
    if note := blas_env.describe():
        parts.append(note)
    return ", ".join(parts)


def _kernels() -> str:
    """backprop's kernel target (and whether BACKPROP_CPU forced it) and its BLAS kernel: the
    two things that decide its speed on a given CPU."""
    target = f"backprop kernels {_core.TARGET}"
    forced = os.environ.get(_cpu.VARIABLE)
    target += f" ({_cpu.VARIABLE}={forced})" if forced else " (chosen for this CPU)"
    blas = _config.config()["blas"]
    if blas.get("architecture"):
        target += f", BLAS {blas['library']} {blas['version']} {blas['architecture']} kernel"
    if blas.get("OPENBLAS_CORETYPE"):
        target += f" (OPENBLAS_CORETYPE={blas['OPENBLAS_CORETYPE']})"
    return target


NOTES = """\
Measured: median wall time of `run` over the repeats, each repeat prepared afresh (model built,
data converted, shared initial weights loaded: not timed), one trainer's repeats back to back.
Training = one epoch of plain SGD (no momentum, no weight decay) in fixed order, every trainer
from the same Glorot weights on the same Gaussian data (W5: batch normalization after each hidden
layer, PyTorch's BatchNorm1d, and PyTorch's Adam from fresh moments; NumPy and sklearn do not
run it, the others train the same); forward = outputs (softmax included) for
all samples in one call. GFLOP/s counts 2 flops per weight and sample forward, 6 for training.
peak = the products' flops a second (the first layer's input gradient not counted: no trainer
computes it) over the peak below, backprop's kernel target's, of the workload's dtype.
ratio = median time of the fastest peer / this median (peers exclude backprop; > 1 is faster
than every peer). Every trainer computes the loss of each batch (backprop's fit returns the
epoch loss). sklearn: MLP*.partial_fit, which also validates its input and binarizes labels on
each call and computes an (alpha = 0) L2 term per batch. On W1 it is MLPRegressor: identity
output and loss (1/2) mean squared error instead of a sigmoid output and mean squared error, so
it does not compute the same function there."""
# Added to NOTES when a compiled peer ran.
COMPILED_NOTES = """\
The compiled peers: jax, the whole epoch one jax.jit of a jax.lax.scan over the batches
(forward: one jitted call); jax-step, a jitted step (donating the weights) called from a Python
loop over batches made JAX arrays beforehand; torch-compile, torch.compile(dynamic=False) of
torch's training step (zero_grad, forward, loss, backward, optimizer step), training only. Their
tracing, compilation and a warm-up run happen before the first repeat and are not timed; JAX
runs with jax_enable_x64 on (float64 workloads)."""


def _print_lines(header: str, lines: Iterable[str], file: TextIO) -> None:
    """A table: its header, a rule as wide, then its lines."""
    print(header, "-" * len(header), *lines, sep="\n", file=file)


def _print_table(rows: list[Row], peak: Peak | None, file: TextIO) -> None:
    header = f"{'workload':<22} {'trainer':<13} {'median s':>10} {'samples/s':>12} "
    header += f"{'GFLOP/s':>8} {'peak':>5} {'ratio':>6}"
    lines = (
        f"{row.workload.label:<22} {row.trainer:<13} {row.median:>10.4f} "
        f"{row.samples_per_second:>12,.0f} {row.gflops:>8.3g} {row.of_peak(peak):>5.0%} "
        f"{row.ratio:>6.2f}"
        for row in rows
    )
    _print_lines(header, lines, file)


DIGITS_NOTES = """\
Measured: median wall time of `fit` on a fresh estimator, and the median CPU time of the process
over the same fits (all its threads: scikit-learn's products run in NumPy's BLAS, backprop's in
its own kernels, on both cores at this size). backprop.MLPClassifier and
sklearn.neural_network.MLPClassifier alternate in one process, their order flipping every
repeat, after one untimed fit of each; each fit starts right after the other library's, with
no pause, as in a program that fits both (NumPy's OpenBLAS threads, still spinning for a while
after a scikit-learn fit, share the cores with the start of the fit that follows). Both get the
same float64 arrays and the same parameters, so they should fit the same model: accuracy (on
the held-out 25 %), n_iter_ and loss_ come from that first fit and show whether they did.
ConvergenceWarning (max_iter reached) is silenced. ratio = sklearn's median time / this median
(> 1: faster than sklearn)."""


def _print_digits_table(rows: list[DigitsRow], file: TextIO) -> None:
    header = f"{'workload':<22} {'library':<9} {'median s':>10} {'cpu s':>8} "
    header += f"{'accuracy':>8} {'n_iter_':>7} {'loss_':>10} {'ratio':>6}"
    lines = (
        f"{row.workload.label:<22} {row.trainer:<9} {row.median:>10.4f} "
        f"{row.cpu_median:>8.3f} {row.accuracy:>8.4f} {row.n_iter:>7} {row.loss:>10.4g} "
        f"{row.ratio:>6.2f}"
        for row in rows
    )
    _print_lines(header, lines, file)


@dataclasses.dataclass
class Tables:
    """What one run of the tables measured: a row per workload and trainer, a row per digits
    solver and library, NumPy's gemm, the 1-minute load average before and after each table
    (``load``, by table: "workloads", "digits"), and what was skipped and why (by trainer
    name, or "digits")."""

    repeats: int
    scale: float
    rows: list[Row] = dataclasses.field(default_factory=list)
    digits: list[DigitsRow] = dataclasses.field(default_factory=list)
    gemm_size: int = 0
    gemm_gflops: float = math.nan
    peak: Peak | None = None
    load: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)


def run_table(
    workloads: Sequence[str | Workload] = (*WORKLOADS, "digits"),
    repeats: int = 5,
    scale: float = 1.0,
    progress: bool = True,
    file: TextIO | None = None,
    trainers: Sequence[str] | None = None,
    gemm_size: int = 2048,
) -> list[Row | DigitsRow]:
    """``run_tables``' rows, then its digits rows."""
    tables = run_tables(workloads, repeats, scale, progress, file, trainers, gemm_size)
    return [*tables.rows, *tables.digits]


def run_tables(
    workloads: Sequence[str | Workload] = (*WORKLOADS, "digits"),
    repeats: int = 5,
    scale: float = 1.0,
    progress: bool = True,
    file: TextIO | None = None,
    trainers: Sequence[str] | None = None,
    gemm_size: int = 2048,
) -> Tables:
    """Time every available trainer on each workload, in this process, and print the table.

    The name "digits" among ``workloads`` adds the second table: the two MLPClassifiers on
    every solver of ``DIGITS`` (whatever ``trainers`` says), or a note if they cannot run.
    """
    file = sys.stdout if file is None else file
    tables = Tables(repeats, scale, gemm_size=gemm_size)
    with_digits = "digits" in workloads
    chosen = [WORKLOADS[w] if isinstance(w, str) else w for w in workloads if w != "digits"]
    chosen = [w.scaled(scale) for w in chosen]
    digits_skipped = digits_missing() if with_digits else None
    if digits_skipped:
        tables.skipped["digits"] = digits_skipped
    digits = (
        [w.scaled(scale) for w in DIGITS.values()] if with_digits and not digits_skipped else []
    )
    names = list(TRAINERS) if trainers is None else list(trainers)
    missing = [name for name in names if not TRAINERS[name].available()]
    tables.skipped.update((name, "not available") for name in missing)
    plan = [
        (w, name)
        for w in chosen
        for name in names
        if name not in missing and TRAINERS[name]().supports(w)
    ]
    total = len(plan) + 2 * bool(chosen) + len(digits)
    steps = iter(range(1, total + 1))

    def announce(what: str) -> None:
        if progress:
            print(f"[{next(steps)}/{total}] {what} ...", file=sys.stderr, flush=True)

    print(f"backprop benchmarks: {repeats} repeats, scale {scale:g}; {_environment()}", file=file)
    if chosen:
        _run_workloads(tables, chosen, plan, announce, file)
        if missing:
            print(f"not available (skipped): {', '.join(missing)}", file=file)
        print("\n" + NOTES, file=file)
        if any(TRAINERS[row.trainer].__module__.endswith(".compiled") for row in tables.rows):
            print(COMPILED_NOTES, file=file)
    if digits_skipped:
        print(f"\ndigits: skipped, {digits_skipped}", file=file)
    elif digits:
        _run_digits(tables, digits, announce, file)
    return tables


def _load_average(before: float, after: float) -> str:
    # Other processes on the machine slow multi-threaded code most (torch's and BLAS's threads
    # wait for each other), so each table says how busy the machine was.
    return f"1-minute load average: {before:.2f} before, {after:.2f} after"


def _run_workloads(
    tables: Tables,
    chosen: list[Workload],
    plan: list[tuple[Workload, str]],
    announce: Callable[[str], None],
    file: TextIO,
) -> None:
    load_before = os.getloadavg()[0]
    # first, while no peer's threads exist: OpenBLAS's and XLA's, still spinning after their
    # own products, would share the cores with the probe
    announce("peak")
    peak = tables.peak = peak_gflops()
    rows = tables.rows
    for workload, name in plan:
        announce(f"{workload.name} {name}")
        data, params = _problem(workload)
        trainer = make_trainer(name)
        trainer.prepare(workload, data, params)
        rows.append(Row(workload, name, measure(trainer, tables.repeats)))
    announce("gemm")
    size = tables.gemm_size
    gemm = tables.gemm_gflops = gemm_gflops(size, repeats=max(tables.repeats, 3))
    for workload in chosen:
        mine = [row for row in rows if row.workload == workload]
        peers = [row.median for row in mine if row.trainer != "backprop"]
        for row in mine:
            row.ratio = min(peers) / row.median if peers else math.nan

    tables.load["workloads"] = (load_before, os.getloadavg()[0])
    print(_load_average(*tables.load["workloads"]), file=file)
    _print_table(rows, peak, file)
    print(f"\nNumPy float32 gemm {size}x{size}: {gemm:.1f} GFLOP/s", file=file)
    print(
        f"peak (multiply-adds in {peak.target}'s registers, {peak.threads} thread"
        f"{'s' if peak.threads > 1 else ''}): float32 {peak.gflops['float32']:.1f} GFLOP/s, "
        f"float64 {peak.gflops['float64']:.1f} GFLOP/s",
        file=file,
    )
    for row in rows:
        if row.trainer == "backprop" and row.workload.name == "W4":
            fraction = f"{row.gflops:.1f} GFLOP/s = {row.gflops / gemm:.0%} of gemm"
            print(f"backprop on W4: {fraction}, {row.of_peak(peak):.0%} of the peak", file=file)


def _blas_threads() -> str:
    """The BLAS libraries loaded and their thread counts, if threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    blas = []
    for lib in threadpool_info():
        if lib["user_api"] == "blas":
            folder = os.path.basename(os.path.dirname(lib["filepath"]))
            owner = folder.removesuffix(".libs") if folder.endswith(".libs") else lib["prefix"]
            blas.append(f"{owner}'s {lib['internal_api']} {lib['num_threads']}")
    return f"; BLAS threads: {', '.join(blas)}" if blas else ""


def _run_digits(
    tables: Tables,
    digits: list[DigitsWorkload],
    announce: Callable[[str], None],
    file: TextIO,
) -> None:
    load_before = os.getloadavg()[0]
    rows = tables.digits
    for workload in digits:
        announce(f"{workload.name} {' and '.join(DIGITS_LIBRARIES)}")
        rows += measure_digits(workload, tables.repeats)
    w = digits[0]
    n_test = len(digits_data(w)[3])
    model = f"hidden_layer_sizes={w.hidden_layer_sizes}, max_iter={w.max_iter}"
    print(
        f"\ndigits: MLPClassifier({model}, random_state={w.random_state})\n"
        f"on load_digits / 16: {w.n_train} training and {n_test} test samples",
        file=file,
    )
    tables.load["digits"] = (load_before, os.getloadavg()[0])
    print(_load_average(*tables.load["digits"]) + _blas_threads(), file=file)
    _print_digits_table(rows, file)
    print("\n" + DIGITS_NOTES, file=file)


_PROBLEMS: dict[Workload, tuple[Data, Params]] = {}


def _problem(workload: Workload) -> tuple[Data, Params]:
    """Data and initial weights, made once per workload and shared by all its trainers."""
    if workload not in _PROBLEMS:
        _PROBLEMS.clear()
        _PROBLEMS[workload] = make_data(workload), initial_params(workload)
    return _PROBLEMS[workload]
