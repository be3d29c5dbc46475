"""The reference network against the tutorial worked by hand and finite differences."""

import math

import numpy as np
import pytest
from conftest import finite_difference_gradients
from tutorial import (
    B1,
    B2,
    B3,
    BIASES,
    LR,
    TUTORIAL_DECIMALS,
    W11,
    W12,
    W21,
    W22,
    W31,
    W32,
    WEIGHTS,
    X1,
    X2,
    Y,
    by_hand,
)

from backprop import reference
from backprop.reference import Network


def tutorial_network():
    return Network.from_params(
        weights=WEIGHTS,
        biases=BIASES,
        activation="sigmoid",
        output="sigmoid",
        loss="mse",
    )


def approx(expected):
    return pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_tutorial_by_hand_matches_the_printed_decimals():
    v = by_hand()
    for name, decimal in TUTORIAL_DECIMALS.items():
        assert v[name] == pytest.approx(decimal, rel=1e-10, abs=1e-14), name


def test_tutorial_forward_and_loss():
    v = by_hand()
    net = tutorial_network()
    assert net.forward([X1, X2]) == [[approx(v["y_hat"])]]
    assert net.forward([[X1, X2]]) == [[approx(v["y_hat"])]]
    assert net.loss([[X1, X2]], [[Y]]) == approx(v["loss"])
    assert net.loss([X1, X2], [Y]) == approx(v["loss"])


def test_tutorial_gradients():
    v = by_hand()
    loss, nabla_w, nabla_b = tutorial_network().gradients([[X1, X2]], [[Y]])
    assert loss == approx(v["loss"])
    assert nabla_w[0] == [
        [approx(v["dL_dw11"]), approx(v["dL_dw12"])],
        [approx(v["dL_dw21"]), approx(v["dL_dw22"])],
    ]
    assert nabla_w[1] == [[approx(v["dL_dw31"]), approx(v["dL_dw32"])]]
    assert nabla_b == [[approx(v["dL_db1"]), approx(v["dL_db2"])], [approx(v["dL_db3"])]]


def test_tutorial_step():
    v = by_hand()
    net = tutorial_network()
    assert net.step([[X1, X2]], [[Y]], lr=LR) == approx(v["loss"])
    assert net.weights == [
        [[approx(v["w11"]), approx(v["w12"])], [approx(v["w21"]), approx(v["w22"])]],
        [[approx(v["w31"]), approx(v["w32"])]],
    ]
    assert net.biases == [[approx(v["b1"]), approx(v["b2"])], [approx(v["b3"])]]
    assert net.weights[1][0][0] == pytest.approx(TUTORIAL_DECIMALS["w31"], rel=1e-10)


def test_tutorial_attributes():
    net = tutorial_network()
    assert net.sizes == [2, 2, 1]
    assert (net.activation, net.output, net.loss_name, net.dtype) == (
        "sigmoid",
        "sigmoid",
        "mse",
        "float64",
    )
    assert net.weights == [[[W11, W12], [W21, W22]], [[W31, W32]]]
    assert net.biases == [[B1, B2], [B3]]


# Gradients against central finite differences.

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
TARGETS = [
    ("sigmoid", "mse", "rows"),
    ("identity", "mse", "rows"),
    ("softmax", "mse", "probabilities"),
    ("softmax", "cross_entropy", "labels"),
    ("softmax", "cross_entropy", "probabilities"),
    ("sigmoid", "binary_cross_entropy", "rows"),
]
SHAPES = [[2, 2, 1], [2, 3, 2], [4, 3], [3, 5, 4, 2], [2, 1, 3]]
CASES = [
    (activation, output, loss, kind, sizes)
    for activation in HIDDEN
    for output, loss, kind in TARGETS
    for sizes in SHAPES
    if not (output == "softmax" and sizes[-1] == 1)
]


