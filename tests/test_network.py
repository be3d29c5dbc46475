"""The compiled Network against the pure-Python reference (through every kernel path and
weight layout), finite differences and the tutorial; its training options, initialisation
and seeds."""

import itertools

import numpy as np
import pytest
from conftest import HEADS, finite_difference_gradients, reference_twin
from tutorial import BIASES, LR, WEIGHTS, X1, X2, Y, by_hand

from backprop import DivergenceError, Network, _layout, network, reference

SHAPES = [[2, 2, 1], [3, 5, 4, 2], [4, 3], [2, 1, 3], [7, 16, 8, 5]]
ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity"]
TOL = {"float64": dict(rtol=1e-12, atol=1e-13), "float32": dict(rtol=1e-5, atol=1e-6)}
# Looser for weights after several epochs of training: rounding compounds step by step.
FIT_TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


def make_problem(sizes, output, loss, kind, dtype, n=11, seed=0):
    """A random network (fast and reference, same weights) and a data set for it."""
    rng = np.random.default_rng(seed)
    k = sizes[-1]
    net = Network(sizes, activation="tanh", output=output, loss=loss, dtype=dtype, seed=seed)
    # Data representable in float32, so both dtypes see the same numbers.
    X = rng.normal(size=(n, sizes[0])).astype(np.float32).astype(np.float64)
    if kind == "labels":
        Yt = rng.integers(0, k, size=n)
    elif kind == "probabilities":
        Yt = rng.dirichlet(np.ones(k), size=n).astype(np.float32).astype(np.float64)
        Yt /= Yt.sum(axis=1, keepdims=True)
    else:
        Yt = rng.uniform(0, 1, size=(n, k)).astype(np.float32).astype(np.float64)
    return net, X, Yt


def pair(sizes, activation, output, loss, dtype, seed=0):
    fast = Network(sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=seed)
    return fast, reference_twin(fast)


