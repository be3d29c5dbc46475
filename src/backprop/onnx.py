"""ONNX export: a ``Network``'s forward pass, and the estimators through skl2onnx.

A ``Network``::

    import backprop.onnx

    model = backprop.onnx.to_onnx(net)  # an onnx.ModelProto
    # input "X" (n, n_in), output "y_hat" (n, n_out), both of the network's dtype:
    # onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"X": X})[0]
    # equals net.forward(X) to rounding

needs only the ``onnx`` package. The graph holds one ``Gemm`` per layer
(Z := A @ W.T + b) followed by its activation, in opset ``OPSET``: ``Sigmoid``,
``Tanh``, ``Relu`` or ``Softmax`` (none for identity); the others are built from
operators onnxruntime runs in double as well as float (``_COMPOSED``): leaky_relu as
max(z, 0.01 z), elu as z or e^z - 1, softplus as z above 20 or log(e^z + 1), silu as
z sigmoid(z), gelu as z (1 + erf(z / sqrt 2)) / 2. onnxruntime has ``Erf`` in float
only, so a float64 network with gelu is refused (ValueError): export a float32 copy.
A network with batch normalization is exported as ``forward`` computes it (eval mode):
each hidden layer's ``Gemm`` is followed by a ``BatchNormalization`` node holding its
gamma, beta and running statistics (epsilon 1e-5), then its activation.

``MLPClassifier`` and ``MLPRegressor``::

    import backprop.onnx  # registers the converters with skl2onnx
    import skl2onnx

    model = skl2onnx.to_onnx(est, X[:1])  # as for scikit-learn's MLP

give the graphs scikit-learn's MLPs get: skl2onnx picks a converter by the exact type
of the estimator, so importing this module registers backprop's (when skl2onnx is
installed). The options are scikit-learn's (``zipmap``, ``output_class_labels``,
``nocl``); a float64 ``X`` gives a double graph, float32 a float one (pass ``X`` in
the estimator's dtype to get its predictions to rounding). As for any
classifier, skl2onnx's default ``zipmap=True`` builds a ``ZipMap``, which takes float
only: convert a double classifier with ``options={"zipmap": False}``. Single-label
classifiers use skl2onnx's converter for scikit-learn's ``MLPClassifier`` unchanged.
Regressors and multilabel classifiers have converters of their own here, since
skl2onnx's give a multi-output regressor's predictions as one column, cannot convert
the Poisson loss's exponential output, and threshold multilabel probabilities with an
operator onnxruntime lacks for double (and with two labels, return four columns).
The outputs are skl2onnx's: a classifier's ``label`` (n,), or (n, n_labels) 0/1 int64
for multilabel, and ``probabilities`` (n, n_classes); a regressor's ``variable``
(n, n_outputs), (n, 1) for a single output.

Install what this needs with ``pip install 'backprop[onnx]'``.
"""

from __future__ import annotations

import numpy as np

from . import __version__
from ._layout import BN_EPS
from .network import Network

_INSTALL = "pip install 'backprop[onnx]'"

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as err:
    raise ImportError(f"backprop.onnx needs the onnx package: {_INSTALL}") from err

__all__ = ["OPSET", "to_onnx"]

#: The opset of the graphs ``to_onnx`` writes: the oldest in which all its operators
#: have their current form (``Softmax`` over the last axis alone); onnxruntime runs
#: every one of them in double as well as float.
OPSET = 13

# The ONNX operator of each activation that is one, under Network's names and
# scikit-learn's; None for the identity, which needs no node.
_OPERATORS = {
    "identity": None,
    "sigmoid": "Sigmoid",
    "logistic": "Sigmoid",
    "tanh": "Tanh",
    "relu": "Relu",
    "softmax": "Softmax",
    "exp": "Exp",
}


def _leaky_relu(graph, z: str, out: str | None) -> str:
    """max(z, 0.01 z), which is z for z > 0 and 0.01 z otherwise."""
    return graph.node("Max", [z, graph.node("Mul", [z, graph.constant(0.01)])], out)


def _elu(graph, z: str, out: str | None) -> str:
    """z where z > 0, else e^z - 1."""
    below = graph.node("Sub", [graph.node("Exp", [z]), graph.constant(1.0)])
    return graph.node("Where", [graph.node("Greater", [z, graph.constant(0.0)]), z, below], out)


def _softplus(graph, z: str, out: str | None) -> str:
    """z where z > 20 (PyTorch's threshold), else log(e^z + 1)."""
    curve = graph.node("Log", [graph.node("Add", [graph.node("Exp", [z]), graph.constant(1.0)])])
    return graph.node("Where", [graph.node("Greater", [z, graph.constant(20.0)]), z, curve], out)


