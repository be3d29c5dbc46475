"""Numerical range: pre-activations up to +-1e4 give finite, warning-free results.

Weights are built so that the hidden and the output pre-activations reach +-1e4 (where
e^z overflows float64 and float32 alike and sigmoid, softmax and the log-losses saturate).
forward, loss, gradients, trace and a step must stay finite without any floating-point
warning (numpy's are raised as errors here), and agree with the pure-Python reference;
fit too, with the GradientWarning a saturated hidden layer calls for.
"""

import contextlib
import math

import numpy as np
import pytest
from conftest import HEADS, reference_twin
from scipy import special

from backprop import GradientWarning, Network

Z_MAX = 1e4
X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [0.5, -0.5]])
# Hidden pre-activations X @ W1.T: +-1e4, +-5e3, 0 and mixtures.
W1 = np.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 0.5], [1.0, 0.0]]) * Z_MAX
ACTIVATIONS = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-np.clip(z, -700, 700))),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "identity": lambda z: z,
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "gelu": lambda z: z * 0.5 * special.erfc(-z / np.sqrt(2)),
    "softplus": lambda z: np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20)))),
    "silu": lambda z: z * ACTIVATIONS["sigmoid"](z),
}
TOL = {"float64": 1e-10, "float32": 2e-5}


def saturated(activation, output, loss, dtype):
    """A [2, 4, 3] network whose pre-activations span [-1e4, 1e4] on X, hidden and output."""
    hidden = ACTIVATIONS[activation](X @ W1.T)
    W2 = np.array([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 1.0], [0.0, 0.5, -1.0, -1.0]])
    z = hidden @ W2.T
    W2 *= Z_MAX / np.abs(z).max()  # the largest output pre-activation is exactly 1e4
    weights, biases = [W1, W2], [np.zeros(4), np.zeros(3)]
    fast = Network.from_params(weights, biases, activation, output, loss, dtype)
    return fast, reference_twin(fast)


def targets(kind):
    if kind == "labels":
        return np.array([0, 1, 2, 2, 0])  # some on classes whose probability is 0
    if kind == "probabilities":
        return np.tile([0.2, 0.3, 0.5], (5, 1))
    return np.array([[0.0, 1.0, 0.5]] * 5)  # 0 and 1 against saturated outputs


def close(fast, ref, dtype):
    """Equal to the rounding that pre-activations of 1e4 allow.

    z sums terms of up to 1e4 that may cancel, so it is known to ~eps * 1e4 absolutely,
    and what is computed from it to that much relative to its own scale.
    """
    ref = np.asarray(ref, dtype=np.float64)
    fast = np.asarray(fast, dtype=np.float64)
    assert np.isfinite(fast).all()
    scale = max(1.0, float(np.abs(ref).max(initial=0)))
    atol = 10 * np.finfo(dtype).eps * Z_MAX * scale
    np.testing.assert_allclose(fast, ref, rtol=TOL[dtype], atol=atol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output,loss,kind", HEADS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_saturated_network_is_finite_and_matches_the_reference(
    activation, output, loss, kind, dtype
):
    fast, ref = saturated(activation, output, loss, dtype)
    Y = targets(kind)
    with np.errstate(all="raise"):
        zs = [X @ W1.T]
        assert np.abs(zs[0]).max() == Z_MAX
        trace = fast.trace(X, Y)
        assert np.isclose(np.abs(trace.zs[-1]).max(), Z_MAX, rtol=1e-6)
        close(fast.forward(X), ref.forward(X), dtype)
        close(fast.loss(X, Y), ref.loss(X, Y), dtype)
        value, gw, gb = fast.gradients(X, Y)
        ref_value, ref_gw, ref_gb = ref.gradients(X, Y)
        close(value, ref_value, dtype)
        for g, r in zip(gw + gb, ref_gw + ref_gb):
            close(g, r, dtype)
        close(trace.loss, ref_value, dtype)
        for g, r in zip(trace.grad_weights + trace.grad_biases, ref_gw + ref_gb):
            close(g, r, dtype)
        assert not np.isnan(trace.dloss_doutput).any()
        # gradients reach 1e4 * 1e4 with identity units: a small step
        before = ref.step(X, Y, lr=1e-9)
        close(fast.step(X, Y, lr=1e-9), before, dtype)
        close(fast.forward(X), ref.forward(X), dtype)
        with expect_gradient_warning(ref, X[:2], Y[:2]):  # fit's first batch
            assert np.isfinite(fast.fit(X, Y, epochs=2, batch_size=2, lr=1e-9)).all()


def expect_gradient_warning(ref, X, Y):
    """pytest.warns(GradientWarning) where the reference's gradient on (X, Y) of the
    hidden layer is below 1e-4 (but not 0) or above 1e4 times the output layer's (a
    saturated layer's often is), else a block that lets no warning through."""
    with np.errstate(all="ignore"):
        _, nabla_w, nabla_b = ref.gradients(X, Y)
        hidden, out = (math.hypot(np.linalg.norm(w), np.linalg.norm(b))
                       for w, b in zip(nabla_w, nabla_b))  # fmt: skip
    if out > 0 and (0 < hidden < 1e-4 * out or hidden > 1e4 * out):
        return pytest.warns(GradientWarning)
    return contextlib.nullcontext()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_of_extreme_rows(dtype):
    net = Network.from_params([np.eye(3)], [np.zeros(3)], output="softmax",
                              loss="cross_entropy", dtype=dtype)  # fmt: skip
    Z = np.array([[Z_MAX, -Z_MAX, 0.0], [-Z_MAX, -Z_MAX, -Z_MAX], [Z_MAX, Z_MAX, -Z_MAX]])
    with np.errstate(all="raise"):
        p = net.forward(Z)
        expected = np.array([[1, 0, 0], [1, 1, 1], [1, 1, 0]]) / [[1], [3], [2]]
        np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-30)
        # -log p of a class with p = 0 is 2e4 from the log-sum-exp, not inf
        assert net.loss(Z[:1], [1]) == pytest.approx(2 * Z_MAX, rel=1e-6)
