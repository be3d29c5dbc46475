"""Bad arguments raise ValueError or TypeError naming the argument, before any kernel runs
(``fit`` finds a non-finite X in its training loop, and then leaves the network as it was)."""

import contextlib

import numpy as np
import pytest
from conftest import force_path
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backprop import Network


def ce_net(**kw):
    return Network([3, 4, 3], activation="relu", output="softmax", loss="cross_entropy", **kw)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(activation="swish"), ValueError, "activation='swish' is not supported"),
        (dict(activation=3), TypeError, "activation"),
        (
            dict(activation=["relu", "gelu"]),
            ValueError,
            r"activation lists 2 names, but the network has 1 hidden layer",
        ),
        (dict(activation=[]), ValueError, "activation lists 0 names"),
        (dict(activation=["swish"]), ValueError, r"activation\[0\]='swish' is not supported"),
        (dict(activation=[None]), TypeError, r"activation\[0\] must be a string"),
        (dict(activation={"relu"}), TypeError, "activation must be a name or a list of 1"),
        (dict(output="tanh"), ValueError, "output"),
        (dict(loss="hinge"), ValueError, "loss"),
        (dict(loss="cross_entropy", output="sigmoid"), ValueError, "loss"),
        (dict(loss="binary_cross_entropy", output="identity"), ValueError, "loss"),
        (dict(dtype="float16"), ValueError, "dtype"),
        (dict(dtype="int32"), ValueError, "dtype"),
        (dict(dtype=object()), TypeError, "dtype"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Network([2, 2, 1], **kwargs)


@pytest.mark.parametrize(
    "sizes,activation,match",
    [
        ([2, 3, 3, 1], ["relu"], "activation lists 1 names, but the network has 2 hidden layers"),
        ([2, 3, 3, 1], "relu gelu", "activation='relu gelu' is not supported"),
        ([2, 1], ["relu"], "activation lists 1 names, but the network has 0 hidden layers"),
        ([2, 3, 3, 1], ["relu", "softmax"], r"activation\[1\]='softmax' is not supported"),
    ],
)
def test_a_list_of_activations_has_one_valid_name_per_hidden_layer(sizes, activation, match):
    with pytest.raises(ValueError, match=match):
        Network(sizes, activation=activation)
    weights = [np.ones((b, a)) for a, b in zip(sizes[:-1], sizes[1:])]
    with pytest.raises(ValueError, match=match):
        Network.from_params(weights, [np.zeros(b) for b in sizes[1:]], activation=activation)


@pytest.mark.parametrize(
    "sizes,error",
    [([2, 0, 1], ValueError), ([2, -1], ValueError), ([3], ValueError), ([], ValueError),
     ([2, 2.5, 1], TypeError), ([2, True], TypeError), (5, TypeError), ("221", TypeError)],
)  # fmt: skip
def test_bad_sizes(sizes, error):
    with pytest.raises(error, match="sizes"):
        Network(sizes)


@pytest.mark.parametrize(
    "X,match",
    [
        (np.ones((4, 2)), "X has 2 features, but the network expects 3"),
        (np.ones((0, 3)), "X has no samples"),
        (np.ones((2, 3, 1)), "X must be 1-D"),
        (np.array([[1.0, np.nan, 0.0]]), "X contains NaN"),
        (np.array([[1.0, np.inf, 0.0]]), "X contains NaN or infinity"),
        ([[1, 2], [3]], "X could not be read"),
    ],
)
def test_bad_X(X, match):
    net = ce_net(seed=0)
    for call in (lambda: net.forward(X), lambda: net.fit(X, [0]), lambda: net.loss(X, [0])):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("X", [np.array([["a", "b", "c"]]), np.ones((1, 3), dtype=complex),
                               np.array([[None, 1, 2]], dtype=object)])  # fmt: skip
def test_non_numeric_X_is_a_type_error(X):
    with pytest.raises(TypeError, match="X must hold real numbers"):
        ce_net(seed=0).forward(X)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 57, 199])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("halves", [False, True])
@pytest.mark.parametrize("batch_size", [16, 100])  # 48 numbers: checked before; 300: in the kernel
def test_fit_finds_a_bad_row_anywhere_and_keeps_the_weights(
    value, row, shuffle, momentum, halves, batch_size
):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    X[row, 1] = value
    y = rng.integers(0, 3, size=200)
    net = ce_net(seed=0)
    weights = [w.copy() for w in net.weights] + [b.copy() for b in net.biases]
    with force_path("halves") if halves else contextlib.nullcontext():
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            net.fit(
                X, y, epochs=3, batch_size=batch_size, shuffle=shuffle, seed=0, momentum=momentum
            )
    after = [w for w in net.weights] + [b for b in net.biases]
    assert all(np.array_equal(a, b) for a, b in zip(after, weights))


