"""The machine's arithmetic peak, the physical limit the tables measure speeds against.

``peak_gflops`` times the probe of ``_kernels/fma_peak.h``: independent multiply-adds on
vectors held in registers, as wide as the kernel target in use allows (x86-64-v3: AVX2 and
FMA; x86-64-v2: SSE, a multiply and an add), one run on each of the team's threads at once.
No loads, no stores, no dependence between the chains: no real kernel can go faster on that
target, so a workload's GFLOP/s over this figure is the fraction of the peak it reached.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import _core


@dataclasses.dataclass(frozen=True)
class Peak:
    """``gflops`` by dtype name, measured on ``threads`` threads with ``target``'s kernels."""

    gflops: dict[str, float]
    threads: int
    target: str


def _timed(steps: int, doubles: bool, threads: int) -> tuple[float, float]:
    """The probe's GFLOP/s over ``steps`` steps on each of ``threads`` threads, and its
    seconds."""
    start = time.perf_counter()
    flops = _core.peak_flops(steps, doubles, threads)
    seconds = time.perf_counter() - start
    return flops / seconds / 1e9, seconds


def peak_gflops(repeats: int = 10, seconds: float = 0.02) -> Peak:
    """The best over ``repeats`` of the probe's GFLOP/s, float32 and float64, each repeat
    about ``seconds`` long, on the threads a two-core path takes now (``_core.team_size``).

    The best, not the median: the probe measures what the cores can do, and anything else
    running on the machine only takes from it (a thread descheduled in the middle of its
    part also sends the team to run alone for a while, see _kernels/team.h). A first short
    run per dtype, not counted, starts the team's worker (as a fit's first batch does) and
    sizes the repeats."""
    threads = _core.team_size()
    gflops = {}
    for dtype in ("float32", "float64"):
        doubles = dtype == "float64"
        first = _timed(1 << 20, doubles, threads)[1]
        steps = max(1 << 10, int((1 << 20) * seconds / first))
        gflops[np.dtype(dtype).name] = max(
            _timed(steps, doubles, threads)[0] for _ in range(repeats)
        )
    return Peak(gflops, threads, _core.TARGET)