def random_problem(sizes, output, kind, seed, n=4):
    rng = np.random.default_rng(seed)
    weights = [
        rng.normal(0.0, 0.8, size=(n_out, n_in))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [rng.normal(0.0, 0.5, size=n_out) for n_out in sizes[1:]]
    X = rng.normal(size=(n, sizes[0]))
    k = sizes[-1]
    if kind == "labels":
        Y = rng.integers(0, k, size=n)
    elif kind == "probabilities":
        Y = rng.dirichlet(np.ones(k), size=n)
    elif output == "identity":
        Y = rng.normal(size=(n, k))
    else:
        Y = rng.uniform(0.0, 1.0, size=(n, k))
    return weights, biases, X, Y


@pytest.mark.parametrize(("activation", "output", "loss", "kind", "sizes"), CASES)
def test_gradients_match_finite_differences(activation, output, loss, kind, sizes):
    seed = len(CASES) + CASES.index((activation, output, loss, kind, sizes))
    weights, biases, X, Y = random_problem(sizes, output, kind, seed)
    net = Network.from_params(weights, biases, activation=activation, output=output, loss=loss)
    value, nabla_w, nabla_b = net.gradients(X, Y)
    assert value == net.loss(X, Y)
    analytic = [g for w in nabla_w for g_j in w for g in g_j] + [g for b in nabla_b for g in b]
    numeric = finite_difference_gradients(lambda: net.loss(X, Y), net.weights + net.biases)
    np.testing.assert_allclose(
        analytic, np.concatenate([g.ravel() for g in numeric]), rtol=1e-6, atol=1e-8
    )
    assert [np.shape(w) for w in nabla_w] == [np.shape(w) for w in weights]
    assert [np.shape(b) for b in nabla_b] == [np.shape(b) for b in biases]


@pytest.mark.parametrize("name", sorted(reference.HIDDEN_ACTIVATIONS))
def test_each_derivative_is_its_activations(name):
    """act'(z), from a = act(z) or from z (``PRIME_OF_Z``), against central differences of
    act, away from the kinks at 0 and the switch of softplus at 20."""
    act, act_prime = reference.HIDDEN_ACTIVATIONS[name]
    h = 1e-6
    for z in [-30.0, -7.5, -2.0, -0.3, 0.2, 1.5, 6.0, 19.0, 25.0]:
        prime = act_prime(z if name in reference.PRIME_OF_Z else act(z))
        numeric = (act(z + h) - act(z - h)) / (2 * h)
        assert prime == pytest.approx(numeric, rel=1e-7, abs=1e-9), z


def test_gradients_match_finite_differences_with_an_activation_per_layer():
    names = sorted(reference.HIDDEN_ACTIVATIONS)
    sizes = [2] + [3] * len(names) + [2]
    weights, biases, X, Y = random_problem(sizes, "identity", "rows", seed=5, n=3)
    net = Network.from_params(weights, biases, activation=names, output="identity")
    assert net.activation == names and net.hidden == names
    _, nabla_w, nabla_b = net.gradients(X, Y)
    analytic = [g for w in nabla_w for g_j in w for g in g_j] + [g for b in nabla_b for g in b]
    numeric = finite_difference_gradients(lambda: net.loss(X, Y), net.weights + net.biases)
    np.testing.assert_allclose(
        analytic, np.concatenate([g.ravel() for g in numeric]), rtol=1e-6, atol=1e-9
    )


def test_cross_entropy_labels_equal_one_hot_rows():
    weights, biases, X, labels = random_problem([3, 4, 3], "softmax", "labels", seed=1, n=5)
    net = Network.from_params(weights, biases, output="softmax", loss="cross_entropy")
    one_hot = np.eye(3)[labels]
    assert net.gradients(X, labels) == net.gradients(X, one_hot)
    assert net.loss(X[0], labels[0]) == net.loss(X[:1], one_hot[:1])


def test_one_dimensional_inputs_and_targets():
    weights, biases, X, Y = random_problem([3, 4, 2], "sigmoid", "rows", seed=2, n=3)
    net = Network.from_params(weights, biases)
    assert net.forward(X[1]) == net.forward(X[1:2])
    assert len(net.forward(X[1])) == 1
    assert net.gradients(X[1], Y[1]) == net.gradients(X[1:2], Y[1:2])
    column = Network.from_params(weights[:1] + [weights[1][:1]], biases[:1] + [biases[1][:1]])
    assert column.loss(X, Y[:, 0]) == column.loss(X, Y[:, :1])


def test_stable_for_large_pre_activations():
    big = Network.from_params([[[800.0], [-800.0]]], [[0.0, 0.0]], output="softmax", loss="mse")
    assert big.forward([[1.0]]) == [[1.0, 0.0]]
    ce = Network.from_params(
        [[[800.0], [-800.0]]], [[0.0, 0.0]], output="softmax", loss="cross_entropy"
    )
    assert ce.loss([[1.0]], [1]) == 1600.0
    bce = Network.from_params([[[800.0]]], [[0.0]], loss="binary_cross_entropy")
    assert bce.forward([[-1.0]]) == [[0.0]]
    assert bce.loss([[-1.0]], [[1.0]]) == 800.0


# fit


def fit_problem(seed=3, n=7):
    weights, biases, X, Y = random_problem([3, 4, 2], "sigmoid", "rows", seed=seed, n=n)
    return (lambda: Network.from_params(weights, biases, activation="tanh")), X, Y


def test_fit_one_full_batch_epoch_is_one_step():
    make, X, Y = fit_problem()
    fitted, stepped = make(), make()
    losses = fitted.fit(X, Y, epochs=1, batch_size=len(X), lr=0.3)
    loss = stepped.step(X, Y, lr=0.3)
    assert losses == [pytest.approx(loss, rel=1e-15)]
    assert fitted.weights == stepped.weights
    assert fitted.biases == stepped.biases


@pytest.mark.parametrize(("shuffle", "seed"), [(False, None), (True, 5), (True, 11)])
def test_fit_matches_a_loop_of_steps(shuffle, seed):
    make, X, Y = fit_problem()
    n, batch_size, epochs, lr = len(X), 3, 3, 0.5
    fitted, looped = make(), make()
    losses = fitted.fit(
        X, Y, epochs=epochs, batch_size=batch_size, lr=lr, shuffle=shuffle, seed=seed
    )

    rng = np.random.default_rng(seed)
    expected = []
    for _ in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        total = 0.0
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            total += looped.step(X[batch], Y[batch], lr=lr) * len(batch)
        expected.append(total / n)

    assert losses == expected
    assert fitted.weights == looped.weights
    assert fitted.biases == looped.biases
    assert losses[-1] < losses[0]


def test_fit_shuffles_with_the_seed():
    make, X, Y = fit_problem()
    a = make().fit(X, Y, epochs=2, batch_size=2, shuffle=True, seed=4)
    b = make().fit(X, Y, epochs=2, batch_size=2, shuffle=True, seed=4)
    unshuffled = make().fit(X, Y, epochs=2, batch_size=2)
    assert a == b
    assert a != unshuffled


def test_fit_clips_batch_size_to_n():
    make, X, Y = fit_problem()
    clipped, full = make(), make()
    assert clipped.fit(X, Y, epochs=2, batch_size=100) == full.fit(
        X, Y, epochs=2, batch_size=len(X)
    )
    assert clipped.weights == full.weights


# initialisation


@pytest.mark.parametrize("sizes", [[2, 2, 1], [3, 5, 4, 2]])
def test_initialisation_is_the_glorot_uniform_draw(sizes):
    net = Network(sizes, seed=42)
    rng = np.random.default_rng(42)
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        limit = math.sqrt(6 / (n_in + n_out))
        W = rng.uniform(-limit, limit, size=(n_out, n_in))
        assert net.weights[layer] == W.tolist()
        assert net.biases[layer] == [0.0] * n_out
        assert all(abs(w) <= limit for row in W for w in row)
    assert net.sizes == sizes


def test_initialisation_is_reproducible_from_the_seed():
    assert Network([3, 4, 2], seed=7).weights == Network([3, 4, 2], seed=7).weights
    assert Network([3, 4, 2], seed=7).weights != Network([3, 4, 2], seed=8).weights


def test_float32_initialisation_is_the_cast_draw():
    net = Network([3, 2], dtype="float32", seed=0)
    limit = math.sqrt(6 / 5)
    W = np.random.default_rng(0).uniform(-limit, limit, size=(2, 3))
    assert net.dtype == "float32"
    assert net.weights == [W.astype(np.float32).tolist()]


# names


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"activation": "swish"}, "activation"),
        ({"activation": ["relu"]}, "activation"),
        ({"output": "tanh"}, "output"),
        ({"loss": "hinge"}, "loss"),
        ({"output": "sigmoid", "loss": "cross_entropy"}, "output"),
        ({"output": "identity", "loss": "binary_cross_entropy"}, "output"),
    ],
)
def test_unknown_names_and_pairings_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        Network([2, 2], **kwargs)
    with pytest.raises(ValueError, match=argument):
        Network.from_params([[[1.0, 2.0]]], [[0.0]], **kwargs)
