"""Batch normalization in Network: the compiled passes against the reference (every kernel
path and weight layout, both dtypes), finite differences, PyTorch's Linear + BatchNorm1d,
and the attributes, checkpoints, pickles, ONNX export and refusals that come with it."""

import copy
import pickle

import numpy as np
import pytest
from conftest import copy_of, finite_difference_gradients, force_path, reference_twin

import backprop
from backprop import Network, _core, load, reference

TOL = {"float64": dict(rtol=1e-11, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}
# after several epochs of training rounding compounds step by step
FIT_TOL = {"float64": dict(rtol=1e-9, atol=1e-10), "float32": dict(rtol=5e-3, atol=5e-4)}
NORM = ("gammas", "betas", "running_means", "running_vars")


def problem(sizes=(3, 5, 4, 2), activation=("relu", "gelu"), output="sigmoid", loss="mse",
            dtype="float64", n=12, seed=0):  # fmt: skip
    """A batch-normalised network with gammas, betas and running statistics away from
    where they start, and a data set for it (representable in float32)."""
    rng = np.random.default_rng(seed)
    net = Network(list(sizes), activation=list(activation), output=output, loss=loss,
                  dtype=dtype, seed=seed, batch_norm=True)  # fmt: skip
    for l in range(len(sizes) - 2):
        width = sizes[l + 1]
        net.gammas[l][...] = rng.uniform(0.5, 1.5, width)
        net.betas[l][...] = rng.normal(0, 0.3, width)
        net.running_means[l][...] = rng.normal(0, 0.3, width)
        net.running_vars[l][...] = rng.uniform(0.5, 2, width)
        net.biases[l][...] = rng.normal(0, 0.3, width)
    X = rng.normal(size=(n, sizes[0])).astype(np.float32).astype(np.float64)
    if loss == "cross_entropy":
        Y = rng.integers(0, sizes[-1], size=n)
    else:
        Y = rng.uniform(0, 1, size=(n, sizes[-1])).astype(np.float32).astype(np.float64)
    return net, X, Y


def assert_same_network(fast, ref, tol):
    for name in ("weights", "biases", *NORM):
        for got, want in zip(getattr(fast, name), getattr(ref, name), strict=True):
            np.testing.assert_allclose(got, np.array(want), **tol, err_msg=name)


# ------------------------------------------------------------ the reference ---


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "activation,output,loss",
    [
        (("relu", "gelu"), "sigmoid", "mse"),
        (("tanh", "sigmoid"), "softmax", "cross_entropy"),
        (("silu", "leaky_relu"), "identity", "mse"),
    ],
)
def test_passes_match_reference(activation, output, loss, dtype, kernel_path):
    fast, X, Y = problem(activation=activation, output=output, loss=loss, dtype=dtype)
    ref = reference_twin(fast)
    tol = TOL[dtype]
    np.testing.assert_allclose(fast.forward(X), ref.forward(X), **tol)
    np.testing.assert_allclose(fast.forward(X, training=True), ref.forward(X, training=True),
                               **tol)  # fmt: skip
    np.testing.assert_allclose(fast.loss(X, Y), ref.loss(X, Y), **tol)
    result = fast.gradients(X, Y)
    value, nabla_w, nabla_b, nabla_gamma, nabla_beta = ref.gradients(X, Y)
    np.testing.assert_allclose(result.loss, value, **tol)
    for got, want in zip([*result.weights, *result.biases, *result.gammas, *result.betas],
                         [*nabla_w, *nabla_b, *nabla_gamma, *nabla_beta], strict=True):  # fmt: skip
        np.testing.assert_allclose(got, np.array(want), **tol)
    # queries: neither touches the running statistics
    assert_same_network(fast, ref, dict(rtol=0, atol=0) if dtype == "float64" else tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.8, True)])
def test_fit_matches_reference(momentum, nesterov, dtype, kernel_path):
    fast, X, Y = problem(dtype=dtype, n=14)
    ref = reference_twin(fast)
    options = dict(epochs=4, batch_size=4, lr=0.05, shuffle=True, seed=3, momentum=momentum,
                   nesterov=nesterov, weight_decay=0.01)  # fmt: skip
    losses = fast.fit(X, Y, **options)
    np.testing.assert_allclose(losses, ref.fit(X, Y, **options), **FIT_TOL[dtype])
    assert_same_network(fast, ref, FIT_TOL[dtype])