def cases():
    for sizes, activation, (output, loss, kind) in itertools.product(SHAPES, ACTIVATIONS, HEADS):
        if output == "softmax" and sizes[-1] == 1:
            continue
        yield sizes, activation, output, loss, kind


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes,activation,output,loss,kind", list(cases()))
def test_forward_loss_gradients_match_reference(
    sizes, activation, output, loss, kind, dtype, kernel_path
):
    _, X, Yt = make_problem(sizes, output, loss, kind, dtype)
    fast, ref = pair(sizes, activation, output, loss, dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(fast.forward(X), np.array(ref.forward(X)), **tol)
    assert fast.forward(X).dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast.loss(X, Yt), ref.loss(X, Yt), **tol)
    value, gw, gb = fast.gradients(X, Yt)
    ref_value, ref_gw, ref_gb = ref.gradients(X, Yt)
    np.testing.assert_allclose(value, ref_value, **tol)
    for got, want in zip(gw + gb, ref_gw + ref_gb):
        np.testing.assert_allclose(got, np.array(want), **tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 4, 11])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    "sizes,activation,output,loss,kind",
    [
        ([3, 5, 4, 2], "sigmoid", "sigmoid", "mse", "rows"),
        ([3, 5, 4, 2], "relu", "identity", "mse", "rows"),
        ([4, 6, 3], "tanh", "softmax", "cross_entropy", "labels"),
        ([4, 6, 3], "identity", "softmax", "cross_entropy", "probabilities"),
        ([4, 6, 3], "sigmoid", "softmax", "mse", "rows"),
        ([2, 3, 2], "tanh", "sigmoid", "binary_cross_entropy", "rows"),
    ],
)
def test_fit_matches_reference(
    sizes, activation, output, loss, kind, shuffle, batch_size, dtype, kernel_path
):
    _, X, Yt = make_problem(sizes, output, loss, kind, dtype)
    fast, ref = pair(sizes, activation, output, loss, dtype, seed=3)
    args = dict(epochs=3, batch_size=batch_size, lr=0.5, shuffle=shuffle, seed=7)
    losses = fast.fit(X, Yt, **args)
    ref_losses = ref.fit(X, Yt, **args)
    tol = FIT_TOL[dtype]
    np.testing.assert_allclose(losses, ref_losses, **tol)
    for got, want in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(got, np.array(want), **tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_step_matches_reference(dtype, kernel_path):
    _, X, Yt = make_problem([3, 5, 2], "softmax", "cross_entropy", "labels", dtype)
    fast, ref = pair([3, 5, 2], "relu", "softmax", "cross_entropy", dtype)
    for _ in range(3):
        np.testing.assert_allclose(fast.step(X, Yt, lr=0.3), ref.step(X, Yt, lr=0.3), **TOL[dtype])
    for got, want in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(got, np.array(want), **FIT_TOL[dtype])


@pytest.mark.parametrize("sizes,activation,output,loss,kind", list(cases())[::3])
def test_gradients_match_finite_differences(sizes, activation, output, loss, kind):
    net, X, Yt = make_problem(sizes, output, loss, kind, "float64", n=5, seed=1)
    net = Network(sizes, activation=activation, output=output, loss=loss, seed=2)
    if activation == "relu":  # keep pre-activations away from the kink at 0
        for b in net.biases[:-1]:
            b += 0.05
    _, gw, gb = net.gradients(X, Yt)
    numeric = finite_difference_gradients(lambda: net.loss(X, Yt), net.weights + net.biases)
    for g, n in zip(gw + gb, numeric):
        np.testing.assert_allclose(g, n, rtol=1e-5, atol=1e-8)


def tutorial_net(dtype="float64"):
    return Network.from_params(WEIGHTS, BIASES, dtype=dtype)


def test_tutorial_worked_by_hand(kernel_path):
    v = by_hand()
    net = tutorial_net()
    assert net.weights[0][0].tolist() == [0.4, 0.3]
    close = dict(rel=1e-12, abs=1e-15)
    assert net.forward([X1, X2])[0, 0] == pytest.approx(v["y_hat"], **close)
    assert net.loss([X1, X2], [Y]) == pytest.approx(v["loss"], **close)
    value, gw, gb = net.gradients([X1, X2], [Y])
    assert value == pytest.approx(v["loss"], **close)
    expect_w = [[[v["dL_dw11"], v["dL_dw12"]], [v["dL_dw21"], v["dL_dw22"]]],
                [[v["dL_dw31"], v["dL_dw32"]]]]  # fmt: skip
    expect_b = [[v["dL_db1"], v["dL_db2"]], [v["dL_db3"]]]
    for got, want in zip(gw + gb, expect_w + expect_b):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert net.step([X1, X2], [Y], lr=LR) == pytest.approx(v["loss"], **close)
    np.testing.assert_allclose(
        net.weights[0], [[v["w11"], v["w12"]], [v["w21"], v["w22"]]], rtol=1e-12
    )
    np.testing.assert_allclose(net.weights[1], [[v["w31"], v["w32"]]], rtol=1e-12)
    np.testing.assert_allclose(net.biases[0], [v["b1"], v["b2"]], rtol=1e-12)
    np.testing.assert_allclose(net.biases[1], [v["b3"]], rtol=1e-12)


def test_tutorial_trace_by_hand():
    v = by_hand()
    t = tutorial_net().trace([X1, X2], [Y])
    got = {
        "z1": t.zs[0][0, 0], "h1": t.activations[1][0, 0], "z2": t.zs[0][0, 1],
        "h2": t.activations[1][0, 1], "z3": t.zs[1][0, 0], "y_hat": t.activations[2][0, 0],
        "dL_dy_hat": t.dloss_doutput[0, 0], "dy_hat_dz3": t.output_prime[0, 0],
        "delta3": t.deltas[1][0, 0], "delta1": t.deltas[0][0, 0], "delta2": t.deltas[0][0, 1],
    }  # fmt: skip
    for name, value in got.items():
        assert value == pytest.approx(v[name], rel=1e-12, abs=1e-15), name


def test_fit_one_full_batch_epoch_is_one_step():
    _, X, Yt = make_problem([3, 4, 2], "sigmoid", "mse", "rows", "float64")
    a = Network([3, 4, 2], seed=5)
    b = Network([3, 4, 2], seed=5)
    (epoch_loss,) = a.fit(X, Yt, epochs=1, batch_size=len(X) + 10, lr=0.2)
    assert epoch_loss == b.step(X, Yt, lr=0.2)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


def test_seed_reproduces_initial_weights_and_training():
    rng = np.random.default_rng(0)
    X, Yt = rng.normal(size=(20, 3)), rng.integers(0, 2, size=20)
    runs = []
    for _ in range(2):
        net = Network([3, 8, 2], activation="relu", output="softmax", loss="cross_entropy", seed=9)
        losses = net.fit(X, Yt, epochs=4, batch_size=3, shuffle=True, seed=1)
        runs.append((losses, [w.copy() for w in net.weights]))
    assert runs[0][0] == runs[1][0]
    for wa, wb in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(wa, wb)
    draw = np.random.default_rng(9).uniform(-np.sqrt(6 / 11), np.sqrt(6 / 11), size=(8, 3))
    np.testing.assert_array_equal(Network([3, 8, 2], seed=9).weights[0], draw)


def test_float32_network_keeps_float32():
    net = Network([3, 4, 2], dtype="float32", seed=0)
    X = np.ones((5, 3))
    assert net.forward(X).dtype == np.float32
    assert all(w.dtype == np.float32 for w in net.weights)
    net.fit(X, np.zeros((5, 2)), epochs=2)
    assert all(b.dtype == np.float32 for b in net.biases)


def test_weights_are_views_into_the_network():
    net = Network([2, 2, 1], seed=0)
    net.weights[0][...] = 0
    net.biases[1][0] = 5.0
    assert net.forward([1.0, 2.0])[0, 0] == pytest.approx(1 / (1 + np.exp(-5 - 0.5 * sum(
        net.weights[1][0]))))  # fmt: skip


def test_learns_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    Yt = np.array([0, 1, 1, 0])
    net = Network([2, 8, 2], activation="tanh", output="softmax", loss="cross_entropy", seed=1)
    losses = net.fit(X, Yt, epochs=500, batch_size=4, lr=0.5)
    assert losses[-1] < 0.05 < losses[0]
    assert (net.forward(X).argmax(axis=1) == Yt).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 4, 11])
