"""``backprop bench``: the command line of the benchmark. It runs the tables (``report``), the
contention scenarios (``contention``) or the Dask benchmark (``dask_bench``), and writes what
the run measured to JSON (``record``) and the figure of the ratios (``plot``) when asked."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence

from .._options import EnvironmentValueError, from_environment, integer, number
from . import blas_env, record
from .plot import plot_missing
from .registry import TRAINERS
from .report import run_tables
from .workloads import WORKLOADS

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


def _parser() -> argparse.ArgumentParser:
    names = [*WORKLOADS, "digits"]
    parser = argparse.ArgumentParser(
        prog="backprop bench",
        description="Time backprop against its peers (NumPy, PyTorch, scikit-learn, JAX).",
    )
    parser.add_argument(
        "--repeats", type=integer(1, MAX_REPEATS), default=5, help="timed runs per trainer"
    )
    parser.add_argument(
        "--scale",
        type=number(0.0, MAX_SCALE, low_included=False),
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
        "--json",
        metavar="FILE",
        default=None,
        help="also write every figure of the run, and what it ran on, to FILE as JSON",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also draw backprop's speed ratio to each peer, per workload, into FILE.png "
        '(needs matplotlib: pip install "backprop[plot]")',
    )
    parser.add_argument(
        "--keep-blas-env",
        action="store_true",
        help=f"run with {' and '.join(blas_env.OVERRIDES)} as set (by default the command "
        "starts again without them: they pin OpenBLAS to another CPU's kernels)",
    )
    parser.add_argument(
        "--contention",
        action="store_true",
        help="instead of the tables: the load_digits sgd fit and W3 with a CPU-bound "
        "process beside them, after a threaded NumPy product, after a torch product, and "
        "quiet; backprop on its default threads and on one (BACKPROP_NUM_THREADS=1) beside "
        "its peers, each in a fresh process; takes --repeats, --scale, --no-progress, --json",
    )
    parser.add_argument(
        "--dask",
        action="store_true",
        help="instead of the tables: backprop.MLPClassifier on a local Dask cluster of one, "
        "then two worker processes (an L-BFGS iteration and an sgd epoch on 1.6 GB of float32 "
        "per unit of scale, generated on the workers; bytes sent, spilling); takes --repeats, "
        '--scale and --no-progress; needs pip install "backprop[dask]"',
    )
    return parser


def _refuse_with(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--dask and --contention replace the tables: the tables' own options are refused."""
    for mode, allowed in (("--dask", ()), ("--contention", ("--json",))):
        if not getattr(args, mode.lstrip("-")):
            continue
        others = [
            ("--workloads", args.workloads),
            ("--trainers", args.trainers),
            ("--gemm-size", args.gemm_size),
            ("--json", args.json),
            ("--plot", args.plot),
            ("--contention", args.contention if mode == "--dask" else None),
        ]
        given = [
            option
            for option, value in others
            if value is not None and value is not False and option not in allowed
        ]
        if given:
            takes = ", ".join(["--repeats", "--scale", "--no-progress", *allowed])
            parser.error(f"argument {mode}: expected no {', '.join(given)} (it takes {takes})")


def _check_output(parser: argparse.ArgumentParser, option: str, path: str | None) -> None:
    """A file the run will write must be in a directory that exists, checked before the run."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not path or os.path.isdir(path) or not os.path.isdir(folder):
        parser.error(f"argument {option}: expected a file in an existing directory; got {path!r}")


def main(argv: Sequence[str] | None = None, *, command_line: bool = False) -> int:
    """``backprop bench [--repeats N] [--scale S] [--workloads W1,W3,digits] [--trainers ...]
    [--json FILE] [--plot FILE.png]``, ``backprop bench --contention [--json FILE] ...``
    (``contention``), or ``backprop bench --dask [--repeats N] [--scale S]`` (``dask_bench``).

    Every option is checked before anything runs; a value out of range exits with status 2
    and argparse's usage message. ``--scale`` defaults to ``BACKPROP_BENCH_SCALE`` if that
    is set, else 1. ``command_line``: this is the command itself (``python -m backprop
    bench``), which restarts without OpenBLAS's overrides unless ``--keep-blas-env`` says
    otherwise (``blas_env``); a program calling ``main`` is never replaced.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(arguments)
    if args.scale is None:
        try:
            args.scale = from_environment(
                SCALE_VARIABLE, number(0.0, MAX_SCALE, low_included=False), default=1.0
            )
        except EnvironmentValueError as refusal:
            parser.error(str(refusal))
    _refuse_with(parser, args)
    _check_output(parser, "--json", args.json)
    _check_output(parser, "--plot", args.plot)
    if args.plot is not None and (reason := plot_missing()):
        parser.error(f"argument --plot: {reason}")
    chosen = {}
    if not (args.dask or args.contention):
        chosen = _choices(parser, args)
    if command_line and not args.keep_blas_env:
        blas_env.reexec_without_overrides()
    blas_env.removed()  # read before any child process starts (see blas_env.removed)
    progress = not args.no_progress
    if args.dask:
        from .dask_bench import run_dask

        run_dask(repeats=args.repeats, scale=args.scale, progress=progress)
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    tables = contention = None
    if args.contention:
        from .contention import run_contention

        contention = run_contention(repeats=args.repeats, scale=args.scale, progress=progress)
    else:
        tables = run_tables(
            chosen["--workloads"],
            repeats=args.repeats,
            scale=args.scale,
            progress=progress,
            trainers=chosen["--trainers"],
            gemm_size=GEMM_SIZE if args.gemm_size is None else args.gemm_size,
        )
    if args.json is not None:
        doc = record.document(arguments, started, load_before, tables, contention)
        record.write(args.json, doc)
        print(f"\nfigures written to {args.json}")
    if args.plot is not None and tables is not None:
        from .plot import plot_ratios

        cpu = record.machine()["cpu"]["model"]
        title = f"backprop against its peers: {cpu}, median of {args.repeats}"
        title += f", scale {args.scale:g}" if args.scale != 1 else ""
        plot_ratios(record.ratios(tables), args.plot, title)
        print(f"figure drawn in {args.plot}")
    return 0


def _choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, list[str]]:
    """The workloads and trainers named by --workloads and --trainers (default: all)."""
    names = [*WORKLOADS, "digits"]
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
    return chosen