@pytest.mark.parametrize("on_divergence", ["raise", "warn"])
def test_a_bad_late_row_is_reported_even_when_training_diverges_first(on_divergence):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(1000, 32))
    X[-1, 0] = np.nan
    net = Network([32, 16, 4], activation="relu", output="identity", loss="mse", seed=0)
    weights = [w.copy() for w in net.weights]
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.fit(X, rng.normal(size=(1000, 4)), batch_size=16, lr=10.0,
                on_divergence=on_divergence)  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, weights))


def test_fit_with_float32_overflow_in_a_late_row_keeps_the_weights():
    net = Network([1, 1], dtype="float32", seed=0)
    weights = net.weights[0].copy()
    X = np.ones((100, 1))
    X[90] = 1e300
    with pytest.raises(ValueError, match="X has values too large for float32"):
        net.fit(X, np.ones((100, 1)), batch_size=10)
    assert np.array_equal(net.weights[0], weights)


def test_float32_overflow_in_X():
    net = Network([1, 1], dtype="float32")
    with pytest.raises(ValueError, match="X has values too large for float32"):
        net.forward([[1e300]])


@pytest.mark.parametrize(
    "Y,match",
    [
        ([0, 1, 3, 0], "label 3, but the network has 3 outputs"),
        ([0, 1, -1, 0], "label -1"),
        ([0, 1, 2], "3 labels but X has 4 samples"),
        ([0.0, 1.5, 2.0, 0.0], "whole numbers"),
        ([0.0, np.nan, 2.0, 0.0], "NaN"),
        (np.full((4, 3), 0.5), "sum to 1"),
        (np.tile([1.5, -0.5, 0.0], (4, 1)), ">= 0"),
        (np.ones((4, 2)) / 2, r"shape \(4, 3\)"),
    ],
)
def test_bad_cross_entropy_targets(Y, match):
    net = ce_net(seed=0)
    X = np.ones((4, 3))
    for call in (lambda: net.fit(X, Y), lambda: net.gradients(X, Y), lambda: net.step(X, Y)):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize(
    "Y,match",
    [
        (np.ones((4, 1)), r"shape \(4, 2\)"),
        (np.ones((5, 2)), "5 samples but X has 4"),
        (np.full((4, 2), np.inf), "Y contains NaN or infinity"),
        (np.ones(8), r"shape \(4, 2\)"),
    ],
)
def test_bad_mse_targets(Y, match):
    net = Network([3, 2], output="identity")
    with pytest.raises(ValueError, match=match):
        net.fit(np.ones((4, 3)), Y)


def test_binary_cross_entropy_targets_must_be_probabilities():
    net = Network([3, 2], output="sigmoid", loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"Y must lie in \[0, 1\]"):
        net.loss(np.ones((1, 3)), [[0.0, 2.0]])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(lr=0), ValueError, "lr must be a finite number > 0"),
        (dict(lr=-0.1), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(lr="0.1"), TypeError, "lr"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(epochs=-1), ValueError, "epochs must be >= 0"),
        (dict(shuffle="yes"), TypeError, "shuffle"),
    ],
)
def test_bad_fit_arguments(kwargs, error, match):
    net = Network([3, 2], seed=0)
    before = [w.copy() for w in net.weights]
    with pytest.raises(error, match=match):
        net.fit(np.ones((4, 3)), np.zeros((4, 2)), **kwargs)
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)


def test_step_rejects_bad_lr():
    with pytest.raises(ValueError, match="lr"):
        Network([3, 2]).step(np.ones((1, 3)), np.zeros((1, 2)), lr=-1)


@pytest.mark.parametrize(
    "weights,biases,match",
    [
        ([np.ones((2, 2)), np.ones((1, 3))], [np.ones(2), np.ones(1)], r"weights\[1\] takes 3"),
        ([np.ones((2, 2))], [np.ones(3)], r"biases\[0\] must have shape \(2,\)"),
        ([np.ones((2, 2))], [], "one entry per layer"),
        ([np.ones(2)], [np.ones(2)], r"weights\[0\] must be a non-empty 2-D"),
        ([np.full((1, 1), np.nan)], [np.ones(1)], r"weights\[0\] contains NaN"),
    ],
)
def test_bad_from_params(weights, biases, match):
    with pytest.raises(ValueError, match=match):
        Network.from_params(weights, biases)