def test_weight_decay_matches_reference(batch_size, dtype, kernel_path):
    """W := W - lr (dL/dW + weight_decay W), biases undecayed, in fit and step alike."""
    _, X, Yt = make_problem([3, 5, 4, 2], "softmax", "cross_entropy", "labels", dtype)
    fast, ref = pair([3, 5, 4, 2], "relu", "softmax", "cross_entropy", dtype, seed=3)
    args = dict(epochs=3, batch_size=batch_size, lr=0.5, shuffle=True, seed=7, weight_decay=0.1)
    np.testing.assert_allclose(fast.fit(X, Yt, **args), ref.fit(X, Yt, **args), **FIT_TOL[dtype])
    fast.step(X, Yt, lr=0.2, weight_decay=0.3)
    ref.step(X, Yt, lr=0.2, weight_decay=0.3)
    for got, want in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(got, np.array(want), **FIT_TOL[dtype])
    plain = pair([3, 5, 4, 2], "relu", "softmax", "cross_entropy", dtype, seed=3)[0]
    plain.fit(X, Yt, **dict(args, weight_decay=0.0))
    assert np.abs(plain.weights[0]).sum() > np.abs(fast.weights[0]).sum()


@pytest.mark.parametrize("init,fan", [("glorot", lambda i, o: i + o), ("he", lambda i, o: i)])
def test_initialisation_draws_and_matches_the_reference(init, fan):
    net = Network([5, 7, 3], activation="relu", init=init, seed=4)
    ref = reference.Network([5, 7, 3], activation="relu", init=init, seed=4)
    rng = np.random.default_rng(4)
    for w, rw, (i, o) in zip(net.weights, ref.weights, [(5, 7), (7, 3)]):
        limit = np.sqrt(6 / fan(i, o))
        np.testing.assert_array_equal(w, rng.uniform(-limit, limit, size=(o, i)))
        np.testing.assert_array_equal(w, np.array(rw))
    with pytest.raises(ValueError, match="init"):
        Network([5, 7, 3], init="xavier")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    "sizes,activation,output,loss,kind",
    [
        ([3, 6, 5, 2], "sigmoid", "sigmoid", "mse", "rows"),
        ([4, 7, 3], "relu", "softmax", "cross_entropy", "labels"),
        ([4, 5, 6, 3], "tanh", "softmax", "cross_entropy", "probabilities"),
    ],
)
def test_dropout_matches_reference(sizes, activation, output, loss, kind, shuffle, dtype,
                                   kernel_path):  # fmt: skip
    """The same masks (SplitMix64 from the seed) on both paths: the same training."""
    _, X, Yt = make_problem(sizes, output, loss, kind, dtype)
    fast, ref = pair(sizes, activation, output, loss, dtype, seed=3)
    args = dict(epochs=3, batch_size=4, lr=0.3, shuffle=shuffle, seed=7, dropout=0.4)
    np.testing.assert_allclose(fast.fit(X, Yt, **args), ref.fit(X, Yt, **args), **FIT_TOL[dtype])
    for got, want in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(got, np.array(want), **FIT_TOL[dtype])