def test_step_matches_reference_and_updates_the_running_statistics():
    fast, X, Y = problem()
    ref = reference_twin(fast)
    before = [v.copy() for v in fast.running_vars]
    for _ in range(3):
        assert fast.step(X, Y, lr=0.2, weight_decay=0.1) == pytest.approx(
            ref.step(X, Y, lr=0.2, weight_decay=0.1), rel=1e-12
        )
    assert_same_network(fast, ref, TOL["float64"])
    assert not np.array_equal(before[0], fast.running_vars[0])


def test_a_worked_layer_by_hand():
    # one hidden unit, identity activations: z = (1, 3) -> mu 2, var 1, xhat = -+1/sqrt(1+eps)
    net = Network.from_params([[[1.0]], [[2.0]]], [[0.0], [0.5]], activation="identity",
                              output="identity", batch_norm=True, gammas=[[3.0]],
                              betas=[[-1.0]])  # fmt: skip
    s = 1 / np.sqrt(1 + 1e-5)
    y_hidden = np.array([-3 * s - 1, 3 * s - 1])
    np.testing.assert_allclose(net.forward([[1.0], [3.0]], training=True)[:, 0],
                               2 * y_hidden + 0.5, rtol=1e-15)  # fmt: skip
    net.step([[1.0], [3.0]], [[0.0], [0.0]], lr=1e-300)  # the statistics come first
    np.testing.assert_allclose(net.running_means[0], [0.1 * 2], rtol=1e-15)
    np.testing.assert_allclose(net.running_vars[0], [0.9 + 0.1 * 2.0], rtol=1e-15)  # unbiased


# ------------------------------------------------------ finite differences ---


@pytest.mark.parametrize(
    "activation", ["sigmoid", "tanh", "identity", "leaky_relu", "elu", "gelu", "softplus", "silu"]
)
def test_gradients_match_finite_differences(activation):
    net, X, Y = problem(activation=(activation, activation), output="softmax",
                        loss="cross_entropy")  # fmt: skip
    result = net.gradients(X, Y)
    params = [*net.weights, *net.biases, *net.gammas, *net.betas]
    numeric = finite_difference_gradients(lambda: net.loss(X, Y), params)
    for got, want in zip([*result.weights, *result.biases, *result.gammas, *result.betas],
                         numeric, strict=True):  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


def test_reference_gradients_match_finite_differences():
    fast, X, Y = problem(activation=("elu", "tanh"))
    ref = reference_twin(fast)
    _, *analytic = ref.gradients(X, Y)
    params = [*ref.weights, *ref.biases, *ref.gammas, *ref.betas]
    numeric = finite_difference_gradients(lambda: ref.loss(X, Y), params)
    for got, want in zip([g for group in analytic for g in group], numeric, strict=True):
        np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ PyTorch ---


def torch_twin(net, torch):
    """torch.nn.Sequential of Linear, BatchNorm1d and the activation per hidden layer,
    with ``net``'s parameters and running statistics (float64), and its layers."""
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
            "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "elu": torch.nn.ELU}  # fmt: skip
    layers, linears, norms = [], [], []
    hidden = net.activation if isinstance(net.activation, list) else [net.activation] * (
        net.n_layers - 1)  # fmt: skip
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        linear.weight.data = torch.tensor(W.copy())
        linear.bias.data = torch.tensor(b.copy())
        layers.append(linear)
        linears.append(linear)
        if l < net.n_layers - 1:
            norm = torch.nn.BatchNorm1d(W.shape[0], dtype=torch.float64)
            norm.weight.data = torch.tensor(net.gammas[l].copy())
            norm.bias.data = torch.tensor(net.betas[l].copy())
            norm.running_mean = torch.tensor(net.running_means[l].copy())
            norm.running_var = torch.tensor(net.running_vars[l].copy())
            layers += [norm, acts[hidden[l]]()]
            norms.append(norm)
    layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers), linears, norms


