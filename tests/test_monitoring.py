"""What fit reports as it trains: the epoch records its callbacks receive and ``history``
keeps, validation losses, early stopping, the progress display, GradientWarning and
``diagnose``.

The records' numbers are recomputed apart from the kernel that took them: validation
losses and gradients by the reference network (``backprop.reference``) on weights a
callback captured, each epoch replayed batch by batch from the weights it started
from; update ratios from those captured weights.
"""

import math
import pickle
import sys
import warnings

import numpy as np
import pytest
from conftest import copy_of, reference_twin

import backprop
from backprop import DivergenceError, EpochRecord, GradientWarning, Network, _core, diagnose

RTOL = {"float64": 1e-10, "float32": 2e-4}


def problem(dtype="float64", n=24, seed=0):
    """A small regression problem and a tanh network for it, with a validation split."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + 10, 3))
    Y = np.tanh(X @ rng.normal(size=(3, 2)))
    net = Network([3, 5, 4, 2], activation="tanh", output="identity", dtype=dtype, seed=seed)
    return net, X[:n], Y[:n], X[n:], Y[n:]


def recorder(net):
    """A callback keeping every record and the weights and biases after its epoch."""
    seen = []

    def callback(record):
        seen.append((record, [w.copy() for w in net.weights], [b.copy() for b in net.biases]))

    return seen, callback


def reference_norms(weights, biases, X, Y, activation, output, loss, batches, lr):
    """Plain SGD over ``batches`` (row indices) from the given weights, in the reference:
    per layer, ||mean over the batches of dL_B/d(W_l, b_l)||."""
    ref = backprop.reference.Network.from_params(
        [w.astype(np.float64) for w in weights],
        [b.astype(np.float64) for b in biases],
        activation=activation,
        output=output,
        loss=loss,
    )
    total = None
    for rows in batches:
        _, nabla_w, nabla_b = ref.gradients(X[rows], Y[rows])
        grads = [np.concatenate([np.ravel(w), np.ravel(b)]) for w, b in zip(nabla_w, nabla_b)]
        total = grads if total is None else [t + g for t, g in zip(total, grads)]
        ref.step(X[rows], Y[rows], lr=lr)
    return [float(np.linalg.norm(t / len(batches))) for t in total]


def layer_ratio(before, after):
    """||after - before|| / ||before||, the layer's weights and biases together."""
    start, end = (np.concatenate([w.ravel(), b]).astype(np.float64) for w, b in (before, after))
    return float(np.linalg.norm(end - start) / np.linalg.norm(start))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size,shuffle", [(1, False), (5, False), (5, True), (24, False)])
def test_records_agree_with_the_reference_replayed_epoch_by_epoch(dtype, batch_size, shuffle):
    net, X, Y, Xv, Yv = problem(dtype)
    start = ([w.copy() for w in net.weights], [b.copy() for b in net.biases])
    seen, callback = recorder(net)
    losses = net.fit(X, Y, epochs=4, batch_size=batch_size, lr=0.05, shuffle=shuffle, seed=7,
                     validation_data=(Xv, Yv), callbacks=[callback])  # fmt: skip
    records = [record for record, *_ in seen]
    assert [r.epoch for r in records] == [0, 1, 2, 3]
    assert [r.loss for r in records] == losses
    assert net.history == records
    rng = np.random.default_rng(7)  # fit's permutations
    weights = [start] + [(w, b) for _, w, b in seen]
    rtol = RTOL[dtype]
    for e, record in enumerate(records):
        ws, bs = weights[e + 1]
        twin = backprop.reference.Network.from_params(
            [w.astype(np.float64) for w in ws], [b.astype(np.float64) for b in bs],
            activation="tanh", output="identity", loss="mse",
        )  # fmt: skip
        assert record.val_loss == pytest.approx(twin.loss(Xv, Yv), rel=rtol)
        order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
        batches = [order[i : i + batch_size] for i in range(0, len(X), batch_size)]
        expected = reference_norms(*weights[e], X, Y, "tanh", "identity", "mse", batches, 0.05)
        np.testing.assert_allclose(record.grad_norms, expected, rtol=50 * rtol)
        ratios = [layer_ratio(before, after) for before, after in
                  zip(zip(*weights[e]), zip(*weights[e + 1]))]  # fmt: skip
        np.testing.assert_allclose(record.update_ratios, ratios, rtol=1e-9)