def test_dropout_drops_about_p_of_the_hidden_units_and_only_in_training():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 10)), rng.integers(0, 3, size=2000)
    net = Network([10, 200, 3], activation="relu", output="softmax", loss="cross_entropy",
                  init="he", seed=0)  # fmt: skip
    before = [w.copy() for w in net.weights]
    net.fit(X, y, batch_size=2000, lr=1e-9, dropout=0.3, seed=1)
    out = net.forward(X)
    # an update with lr ~ 0 leaves forward unchanged: forward never drops
    np.testing.assert_allclose(out, Network.from_params(
        before, net.biases, activation="relu", output="softmax", loss="cross_entropy"
    ).forward(X), rtol=1e-6)  # fmt: skip
    _, masks = reference.dropout_masks(12345, 0.3, 100, [200])
    dropped = np.mean(np.array(masks[0]) == 0)
    assert 0.27 < dropped < 0.33
    assert set(np.unique(masks[0])) == {0.0, 1 / 0.7}
    kw = dict(activation="relu", output="softmax", loss="cross_entropy", seed=0)
    a, b = Network([10, 200, 3], **kw), Network([10, 200, 3], **kw)
    a.fit(X, y, lr=0.1, batch_size=50, seed=2)
    b.fit(X, y, lr=0.1, batch_size=50, seed=2, dropout=0.0)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_momentum_matches_reference(nesterov, dropout, dtype, kernel_path):
    _, X, Yt = make_problem([3, 6, 5, 2], "sigmoid", "mse", "rows", dtype)
    fast, ref = pair([3, 6, 5, 2], "tanh", "sigmoid", "mse", dtype, seed=3)
    args = dict(epochs=3, batch_size=4, lr=0.3, shuffle=True, seed=7, weight_decay=0.05,
                momentum=0.9, nesterov=nesterov, dropout=dropout)  # fmt: skip
    np.testing.assert_allclose(fast.fit(X, Yt, **args), ref.fit(X, Yt, **args), **FIT_TOL[dtype])
    for got, want in zip(fast.weights + fast.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(got, np.array(want), **FIT_TOL[dtype])


def test_momentum_speeds_up_a_slow_descent():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    Y = (X @ rng.normal(size=(5, 1))) / 3
    runs = {}
    for momentum in (0.0, 0.9):
        net = Network([5, 1], output="identity", seed=0)
        runs[momentum] = net.fit(X, Y, epochs=20, batch_size=20, lr=0.005, momentum=momentum)
    assert runs[0.9][-1] < runs[0.0][-1] / 10


# ------------------------------------------------------ blocks and chunks ---

# fit's epochs per kernel call, (first block, largest block): one call for them all,
# one call per epoch, blocks of 3, and fit's own doubling blocks
BLOCKINGS = [(10**9, 10**9), (1, 1), (3, 3), (1, network._FIT_BLOCK)]


def fit_in_blocks(monkeypatch, blocking, make, X, Y, **kwargs):
    """(fit's result, or its DivergenceError's epoch, batch, losses and message; the
    weights after it) for a fresh ``make()`` trained in blocks of epochs ``blocking``."""
    monkeypatch.setattr(network, "_FIT_FIRST_BLOCK", blocking[0])
    monkeypatch.setattr(network, "_FIT_BLOCK", blocking[1])
    net = make()
    try:
        outcome = net.fit(X, Y, **kwargs)
    except DivergenceError as err:
        outcome = (err.epoch, err.batch, err.losses, str(err))
    return outcome, net._theta.copy()


def assert_same_in_every_blocking(monkeypatch, make, X, Y, **kwargs):
    results = [fit_in_blocks(monkeypatch, b, make, X, Y, **kwargs) for b in BLOCKINGS]
    for outcome, theta in results[1:]:
        assert outcome == results[0][0]
        np.testing.assert_array_equal(theta, results[0][1])
    return results[0][0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(momentum=0.9, weight_decay=0.01),
        dict(momentum=0.9, nesterov=True, dropout=0.3),
        dict(shuffle=True, momentum=0.9, dropout=0.3),
        dict(batch_size=11, dropout=0.5),
    ],
)
def test_fit_in_blocks_of_epochs_is_one_call_bit_for_bit(monkeypatch, dtype, options):
    net, X, Yt = make_problem([4, 6, 3], "softmax", "cross_entropy", "labels", dtype)
    kwargs = dict(epochs=40, batch_size=4, lr=0.2, seed=5) | options
    losses = assert_same_in_every_blocking(
        monkeypatch, lambda: Network([4, 6, 3], activation="tanh", output="softmax",
                                     loss="cross_entropy", dtype=dtype, seed=1),
        X, Yt, **kwargs,
    )  # fmt: skip
    assert len(losses) == 40 and np.isfinite(losses).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_loss_that_diverges_in_a_later_block_stops_where_one_call_stops(
    monkeypatch, dtype, dropout
):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(37, 5)) * 3, rng.uniform(size=(37, 3)) * 6
    epoch, *_ = assert_same_in_every_blocking(
        monkeypatch,
        lambda: Network([5, 8, 3], activation="relu", output="identity", dtype=dtype, seed=2),
        X, Y, epochs=40, batch_size=5, lr=0.02, momentum=0.9, dropout=dropout, seed=4,
    )  # fmt: skip
    assert epoch > 2  # past fit's first blocks


