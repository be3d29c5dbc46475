"""The compiled core's own choices: every product path (plain loops, register tiles, BLAS,
tiles in parts on the team) and the two-core halves give the same training, whatever the
number of threads, and the cross-entropy kernel stays exact where a naive product of
softmax sums would overflow.

The comparisons of each path with the reference, layer by layer of a whole network, are
in ``test_network.py`` (its ``kernel_path`` fixture).
"""

import numpy as np
import pytest
from conftest import KERNEL_PATHS, NEVER, force_path
from threadpoolctl import threadpool_limits

from backprop import Network, _core


def test_kernel_paths_agree_on_large_layers():
    """The same epochs on layers big enough for every path give the same weights."""
    rng = np.random.default_rng(0)
    X, Yt = rng.normal(size=(67, 96)), rng.integers(0, 10, size=67)
    results = {}
    for path in KERNEL_PATHS:
        with force_path(path):
            net = Network([96, 80, 10], activation="relu", output="softmax",
                          loss="cross_entropy", seed=4)  # fmt: skip
            net.fit(X, Yt, epochs=2, batch_size=16, lr=0.1)
            results[path] = net.weights
    for path, weights in results.items():
        for a, b in zip(weights, results["loops"]):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=path)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_halves_do_not_depend_on_the_number_of_threads(dtype, momentum):
    """A batch split in two halves gives bit-identical weights on one thread or two."""
    rng = np.random.default_rng(1)
    X, Yt = rng.normal(size=(101, 20)), rng.integers(0, 4, size=101)
    results = []
    with force_path("halves"):
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="backprop"):
                net = Network([20, 24, 4], activation="tanh", output="softmax",
                              loss="cross_entropy", dtype=dtype, seed=2)  # fmt: skip
                net.fit(X, Yt, epochs=3, batch_size=25, lr=0.1, momentum=momentum,
                        weight_decay=1e-3)  # fmt: skip
                results.append(net.weights)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_products_in_parts_equal_one_product_bit_for_bit(dtype, batch_norm, layout):
    """Large products are cut into parts of C that the team's threads claim; the weights
    are bit for bit those of each product computed in one call, on one thread or two. The
    sizes leave ragged tiles, strips and parts; 512 inputs put the rows of X 2 KiB apart in
    float32 (4 KiB in float64), which the weight gradients' copies take, and give the
    forward products two panels of depth, as batches of 300 rows give the gradients."""
    rng = np.random.default_rng(3)
    X, Yt = rng.normal(size=(600, 512)), rng.integers(0, 7, size=600)
    results = {}
    never, everything = KERNEL_PATHS["tiles"], KERNEL_PATHS["parts"]
    for name, thresholds, threads in [("one call", never + (None, NEVER), 2),
                                      ("parts, 1 thread", everything, 1),
                                      ("parts, 2 threads", everything, 2)]:
        previous = _core.set_thresholds(*thresholds)
        try:
            with threadpool_limits(threads, user_api="backprop"):
                net = Network([512, 45, 29, 7], activation="relu", output="softmax",
                              loss="cross_entropy", dtype=dtype, seed=5,
                              batch_norm=batch_norm)  # fmt: skip
                net.fit(X, Yt, epochs=2, batch_size=300, lr=0.05)
        finally:
            _core.set_thresholds(*previous)
        results[name] = net._theta
    for name, theta in results.items():
        np.testing.assert_array_equal(theta, results["one call"], err_msg=name)


@pytest.mark.parametrize("layout", ["transposed"], indirect=True)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_narrow_blas_products_in_chunks_do_not_depend_on_the_threads(dtype, layout):
    """A narrow product for BLAS big enough for OpenBLAS's threads (a transposed output
    layer of 3 units after 400 inputs, whole batches of 256 rows: 307,200 multiply-adds)
    goes in chunks of rows OpenBLAS computes on the calling thread: the same weights on
    one thread or two, and the plain loops' to rounding."""
    rng = np.random.default_rng(4)
    X, Yt = rng.normal(size=(512, 400)), rng.integers(0, 3, size=512)
    results = []
    # the default thresholds but no halves: each product is the whole batch's
    previous = _core.set_thresholds(0, 0, 0, 0)
    _core.set_thresholds(*previous[:3], NEVER)
    try:
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="backprop"):
                net = Network([400, 3], output="softmax", loss="cross_entropy", dtype=dtype,
                              seed=6)  # fmt: skip
                assert net._arch.transposed  # stored (n_in, n_out): X W is narrow
                net.fit(X, Yt, epochs=2, batch_size=256, lr=0.1)
                results.append(net)
        # the same training in plain loops, to rounding
        with force_path("loops"):
            expected = Network([400, 3], output="softmax", loss="cross_entropy",
                               dtype=dtype, seed=6)  # fmt: skip
            expected.fit(X, Yt, epochs=2, batch_size=256, lr=0.1)
    finally:
        _core.set_thresholds(*previous)
    np.testing.assert_array_equal(results[0]._theta, results[1]._theta)
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(results[0].weights[0], expected.weights[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [0.01, 50.0])
def test_cross_entropy_of_many_wide_rows_matches_log_sum_exp(dtype, scale):
    """The loss takes one logarithm of many rows' softmax sums (renormalised before the
    product overflows: 300 rows of 1,000 classes go far past 1e308)."""
    rng = np.random.default_rng(3)
    net = Network([5, 1000], output="softmax", loss="cross_entropy", dtype=dtype, seed=0)
    net.weights[0][...] = rng.normal(size=(1000, 5)) * scale
    X = rng.normal(size=(300, 5)).astype(dtype)
    Yt = rng.integers(0, 1000, size=300)
    Z = X.astype(np.float64) @ net.weights[0].T.astype(np.float64) + net.biases[0]
    zmax = Z.max(axis=1)
    lse = zmax + np.log(np.exp(Z - zmax[:, None]).sum(axis=1))
    expected = np.mean(lse - Z[np.arange(300), Yt])
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(net.loss(X, Yt), expected, rtol=rtol)