def test_gradient_norms_leave_out_weight_decay_and_momentum(kernel_path):
    # One batch per epoch: an epoch's gradient is the whole set's at its starting weights,
    # whatever momentum and weight decay then make of it.
    net, X, Y, _, _ = problem()
    start = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    seen, callback = recorder(net)
    net.fit(X, Y, epochs=3, batch_size=len(X), lr=0.1, momentum=0.9, weight_decay=0.5,
            callbacks=[callback])  # fmt: skip
    weights = [start] + [(w, b) for _, w, b in seen]
    for e, (record, *_) in enumerate(seen):
        ref = reference_twin(Network.from_params(*weights[e], activation="tanh",
                                                 output="identity"))  # fmt: skip
        _, nabla_w, nabla_b = ref.gradients(X, Y)
        expected = [math.hypot(np.linalg.norm(w), np.linalg.norm(b))
                    for w, b in zip(nabla_w, nabla_b)]  # fmt: skip
        np.testing.assert_allclose(record.grad_norms, expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [{}, {"dropout": 0.3, "seed": 2}, {"momentum": 0.9}])
def test_taking_statistics_changes_the_weights_by_rounding_only(dtype, options):
    # plain SGD then steps from the stored gradient instead of the fused product;
    # momentum steps from it anyway: the same arithmetic, bit for bit
    net, X, Y, Xv, Yv = problem(dtype)
    twin = copy_of(net)
    plain = net.fit(X, Y, epochs=5, batch_size=4, lr=0.05, **options)
    watched = twin.fit(X, Y, epochs=5, batch_size=4, lr=0.05, callbacks=[lambda r: None],
                       **options)  # fmt: skip
    if "momentum" in options:
        assert watched == plain
        np.testing.assert_array_equal(twin._theta, net._theta)
    np.testing.assert_allclose(watched, plain, rtol=RTOL[dtype])
    np.testing.assert_allclose(twin._theta, net._theta, rtol=10 * RTOL[dtype], atol=1e-6)
    assert all(r.grad_norms is None and r.val_loss is None for r in net.history)
    assert [r.loss for r in net.history] == plain
    assert all(len(r.grad_norms) == net.n_layers for r in twin.history)


def test_the_kernel_takes_a_block_of_epochs_as_one_epoch_at_a_time():
    # fit calls it an epoch at a time; a call over several fills a row per epoch alike
    net, X, Y, _, _ = problem()
    sgd = backprop.optim.SGD(0.05)
    plan = net._arch.plan(4, optimizer=sgd, stats=True)
    theta = net._theta.copy()
    state = dict(optimizer=sgd, steps=np.zeros(1, dtype=np.intp))
    block = np.empty((2, 3, net.n_layers))
    losses = np.empty(3)
    plan.train(theta, X, Y, epochs=3, losses=losses, grad_norms=block[0], update_ratios=block[1],
               **state)  # fmt: skip
    theta_1 = net._theta.copy()
    one = np.empty((2, 1, net.n_layers))
    for e in range(3):
        plan.train(theta_1, X, Y, epochs=1, losses=losses[:1], grad_norms=one[0],
                   update_ratios=one[1], **state)  # fmt: skip
        np.testing.assert_array_equal(one[:, 0], block[:, e])
    np.testing.assert_array_equal(theta_1, theta)
    with pytest.raises(ValueError, match="not built for statistics"):
        net._arch.plan(4, optimizer=backprop.optim.SGD(0.05)).train(
            theta, X, Y, losses=losses[:1], grad_norms=one[0], update_ratios=one[1], **state
        )
    with pytest.raises(ValueError, match=r"float64 \(1, 3\)"):
        plan.train(theta, X, Y, losses=losses[:1], grad_norms=one[0, :, :2],
                   update_ratios=one[1], **state)  # fmt: skip


