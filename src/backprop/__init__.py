"""backprop: multilayer perceptrons trained by backpropagation, with compiled kernels.

``Network`` is the fast network; ``backprop.reference.Network`` the same network in
plain Python, readable and slow. ``load`` reads back what ``Network.save`` wrote.
``Network.fit`` reports each epoch to its callbacks as an ``EpochRecord`` and keeps
them in ``Network.history``; ``GradientWarning`` flags vanishing or exploding gradients,
and ``diagnose`` measures a network's per-layer gradient norms on a batch.
``show_config`` prints the version, the CPU target of the kernels, BLAS and the threads.
``set_num_threads`` and ``get_num_threads`` set and read how many threads the two-core
paths use (at most 2; also ``BACKPROP_NUM_THREADS``, ``OMP_NUM_THREADS`` and
threadpoolctl's ``threadpool_limits``).
The scikit-learn estimators ``MLPClassifier`` and ``MLPRegressor`` are imported on
first use: they need scikit-learn (``pip install "backprop[sklearn]"``), the rest of
the package does not.
"""

from . import _threadpool
from ._config import show_config
from ._core import get_num_threads, set_num_threads
from ._monitor import EpochRecord, GradientWarning, diagnose
from .network import DivergenceError, Gradients, Network, Trace, load

__version__ = "0.1.0"
__all__ = [
    "DivergenceError",
    "EpochRecord",
    "GradientWarning",
    "Gradients",
    "MLPClassifier",
    "MLPRegressor",
    "Network",
    "Trace",
    "diagnose",
    "get_num_threads",
    "load",
    "set_num_threads",
    "show_config",
]

_threadpool.register()


def __getattr__(name):
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'backprop' has no attribute {name!r}")