def torch_difference(net, linears, norms):
    """The largest difference between ``net``'s parameters and running statistics and
    PyTorch's."""
    pairs = [(net.weights[l], m.weight) for l, m in enumerate(linears)]
    pairs += [(net.biases[l], m.bias) for l, m in enumerate(linears)]
    for l, m in enumerate(norms):
        pairs += [
            (net.gammas[l], m.weight),
            (net.betas[l], m.bias),
            (net.running_means[l], m.running_mean),
            (net.running_vars[l], m.running_var),
        ]
    return max(np.abs(ours - theirs.detach().numpy()).max() for ours, theirs in pairs)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_training_matches_pytorch(momentum, layout):
    torch = pytest.importorskip("torch")
    net, X, Y = problem(sizes=(3, 6, 5, 2), activation=("relu", "tanh"), n=16)
    model, linears, norms = torch_twin(net, torch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    batch = 4
    model.train()
    for _ in range(3):  # epochs
        for start in range(0, len(X), batch):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(Xt[start : start + batch]),
                                                Yt[start : start + batch])  # fmt: skip
            loss.backward()
            optimizer.step()
    net.fit(X, Y, epochs=3, batch_size=batch, lr=0.1, momentum=momentum)
    assert torch_difference(net, linears, norms) < 1e-10
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X), model(Xt).numpy(), rtol=0, atol=1e-10)
    model.train()
    with torch.no_grad():
        torch_out = model(Xt).numpy()
    np.testing.assert_allclose(net.forward(X, training=True), torch_out, rtol=0, atol=1e-10)


def test_gradients_and_step_match_pytorch():
    torch = pytest.importorskip("torch")
    net, X, Y = problem(sizes=(4, 7, 3), activation=("silu",), n=9)
    model, linears, norms = torch_twin(net, torch)
    loss = torch.nn.functional.mse_loss(model(torch.tensor(X)), torch.tensor(Y))
    loss.backward()
    result = net.gradients(X, Y)
    assert abs(result.loss - loss.item()) < 1e-14
    pairs = [(result.weights[0], linears[0].weight), (result.biases[1], linears[1].bias),
             (result.gammas[0], norms[0].weight), (result.betas[0], norms[0].bias)]  # fmt: skip
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=0, atol=1e-12)
    # PyTorch's forward above updated its running statistics once; step does too
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad
    net.step(X, Y, lr=0.5)
    assert torch_difference(net, linears, norms) < 1e-12


# --------------------------------------------------------- paths and layouts ---


def test_a_batch_normalised_network_runs_on_one_core():
    net, X, Y = problem(sizes=(30, 64, 64, 3), n=300)
    plan = net._arch.plan(300)
    assert plan.path == _core.Path.ONE_CORE
    with force_path("halves"):
        assert net._arch.plan(300).path == _core.Path.ONE_CORE
        split = net.gradients(X, Y)
    whole = net.gradients(X, Y)
    for got, want in zip(split.gammas + split.weights, whole.gammas + whole.weights):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_loss_and_gradients_take_every_row_in_one_pass(monkeypatch):
    monkeypatch.setattr(backprop._layout, "CHUNK_MAX_ROWS", 8)
    monkeypatch.setattr(backprop._layout, "CHUNK_MIN_ROWS", 8)
    net, X, Y = problem(n=40)
    ref = reference_twin(net)
    np.testing.assert_allclose(net.loss(X, Y), ref.loss(X, Y), **TOL["float64"])
    np.testing.assert_allclose(net.gradients(X, Y).gammas[1], ref.gradients(X, Y)[3][1],
                               **TOL["float64"])  # fmt: skip
    # forward in eval mode still goes a chunk at a time: each row on its own
    np.testing.assert_allclose(net.forward(X), np.vstack([net.forward(X[i]) for i in range(40)]),
                               **TOL["float64"])  # fmt: skip


# ------------------------------------------------ attributes and their views ---


def test_attributes_are_views_and_read_only():
    net, X, Y = problem()
    assert net.batch_norm is True
    assert "batch_norm=True" in repr(net)
    assert [g.shape for g in net.gammas] == [(5,), (4,)]
    net.gammas[0][...] = 0  # the first hidden layer's output is beta alone
    net.betas[0][...] = 0
    out = net.forward(X)
    np.testing.assert_allclose(out, np.repeat(out[:1], len(X), axis=0))
    for name in (*NORM, "batch_norm"):
        with pytest.raises(AttributeError, match="cannot set"):
            setattr(net, name, getattr(net, name))
        with pytest.raises(AttributeError, match="cannot delete"):
            delattr(net, name)
    with pytest.raises(AttributeError, match=r"net\.gammas\[l\]\[\.\.\.\]"):
        net.gammas = []