def test_a_callback_that_returns_true_stops_training():
    net, X, Y, _, _ = problem()
    seen, callback = recorder(net)
    losses = net.fit(X, Y, epochs=50, batch_size=4, callbacks=[callback, lambda r: r.epoch == 2])
    assert len(losses) == 3 and len(seen) == 3 and len(net.history) == 3
    for w, kept in zip(net.weights, seen[-1][1]):
        np.testing.assert_array_equal(w, kept)


def test_callbacks_may_read_the_network_but_not_train_it():
    net, X, Y, Xv, Yv = problem()
    read = []

    def callback(record):
        read.append((record.val_loss, net.loss(Xv, Yv), len(net.history)))

    net.fit(X, Y, epochs=2, validation_data=(Xv, Yv), callbacks=[callback])
    assert [h for *_, h in read] == [1, 2]  # history grows as the epochs end
    for val_loss, loss, _ in read:
        assert val_loss == loss  # net.loss's semantics exactly
    with pytest.raises(RuntimeError, match="callback may read it, not train"):
        net.fit(X, Y, epochs=2, callbacks=[lambda r: net.step(X[:2], Y[:2])])
    assert len(net.history) == 1  # the epoch that completed before the callback raised


def validation_problem():
    """A validation set whose loss falls, then rises as training fits the training set."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 4))
    Y = rng.normal(size=(12, 1))
    Xv = rng.normal(size=(30, 4))
    Yv = 0.1 * rng.normal(size=(30, 1))
    net = Network([4, 16, 1], activation="tanh", output="identity", seed=1)
    return net, X, Y, Xv, Yv


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(patience):
    net, X, Y, Xv, Yv = validation_problem()
    seen, callback = recorder(net)
    losses = net.fit(X, Y, epochs=500, batch_size=4, lr=0.05, validation_data=(Xv, Yv),
                     early_stopping=patience, callbacks=[callback])  # fmt: skip
    val = [record.val_loss for record, *_ in seen]
    best = int(np.argmin(val))
    assert len(losses) == len(seen) == best + patience + 1 < 500
    assert all(v >= val[best] for v in val[best + 1 :])
    for w, kept in zip(net.weights + net.biases, seen[best][1] + seen[best][2]):
        np.testing.assert_array_equal(w, kept)
    assert net.loss(Xv, Yv) == val[best]


def test_early_stopping_restores_the_best_epoch_when_the_epochs_run_out():
    net, X, Y, Xv, Yv = validation_problem()
    seen, callback = recorder(net)
    net.fit(X, Y, epochs=40, batch_size=4, lr=0.05, validation_data=(Xv, Yv),
            early_stopping=1000, callbacks=[callback])  # fmt: skip
    best = int(np.argmin([record.val_loss for record, *_ in seen]))
    assert len(seen) == 40 and best < 39
    for w, kept in zip(net.weights, seen[best][1]):
        np.testing.assert_array_equal(w, kept)


def test_early_stopping_restores_the_best_epochs_running_statistics():
    """With batch normalization, the running statistics that go with the best epoch's
    weights come back with them."""
    _, X, Y, Xv, Yv = validation_problem()
    net = Network([4, 16, 1], activation="tanh", output="identity", seed=1, batch_norm=True)
    seen = []

    def keep(record):
        seen.append((record.val_loss, [a.copy() for a in net.running_means + net.running_vars]))

    net.fit(X, Y, epochs=40, batch_size=4, lr=0.05, validation_data=(Xv, Yv),
            early_stopping=1000, callbacks=[keep])  # fmt: skip
    best = int(np.argmin([val for val, _ in seen]))
    assert best < 39
    for got, kept in zip(net.running_means + net.running_vars, seen[best][1], strict=True):
        np.testing.assert_array_equal(got, kept)


def test_early_stopping_needs_validation_data():
    net, X, Y, _, _ = problem()
    with pytest.raises(ValueError, match="early_stopping needs validation_data"):
        net.fit(X, Y, early_stopping=3)
    with pytest.raises(ValueError, match="early_stopping must be >= 1"):
        net.fit(X, Y, early_stopping=0, validation_data=(X, Y))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"callbacks": print}, TypeError, r"callbacks=\[f\]"),
        ({"callbacks": [print, 3]}, TypeError, r"callbacks\[1\] must be callable"),
        ({"validation_data": np.zeros((3, 3))}, TypeError, r"pair \(X_val, Y_val\)"),
        ({"validation_data": (np.zeros((3, 2)), np.zeros((3, 2)))}, ValueError,
         r"validation_data\[0\] has 2 features, but the network expects 3"),
        ({"validation_data": (np.zeros((3, 3)), np.zeros((4, 2)))}, ValueError,
         r"validation_data\[1\] has 4 samples but X has 3"),
        ({"verbose": "yes"}, TypeError, "verbose must be True or False"),
    ],
)  # fmt: skip
def test_monitoring_arguments_are_checked(kwargs, error, match):
    net, X, Y, _, _ = problem()
    net.fit(X, Y, epochs=1)
    history = net.history
    with pytest.raises(error, match=match):
        net.fit(X, Y, epochs=1, **kwargs)
    assert net.history == history  # a refused fit leaves it


def test_verbose_shows_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    net, X, Y, Xv, Yv = problem()
    net.fit(X, Y, epochs=3, verbose=True, validation_data=(Xv, Yv))
    err = capsys.readouterr().err
    assert "3/3" in err and "epoch" in err
    assert f"val_loss={net.history[-1].val_loss:.4g}" in err


def test_verbose_without_tqdm_prints_a_line_per_epoch(capsys, monkeypatch):
    for name in ("tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)  # import tqdm raises ImportError
    net, X, Y, _, _ = problem()
    losses = net.fit(X, Y, epochs=3, verbose=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"epoch {e + 1}/3: loss {loss:.4g}" for e, loss in enumerate(losses)
    ]


def deep_sigmoid():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8))
    Y = (X[:, :1] > 0).astype(float)
    return Network([8] + [32] * 10 + [1], seed=0), X, Y


@pytest.mark.parametrize("monitored", [False, True])
def test_a_deep_sigmoid_network_draws_one_gradient_warning(monitored):
    net, X, Y = deep_sigmoid()
    ratio = diagnose(net, X, Y)[0] / diagnose(net, X, Y)[-1]
    assert ratio < 1e-4
    extra = {"callbacks": [lambda r: None]} if monitored else {}
    with pytest.warns(GradientWarning) as caught:
        net.fit(X, Y, epochs=3, batch_size=16, **extra)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "vanishing gradients: hidden layer 0's gradient norm is" in message
    assert "ReLU" in message and "batch normalization" in message and "learning rate" in message
    assert caught[0].filename == __file__  # points at the call of fit
    if monitored:
        history = net.history
        assert history[0].grad_norms[0] / history[0].grad_norms[-1] < 1e-4


def test_exploding_hidden_gradients_draw_a_gradient_warning():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 4))
    Y = rng.normal(size=(32, 1))
    net = Network([4, 8, 1], activation="relu", output="identity", seed=0)
    net.weights[0][...] *= 1e-6  # tiny hidden outputs: a tiny output-layer gradient ...
    net.biases[0][...] = 1e-6
    net.weights[1][...] = 1e6  # ... and a huge one carried back to the hidden layer
    norms = diagnose(net, X, Y)
    assert norms[0] / norms[1] > 1e4
    with pytest.warns(GradientWarning, match=r"exploding gradients: hidden layer 0's"):
        net.fit(X, Y, epochs=1, lr=1e-20)


@pytest.mark.parametrize("monitored", [False, True])
def test_a_healthy_network_draws_no_gradient_warning(monitored):
    net, X, Y, Xv, Yv = problem()
    extra = {"validation_data": (Xv, Yv)} if monitored else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(X, Y, epochs=5, batch_size=4, **extra)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_diagnose_gives_the_reference_norms_and_changes_nothing(dtype):
    net, X, Y, _, _ = problem(dtype)
    net.fit(X, Y, epochs=2)
    theta, history = net._theta.copy(), net.history
    norms = diagnose(net, X[:7], Y[:7])
    _, nabla_w, nabla_b = reference_twin(net).gradients(X[:7], Y[:7])
    expected = [math.hypot(np.linalg.norm(w), np.linalg.norm(b)) for w, b in zip(nabla_w, nabla_b)]
    assert isinstance(norms, list) and len(norms) == net.n_layers
    np.testing.assert_allclose(norms, expected, rtol=RTOL[dtype])
    np.testing.assert_array_equal(net._theta, theta)
    assert net.history == history
    with pytest.raises(ValueError, match="X has 2 features, but the network expects 3"):
        diagnose(net, X[:, :2], Y)


@pytest.mark.parametrize("monitored", [False, True])
def test_history_keeps_the_epochs_before_a_divergence(monitored):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 3)) * 3
    Y = rng.normal(size=(24, 2))
    net = Network([3, 5, 2], activation="tanh", output="identity", seed=0)
    extra = {"callbacks": [lambda r: None]} if monitored else {}
    with pytest.raises(DivergenceError) as caught:
        net.fit(X, Y, epochs=500, batch_size=1, lr=2.0, **extra)
    assert caught.value.epoch > 0
    assert [r.loss for r in net.history] == caught.value.losses
    assert [r.epoch for r in net.history] == list(range(caught.value.epoch))


def test_history_keeps_the_epochs_before_an_interruption(monkeypatch):
    # the blocks of epochs run in one kernel call: Ctrl-C in the middle of one
    net, X, Y, _, _ = problem()
    twin = copy_of(net)
    train, calls = _core.Plan.train, []

    def interrupted(plan, *args, epochs, losses, **kwargs):
        calls.append(epochs)
        if len(calls) == 4:  # 1 + 2 + 4 epochs done, then 3 of the 8 of this block
            train(plan, *args, epochs=3, losses=losses[:3], **kwargs)
            raise KeyboardInterrupt
        return train(plan, *args, epochs=epochs, losses=losses, **kwargs)

    monkeypatch.setattr(_core, "Plan", type("Plan", (_core.Plan,), {"train": interrupted}))
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, Y, epochs=100, batch_size=4)
    monkeypatch.undo()
    assert calls == [1, 2, 4, 8]
    assert [r.loss for r in net.history] == twin.fit(X, Y, epochs=10, batch_size=4)


def test_history_is_read_only_pickled_and_a_copy():
    net, X, Y, Xv, Yv = problem()
    net.fit(X, Y, epochs=3, validation_data=(Xv, Yv))
    history = net.history
    assert all(isinstance(r, EpochRecord) for r in history)
    history.clear()
    assert len(net.history) == 3
    with pytest.raises(AttributeError, match="read-only"):
        net.history = []
    with pytest.raises(AttributeError, match="read-only"):
        del net.history
    assert pickle.loads(pickle.dumps(net)).history == net.history
    assert Network([3, 2]).history == []
    net.fit(X, Y, epochs=0)
    assert net.history == []


def test_statistics_on_every_kernel_path_match_diagnose(kernel_path):
    # one batch per epoch: an epoch's gradient norms are diagnose's at its start
    net, X, Y, _, _ = problem(n=64)
    before = [diagnose(net, X, Y)]
    net.fit(X, Y, epochs=3, batch_size=64, lr=0.1,
            callbacks=[lambda r: before.append(diagnose(net, X, Y))])  # fmt: skip
    for record, expected in zip(net.history, before):
        np.testing.assert_allclose(record.grad_norms, expected, rtol=1e-12)
