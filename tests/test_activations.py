"""The hidden activations, one name for every hidden layer or one per layer: the compiled
network against the reference (both dtypes, every product path and weight layout, the
two-core halves, dropout, momentum, ``trace``), against central finite differences, and
against PyTorch's ``torch.nn.functional`` as an oracle (skipped without torch).

``MIXED`` gives each of nine hidden layers another activation, so one small network holds
them all. Pre-activations of a few units in size keep every activation's curved part in
play; the PyTorch tests also reach z = +-40, past softplus's threshold (20) and into the
tails of elu, gelu and silu.
"""

import numpy as np
import pytest
from conftest import finite_difference_gradients, reference_twin

from backprop import Network, _core, _layout, _names, optim

ACTIVATIONS = list(_names.HIDDEN)
MIXED = ["gelu", "relu", "silu", "elu", "tanh", "softplus", "leaky_relu", "sigmoid", "identity"]
MIXED_SIZES = [3] + [4] * len(MIXED) + [3]
TOL = {"float64": dict(rtol=1e-12, atol=1e-13), "float32": dict(rtol=1e-5, atol=1e-6)}
FIT_TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


def network(activation, dtype="float64", seed=0):
    """A network with one hidden activation for its two hidden layers, or ``MIXED``."""
    sizes = MIXED_SIZES if isinstance(activation, list) else [3, 5, 4, 3]
    return Network(sizes, activation=activation, output="softmax", loss="cross_entropy",
                   dtype=dtype, seed=seed, init="he")  # fmt: skip