def _gelu(graph, z: str, out: str | None) -> str:
    """z (1 + erf(z / sqrt 2)) / 2, PyTorch's exact form (``Gelu`` itself is opset 20)."""
    erf = graph.node("Erf", [graph.node("Mul", [z, graph.constant(np.sqrt(0.5))])])
    cdf = graph.node("Add", [erf, graph.constant(1.0)])
    return graph.node("Mul", [graph.node("Mul", [z, graph.constant(0.5)]), cdf], out)


def _silu(graph, z: str, out: str | None) -> str:
    """z sigmoid(z)."""
    return graph.node("Mul", [z, graph.node("Sigmoid", [z])], out)


# The activations built from several operators: onnxruntime runs ONNX's LeakyRelu, Elu
# and Softplus in float only, and Softplus has no threshold.
_COMPOSED = {
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "gelu": _gelu,
    "softplus": _softplus,
    "silu": _silu,
}
# The activations whose graph onnxruntime runs in float only (``Erf``).
_FLOAT_ONLY = ("gelu",)


def _forward_pass(graph, X: str, weights, biases, hidden, output: str, result: str,
                  norms=()):  # fmt: skip
    """Adds to ``graph`` the nodes of the forward pass from the input named X to the
    output named ``result``: per layer Z := A @ W + b (``Gemm``; each W of shape
    (n_in, n_out)), then A := act(Z), ``hidden`` in the hidden layers (one name, or a
    list of one per hidden layer) and ``output`` in the last. ``norms`` holds one
    (gamma, beta, running mean, running variance) per hidden layer for batch
    normalization, between the Gemm and the activation."""
    a = X
    for l, (W, b) in enumerate(zip(weights, biases)):
        last = l == len(weights) - 1
        name = output if last else hidden if isinstance(hidden, str) else hidden[l]
        out = result if last else None
        gemm = [a, graph.constant(W), graph.constant(b)]
        if norms and not last:  # a hidden layer: its output is named by the graph
            inputs = [graph.node("Gemm", gemm)] + [graph.constant(v) for v in norms[l]]
            y = graph.node("BatchNormalization", inputs, epsilon=BN_EPS)
            if name in _COMPOSED:
                a = _COMPOSED[name](graph, y, None)
            else:
                a = y if _OPERATORS[name] is None else graph.node(_OPERATORS[name], [y])
        elif name in _COMPOSED:
            a = _COMPOSED[name](graph, graph.node("Gemm", gemm), out)
        elif _OPERATORS[name] is None:
            a = graph.node("Gemm", gemm, out)
        else:
            a = graph.node(_OPERATORS[name], [graph.node("Gemm", gemm)], out)


class _Graph:
    """Nodes and initializers of a graph under construction, in one dtype."""

    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, value) -> str:
        name = f"p{len(self.initializers)}"
        array = np.ascontiguousarray(value, dtype=self.dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, operator: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(operator, inputs, [output], **attrs))
        return output


def to_onnx(net: Network) -> onnx.ModelProto:
    """An ONNX model of ``net``'s forward pass: input ``X`` (n, n_in), output ``y_hat``
    (n, n_out), in the network's dtype (float32 or float64), opset ``OPSET``.

    The weights are copied: later training does not change the model. A float64 network
    with gelu raises ValueError (see the module docstring).
    """
    if not isinstance(net, Network):
        hint = (
            "; convert a scikit-learn estimator with skl2onnx.to_onnx(est, X) after "
            "import backprop.onnx"
            if hasattr(net, "coefs_") or hasattr(net, "hidden_layer_sizes")
            else ""
        )
        raise TypeError(f"to_onnx needs a backprop.Network; got {type(net).__name__}{hint}")
    with net._guard.reading():  # never the half-updated weights of a running fit
        # the architecture the kernels use, never properties a subclass may override
        layer_weights, layer_biases = net._layers()
        weights = [W.T.copy() for W in layer_weights]
        biases = [b.copy() for b in layer_biases]
        norms = [
            tuple(v.copy() for v in values)
            for values in zip(
                net._gammas(), net._betas(), net._running_means(), net._running_vars()
            )  # fmt: skip
        ]
    dtype, sizes = net._dtype, net._arch.sizes
    hidden = net._activation
    names = set([hidden] * (len(sizes) - 2) if isinstance(hidden, str) else hidden)
    refused = sorted(names.intersection(_FLOAT_ONLY)) if dtype == np.float64 else []
    if refused:
        raise ValueError(
            f"to_onnx cannot export {refused[0]} in float64: its graph needs ONNX's Erf, "
            "which onnxruntime runs in float only; export a float32 copy instead, "
            "Network.from_params(net.weights, net.biases, net.activation, net.output, "
            "net.loss_name, dtype='float32')"
        )
    graph = _Graph(dtype)
    _forward_pass(graph, "X", weights, biases, hidden, net._output, "y_hat", norms)
    element = helper.np_dtype_to_tensor_dtype(dtype)
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "backprop.Network",
            [helper.make_tensor_value_info("X", element, ["n", sizes[0]])],
            [helper.make_tensor_value_info("y_hat", element, ["n", sizes[-1]])],
            graph.initializers,
        ),
        opset_imports=opsets,
        # the oldest IR version that holds the opset, so older runtimes load the model
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="backprop",
        producer_version=__version__,
        doc_string=repr(net),
    )
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------------ skl2onnx ---