@pytest.mark.parametrize("dtype,batch_size", [("float32", 1), ("float32", 3), ("float64", 1)])
def test_weights_that_overflow_in_a_later_block_are_rewound_as_in_one_call(
    monkeypatch, dtype, batch_size
):
    # Weight decay of lr * 3: each step multiplies the weight by about -2 until it
    # overflows, while the saturated sigmoid keeps every loss finite: the kernel finds
    # the infinite weight at the end of its call, and fit replays the call.
    X, Y = np.array([[1.0], [2.0], [1.0], [2.0]]), np.array([[1.0], [0.0], [1.0], [0.0]])
    epoch, batch, losses, message = assert_same_in_every_blocking(
        monkeypatch, lambda: Network.from_params([[[0.5]]], [[0.0]], dtype=dtype),
        X, Y, epochs=3000, batch_size=batch_size, lr=1.0, weight_decay=3.0,
    )  # fmt: skip
    assert epoch > 8 and len(losses) == epoch and "the step made the weights" in message


def chunked(monkeypatch, rows):
    """Makes forward, loss and gradients take ``rows`` rows per kernel call."""
    monkeypatch.setattr(_layout, "CHUNK_MIN_ROWS", rows)
    monkeypatch.setattr(_layout, "CHUNK_MAX_ROWS", rows)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes,activation,output,loss,kind", list(cases())[1::4])
def test_forward_loss_gradients_in_chunks_match_one_pass_and_reference(
    monkeypatch, sizes, activation, output, loss, kind, dtype
):
    _, X, Yt = make_problem(sizes, output, loss, kind, dtype, n=50)
    fast, ref = pair(sizes, activation, output, loss, dtype)
    whole = fast.forward(X), fast.loss(X, Yt), fast.gradients(X, Yt)
    for rows in (1, 7, 16):
        chunked(monkeypatch, rows)
        out, value, (g_value, gw, gb) = fast.forward(X), fast.loss(X, Yt), fast.gradients(X, Yt)
        np.testing.assert_allclose(out, whole[0], **TOL[dtype])
        np.testing.assert_allclose(out, np.array(ref.forward(X)), **TOL[dtype])
        for got, one_pass, want in [(value, whole[1], ref.loss(X, Yt)),
                                    (g_value, whole[2][0], ref.loss(X, Yt))]:  # fmt: skip
            np.testing.assert_allclose(got, one_pass, **TOL[dtype])
            np.testing.assert_allclose(got, want, **TOL[dtype])
        _, ref_gw, ref_gb = ref.gradients(X, Yt)
        for got, one_pass, want in zip(gw + gb, whole[2][1] + whole[2][2], ref_gw + ref_gb):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_allclose(got, one_pass, **TOL[dtype])
            np.testing.assert_allclose(got, np.array(want), **TOL[dtype])


def test_gradients_in_chunks_match_finite_differences(monkeypatch):
    net, X, Yt = make_problem([3, 5, 4, 2], "softmax", "cross_entropy", "labels", "float64",
                              n=23, seed=1)  # fmt: skip
    chunked(monkeypatch, 5)
    _, gw, gb = net.gradients(X, Yt)
    numeric = finite_difference_gradients(lambda: net.loss(X, Yt), net.weights + net.biases)
    for g, n in zip(gw + gb, numeric):
        np.testing.assert_allclose(g, n, rtol=1e-5, atol=1e-8)


def test_chunks_are_bounded_by_work_and_rows():
    arch = Network([784, 256, 10], seed=0)._arch
    assert arch.chunk_rows() == _layout.CHUNK_WORK // _layout.n_weights(arch.sizes)
    assert Network([2, 2, 1])._arch.chunk_rows() == _layout.CHUNK_MAX_ROWS
    wide = _layout.Architecture(sizes=(4096, 4096, 4096), hidden=1, output=1, loss=0,
                                dtype=np.dtype("float64"))  # fmt: skip
    assert wide.chunk_rows() == _layout.CHUNK_MIN_ROWS