def problem(dtype, n=9, seed=0):
    """Inputs representable in float32 (both dtypes see the same numbers), and labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=2.0, size=(n, 3)).astype(np.float32).astype(dtype)
    return X, rng.integers(0, 3, size=n)


def assert_close(got, want, tol):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, np.array(w), **tol)


def matches_reference(activation, dtype):
    """forward, loss, gradients and two epochs of fit agree with the reference."""
    X, y = problem(dtype)
    fast = network(activation, dtype)
    ref = reference_twin(fast)
    tol = TOL[dtype]
    np.testing.assert_allclose(fast.forward(X), np.array(ref.forward(X)), **tol)
    value, gw, gb = fast.gradients(X, y)
    ref_value, ref_gw, ref_gb = ref.gradients(X, y)
    np.testing.assert_allclose(value, ref_value, **tol)
    assert_close(gw + gb, ref_gw + ref_gb, tol)
    # halves of 4 rows (kernel_path "halves"), gathered shuffled batches, momentum
    args = dict(epochs=2, batch_size=8, lr=0.2, shuffle=True, seed=5, momentum=0.5)
    np.testing.assert_allclose(fast.fit(X, y, **args), ref.fit(X, y, **args), **FIT_TOL[dtype])
    assert_close(fast.weights + fast.biases, ref.weights + ref.biases, FIT_TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_matches_reference(activation, dtype):
    matches_reference(activation, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_activation_per_layer_matches_reference_on_every_path(dtype, kernel_path):
    """The products differ between the paths, not the activations: ``MIXED`` holds them
    all, through the loops, tiles, BLAS and two-core halves, in both weight layouts."""
    matches_reference(MIXED, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", [MIXED, "gelu", "elu"], ids=["mixed", "gelu", "elu"])
def test_dropout_and_a_fused_step_match_reference(activation, dtype):
    """Dropout multiplies the derivative the forward pass kept by the mask; plain SGD's
    step is fused into the backward pass."""
    X, y = problem(dtype)
    fast = network(activation, dtype, seed=1)
    ref = reference_twin(fast)
    args = dict(epochs=2, batch_size=4, lr=0.2, shuffle=True, seed=5, dropout=0.3)
    np.testing.assert_allclose(fast.fit(X, y, **args), ref.fit(X, y, **args), **FIT_TOL[dtype])
    np.testing.assert_allclose(fast.step(X, y, lr=0.1), ref.step(X, y, lr=0.1), **FIT_TOL[dtype])
    assert_close(fast.weights + fast.biases, ref.weights + ref.biases, FIT_TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trace_takes_each_layers_derivative_as_training_does(dtype):
    X, y = problem(dtype)
    net = network(MIXED, dtype)
    t = net.trace(X, y)
    _, gw, gb = net.gradients(X, y)
    assert_close(t.grad_weights + t.grad_biases, gw + gb, TOL[dtype])
    ref_zs, ref_activations = reference_twin(net).feedforward(X.astype(np.float64).tolist())
    assert_close(t.zs, ref_zs, TOL[dtype])
    assert_close(t.activations[1:], ref_activations[1:], TOL[dtype])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(activation):
    X, y = problem("float64", n=4, seed=1)
    net = Network([3, 4, 3, 2], activation=activation, output="identity", loss="mse", seed=2)
    Y = np.random.default_rng(3).normal(size=(4, 2))
    _, gw, gb = net.gradients(X, Y)
    numeric = finite_difference_gradients(lambda: net.loss(X, Y), net.weights + net.biases)
    for g, n in zip(gw + gb, numeric):
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-9)


def test_each_hidden_layer_has_its_own_activation_in_order():
    """Worked by hand: x = -1 through weights 1, -1, 1. elu then relu gives
    relu(-elu(-1)) = 1 - 1/e; relu then elu gives elu(-relu(-1)) = 0."""
    weights, biases = [[[1.0]], [[-1.0]], [[1.0]]], [[0.0]] * 3
    for names, expected in [(["elu", "relu"], 1 - np.exp(-1)), (["relu", "elu"], 0.0)]:
        net = Network.from_params(weights, biases, activation=names, output="identity")
        assert net.activation == names
        assert net.forward([-1.0])[0, 0] == pytest.approx(expected, rel=1e-15, abs=0)


def test_the_two_core_units_path_is_not_taken_for_a_kept_derivative():
    """The estimators' units path takes act' from A alone: a plan for an activation whose
    derivative the forward pass keeps runs its batches another way."""
    paths = {}
    for code in (_core.Activation.RELU, _core.Activation.GELU):
        arch = _layout.Architecture(
            sizes=(256, 128, 10), hidden=int(code), output=0, loss=3,
            dtype=np.dtype("float64"), transposed=True, grouped=True,
        )  # fmt: skip
        paths[code] = arch.plan(
            200, optimizer=optim.Adam(0.01, convention="scikit-learn"), gather=True
        ).path
    assert paths == {_core.Activation.RELU: _core.Path.UNITS,
                     _core.Activation.GELU: _core.Path.HALVES}  # fmt: skip


# --------------------------------------------------------------- PyTorch ---

# float32: PyTorch computes gelu as z (1 + erf(z / sqrt 2)) / 2 in float, whose 1 + erf
# cancels for z < 0 (rounding ~6e-8, times |z|); the kernels round a float64 result
TORCH_TOL = {"float64": dict(rtol=1e-10, atol=1e-13), "float32": dict(rtol=2e-6, atol=1e-6)}


@pytest.fixture(scope="module")
def functional():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return torch, {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu,
        "identity": lambda z: z, "leaky_relu": F.leaky_relu, "elu": F.elu,
        "gelu": F.gelu, "softplus": F.softplus, "silu": F.silu,
    }  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_and_its_derivative_equal_pytorchs(functional, activation, dtype):
    """act(z) and act'(z) as the kernels compute them (the derivative from A or from Z,
    as the backward pass takes it) against torch's function and autograd, on z from -40
    to 40 and the points where the definitions switch."""
    torch, fns = functional
    grid = np.concatenate([np.linspace(-40, 40, 801), [0.0, 1e-8, -1e-8, 20.0, 20 + 1e-5,
                                                       20 - 1e-5, -20.0, 3e-3, -3e-3]])  # fmt: skip
    Z = grid.astype(dtype).reshape(-1, 1)
    code = _names.HIDDEN[activation]
    A, prime = np.empty_like(Z), np.empty_like(Z)
    _core.activate(Z, A, code)
    _core.activation_prime(Z, A, prime, code)
    z = torch.tensor(Z, requires_grad=True)
    a = fns[activation](z)
    (grad,) = torch.autograd.grad(a.sum(), z)
    np.testing.assert_allclose(A, a.detach().numpy(), **TORCH_TOL[dtype])
    np.testing.assert_allclose(prime, grad.numpy(), **TORCH_TOL[dtype])


@pytest.mark.parametrize("activation", ACTIVATIONS + [MIXED], ids=ACTIVATIONS + ["mixed"])
def test_forward_and_gradients_equal_pytorchs(functional, activation):
    """A whole float64 network: outputs and the gradients of the mean squared error."""
    torch, fns = functional
    rng = np.random.default_rng(4)
    net = Network(MIXED_SIZES if isinstance(activation, list) else [3, 6, 5, 2],
                  activation=activation, output="identity", loss="mse", seed=4)  # fmt: skip
    for b in net.biases:
        b[...] = rng.normal(scale=3.0, size=b.shape)
    X, Y = rng.normal(scale=8.0, size=(7, 3)), rng.normal(size=(7, net.sizes[-1]))
    names = activation if isinstance(activation, list) else [activation] * (net.n_layers - 1)
    weights = [torch.tensor(W, requires_grad=True) for W in net.weights]
    biases = [torch.tensor(b, requires_grad=True) for b in net.biases]
    h = torch.tensor(X)
    for l, (W, b) in enumerate(zip(weights, biases)):
        h = h @ W.T + b
        if l < len(names):
            h = fns[names[l]](h)
    loss = torch.mean((h - torch.tensor(Y)) ** 2)
    loss.backward()
    value, gw, gb = net.gradients(X, Y)
    np.testing.assert_allclose(net.forward(X), h.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(value, loss.item(), rtol=1e-10)
    for got, param in zip(gw + gb, weights + biases, strict=True):
        np.testing.assert_allclose(got, param.grad.numpy(), rtol=1e-10, atol=1e-12)
