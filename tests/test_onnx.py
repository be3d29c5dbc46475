"""ONNX export, run in onnxruntime and compared with backprop's own outputs.

Every hidden and output activation of ``Network`` and of the estimators, in float32 and
float64 (gelu in float32 only: a float64 gelu is refused), and lists of activations.
Tolerances: float32 rtol=1e-5, atol=1e-6 (onnxruntime's float Sigmoid and Tanh are
approximations good to a few ulp); float64 rtol=atol=1e-12. Labels must be equal.
"""

import importlib
import itertools
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402

import backprop.onnx  # noqa: E402
from backprop import Network, _names  # noqa: E402

DTYPES = ["float32", "float64"]
TOLERANCE = {
    "float32": dict(rtol=1e-5, atol=1e-6),
    "float64": dict(rtol=1e-12, atol=1e-12),
}


def run(model, X):
    """The outputs of ``model`` for the input X, by onnxruntime."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


def data(dtype, n=30, features=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, features)).astype(dtype)


def test_every_activation_has_an_operator():
    names = set(_names.HIDDEN) | set(_names.OUTPUT) | set(_names.SK_ACTIVATIONS)
    assert names <= set(backprop.onnx._OPERATORS) | set(backprop.onnx._COMPOSED)


# ----------------------------------------------------------------- Network ---


@pytest.mark.parametrize(
    "activation,output,dtype",
    [
        case
        for case in itertools.product(_names.HIDDEN, _names.OUTPUT, DTYPES)
        if case[0] not in backprop.onnx._FLOAT_ONLY or case[2] == "float32"
    ]
    + [(["gelu", "softplus"], "identity", "float32"), (["elu", "leaky_relu"], "softmax",
                                                       "float64")],
)  # fmt: skip
def test_network_matches_forward(activation, output, dtype, layout):
    import onnx

    net = Network([4, 6, 5, 3], activation=activation, output=output, dtype=dtype, seed=1)
    for b in net.biases:  # pre-activations on either side of softplus's threshold, 20
        b += np.linspace(-25, 25, b.size, dtype=dtype)
    model = backprop.onnx.to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import] == [backprop.onnx.OPSET]
    X = data(dtype)
    for rows in (X, X[:1]):
        (y_hat,) = run(model, rows)
        assert y_hat.dtype == net.dtype
        assert_allclose(y_hat, net.forward(rows), **TOLERANCE[dtype])


def test_network_model_is_a_copy():
    net = Network([4, 3, 2], activation="tanh", output="identity", seed=0)
    X = data("float64")
    model = backprop.onnx.to_onnx(net)
    before = net.forward(X)
    net.fit(X, np.zeros((len(X), 2)), epochs=2, batch_size=10, lr=0.5)
    assert not np.allclose(net.forward(X), before)
    assert_allclose(run(model, X)[0], before, **TOLERANCE["float64"])


@pytest.mark.parametrize("activation", ["gelu", ["relu", "gelu"]])
def test_a_float64_gelu_is_refused(activation):
    net = Network([4, 6, 5, 3], activation=activation)
    with pytest.raises(ValueError, match="cannot export gelu in float64: .* float32 copy"):
        backprop.onnx.to_onnx(net)
    single = Network([4, 3], activation="gelu")  # no hidden layer: nothing to refuse
    assert_allclose(run(backprop.onnx.to_onnx(single), data("float64"))[0],
                    single.forward(data("float64")), **TOLERANCE["float64"])  # fmt: skip


def test_to_onnx_takes_a_network_only():
    with pytest.raises(TypeError, match="needs a backprop.Network; got list"):
        backprop.onnx.to_onnx([4, 3])


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.delitem(sys.modules, "backprop.onnx")
    with pytest.raises(ImportError, match=r"pip install 'backprop\[onnx\]'"):
        importlib.import_module("backprop.onnx")


# -------------------------------------------------------------- estimators ---


@pytest.fixture(scope="module")
def skl2onnx():
    return pytest.importorskip("skl2onnx")


def fitted(estimator, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def targets(kind, n, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "binary": rng.integers(0, 2, n),
        "multiclass": np.array(["a", "b", "c"])[rng.integers(0, 3, n)],
        "multilabel-2": rng.integers(0, 2, (n, 2)),
        "multilabel-3": rng.integers(0, 2, (n, 3)),
    }[kind]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel-2", "multilabel-3"])
def test_classifier_matches(skl2onnx, kind, activation, dtype):
    X = data(dtype)
    est = backprop.MLPClassifier((5, 3), activation, max_iter=20, random_state=0, dtype=dtype)
    fitted(est, X, targets(kind, len(X)))
    model = skl2onnx.to_onnx(est, X[:1], options={"zipmap": False})
    labels, probabilities = run(model, X)
    assert probabilities.dtype == X.dtype
    assert_allclose(probabilities, est.predict_proba(X), **TOLERANCE[dtype])
    assert_array_equal(labels, est.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize(
    "loss,n_outputs", [("squared_error", 1), ("squared_error", 3), ("poisson", 1)]
)
def test_regressor_matches(skl2onnx, loss, n_outputs, activation, dtype):
    X = data(dtype)
    y = np.random.default_rng(1).poisson(2.0, (len(X), n_outputs)).astype(dtype)
    est = backprop.MLPRegressor(loss, (5, 3), activation, max_iter=20, random_state=0, dtype=dtype)
    fitted(est, X, y.ravel() if n_outputs == 1 else y)
    (predictions,) = run(skl2onnx.to_onnx(est, X[:1]), X)
    assert predictions.dtype == X.dtype
    assert predictions.shape == (len(X), n_outputs)
    assert_allclose(predictions, est.predict(X).reshape(len(X), -1), **TOLERANCE[dtype])


def test_classifier_zipmap_and_pipeline(skl2onnx):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = data("float32"), targets("multiclass", 30)
    pipeline = make_pipeline(StandardScaler(), backprop.MLPClassifier((5,), random_state=0))
    fitted(pipeline, X, y)
    labels, probabilities = run(skl2onnx.to_onnx(pipeline, X[:1]), X)
    assert_array_equal(labels, pipeline.predict(X))
    expected = pipeline.predict_proba(X)
    as_rows = [[row[c] for c in pipeline.classes_] for row in probabilities]
    assert_allclose(as_rows, expected, **TOLERANCE["float32"])
