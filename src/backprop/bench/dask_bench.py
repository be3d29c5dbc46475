"""The Dask benchmark: ``backprop.MLPClassifier`` fitted on a dask array held by a local
cluster of one worker process, then of two, with what each L-BFGS iteration and sgd epoch
costs in time, in bytes sent and in spilling.

Each cluster generates the data on its workers (X Gaussian float32, y a function of X's
columns: neither is ever on the client), persists it, then fits the classifier once per
solver for ``repeats + 1`` iterations (epochs). The first iteration also casts, encodes and
persists the partitions (``backprop._dask.persist``) and is not timed; the others are timed
from the estimator's callbacks, between the end of one callback and the start of the next.
Around the timed iterations the workers' own records are read (``_worker_counters``): the
bytes each sent and what they carried (``transfer_outgoing_log``, with
``transfer_outgoing_bytes_total`` beside it), the bytes their spill buffer wrote to and read
from disk, and the number and compute time of the tasks they ran.

Run it with ``python -m backprop bench --dask`` (``command.main``).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import TextIO

import numpy as np

from .. import __version__
from .report import _kernels, _load_average, _print_lines

# At scale 1, X is 4,000,000 x 100 float32: 1.6 GB, above one worker's memory limit, so the
# workers of both clusters spill (Dask starts at 60 % of the limit, counting the persisted X
# and the estimator's encoded partitions, which share X's memory, twice). A worker's
# process holds ~0.3 GB besides the data, which leaves room for a 40 MB partition and the
# objective's workspace below the 80 % at which Dask pauses a worker.
N_ROWS = 4_000_000
N_FEATURES = 100
WORKER_MEMORY = 1_000_000_000
CLUSTER_SIZES = (1, 2)
# Partitions of 100,000 rows (40 MB): 40 at scale 1, and at least 4 at any scale, so that
# two workers share them.
PARTITION_ROWS = 100_000
MIN_PARTITIONS = 4
MIN_ROWS = 1_000
HIDDEN_LAYER_SIZES = (64,)
SOLVERS = ("lbfgs", "sgd")
SEED = 0
# The workers' transfer logs keep every transfer of a run (Dask keeps its last 1,000), so
# the bytes sent can be told apart by what they carried.
TRANSFER_LOG_LENGTH = 100_000
PACKAGES = {"dask": "dask.array", "distributed": "distributed", "scikit-learn": "sklearn"}


def dask_missing() -> str | None:
    """Why the Dask benchmark cannot run here (what to install), or None if it can."""
    missing = []
    for name, module in PACKAGES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    if not missing:
        return None
    names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
    verb = "is" if len(missing) == 1 else "are"
    return f'{names} {verb} not installed: pip install "backprop[dask]"'


@dataclasses.dataclass
class DaskRow:
    """One solver on one cluster: the wall time of each timed iteration (epoch), and per
    iteration the tasks' compute (wall) and CPU time, the passes over the partitions and
    the workers' counters (``COUNTERS``)."""

    solver: str
    workers: int
    partitions: int
    n_params: int
    seconds: list[float]
    compute: float
    cpu: float
    passes: float
    counters: dict[str, float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    def per_pass(self, counter: str) -> float:
        return self.counters[counter] / self.passes if self.passes else math.nan


# What the workers count, summed over them. sent: the bytes their get_data handler wrote to
# its comm, to another worker or to the scheduler (which relays results to the client), as
# transfer_outgoing_log records them ("compressed"); results, weights and data split it by
# what the values were (``_kind``); sizeof: transfer_outgoing_bytes_total, Dask's sizeof of
# the same values. unspilled, spilled: the bytes the spill buffer read from and wrote to disk.
COUNTERS = ("sent", "results", "weights", "data", "sizeof", "unspilled", "spilled")
# The tasks over the partitions (``backprop._dask``): L-BFGS's, sgd's, as Dask names their
# prefixes.
PASS_TASKS = ("partition_sums", "partition_epoch")


def _kind(key) -> str:
    """What a key's value is: a task's result over a partition (a partition's loss and
    gradient sums, or the carry of an sgd epoch), the weights the client scatters, or data
    (X, y and the encoded partitions)."""
    from distributed.utils import key_split

    name = key_split(key)
    if name in ("partition_sums", "partition_epoch", "Carry"):
        return "results"
    if name == "ndarray":
        return "weights"
    return "data"


def _worker_counters(dask_worker) -> dict[str, float]:
    """Run on each worker: its cumulative counters (``COUNTERS``), the tasks it has run,
    the wall and CPU time of the tasks over the partitions in its thread (Dask's execute
    digests: thread-cpu + thread-noncpu, and thread-cpu) and the bytes it holds on disk. A
    transfer of several kinds of values is split in proportion to their sizeof."""
    sent: Counter[str] = Counter()
    for transfer in dask_worker.transfer_outgoing_log:
        kinds: Counter[str] = Counter()
        for key, nbytes in transfer["keys"].items():
            kinds[_kind(key)] += nbytes
        total = sum(kinds.values())
        for kind, nbytes in kinds.items():
            share = nbytes / total if total else 1 / len(kinds)
            sent[kind] += transfer["compressed"] * share
    thread: Counter[str] = Counter()
    for key, seconds in dask_worker.digests_total.items():
        if isinstance(key, tuple) and key[0] == "execute" and key[-3] in PASS_TASKS:
            thread[key[-2:]] += seconds
    cpu = thread["thread-cpu", "seconds"]
    metrics = dask_worker.data.cumulative_metrics
    return {
        "tasks": dask_worker.state.executed_count,
        "compute": cpu + thread["thread-noncpu", "seconds"],
        "cpu": cpu,
        "sent": sum(sent.values()),
        **{kind: sent[kind] for kind in ("results", "weights", "data")},
        "sizeof": dask_worker.transfer_outgoing_bytes_total,
        "unspilled": metrics[("disk-read", "bytes")],
        "spilled": metrics[("disk-write", "bytes")],
        "on disk": dask_worker.data.spilled_total.disk,
    }


def _counters(client) -> Counter[str]:
    """``_worker_counters`` summed over the workers."""
    total: Counter[str] = Counter()
    for counters in client.run(_worker_counters).values():
        total.update(counters)
    return total


def _data(n_rows: int):
    """X (n_rows x N_FEATURES float32, standard normal) and y (x0 x1 + x2 > 0), both lazy:
    their partitions are computed on the workers."""
    import dask.array as da

    rows = min(PARTITION_ROWS, -(-n_rows // MIN_PARTITIONS))
    X = da.random.default_rng(SEED).standard_normal(
        (n_rows, N_FEATURES), chunks=(rows, N_FEATURES), dtype=np.float32
    )
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(np.int8)
    return X, y


def _fit(client, solver: str, X, y, repeats: int, workers: int) -> DaskRow:
    """Fits ``repeats + 1`` iterations of ``solver`` and measures all but the first."""
    from sklearn.exceptions import ConvergenceWarning

    from .. import MLPClassifier

    max_iter = repeats + 1
    marks: list[tuple[float, float]] = []  # (entered, left) each callback
    counters: dict[str, Counter[str]] = {}

    def callback(info) -> None:
        entered = time.perf_counter()
        if info.epoch == max_iter:
            counters["after"] = _counters(client)
        if info.epoch == 1:
            counters["before"] = _counters(client)
        marks.append((entered, time.perf_counter()))

    est = MLPClassifier(
        hidden_layer_sizes=HIDDEN_LAYER_SIZES,
        solver=solver,
        max_iter=max_iter,
        tol=0.0,  # with n_iter_no_change: nothing stops the fit before max_iter
        n_iter_no_change=max_iter,
        dtype="float32",
        random_state=SEED,
        callbacks=[callback],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    if "after" not in counters:  # L-BFGS converged early
        counters["after"] = _counters(client)
    seconds = [entered - left for (_, left), (entered, _) in zip(marks, marks[1:])]
    timed = len(seconds) or math.nan
    change = {c: (counters["after"][c] - counters["before"][c]) / timed for c in counters["after"]}
    partitions = X.numblocks[0]
    return DaskRow(
        solver=solver,
        workers=workers,
        partitions=partitions,
        n_params=sum(w.size for w in est.coefs_ + est.intercepts_),
        seconds=seconds,
        compute=change["compute"],
        cpu=change["cpu"],
        passes=change["tasks"] / partitions,
        counters=change,
    )


@dataclasses.dataclass
class ClusterRun:
    """One cluster: the time the data took to be generated and persisted, the bytes then
    on disk, the workers restarted during the fits, and a row per solver."""

    workers: int
    persist_seconds: float
    on_disk: float
    restarted: int
    rows: list[DaskRow]


def _run_cluster(
    workers: int, n_rows: int, repeats: int, announce: Callable[[str], None]
) -> ClusterRun:
    """Starts a cluster of ``workers`` processes, generates and persists the data there and
    fits each solver on it."""
    import logging

    import dask
    from distributed import Client, LocalCluster, wait

    with (
        dask.config.set({"distributed.admin.low-level-log-length": TRANSFER_LOG_LENGTH}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=WORKER_MEMORY,
            dashboard_address=":0",  # an HTTP server starts anyway: on a free port
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        announce(f"{workers} worker(s): data")
        start = time.perf_counter()
        X, y = dask.persist(*_data(n_rows))
        wait([X, y])
        persist_seconds = time.perf_counter() - start
        on_disk = _counters(client)["on disk"]
        addresses = set(client.scheduler_info()["workers"])
        rows = []
        for solver in SOLVERS:
            announce(f"{workers} worker(s): {solver}")
            rows.append(_fit(client, solver, X, y, repeats, workers))
        restarted = len(set(client.scheduler_info()["workers"]) - addresses)
    return ClusterRun(workers, persist_seconds, on_disk, restarted, rows)


def _size(nbytes: float) -> str:
    """Bytes in decimal units, 3 significant digits."""
    if not math.isfinite(nbytes):
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def _print_table(rows: list[DaskRow], file: TextIO) -> None:
    header = f"{'solver':<6} {'workers':>7} {'median s':>8} {'compute s':>9} {'cpu s':>6} "
    header += f"{'passes':>6} "
    columns = [c for c in COUNTERS if c != "sizeof"]  # the second table's: per evaluation
    header += " ".join(f"{c:>9}" for c in columns)
    lines = (
        f"{row.solver:<6} {row.workers:>7} {row.median:>8.3f} {row.compute:>9.3f} "
        f"{row.cpu:>6.3f} {row.passes:>6.2f} "
        + " ".join(f"{_size(row.counters[c]):>9}" for c in columns)
        for row in rows
    )
    _print_lines(header, lines, file)


def _print_lbfgs_table(rows: list[DaskRow], file: TextIO) -> None:
    header = f"{'workers':>7} {'partitions':>10} {'sent':>9} {'sizeof':>9} {'gradients':>9} "
    header += f"{'weights':>9} {'data':>9}"
    lines = (
        f"{row.workers:>7} {row.partitions:>10} {_size(row.per_pass('sent')):>9} "
        f"{_size(row.per_pass('sizeof')):>9} "
        f"{row.per_pass('results') / (8 * row.n_params):>9.2f} "
        f"{row.per_pass('weights') / (4 * row.n_params):>9.2f} "
        f"{_size(row.per_pass('data')):>9}"
        for row in rows
        if row.solver == "lbfgs"
    )
    _print_lines(header, lines, file)


NOTES = """\
Measured: each solver is fitted once per cluster for repeats + 1 iterations (L-BFGS
iterations, sgd epochs); the first, which also casts, encodes and persists the partitions,
is not timed. median s: the median wall time of the others, from the end of one callback
(EpochInfo) to the start of the next: the client's step, sending the weights (L-BFGS) or the
carry (sgd), the tasks over the partitions and gathering their results. The other columns
are means per timed iteration, summed over the workers, from the workers' own records.
compute s: the wall time of the tasks over the partitions (_partition_sums,
_partition_epoch) in the workers' threads (Dask's execute digests, thread-cpu + thread-
noncpu; reading spilled inputs back is not in it); cpu s: their CPU time (thread-cpu alone:
below compute s when other processes take the cores); passes: the tasks the workers ran
(WorkerState.executed_count) / partitions (L-BFGS: objective evaluations; sgd: 1). sent =
the bytes their get_data handler wrote to its comm, to another worker or to the scheduler,
which relays results to the client (transfer_outgoing_log, "compressed": after the comm
compression the header names); results (each partition's loss and gradient sums, the sgd
carry), weights (a model over backprop._dask.BROADCAST_BYTES is broadcast: copies of its
weights from the worker the client sent them to to the others; a smaller one travels inside
each task instead, and counts 0 here) and data (partitions moved between workers) split it;
unspilled / spilled: the bytes each worker's spill buffer read from and wrote to disk. Not
counted: what the client sends (the tasks with the weights or the carry, through the
scheduler) and the scheduler's relay of the results to the client. Second table, per L-BFGS
objective evaluation: sizeof = transfer_outgoing_bytes_total, Dask's sizeof of the values
sent (of an sgd carry, a dataclass, it counts the object alone, not the arrays it holds);
gradients = results / 8P, weights = weights / 4P, with P the number of parameters (each
partition's result is its float64 gradient sum and two floats). Spilling: a worker spills
once Dask's count of the data it holds passes its memory target (60 % of memory_limit by
default); that count has X twice (the persisted X and the estimator's encoded partitions,
which share its arrays), and every iteration reads the partitions in the same order, so
where they do not all fit, each iteration reads them all back from disk (unspilled ~ X's
size) and writes them out again."""


def _environment() -> str:
    import dask
    import distributed

    return ", ".join(
        [
            f"backprop {__version__}",
            f"cpus {os.cpu_count()}",
            _kernels(),
            f"dask {dask.__version__}",
            f"distributed {distributed.__version__}",
            f"comm compression {dask.config.get('distributed.comm.compression')}",
        ]
    )


def run_dask(
    repeats: int = 5,
    scale: float = 1.0,
    progress: bool = True,
    file: TextIO | None = None,
) -> list[DaskRow]:
    """Run the Dask benchmark on each cluster size and print its tables; if dask,
    distributed or scikit-learn is missing, print what to install and return no rows."""
    file = sys.stdout if file is None else file
    missing = dask_missing()
    if missing:
        print(f"dask benchmark: skipped, {missing}", file=file)
        return []
    n_rows = max(MIN_ROWS, round(N_ROWS * scale))
    x_bytes = n_rows * N_FEATURES * 4
    total = len(CLUSTER_SIZES) * (1 + len(SOLVERS))
    steps = iter(range(1, total + 1))

    def announce(what: str) -> None:
        if progress:
            print(f"[{next(steps)}/{total}] {what} ...", file=sys.stderr, flush=True)

    print(
        f"backprop dask benchmark: {repeats} repeats, scale {scale:g}; {_environment()}",
        file=file,
    )
    load_before = os.getloadavg()[0]
    runs = [_run_cluster(workers, n_rows, repeats, announce) for workers in CLUSTER_SIZES]
    rows = [row for run in runs for row in run.rows]
    n_params = rows[0].n_params
    fits = "larger than" if x_bytes > WORKER_MEMORY else "within"
    print(
        f"X: {n_rows:,} x {N_FEATURES} float32 ({_size(x_bytes)}) and y = (x0 x1 + x2 > 0), "
        f"generated on the workers in {rows[0].partitions} partitions; "
        f"LocalCluster(processes=True, threads_per_worker=1, memory_limit={_size(WORKER_MEMORY)})"
        f": X is {fits} one worker's memory limit",
        file=file,
    )
    print(
        f"MLPClassifier(hidden_layer_sizes={HIDDEN_LAYER_SIZES}, solver='lbfgs' | 'sgd', "
        f"max_iter={repeats + 1}, tol=0.0, n_iter_no_change={repeats + 1}, dtype='float32', "
        f"random_state={SEED}), the others at their defaults: P = {n_params:,} parameters, "
        f"{_size(4 * n_params)} of float32 weights, {_size(8 * n_params)} of float64 gradient",
        file=file,
    )
    for run in runs:
        restarted = f"{run.restarted} worker(s) restarted" if run.restarted else "none restarted"
        print(
            f"{run.workers} worker(s): X and y persisted in {run.persist_seconds:.1f} s, "
            f"{_size(run.on_disk)} of them spilled to disk; {restarted}",
            file=file,
        )
    print(_load_average(load_before, os.getloadavg()[0]), file=file)
    _print_table(rows, file)
    print("\nL-BFGS, per objective evaluation:", file=file)
    _print_lbfgs_table(rows, file)
    print("\n" + NOTES, file=file)
    return rows
