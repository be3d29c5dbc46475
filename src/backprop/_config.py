"""What this copy of backprop runs on: its version, the CPU target of its kernels (the one in
use, those built, those this CPU runs), BLAS and the threads.

``show_config`` prints it (``python -m backprop info`` too); ``config`` returns the same as
plain values. BLAS is the library behind ``scipy.linalg.cython_blas``, which the kernels
call for large products: described by threadpoolctl where it is installed, else by SciPy's
build configuration and the thread count the kernels read.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, TextIO

import numpy as np

from . import _core, _cpu


def config() -> dict[str, dict[str, Any]]:
    """The configuration, by section: ``backprop``, ``cpu``, ``blas``, ``threads``."""
    import scipy  # not at import: scipy takes longer to import than backprop

    from . import __version__

    return {
        "backprop": {
            "version": __version__,
            "path": os.path.dirname(os.path.abspath(__file__)),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "cpu": {
            "machine": platform.machine(),
            "target": f"{_core.TARGET} (backprop.{_cpu.TARGETS[_core.TARGET][0]})",
            "built targets": _cpu.built(),
            "supported targets": _cpu.supported(),
            _cpu.VARIABLE: os.environ.get(_cpu.VARIABLE) or "unset",
        },
        "blas": _blas(),
        "threads": {
            "limit": _core.get_num_threads(),
            "two-core paths": _core.team_size(),
            "worker": _core.team_state(),
        },
    }


def _blas() -> dict[str, Any]:
    blas: dict[str, Any] = {
        "library": None,
        "version": None,
        "path": _core.blas_library(),
        "threads": _core.blas_threads() or None,
    }
    described = False
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        path = blas["path"] and os.path.realpath(blas["path"])
        for lib in threadpool_info():
            if lib["user_api"] == "blas" and os.path.realpath(lib["filepath"]) == path:
                blas.update(
                    library=lib["internal_api"],
                    version=lib["version"],
                    threads=lib["num_threads"],
                    architecture=lib.get("architecture"),
                )
                described = True
    if not described:
        import scipy

        built = scipy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        blas.update(library=built.get("name"), version=built.get("version"))
    blas["described by"] = "threadpoolctl" if described else "scipy"
    if os.environ.get("OPENBLAS_CORETYPE"):
        blas["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    return blas


def _text(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def show_config(file: TextIO | None = None) -> None:
    """Print backprop's version, the CPU targets of its kernels (the one in use, those built,
    those this CPU runs), the BLAS library with its version and threads, and the threads
    of the two-core paths."""
    file = file or sys.stdout
    for section, values in config().items():
        print(f"{section}:", file=file)
        width = max(map(len, values)) + 1
        for name, value in values.items():
            print(f"  {name + ':':<{width}} {_text(value)}", file=file)
