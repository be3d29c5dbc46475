"""Runs of one-row steps through the tiniest networks (_kernels/tiny_run.h: one hidden layer,
every layer at most 4 wide, mean squared error) against the general one-row step they
replace (``_core.set_tiny_runs(False)``), against the reference, and against themselves:
``fit`` in batches of one row is a loop of ``step``, and its stops are the general step's."""

import numpy as np
import pytest

from backprop import Network, _core, optim, reference

# x86-64-v2 has no runs (its registers hold 2 doubles): the general step runs there
needs_runs = pytest.mark.skipif(not _core.TINY_RUNS_TARGET, reason="no tiny runs on this target")

SHAPES = [(2, 2, 1), (1, 1, 1), (4, 4, 4), (3, 1, 2), (2, 4, 3), (4, 3, 1)]
ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
# the steps compute the same operations in the same order; the compiler may fuse a
# multiply-add in one and not the other, so after 150 steps they agree to a few ulps
TOLERANCE = {"float64": dict(rtol=1e-12, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def takes_tiny_runs(net):
    """Whether ``net``'s batches of one row of plain SGD run in tiny runs."""
    return net._arch.plan(1, optimizer=optim.SGD(0.1)).tiny_runs


def data(sizes, n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])), rng.uniform(size=(n, sizes[-1]))


def trained(sizes, activation, output, dtype, tiny, **fit):
    """The parameters and epoch losses after ``fit`` in batches of one row, through the
    tiny runs or the general step."""
    previous = _core.set_tiny_runs(tiny)
    try:
        net = Network(list(sizes), activation=activation, output=output, loss="mse",
                      dtype=dtype, seed=3)  # fmt: skip
        assert takes_tiny_runs(net) == (tiny and _core.TINY_RUNS_TARGET)
        X, Y = data(sizes)
        losses = net.fit(X, Y, batch_size=1, **{"epochs": 3, "lr": 0.1, **fit})
    finally:
        _core.set_tiny_runs(previous)
    return np.concatenate([a.ravel() for a in net.weights + net.biases]), losses


@needs_runs
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["sigmoid", "identity"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
def test_tiny_runs_take_the_general_steps(sizes, activation, output, dtype):
    fit = dict(shuffle=True, seed=5, weight_decay=0.01)
    mine, my_losses = trained(sizes, activation, output, dtype, True, **fit)
    general, losses = trained(sizes, activation, output, dtype, False, **fit)
    np.testing.assert_allclose(mine, general, **TOLERANCE[dtype])
    np.testing.assert_allclose(my_losses, losses, **TOLERANCE[dtype])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_the_tutorial_network_trains_as_the_reference_does(activation):
    X, Y = data((2, 2, 1), n=40)
    net = Network([2, 2, 1], activation=activation, output="sigmoid", loss="mse", seed=1)
    assert takes_tiny_runs(net) == _core.TINY_RUNS_TARGET
    ref = reference.Network.from_params(
        weights=[w.tolist() for w in net.weights], biases=[b.tolist() for b in net.biases],
        activation=activation, output="sigmoid", loss="mse",
    )  # fmt: skip
    losses = net.fit(X, Y, epochs=2, batch_size=1, shuffle=False, lr=0.5)
    for epoch in range(2):
        total = sum(ref.step([x.tolist()], [y.tolist()], lr=0.5) for x, y in zip(X, Y))
        assert losses[epoch] == pytest.approx(total / len(X), rel=1e-12)
    for mine, theirs in zip(net.weights + net.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_is_a_loop_of_steps(dtype):
    X, Y = data((3, 4, 2))
    fitted, stepped = (
        Network([3, 4, 2], activation="tanh", output="sigmoid", loss="mse", dtype=dtype, seed=2)
        for _ in range(2)
    )
    losses = fitted.fit(X, Y, epochs=2, batch_size=1, shuffle=False, lr=0.2, weight_decay=0.1)
    for epoch in range(2):
        total = sum(stepped.step(X[i : i + 1], Y[i : i + 1], lr=0.2, weight_decay=0.1)
                    for i in range(len(X)))  # fmt: skip
        assert losses[epoch] == pytest.approx(
            total / len(X), rel=1e-6 if dtype == "float32" else 1e-15
        )
    for mine, theirs in zip(fitted.weights + fitted.biases, stepped.weights + stepped.biases):
        np.testing.assert_array_equal(mine, theirs)


@needs_runs
def test_only_the_tiniest_networks_take_them():
    def takes(sizes, **options):
        return takes_tiny_runs(
            Network(list(sizes), **{"output": "sigmoid", "loss": "mse", **options})
        )

    assert takes((2, 2, 1)) and takes((4, 4, 4)) and takes((1, 3, 1), activation="relu")
    assert not takes((5, 2, 1)) and not takes((2, 5, 1)) and not takes((2, 2, 5))
    assert not takes((2, 2, 2, 1))  # two hidden layers
    assert not takes((2, 2, 1), activation="gelu")  # its derivative is kept, not taken from a
    assert not takes((2, 2, 3), output="softmax", loss="cross_entropy")


@pytest.mark.parametrize("tiny", [True, False], ids=["tiny runs", "general step"])
def test_a_loss_that_overflows_stops_before_its_step(tiny):
    X, Y = data((2, 2, 1), n=30)
    X[17] = 1e300  # the identity output overflows there: its loss is not finite
    previous = _core.set_tiny_runs(tiny)
    try:
        net = Network([2, 2, 1], activation="identity", output="identity", loss="mse", seed=1)
        before = Network([2, 2, 1], activation="identity", output="identity", loss="mse", seed=1)
        with pytest.raises(FloatingPointError, match="epoch 0, batch 17"):
            net.fit(X, Y, epochs=1, batch_size=1, shuffle=False, lr=0.01)
        before.fit(X[:17], Y[:17], epochs=1, batch_size=1, shuffle=False, lr=0.01)
    finally:
        _core.set_tiny_runs(previous)
    for mine, theirs in zip(net.weights + net.biases, before.weights + before.biases):
        np.testing.assert_array_equal(mine, theirs)


def test_a_row_not_finite_undoes_the_call():
    X, Y = data((2, 2, 1), n=30)
    X[11, 1] = np.nan
    net = Network([2, 2, 1], seed=1)
    assert takes_tiny_runs(net) == _core.TINY_RUNS_TARGET
    start = [a.copy() for a in net.weights + net.biases]
    with pytest.raises(ValueError, match="NaN"):
        net.fit(X, Y, epochs=2, batch_size=1, shuffle=False, lr=0.5)
    for mine, theirs in zip(net.weights + net.biases, start):
        np.testing.assert_array_equal(mine, theirs)
