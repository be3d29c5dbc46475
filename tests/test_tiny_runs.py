"""Runs of one-row steps through the tiniest networks (_kernels/tiny_run.h: one hidden layer,
every layer at most 4 wide, mean squared error) against the general one-row step they
replace (``_core.set_tiny_runs(False)``), against the reference, and against themselves:
``fit`` in batches of one row is a loop of ``step``, and its stops are the general step's."""

import numpy as np
import pytest

from backprop import Network, _core, optim, reference
from backprop._core import Status

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


def kernel_train(
    tiny, X, Y, *, epochs=2, order=None, check_input=False, dtype="float64", **network
):
    """``Plan.train`` on [2, 2, 1] in batches of one row, through the tiny runs or the
    general step: (status, epoch, batch), the epoch losses, the steps, theta and the rows
    the plan stepped in tiny runs."""
    previous = _core.set_tiny_runs(tiny)
    try:
        net = Network([2, 2, 1], seed=1, dtype=dtype, **network)
        opt = optim.SGD(0.5)
        opt.init_state(net._theta.size, net._theta.dtype)
        plan = net._arch.plan(1, optimizer=opt, gather=order is not None)
        losses = np.full(epochs, np.nan)
        X, Y = X.astype(dtype), Y.astype(dtype)
        where = plan.train(net._theta, X, Y, order=order, epochs=epochs, losses=losses,
                           optimizer=opt, steps=opt._steps, check_input=check_input)  # fmt: skip
    finally:
        _core.set_tiny_runs(previous)
    return where, losses, int(opt._steps[0]), net._theta.copy(), plan.tiny_rows


# more rows than one run between two checks for Ctrl-C (Plan.check_every: 1988 here)
N = 2500


@needs_runs
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["completed", "shuffled", "loss not finite", "input not finite"])
def test_the_kernel_reports_what_the_general_step_does(case, dtype):
    X, Y = data((2, 2, 1), n=N, seed=4)
    options = {}
    expected = Status.COMPLETED
    if case == "shuffled":
        options = dict(order=np.random.default_rng(1).permutation(N).astype(np.intp), epochs=1)
    if case == "loss not finite":  # the identity output overflows at that row, epoch 1
        X[2100] = 1e300 if dtype == "float64" else 1e30
        options = dict(epochs=1, activation="identity", output="identity")
        expected = Status.LOSS_NOT_FINITE
    if case == "input not finite":  # found by the first epoch's check, in a shuffled order
        X[1999, 0] = np.nan
        order = np.random.default_rng(2).permutation(N).astype(np.intp)
        options = dict(order=order, epochs=1, check_input=True)
        expected = Status.INPUT_NOT_FINITE
    tiny = kernel_train(True, X, Y, dtype=dtype, **options)
    general = kernel_train(False, X, Y, dtype=dtype, **options)
    assert tiny[0] == general[0] and tiny[0][0] == expected
    assert tiny[2] == general[2]  # the steps taken
    assert tiny[4] == tiny[2] > 0 and general[4] == 0  # the rows in tiny runs
    np.testing.assert_allclose(tiny[1], general[1], **TOLERANCE[dtype])
    np.testing.assert_allclose(tiny[3], general[3], **TOLERANCE[dtype])
    if case == "input not finite":
        assert tiny[0][2] == int(np.flatnonzero(options["order"] == 1999)[0])


@needs_runs
def test_a_step_of_one_row_takes_a_tiny_run():
    previous = _core.set_tiny_runs(True)
    try:
        net = Network([2, 2, 1], seed=1)
        opt = optim.SGD(0.5)
        plan = net._arch.plan(1, optimizer=opt)
        X, Y = data((2, 2, 1), n=1)
        plan.batch(net._theta, X, Y, mode=_core.Mode.FUSED_STEP)
        assert plan.tiny_rows == 1
        monitored = net._arch.plan(1, optimizer=opt, stats=True)
        assert not monitored.tiny_runs  # a monitored fit steps through stored gradients
    finally:
        _core.set_tiny_runs(previous)