def test_inputs_that_need_converting_are_converted_not_misread():
    net = Network([3, 4, 2], activation="tanh", output="identity", seed=0)
    X = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2] / 10  # non-contiguous
    expected = net.forward(np.ascontiguousarray(X))
    swapped = X.astype(X.dtype.newbyteorder())
    readonly = np.ascontiguousarray(X)
    readonly.flags.writeable = False
    for variant in (X, swapped, readonly, X.tolist(), (X * 10).astype(np.int64) / 10):
        np.testing.assert_allclose(net.forward(variant), expected, rtol=1e-15)
    np.testing.assert_array_equal(net.forward(np.ones((2, 3), dtype=bool)),
                                  net.forward(np.ones((2, 3))))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    activation=st.sampled_from(["sigmoid", "tanh", "relu", "identity"]),
    head=st.sampled_from(
        [
            ("sigmoid", "mse"),
            ("identity", "mse"),
            ("softmax", "cross_entropy"),
            ("sigmoid", "binary_cross_entropy"),
        ]
    ),  # fmt: skip
    n=st.integers(1, 9),
    batch_size=st.integers(1, 12),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_property_fit_and_forward_give_finite_results_of_the_right_shape(
    sizes, activation, head, n, batch_size, dtype, data
):
    output, loss = head
    net = Network(sizes, activation=activation, output=output, loss=loss, dtype=dtype, seed=0)
    X = data.draw(hnp.arrays(np.float64, (n, sizes[0]), elements=st.floats(-2, 2)))
    k = sizes[-1]
    if loss == "cross_entropy":
        Y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
    else:
        Y = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0, 1)))
    losses = net.fit(X, Y, epochs=2, batch_size=batch_size, lr=0.02)
    assert len(losses) == 2 and np.isfinite(losses).all()
    out = net.forward(X)
    assert out.shape == (n, k) and out.dtype == np.dtype(dtype) and np.isfinite(out).all()
    if output != "identity":
        assert ((out >= 0) & (out <= 1)).all()
    if output == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize(
    "sizes,match",
    [
        ([2**31, 1], r"sizes\[0\] must be <= 2147483647"),  # wider than BLAS can take
        ([1, 2**64], r"sizes\[1\] must be <= 2147483647"),
        ([2**31 - 1] * 3, "more than memory can address"),
    ],
)
def test_sizes_too_large_for_the_kernels_or_memory(sizes, match):
    with pytest.raises(ValueError, match=match):
        Network(sizes)


def test_a_byte_swapped_dtype_name_gives_a_native_network():
    net = Network([2, 2], dtype=">f4", seed=0)
    assert net.dtype == np.float32 and net.dtype.isnative and net._theta.dtype.isnative
    np.testing.assert_array_equal(net.forward([[1, 2]]), Network([2, 2], seed=0,
                                  dtype="float32").forward([[1, 2]]))  # fmt: skip


@pytest.mark.parametrize(
    "dtype,lr", [("float64", 10**400), ("float32", 1e39), ("float32", 1e-50), ("float64", 1e-400)]
)
def test_lr_must_be_finite_and_positive_in_the_network_dtype(dtype, lr):
    net = Network([3, 2], dtype=dtype, seed=0)
    for call in (
        lambda: net.fit(np.ones((4, 3)), np.zeros((4, 2)), lr=lr),
        lambda: net.step(np.ones((4, 3)), np.zeros((4, 2)), lr=lr),
    ):
        with pytest.raises(ValueError, match=f"lr must be a finite number > 0 in {dtype}"):
            call()


def test_numpy_scalars_are_arguments_like_any_other():
    net = Network([np.int64(3), np.uint8(2)], seed=np.int32(0))
    losses = net.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=np.int16(2),
                     batch_size=np.int64(3), lr=np.float32(0.1))  # fmt: skip
    assert len(losses) == 2


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(epochs=2**62), ValueError, "epochs must be <="),
        (dict(batch_size=2**70), None, None),  # clipped to the number of samples
        (dict(seed="s"), TypeError, None),  # checked even without shuffle
        (dict(seed=-1), ValueError, None),
        (dict(on_divergence="ignore"), ValueError, "on_divergence"),
    ],
)
def test_more_fit_arguments(kwargs, error, match):
    net = Network([3, 2], seed=0)
    if error is None:
        assert len(net.fit(np.ones((4, 3)), np.zeros((4, 2)), **kwargs)) == 1
        return
    with pytest.raises(error, match=match):
        net.fit(np.ones((4, 3)), np.zeros((4, 2)), **kwargs)


@pytest.mark.parametrize(
    "X", [np.array([["2020-01-01"] * 3], dtype="datetime64[D]"), np.array([[b"a", b"b", b"c"]])]
)
def test_dates_and_bytes_are_not_numbers(X):
    with pytest.raises(TypeError, match="X must hold real numbers"):
        ce_net(seed=0).forward(X)