def test_a_network_without_batch_norm_is_unchanged():
    net = Network([3, 4, 2], seed=0)
    assert not net.batch_norm and "batch_norm" not in repr(net)
    assert net.gammas == net.betas == net.running_means == net.running_vars == []
    assert len(net._theta) == 3 * 4 + 4 + 4 * 2 + 2
    result = net.gradients(np.ones((1, 3)), np.zeros((1, 2)))
    value, gw, gb = result
    assert result.loss == value and result.gammas == result.betas == []
    back = pickle.loads(pickle.dumps(result))
    assert type(back) is type(result) and back.loss == value and back.gammas == []
    np.testing.assert_array_equal(back.weights[1], gw[1])


def test_new_network_starts_as_pytorch_does():
    net = Network([3, 4, 5, 2], batch_norm=True, seed=0)
    for l, width in enumerate([4, 5]):
        np.testing.assert_array_equal(net.gammas[l], np.ones(width))
        np.testing.assert_array_equal(net.betas[l], np.zeros(width))
        np.testing.assert_array_equal(net.running_means[l], np.zeros(width))
        np.testing.assert_array_equal(net.running_vars[l], np.ones(width))
    # the same weights as without batch normalization, from the same seed
    for with_norm, without in zip(net.weights, Network([3, 4, 5, 2], seed=0).weights):
        np.testing.assert_array_equal(with_norm, without)


def test_from_params_checks_what_it_is_given():
    weights, biases = [np.ones((4, 3)), np.ones((2, 4))], [np.zeros(4), np.zeros(2)]
    with pytest.raises(ValueError, match="batch_norm is False"):
        Network.from_params(weights, biases, gammas=[np.ones(4)])
    with pytest.raises(ValueError, match=r"gammas\[0\] must have shape \(4,\)"):
        Network.from_params(weights, biases, batch_norm=True, gammas=[np.ones(3)])
    with pytest.raises(ValueError, match="must be >= 0"):
        Network.from_params(weights, biases, batch_norm=True, running_vars=[-np.ones(4)])
    with pytest.raises(TypeError, match="batch_norm must be True or False"):
        Network([3, 4, 2], batch_norm="yes")


# ------------------------------------------------- checkpoints and pickles ---


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_and_load_round_trip(tmp_path, dtype, layout):
    net, X, Y = problem(dtype=dtype)
    net.fit(X, Y, epochs=2, batch_size=4)
    net.save(tmp_path / "net.npz")
    back = load(tmp_path / "net.npz")
    assert back.batch_norm and repr(back) == repr(net)
    np.testing.assert_array_equal(back._theta, net._theta)
    np.testing.assert_array_equal(back._running, net._running)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    with np.load(tmp_path / "net.npz") as archive:
        assert int(archive["version"]) == 3
        np.testing.assert_array_equal(archive["running"], net._running)


def test_load_refuses_bad_running_statistics(tmp_path):
    net, X, Y = problem()
    net.save(tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz") as archive:
        entries = dict(archive)
    for running, match in [(entries["running"][:-1], "shape"),
                           (np.full_like(entries["running"], np.nan), "NaN"),
                           (-np.ones_like(entries["running"]), "negative variance")]:  # fmt: skip
        np.savez(tmp_path / "bad.npz", **{**entries, "running": running})
        with pytest.raises(ValueError, match=match):
            load(tmp_path / "bad.npz")
    del entries["running"]
    np.savez(tmp_path / "bad.npz", **entries)
    with pytest.raises(ValueError, match="version 3 but has no running statistics"):
        load(tmp_path / "bad.npz")
    plain = tmp_path / "plain.npz"
    Network([3, 4, 2]).save(plain)
    with np.load(plain) as archive:
        entries = {**dict(archive), "running": np.ones(8)}
    np.savez(tmp_path / "bad.npz", **entries)
    with pytest.raises(ValueError, match="version 1 but has running statistics"):
        load(tmp_path / "bad.npz")


def test_pickle_and_copies_keep_everything():
    net, X, Y = problem()
    net.step(X, Y)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net), copy_of(net)):
        assert other.batch_norm
        np.testing.assert_array_equal(other._theta, net._theta)
        np.testing.assert_array_equal(other._running, net._running)
        np.testing.assert_array_equal(other.forward(X), net.forward(X))
        other.running_vars[0][...] = 7  # a copy of its own
    assert not (net.running_vars[0] == 7).any()
    result = net.gradients(X, Y)
    back = pickle.loads(pickle.dumps(result))
    np.testing.assert_array_equal(back.gammas[1], result.gammas[1])