class _Container:
    """``_Graph``'s interface over a converter's skl2onnx scope and container."""

    def __init__(self, scope, container, dtype: np.dtype):
        self.scope, self.container, self.dtype = scope, container, np.dtype(dtype)

    def constant(self, value) -> str:
        name = self.scope.get_unique_variable_name("p")
        array = np.ascontiguousarray(value, dtype=self.dtype)
        self.container.add_initializer(name, None, None, numpy_helper.from_array(array, name))
        return name

    def node(self, operator: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.scope.get_unique_variable_name("t")
        name = self.scope.get_unique_operator_name(operator)
        self.container.add_node(operator, inputs, output, name=name, **attrs)
        return output


def _converter_graph(scope, operator, container) -> tuple[_Container, str]:
    """The graph a converter adds to, in the dtype skl2onnx's MLP converters use (double
    for a double input, else float), and the name of the input cast to it."""
    from skl2onnx.common.data_types import DoubleTensorType

    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    graph = _Container(scope, container, np.float64 if double else np.float32)
    element = TensorProto.DOUBLE if double else TensorProto.FLOAT
    X = graph.node("Cast", [operator.inputs[0].full_name], to=element)
    return graph, X


def _estimator_forward_pass(graph, X: str, est, result: str) -> None:
    """``_forward_pass`` with a fitted estimator's weights and activations."""
    _forward_pass(
        graph, X, est.coefs_, est.intercepts_, est.activation, est.out_activation_, result
    )


def _multilabel(est) -> bool:
    return est._label_binarizer.y_type_ == "multilabel-indicator"


def _classifier_shapes(operator) -> None:
    from skl2onnx.common.data_types import Int64TensorType
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    calculate_linear_classifier_output_shapes(operator)
    est = operator.raw_operator
    if _multilabel(est):
        n = operator.inputs[0].get_first_dimension()
        operator.outputs[0].set_type(Int64TensorType([n, est.n_outputs_]))


def _convert_classifier(scope, operator, container) -> None:
    from skl2onnx.operator_converters.multilayer_perceptron import (
        convert_sklearn_mlp_classifier,
    )

    est = operator.raw_operator
    if not _multilabel(est):
        convert_sklearn_mlp_classifier(scope, operator, container)
        return
    # labels := p > 0.5, as LabelBinarizer.inverse_transform thresholds
    graph, X = _converter_graph(scope, operator, container)
    probabilities = operator.outputs[1].full_name
    _estimator_forward_pass(graph, X, est, probabilities)
    above = graph.node("Greater", [probabilities, graph.constant(0.5)])
    graph.node("Cast", [above], operator.outputs[0].full_name, to=TensorProto.INT64)


def _regressor_shapes(operator) -> None:
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    calculate_linear_regressor_output_shapes(operator)
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type.shape = [n, operator.raw_operator.n_outputs_]


def _convert_regressor(scope, operator, container) -> None:
    est = operator.raw_operator
    graph, X = _converter_graph(scope, operator, container)
    _estimator_forward_pass(graph, X, est, operator.outputs[0].full_name)


def _register() -> None:
    """Registers the estimators' converters with skl2onnx, when it is installed."""
    try:
        import skl2onnx
    except ImportError:
        return
    from .estimators import MLPClassifier, MLPRegressor

    skl2onnx.update_registered_converter(
        MLPClassifier,
        "BackpropMLPClassifier",
        _classifier_shapes,
        _convert_classifier,
        # scikit-learn's MLPClassifier's options; zipmap also selects skl2onnx's parser
        # for classifiers (label and probabilities)
        options={
            "zipmap": [True, False, "columns"],
            "output_class_labels": [False, True],
            "nocl": [True, False],
        },
    )
    skl2onnx.update_registered_converter(
        MLPRegressor, "BackpropMLPRegressor", _regressor_shapes, _convert_regressor
    )


_register()
