"""Divergence: training that stops being finite keeps the last finite weights, and says so.

``fit`` promises the weights it had before the first batch whose loss, or whose updated
weights, were not finite. The tests replay the same training one ``step`` at a time
(``step`` refuses, unchanged, a step that is not finite) and demand bit-identical
weights, whichever way the kernel noticed the divergence.
"""

import numpy as np
import pytest
from conftest import copy_of

import backprop
from backprop import DivergenceError, Network


def replay(net, X, Y, epochs, batch_size, lr, shuffle=False, seed=None):
    """fit's contract, one step at a time: (epoch losses, (epoch, batch) it stopped at)."""
    n = len(X)
    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        total = 0.0
        for batch, start in enumerate(range(0, n, batch_size)):
            rows = order[start : start + batch_size]
            try:
                total += net.step(X[rows], Y[rows], lr=lr) * len(rows)
            except DivergenceError:
                return losses, (epoch, batch)
        losses.append(total / n)
    return losses, None


def regression(dtype, seed=0):
    """A regression problem on which plain gradient descent with a large lr blows up."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(24, 3)) * 3
    Y = rng.normal(size=(24, 2))
    net = Network([3, 5, 2], activation="tanh", output="identity", dtype=dtype, seed=seed)
    return net, X, Y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size,shuffle", [(1, False), (5, False), (5, True), (24, True)])
@pytest.mark.parametrize("lr", [2.0, 1e4, "huge"])
def test_fit_keeps_the_weights_from_before_the_first_bad_batch(dtype, batch_size, shuffle, lr):
    # 2 and 1e4 blow up over many steps until a loss overflows; "huge" overflows the
    # weights in one step.
    lr = float(np.finfo(dtype).max) if lr == "huge" else lr
    net, X, Y = regression(dtype)
    twin = copy_of(net)
    with pytest.raises(DivergenceError, match="training diverged at epoch") as caught:
        net.fit(X, Y, epochs=500, batch_size=batch_size, lr=lr, shuffle=shuffle, seed=3)
    losses, stop = replay(twin, X, Y, 500, batch_size, lr, shuffle, seed=3)
    assert stop == (caught.value.epoch, caught.value.batch)
    # The kernel may fuse total += loss * m into one rounding (FMA): equal to rounding.
    np.testing.assert_allclose(caught.value.losses, losses, rtol=1e-12)
    assert np.isfinite(net._theta).all()
    np.testing.assert_array_equal(net._theta, twin._theta)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_network_diverged_by_a_huge_lr_is_still_usable(dtype, tmp_path):
    net, X, Y = regression(dtype)
    Y = Y * 100  # gradients far above 1: the first step overflows
    before = net._theta.copy()
    with pytest.raises(DivergenceError, match="epoch 0, batch 0: the step made the weights"):
        net.fit(X, Y, epochs=10, lr=float(np.finfo(dtype).max))
    np.testing.assert_array_equal(net._theta, before)
    assert np.isfinite(net.forward(X)).all()
    losses = net.fit(X, Y, epochs=20, batch_size=4, lr=1e-2)
    assert len(losses) == 20 and np.isfinite(losses).all() and losses[-1] < losses[0]
    net.save(tmp_path / "net.npz")
    np.testing.assert_array_equal(backprop.load(tmp_path / "net.npz").forward(X), net.forward(X))


def test_a_network_diverged_over_many_steps_is_still_well_behaved(tmp_path):
    # Its last finite weights are huge: what they compute is finite or refused with an
    # error, never inf or NaN; they save and load exactly; training them further either
    # works or diverges again, cleanly.
    net, X, Y = regression("float64")
    with pytest.raises(DivergenceError):
        net.fit(X, Y, epochs=500, lr=2.0)
    try:
        assert np.isfinite(net.forward(X)).all()
    except ValueError as err:
        assert "not finite" in str(err)
    net.save(tmp_path / "net.npz")
    again = backprop.load(tmp_path / "net.npz")
    np.testing.assert_array_equal(again._theta, net._theta)
    for copy in (net, again):
        before = copy._theta.copy()
        try:
            assert np.isfinite(copy.fit(X, Y, epochs=2, batch_size=4, lr=1e-6)).all()
        except DivergenceError as err:
            assert err.epoch == 0 and err.batch == 0
            np.testing.assert_array_equal(copy._theta, before)
        assert np.isfinite(copy._theta).all()


def test_on_divergence_warn_returns_the_completed_epochs():
    net, X, Y = regression("float32")
    twin = copy_of(net)
    with pytest.raises(DivergenceError) as caught:
        twin.fit(X, Y, epochs=500, batch_size=2, lr=2.0)
    with pytest.warns(RuntimeWarning, match="training diverged") as warned:
        losses = net.fit(X, Y, epochs=500, batch_size=2, lr=2.0, on_divergence="warn")
    assert str(warned[0].message) == str(caught.value)
    assert losses == caught.value.losses and len(losses) == caught.value.epoch > 0
    np.testing.assert_array_equal(net._theta, twin._theta)


@pytest.mark.parametrize("value,error", [("ignore", ValueError), (None, TypeError)])
def test_on_divergence_must_be_raise_or_warn(value, error):
    net, X, Y = regression("float64")
    with pytest.raises(error, match="on_divergence"):
        net.fit(X, Y, on_divergence=value)


def test_weights_that_overflow_while_the_loss_stays_finite_are_caught():
    # One step sends the weight to +inf; the sigmoid then saturates at 1 = target, so
    # every later loss is 0. The kernel's end-of-run check then finds inf.
    net = Network.from_params([np.zeros((1, 1))], [np.zeros(1)])
    with pytest.raises(DivergenceError, match="epoch 0, batch 0: the step made the weights"):
        net.fit([[1e10]], [[1.0]], epochs=3000, lr=1e300)
    assert net.weights[0][0, 0] == 0 and net.biases[0][0] == 0


def test_a_loss_that_overflows_stops_before_its_step():
    # float32 identity output: the squared error of 1e20 overflows, its gradient does not.
    net = Network.from_params([np.ones((1, 1))], [np.zeros(1)], output="identity", dtype="f4")
    before = net._theta.copy()
    X = np.array([[1.0], [1e20]])
    Y = np.zeros((2, 1))
    with pytest.raises(DivergenceError, match="epoch 0, batch 1: the loss is not finite"):
        net.fit(X, Y, epochs=1, batch_size=1, lr=1e-3)
    twin = Network.from_params([before[:1].reshape(1, 1)], [before[1:]], output="identity",
                               dtype="f4")  # fmt: skip
    twin.step(X[:1], Y[:1], lr=1e-3)
    np.testing.assert_array_equal(net._theta, twin._theta)


def test_step_that_diverges_changes_nothing():
    net, X, Y = regression("float32")
    before = net._theta.copy()
    with pytest.raises(DivergenceError, match="the step diverged"):
        for _ in range(100):
            before = net._theta.copy()
            net.step(X, Y, lr=1e4)
    np.testing.assert_array_equal(net._theta, before)
    assert np.isfinite(net._theta).all()


def test_training_refuses_weights_that_are_already_not_finite():
    net, X, Y = regression("float64")
    net.weights[0][0, 0] = np.nan
    for call in (lambda: net.fit(X, Y), lambda: net.step(X, Y)):
        with pytest.raises(ValueError, match="weights or biases contain NaN"):
            call()
    with pytest.raises(ValueError, match="weights or biases contain NaN"):
        net.forward(X)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_divergence_with_momentum_stops_at_the_same_finite_weights_every_time(dropout):
    """With momentum (and dropout) the replay restores velocities and masks as well: a
    diverging fit stops at finite weights, the same ones run after run."""
    from backprop import DivergenceError, Network

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 4)) * 30, rng.normal(size=(64, 1)) * 30
    kw = dict(epochs=50, batch_size=8, lr=0.05, momentum=0.9, dropout=dropout, seed=3)
    ends = []
    for _ in range(2):
        net = Network([4, 16, 1], activation="relu", output="identity", seed=1)
        with pytest.raises(DivergenceError) as err:
            net.fit(X, Y, **kw)
        assert np.isfinite(net._theta).all()
        ends.append((err.value.epoch, err.value.batch, net._theta.copy()))
    assert ends[0][:2] == ends[1][:2]
    np.testing.assert_array_equal(ends[0][2], ends[1][2])
