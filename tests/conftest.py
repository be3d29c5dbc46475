"""Fixtures and helpers shared by the tests: the kernel path and weight layout a test forces,
central finite differences, a fast network's twin in the reference, a child process's
environment."""

import contextlib
import importlib
import os

import numpy as np
import pytest

import backprop
from backprop import Network, _core, reference

# Where a network chooses each layer's weight layout: W_l is stored transposed (n_in, n_out)
# when its number of weights lies between these two bounds, as (n_out, n_in) otherwise.
LAYOUT_MODULE = "backprop._layout"
LAYOUT_BOUNDS = ("TRANSPOSED_MIN_WEIGHTS", "TRANSPOSED_MAX_WEIGHTS")

NEVER = 1 << 62  # a threshold no product's work reaches
# _core.set_thresholds(tiles, blas, narrow blas, two cores[, halves' rows[, parts]]) for each
# way of computing a batch
KERNEL_PATHS = {
    "loops": (NEVER, NEVER, NEVER, NEVER),  # every product in plain loops
    "tiles": (0, NEVER, NEVER, NEVER),  # every product in the register tiles
    "blas": (0, 0, 0, NEVER),  # every product in BLAS gemm
    "halves": (0, NEVER, NEVER, 0, 2),  # every batch of 2 rows or more in two halves
    # every product in the tiles, in parts on the team of threads
    "parts": (0, NEVER, NEVER, NEVER, None, 0),
}

# Every (output, loss, target kind) the library supports.
HEADS = [
    ("sigmoid", "mse", "rows"),
    ("identity", "mse", "rows"),
    ("softmax", "mse", "rows"),
    ("softmax", "cross_entropy", "labels"),
    ("softmax", "cross_entropy", "probabilities"),
    ("sigmoid", "binary_cross_entropy", "rows"),
]
# Every (output, loss) pair, once.
OUTPUT_LOSSES = list(dict.fromkeys((output, loss) for output, loss, _ in HEADS))


@contextlib.contextmanager
def force_path(path):
    """Inside the block, every product (or batch) takes ``path``, one of ``KERNEL_PATHS``."""
    previous = _core.set_thresholds(*KERNEL_PATHS[path])
    try:
        yield path
    finally:
        _core.set_thresholds(*previous)


@pytest.fixture(params=["rows", "transposed"])
def layout(request, monkeypatch):
    """The networks a test builds store W_l as (n_out, n_in) or transposed (n_in, n_out)."""
    module = importlib.import_module(LAYOUT_MODULE)
    low, high = LAYOUT_BOUNDS
    monkeypatch.setattr(module, low, 0)
    monkeypatch.setattr(module, high, NEVER if request.param == "transposed" else -1)
    return request.param


@pytest.fixture(params=list(KERNEL_PATHS))
def kernel_path(request, layout):
    """Run a test with each kernel path (plain loops, tiles, BLAS, halves, parts), each with
    the weights stored (n_out, n_in) and transposed."""
    with force_path(request.param):
        yield request.param


def _entries(param):
    """(container, index) of every number in a NumPy array or nested list, in C order."""
    if isinstance(param, np.ndarray):
        return [(param, index) for index in np.ndindex(param.shape)]
    if isinstance(param[0], list):
        return [entry for row in param for entry in _entries(row)]
    return [(param, i) for i in range(len(param))]


def finite_difference_gradients(loss, params, h=1e-6):
    """dL/dtheta ~ (L(theta + h) - L(theta - h)) / 2h for every entry of every parameter.

    ``loss()`` computes L from ``params`` (NumPy arrays or nested lists), which are
    perturbed in place one entry at a time and restored. One float64 array per parameter,
    of its shape.
    """
    gradients = []
    for param in params:
        gradient = np.empty(np.shape(param))
        for (container, index), at in zip(_entries(param), np.ndindex(gradient.shape)):
            theta = container[index]
            container[index] = theta + h
            loss_plus = loss()
            container[index] = theta - h
            loss_minus = loss()
            container[index] = theta
            gradient[at] = (loss_plus - loss_minus) / (2 * h)
        gradients.append(gradient)
    return gradients


def _norm_params(net):
    """``net``'s batch normalization parameters and running statistics as float64 arrays,
    by keyword (none without batch normalization)."""
    if not net.batch_norm:
        return {}
    names = ("gammas", "betas", "running_means", "running_vars")
    return {name: [np.asarray(v, dtype=np.float64) for v in getattr(net, name)] for name in names}


def reference_twin(net):
    """The reference network with ``net``'s weights (as float64), names, and batch
    normalization's parameters and running statistics."""
    return reference.Network.from_params(
        [w.astype(np.float64) for w in net.weights],
        [b.astype(np.float64) for b in net.biases],
        activation=net.activation,
        output=net.output,
        loss=net.loss_name,
        batch_norm=net.batch_norm,
        **_norm_params(net),
    )


def copy_of(net):
    """A fast network with ``net``'s weights, names, dtype and batch normalization."""
    extra = {}
    if net.batch_norm:
        extra = {name: [v.copy() for v in values] for name, values in _norm_params(net).items()}
    return Network.from_params(
        net.weights, net.biases, net.activation, net.output, net.loss_name, net.dtype,
        batch_norm=net.batch_norm, **extra,
    )  # fmt: skip


def child_env(**variables):
    """The environment of a child Python that imports the very package this run imports
    (source tree, debug build or installed copy), wherever that is."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(backprop.__file__)))
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, PYTHONPATH=path, **variables)


@pytest.fixture(scope="module")
def dask_client():
    """A local Dask cluster of two worker processes of one thread each, and a client on it,
    for one test module (started on its first use, shut down after its last test)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        worker_dashboard_address=":0",
        env={"OMP_NUM_THREADS": "1"},
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