@pytest.mark.parametrize("labels", [np.array([0, 1j]), np.array(["0", "1"])])
def test_labels_must_be_real_numbers(labels):
    with pytest.raises(TypeError, match="Y must hold real numbers"):
        ce_net(seed=0).loss(np.ones((2, 3)), labels)


def test_outputs_that_overflow_are_refused_not_returned():
    net = Network.from_params([np.ones((1, 2))], [np.zeros(1)], output="identity")
    with pytest.raises(
        ValueError, match=r"outputs are not finite: X or Y .*largest \|X\| is 1e\+308"
    ):
        net.forward([[1e308, 1e308]])
    with pytest.raises(ValueError, match="loss or its gradients are not finite"):
        net.loss([[1e200, 0]], [[0.0]])  # (1e200)^2 overflows
    with pytest.raises(ValueError, match="loss or its gradients are not finite"):
        net.gradients([[1e200, 0]], [[0.0]])
    with pytest.raises(ValueError, match="pass's values are not finite"):
        net.trace([[1e200, 0]], [[0.0]])


def test_weights_set_to_nan_by_hand_are_reported():
    net = Network([2, 2], seed=0)
    net.biases[0][1] = np.nan
    for call in (lambda: net.forward([[1.0, 2.0]]), lambda: net.fit([[1.0, 2.0]], [[0, 1]])):
        with pytest.raises(ValueError, match="weights or biases contain NaN or infinity"):
            call()


def test_class_probabilities_whose_sum_overflows_are_refused_quietly():
    with pytest.raises(ValueError, match="must sum to 1"):
        ce_net(seed=0).loss(np.ones((1, 3)), [[1e308, 1e308, 0.0]])


def test_batches_longer_than_blas_can_take_are_refused(monkeypatch):
    import backprop.network

    monkeypatch.setattr(backprop.network, "_MAX_DIM", 3)
    net = Network([3, 2], seed=0)
    X, Y = np.ones((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match="one batch takes at most 3"):
        net.loss(X, Y)
    with pytest.raises(ValueError, match="batch_size must be <= 3"):
        net.fit(X, Y, batch_size=4)
    assert len(net.fit(X, Y, batch_size=3)) == 1


@pytest.mark.parametrize(
    "weight_decay,error",
    [(-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     ("0.1", TypeError), (True, TypeError)],
)  # fmt: skip
def test_bad_weight_decay(weight_decay, error):
    net = Network([3, 2], seed=0)
    before = [w.copy() for w in net.weights]
    with pytest.raises(error, match="weight_decay"):
        net.fit(np.ones((4, 3)), np.zeros((4, 2)), weight_decay=weight_decay)
    with pytest.raises(error, match="weight_decay"):
        net.step(np.ones((4, 3)), np.zeros((4, 2)), weight_decay=weight_decay)
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "dropout,error",
    [(-0.1, ValueError), (1.0, ValueError), (float("nan"), ValueError), ("0.5", TypeError),
     (True, TypeError)],
)  # fmt: skip
def test_bad_dropout(dropout, error):
    net = Network([3, 4, 2], seed=0)
    with pytest.raises(error, match="dropout"):
        net.fit(np.ones((4, 3)), np.zeros((4, 2)), dropout=dropout)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [(dict(momentum=-0.5), ValueError, "momentum"), (dict(momentum=1.0), ValueError, "momentum"),
     (dict(momentum="0.9"), TypeError, "momentum"), (dict(nesterov=True), ValueError, "nesterov"),
     (dict(momentum=0.9, nesterov="yes"), TypeError, "nesterov")],
)  # fmt: skip
def test_bad_momentum(kwargs, error, match):
    with pytest.raises(error, match=match):
        Network([3, 2], seed=0).fit(np.ones((4, 3)), np.zeros((4, 2)), **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, [1, -2]])
def test_a_bad_seed_is_refused_by_name(seed):
    with pytest.raises((TypeError, ValueError), match="seed must be None, a non-negative"):
        Network([3, 2], seed=seed)
    net = Network([3, 2], seed=0)
    before = net.weights[0].copy()
    with pytest.raises((TypeError, ValueError), match="seed must be None, a non-negative"):
        net.fit(np.zeros((4, 3)), np.zeros((4, 2)), shuffle=True, seed=seed)
    np.testing.assert_array_equal(net.weights[0], before)


def test_a_seed_may_be_a_generator():
    a = Network([3, 2], seed=np.random.default_rng(7))
    b = Network([3, 2], seed=7)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
