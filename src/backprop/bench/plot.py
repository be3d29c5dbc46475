"""One figure of backprop's speed ratio to each peer, per workload
(``python -m backprop bench --plot FILE.png``): a row per workload, a dot per peer, on a
logarithmic axis with a line at 1x, so that a reader choosing a trainer sees at a glance where
backprop is faster (right of the line) and where a peer is.

Drawn with matplotlib's object API (``matplotlib.figure.Figure``), without pyplot: nothing
global (backend, open figures) changes in the calling program.
"""

from __future__ import annotations

import importlib.util
import math
import os

MISSING = 'needs matplotlib, which is not installed: pip install "backprop[plot]"'
MARKERS = "osD^vP*Xh<>"


def plot_missing() -> str | None:
    """Why the figure cannot be drawn here, or None if it can."""
    return MISSING if importlib.util.find_spec("matplotlib") is None else None


def plot_ratios(
    ratios: dict[str, dict[str, float]], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Draws ``ratios`` (workload label -> peer -> the peer's median time / backprop's, as
    ``record.ratios`` makes them) into the image file ``path`` (its format from its suffix)."""
    if reason := plot_missing():
        raise ImportError(f"plot_ratios {reason}")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    workloads = list(ratios)
    peers = list(dict.fromkeys(peer for by_peer in ratios.values() for peer in by_peer))
    figure = Figure(figsize=(9, 1.6 + 0.55 * max(len(workloads), 1)), layout="constrained")
    axes = figure.add_subplot()
    spread = 0.6 / max(len(peers), 1)  # the dots of a workload, one above another
    values = [r for by_peer in ratios.values() for r in by_peer.values() if math.isfinite(r)]
    for i, peer in enumerate(peers):
        xs, ys = [], []
        for row, workload in enumerate(workloads):
            ratio = ratios[workload].get(peer, math.nan)
            if math.isfinite(ratio) and ratio > 0:
                xs.append(ratio)
                ys.append(len(workloads) - 1 - row + (len(peers) - 1) / 2 * spread - i * spread)
        axes.scatter(xs, ys, marker=MARKERS[i % len(MARKERS)], s=36, label=peer, zorder=3)
        for x, y in zip(xs, ys):
            axes.annotate(
                f"{x:.3g}x", (x, y), xytext=(5, -3), textcoords="offset points", fontsize=7
            )
    axes.axvline(1.0, color="black", linewidth=1, zorder=2)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    low = min([1.0, *values]) / 1.6
    high = max([1.0, *values]) * 2.5
    axes.set_xlim(low, high)
    axes.set_ylim(-0.6, max(len(workloads), 1) - 0.4)
    axes.set_yticks(range(len(workloads)), workloads[::-1])
    axes.grid(axis="x", which="both", alpha=0.3)
    axes.set_xlabel("backprop's speed relative to the peer: the peer's median time / backprop's")
    axes.text(0.995, 1.01, "backprop faster \u2192", transform=axes.transAxes, ha="right")
    axes.text(0.005, 1.01, "\u2190 peer faster", transform=axes.transAxes, ha="left")
    if not workloads:
        axes.text(0.5, 0.5, "no peer was timed", transform=axes.transAxes, ha="center")
    if peers:
        figure.legend(title="peer", loc="outside right upper")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=120)
