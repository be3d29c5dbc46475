"""The benchmark's own BLAS environment: OpenBLAS's kernel overrides removed by re-executing.

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` pin OpenBLAS to the kernels (and blocking) of
another, often older, CPU. OpenBLAS reads them once, when it loads, so a process cannot change
them for itself: the command-line benchmark, started with either set, replaces itself
(``os.execve``) with the same command without them, once, and its header says so
(``describe``). ``--keep-blas-env`` runs with them as set. A call of ``main(argv)`` inside a
program never re-executes: that program is not the benchmark's to replace.
"""

from __future__ import annotations

import json
import os
import sys

OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Set by the re-executing process for the new one: the overrides it removed, as JSON.
REMOVED_VARIABLE = "BACKPROP_BENCH_REMOVED_BLAS_ENV"

_removed: dict[str, str] | None = None


def overrides() -> dict[str, str]:
    """The overrides set in this process's environment, by name."""
    return {name: os.environ[name] for name in OVERRIDES if name in os.environ}


def removed() -> dict[str, str]:
    """The overrides the command removed by re-executing itself (none if it did not). Read
    once, then dropped from the environment, so that the processes this one starts do not
    claim the same."""
    global _removed
    if _removed is None:
        try:
            value = json.loads(os.environ.pop(REMOVED_VARIABLE, "{}"))
        except json.JSONDecodeError:
            value = {}
        _removed = value if isinstance(value, dict) else {}
    return _removed


def reexec_without_overrides() -> None:
    """If an override is set, replaces this process with the same command line
    (``sys.orig_argv``, run by ``sys.executable``) in the same environment without the
    overrides; returns only if none is set."""
    found = overrides()
    if not found:
        return
    env = {name: value for name, value in os.environ.items() if name not in OVERRIDES}
    env[REMOVED_VARIABLE] = json.dumps(found)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def describe() -> str:
    """For the header: the overrides removed by re-executing, or those in effect; "" if none."""
    if removed():
        gone = ", ".join(f"{name}={value}" for name, value in removed().items())
        return f"re-executed without {gone}"
    if overrides():
        kept = ", ".join(f"{name}={value}" for name, value in overrides().items())
        return f"{kept} in effect"
    return ""
