"""The two-core paths' threads, as threadpoolctl sees them.

threadpoolctl limits the threads of the libraries it knows (BLAS, OpenMP) by finding
their shared objects among those loaded. ``Controller`` makes the kernels' module one of
them, with ``user_api`` "backprop": ``threadpool_limits(1)`` (every library) or
``threadpool_limits(1, user_api="backprop")`` keep the two-core paths on one thread,
and ``threadpool_info()`` lists them. ``register`` is called at import where
threadpoolctl is installed.
"""

from __future__ import annotations

from . import _core, _cpu


def register() -> None:
    """Register ``Controller`` with threadpoolctl (a no-op without it)."""
    try:
        import threadpoolctl
    except ImportError:
        return

    class Controller(threadpoolctl.LibController):
        """The kernels' module: its thread limit is ``_core.get_num_threads``."""

        user_api = "backprop"
        internal_api = "backprop"
        # the module of each target (backprop/_core_v3.cpython-311-....so, ...); a module
        # of the same name from elsewhere lacks their init symbol
        filename_prefixes = tuple(module for module, _ in _cpu.TARGETS.values())
        check_symbols = tuple(f"PyInit_{module}" for module, _ in _cpu.TARGETS.values())

        def get_num_threads(self) -> int:
            return _core.get_num_threads()

        def set_num_threads(self, num_threads: int) -> None:
            _core.set_num_threads(num_threads)

        def get_version(self) -> str:
            from . import __version__

            return __version__

    threadpoolctl.register(Controller)
