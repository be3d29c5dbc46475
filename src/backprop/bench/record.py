"""A run's figures and what they were measured on, as one JSON document
(``python -m backprop bench --json FILE``).

``document`` holds every figure of the run: per workload and trainer, each repeat's seconds
and their median, samples/s, GFLOP/s and the table's ratio; the digits rows (wall and CPU
seconds, accuracy, n_iter_, loss_, ratio); NumPy's gemm; backprop's speed ratio to each peer
(``ratios``); the contention rows; and the machine (``machine``): CPU model, backprop's kernel
target, the BLAS libraries with their kernel and threads, the OpenMP runtimes, the variables
that set threads or kernels, the load average, Python and the libraries' versions. A figure
that could not be measured (a ratio without a peer) is null.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, _config
from . import blas_env

if TYPE_CHECKING:
    from .contention import Contention
    from .report import Tables

# The layout of the document; a change that removes or renames a field changes it.
FORMAT = 1
LIBRARIES = (
    "numpy", "scipy", "scikit-learn", "threadpoolctl", "torch", "jax", "jaxlib", "matplotlib",
)  # fmt: skip
# Variables that choose threads or kernels, of OpenMP, the BLAS libraries, backprop, XLA.
VARIABLE_PREFIXES = ("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MKL_", "BACKPROP_", "XLA_", "JAX_")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"backprop": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _thread_pools() -> list[dict[str, Any]] | None:
    """threadpoolctl's description of every BLAS and OpenMP library loaded (internal_api,
    version, architecture: the BLAS kernel in use, num_threads), or None without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return threadpool_info()


def machine() -> dict[str, Any]:
    """What the run was measured on, as it is now (the libraries the run loaded included)."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    config = _config.config()
    threads: dict[str, Any] = dict(config["threads"])
    if (torch := sys.modules.get("torch")) is not None:  # imported by the run: its threads
        threads["torch"] = torch.get_num_threads()
    return {
        "cpu": {
            "model": _cpu_model(),
            "machine": platform.machine(),
            "count": os.cpu_count(),
            "usable": len(affinity) if affinity is not None else None,
        },
        "platform": platform.platform(),
        "backprop": config,
        "thread_pools": _thread_pools(),
        "threads": threads,
        "environment": {
            name: value
            for name, value in sorted(os.environ.items())
            if name.startswith(VARIABLE_PREFIXES) and name != blas_env.REMOVED_VARIABLE
        },
        "blas_environment": {"removed": blas_env.removed(), "in_effect": blas_env.overrides()},
        "python": {"version": sys.version, "executable": sys.executable},
        "versions": _versions(),
    }


def ratios(tables: Tables) -> dict[str, dict[str, float]]:
    """backprop's speed ratio to each peer, by workload label: the peer's median time /
    backprop's (> 1: backprop is faster). Digits: scikit-learn's fit against backprop's."""
    result: dict[str, dict[str, float]] = {}
    for rows in (tables.rows, tables.digits):
        mine = {row.workload.label: row.median for row in rows if row.trainer == "backprop"}
        for row in rows:
            if row.trainer != "backprop" and row.workload.label in mine:
                ratio = row.median / mine[row.workload.label]
                result.setdefault(row.workload.label, {})[row.trainer] = ratio
    return result


def _row(row: Any, peak: Any) -> dict[str, Any]:
    w = row.workload
    return {
        "workload": w.name,
        "label": w.label,
        "task": w.task,
        "sizes": list(w.sizes),
        "activation": w.activation,
        "output": w.output,
        "loss": w.loss,
        "batch_size": w.batch_size,
        "lr": w.lr,
        "dtype": w.dtype,
        "n_samples": w.n_samples,
        "trainer": row.trainer,
        "seconds": row.seconds,
        "median": row.median,
        "samples_per_second": row.samples_per_second,
        "gflops": row.gflops,
        "needed_flops": w.needed_flops,
        "fraction_of_peak": row.of_peak(peak),
        "ratio_to_fastest_peer": row.ratio,
    }


def _digits_row(row: Any) -> dict[str, Any]:
    return {
        "workload": row.workload.label,
        **row.workload.params,
        "n_train": row.workload.n_train,
        "library": row.trainer,
        "seconds": row.seconds,
        "cpu_seconds": row.cpu_seconds,
        "median": row.median,
        "cpu_median": row.cpu_median,
        "accuracy": row.accuracy,
        "n_iter": row.n_iter,
        "loss": row.loss,
        "ratio_to_sklearn": row.ratio,
    }


def _tables(tables: Tables) -> dict[str, Any]:
    return {
        "repeats": tables.repeats,
        "scale": tables.scale,
        "workloads": [_row(row, tables.peak) for row in tables.rows],
        "gemm": {"size": tables.gemm_size, "gflops": tables.gemm_gflops} if tables.rows else None,
        "peak": dataclasses.asdict(tables.peak) if tables.peak else None,
        "digits": [_digits_row(row) for row in tables.digits],
        "ratios": ratios(tables),
        "load_average": {name: list(pair) for name, pair in tables.load.items()},
        "skipped": tables.skipped,
    }


def _contention(contention: Contention) -> dict[str, Any]:
    from .contention import SCENARIOS

    rows = []
    for row in contention.rows:
        fields = dataclasses.asdict(row)
        fields["median"] = row.median
        rows.append(fields)
    return {
        "repeats": contention.repeats,
        "scale": contention.scale,
        "scenarios": SCENARIOS,
        "rows": rows,
        "load_average": {name: list(pair) for name, pair in contention.load.items()},
        "skipped": contention.skipped,
    }


def document(
    arguments: list[str],
    started: datetime.datetime,
    load_before: tuple[float, float, float],
    tables: Tables | None = None,
    contention: Contention | None = None,
) -> dict[str, Any]:
    """The JSON document of a run of ``backprop bench arguments`` started at ``started``
    (UTC), with the 1, 5 and 15-minute load averages before it (and now, after it)."""
    return {
        "format": FORMAT,
        "command": ["backprop", "bench", *arguments],
        "started": started.isoformat(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "machine": machine(),
        "tables": _tables(tables) if tables is not None else None,
        "contention": _contention(contention) if contention is not None else None,
    }


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Writes ``doc`` to ``path`` as JSON: to a temporary file beside it, then renamed, so a
    reader never sees half a file."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(json.dumps(_finite(doc), indent=1, allow_nan=False) + "\n")
    os.replace(partial, target)
