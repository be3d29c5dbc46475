"""The tables the benchmark prints, and the command line that runs it."""

from __future__ import annotations

import argparse
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
from .._options import EnvironmentValueError, from_environment, integer, number
from .digits import (
    DIGITS,
    DIGITS_LIBRARIES,
    DigitsRow,
    DigitsWorkload,
    digits_data,
    digits_missing,
    measure_digits,
)
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
from the same Glorot weights on the same Gaussian data; forward = outputs (softmax included) for
all samples in one call. GFLOP/s counts 2 flops per weight and sample forward, 6 for training.
ratio = median time of the fastest peer / this median (peers exclude backprop; > 1 is faster
than every peer). Every trainer computes the loss of each batch (backprop's fit returns the
epoch loss). sklearn: MLP*.partial_fit, which also validates its input and binarizes labels on
each call and computes an (alpha = 0) L2 term per batch. On W1 it is MLPRegressor: identity
output and loss (1/2) mean squared error instead of a sigmoid output and mean squared error, so
it does not compute the same function there. The compiled peers: jax, the whole epoch one
jax.jit of a jax.lax.scan over the batches (forward: one jitted call); jax-step, a jitted step
(donating the weights) called from a Python loop over batches made JAX arrays beforehand;
torch-compile, torch.compile(dynamic=False) of torch's training step (zero_grad, forward, loss,
backward, SGD step), training only. Their tracing, compilation and a warm-up run happen before
the first repeat and are not timed; JAX runs with jax_enable_x64 on (float64 workloads)."""


def _print_lines(header: str, lines: Iterable[str], file: TextIO) -> None:
    """A table: its header, a rule as wide, then its lines."""
    print(header, "-" * len(header), *lines, sep="\n", file=file)


def _print_table(rows: list[Row], file: TextIO) -> None:
    header = f"{'workload':<22} {'trainer':<13} {'median s':>10} {'samples/s':>12} "
    header += f"{'GFLOP/s':>8} {'ratio':>6}"
    lines = (
        f"{row.workload.label:<22} {row.trainer:<13} {row.median:>10.4f} "
        f"{row.samples_per_second:>12,.0f} {row.gflops:>8.3g} {row.ratio:>6.2f}"
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


def run_table(
    workloads: Sequence[str | Workload] = (*WORKLOADS, "digits"),
    repeats: int = 5,
    scale: float = 1.0,
    progress: bool = True,
    file: TextIO | None = None,
    trainers: Sequence[str] | None = None,
    gemm_size: int = 2048,
) -> list[Row | DigitsRow]:
    """Time every available trainer on each workload, in this process, and print the table.

    The name "digits" among ``workloads`` adds the second table: the two MLPClassifiers on
    every solver of ``DIGITS`` (whatever ``trainers`` says), or a note if they cannot run.
    """
    file = sys.stdout if file is None else file
    with_digits = "digits" in workloads
    chosen = [WORKLOADS[w] if isinstance(w, str) else w for w in workloads if w != "digits"]
    chosen = [w.scaled(scale) for w in chosen]
    digits_skipped = digits_missing() if with_digits else None
    digits = (
        [w.scaled(scale) for w in DIGITS.values()] if with_digits and not digits_skipped else []
    )
    names = list(TRAINERS) if trainers is None else list(trainers)
    missing = [name for name in names if not TRAINERS[name].available()]
    plan = [
        (w, name)
        for w in chosen
        for name in names
        if name not in missing and TRAINERS[name]().supports(w)
    ]
    total = len(plan) + bool(chosen) + len(digits)
    steps = iter(range(1, total + 1))

    def announce(what: str) -> None:
        if progress:
            print(f"[{next(steps)}/{total}] {what} ...", file=sys.stderr, flush=True)

    print(f"backprop benchmarks: {repeats} repeats, scale {scale:g}; {_environment()}", file=file)
    rows: list[Row | DigitsRow] = []
    if chosen:
        rows += _run_workloads(chosen, plan, repeats, gemm_size, announce, file)
        if missing:
            print(f"not available (skipped): {', '.join(missing)}", file=file)
        print("\n" + NOTES, file=file)
    if digits_skipped:
        print(f"\ndigits: skipped, {digits_skipped}", file=file)
    elif digits:
        rows += _run_digits(digits, repeats, announce, file)
    return rows


def _load_average(before: float) -> str:
    # Other processes on the machine slow multi-threaded code most (torch's and BLAS's threads
    # wait for each other), so each table says how busy the machine was.
    return f"1-minute load average: {before:.2f} before, {os.getloadavg()[0]:.2f} after"


def _run_workloads(
    chosen: list[Workload],
    plan: list[tuple[Workload, str]],
    repeats: int,
    gemm_size: int,
    announce: Callable[[str], None],
    file: TextIO,
) -> list[Row]:
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    for workload, name in plan:
        announce(f"{workload.name} {name}")
        data, params = _problem(workload)
        trainer = make_trainer(name)
        trainer.prepare(workload, data, params)
        rows.append(Row(workload, name, measure(trainer, repeats)))
    announce("gemm")
    gemm = gemm_gflops(gemm_size, repeats=max(repeats, 3))
    for workload in chosen:
        mine = [row for row in rows if row.workload == workload]
        peers = [row.median for row in mine if row.trainer != "backprop"]
        for row in mine:
            row.ratio = min(peers) / row.median if peers else math.nan

    print(_load_average(load_before), file=file)
    _print_table(rows, file)
    print(f"\nNumPy float32 gemm {gemm_size}x{gemm_size}: {gemm:.1f} GFLOP/s", file=file)
    for row in rows:
        if row.trainer == "backprop" and row.workload.name == "W4":
            fraction = f"{row.gflops:.1f} GFLOP/s = {row.gflops / gemm:.0%} of gemm"
            print(f"backprop on W4: {fraction}", file=file)
    return rows


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
    digits: list[DigitsWorkload],
    repeats: int,
    announce: Callable[[str], None],
    file: TextIO,
) -> list[DigitsRow]:
    load_before = os.getloadavg()[0]
    rows: list[DigitsRow] = []
    for workload in digits:
        announce(f"{workload.name} {' and '.join(DIGITS_LIBRARIES)}")
        rows += measure_digits(workload, repeats)
    w = digits[0]
    n_test = len(digits_data(w)[3])
    model = f"hidden_layer_sizes={w.hidden_layer_sizes}, max_iter={w.max_iter}"
    print(
        f"\ndigits: MLPClassifier({model}, random_state={w.random_state})\n"
        f"on load_digits / 16: {w.n_train} training and {n_test} test samples",
        file=file,
    )
    print(_load_average(load_before) + _blas_threads(), file=file)
    _print_digits_table(rows, file)
    print("\n" + DIGITS_NOTES, file=file)
    return rows


_PROBLEMS: dict[Workload, tuple[Data, Params]] = {}


def _problem(workload: Workload) -> tuple[Data, Params]:
    """Data and initial weights, made once per workload and shared by all its trainers."""
    if workload not in _PROBLEMS:
        _PROBLEMS.clear()
        _PROBLEMS[workload] = make_data(workload), initial_params(workload)
    return _PROBLEMS[workload]


# --scale (or BACKPROP_BENCH_SCALE) multiplies every workload's samples; at 1 they are the
# published tables' workloads. W3's inputs alone take 188 MB per unit of scale (60,000 x 784
# float32) and every peer converts a copy of its own: above 10 (1.9 GB of inputs) a run would
# measure the machine's memory rather than the trainers, or not fit in it at all.
MAX_SCALE = 10.0
SCALE_VARIABLE = "BACKPROP_BENCH_SCALE"
MAX_REPEATS = 1000  # the median of more runs says nothing new
# The gemm reference holds three n x n float32 matrices: 768 MB and 1.1 Tflop a product at 8192.
MAX_GEMM_SIZE = 8192
GEMM_SIZE = 2048


def main(argv: Sequence[str] | None = None) -> int:
    """``backprop bench [--repeats N] [--scale S] [--workloads W1,W3,digits] ...``, or
    ``backprop bench --dask [--repeats N] [--scale S]`` (``dask_bench``).

    Every option is checked before anything runs; a value out of range exits with status 2
    and argparse's usage message. ``--scale`` defaults to ``BACKPROP_BENCH_SCALE`` if that
    is set, else 1.
    """
    names = [*WORKLOADS, "digits"]
    scale = number(0.0, MAX_SCALE, low_included=False)
    parser = argparse.ArgumentParser(
        prog="backprop bench",
        description="Time backprop against its peers (NumPy, PyTorch, scikit-learn, JAX).",
    )
    parser.add_argument(
        "--repeats", type=integer(1, MAX_REPEATS), default=5, help="timed runs per trainer"
    )
    parser.add_argument(
        "--scale",
        type=scale,
        default=None,
        help=f"fraction of the samples, in (0, {MAX_SCALE:g}] (e.g. 0.01 for a smoke run); "
        f"digits: also of max_iter, at most 1 (default: ${SCALE_VARIABLE} if set, else 1)",
    )
    parser.add_argument(
        "--workloads",
        default=None,
        help=f"comma-separated, from {','.join(names)} (digits: backprop.MLPClassifier "
        "against scikit-learn's on load_digits, every solver)",
    )
    parser.add_argument(
        "--trainers",
        default=None,
        help=f"from {','.join(TRAINERS)} (not for digits)",
    )
    parser.add_argument(
        "--gemm-size",
        type=integer(1, MAX_GEMM_SIZE),
        default=None,
        help=f"n of the NumPy gemm reference (default {GEMM_SIZE})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--dask",
        action="store_true",
        help="instead of the tables: backprop.MLPClassifier on a local Dask cluster of one, "
        "then two worker processes (an L-BFGS iteration and an sgd epoch on 1.6 GB of float32 "
        "per unit of scale, generated on the workers; bytes sent, spilling); takes --repeats, "
        '--scale and --no-progress; needs pip install "backprop[dask]"',
    )
    args = parser.parse_args(argv)
    if args.scale is None:
        try:
            args.scale = from_environment(SCALE_VARIABLE, scale, default=1.0)
        except EnvironmentValueError as refusal:
            parser.error(str(refusal))
    if args.dask:
        given = [
            option
            for option, value in (
                ("--workloads", args.workloads),
                ("--trainers", args.trainers),
                ("--gemm-size", args.gemm_size),
            )
            if value is not None
        ]
        if given:
            parser.error(
                f"argument --dask: expected no {', '.join(given)} (it takes --repeats, "
                "--scale and --no-progress)"
            )
        from .dask_bench import run_dask  # it prints with this module's helpers

        run_dask(repeats=args.repeats, scale=args.scale, progress=not args.no_progress)
        return 0
    chosen = {}
    for text, known, option in (
        (",".join(names) if args.workloads is None else args.workloads, names, "--workloads"),
        (",".join(TRAINERS) if args.trainers is None else args.trainers, [*TRAINERS], "--trainers"),
    ):
        values = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            got = f"unknown {', '.join(unknown)}" if unknown else f"got {text!r}"
            parser.error(f"argument {option}: {got}; expected some of {', '.join(known)}")
        chosen[option] = values
    run_table(
        chosen["--workloads"],
        repeats=args.repeats,
        scale=args.scale,
        progress=not args.no_progress,
        trainers=chosen["--trainers"],
        gemm_size=GEMM_SIZE if args.gemm_size is None else args.gemm_size,
    )
    return 0