# --------------------------------------------------------------- refusals ---


def test_a_training_batch_of_one_row_is_refused():
    net, X, Y = problem()
    before = net._theta.copy(), net._running.copy()
    calls = [lambda: net.step(X[:1], Y[:1]), lambda: net.gradients(X[0], Y[0]),
             lambda: net.loss(X[:1], Y[:1]), lambda: net.forward(X[:1], training=True)]  # fmt: skip
    for call in calls:
        with pytest.raises(ValueError, match="two rows or more"):
            call()
    for batch_size, n in [(1, 12), (4, 13), (12, 13)]:
        with pytest.raises(ValueError, match=f"batch_size={batch_size} over {n} samples"):
            net.fit(X[:n] if n <= 12 else np.vstack([X, X[:1]]),
                    Y[:n] if n <= 12 else np.vstack([Y, Y[:1]]), batch_size=batch_size)  # fmt: skip
    np.testing.assert_array_equal(net._theta, before[0])
    np.testing.assert_array_equal(net._running, before[1])
    assert net.forward(X[:1]).shape == (1, 2)  # running statistics: any number of rows


def test_bad_running_statistics_written_by_hand_are_named():
    net, X, Y = problem()
    net.running_vars[1][0] = -1
    with pytest.raises(ValueError, match="running statistics contain NaN, infinity or a negative"):
        net.forward(X)
    net.running_vars[1][0] = np.nan
    with pytest.raises(ValueError, match="running statistics"):
        net.save("never-written.npz")
    net.forward(X, training=True)  # the batch's statistics: unaffected


def test_trace_is_refused():
    net, X, Y = problem()
    with pytest.raises(ValueError, match="without batch normalization"):
        net.trace(X, Y)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_divergence_keeps_the_running_statistics_of_before_the_batch(momentum):
    net, X, Y = problem(output="identity")
    twin = copy_of(net)
    with pytest.raises(backprop.DivergenceError) as caught:
        net.fit(X, Y, epochs=3, batch_size=4, lr=1e200, momentum=momentum)
    assert caught.value.epoch == 0 and caught.value.batch >= 1
    # the batches before the bad one, one step each, leave the same state
    for start in range(0, 4 * caught.value.batch, 4):
        twin.step(X[start : start + 4], Y[start : start + 4], lr=1e200)
    if not momentum:
        np.testing.assert_array_equal(net._theta, twin._theta)
    np.testing.assert_array_equal(net._running, twin._running)
    assert np.isfinite(net._running).all()
    before = net._theta.copy(), net._running.copy()
    with pytest.raises(backprop.DivergenceError):
        net.step(X, Y, lr=1e308)
    np.testing.assert_array_equal(net._theta, before[0])
    np.testing.assert_array_equal(net._running, before[1])


# -------------------------------------------------------------------- ONNX ---


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", [("relu", "silu"), ("identity", "tanh")])
def test_onnx_export_computes_forward(dtype, activation):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import backprop.onnx

    net, X, Y = problem(activation=activation, dtype=dtype)
    model = backprop.onnx.to_onnx(net)
    session = ort.InferenceSession(model.SerializeToString())
    out = session.run(None, {"X": X.astype(dtype)})[0]
    np.testing.assert_allclose(out, net.forward(X), **TOL[dtype])
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 2


def test_reference_without_batch_norm_keeps_three_results():
    ref = reference.Network([2, 3, 1], seed=0)
    assert len(ref.gradients([[0.0, 1.0]], [[1.0]])) == 3
