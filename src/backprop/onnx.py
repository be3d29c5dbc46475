"""ONNX export: a ``Network``'s forward pass, and the estimators through skl2onnx.

A ``Network``::

    import backprop.onnx

    model = backprop.onnx.to_onnx(net)  # an onnx.ModelProto
    # input "X" (n, n_in), output "y_hat" (n, n_out), both of the network's dtype:
    # onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"X": X})[0]
    # equals net.forward(X) to rounding

needs only the ``onnx`` package. The graph holds one ``Gemm`` per layer
(Z := A @ W.T + b) followed by its activation (``Sigmoid``, ``Tanh``, ``Relu`` or
``Softmax``; none for identity), in opset ``OPSET``.

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

# The ONNX operator of each activation, under Network's names and scikit-learn's;
# None for the identity, which needs no node.
_OPERATORS = {
    "identity": None,
    "sigmoid": "Sigmoid",
    "logistic": "Sigmoid",
    "tanh": "Tanh",
    "relu": "Relu",
    "softmax": "Softmax",
    "exp": "Exp",
}


def _forward_pass(graph, X: str, weights, biases, hidden: str, output: str, result: str):
    """Adds to ``graph`` the nodes of the forward pass from the input named X to the
    output named ``result``: per layer Z := A @ W + b (``Gemm``; each W of shape
    (n_in, n_out)), then A := act(Z), ``hidden`` in the hidden layers and ``output``
    in the last."""
    a = X
    for l, (W, b) in enumerate(zip(weights, biases)):
        last = l == len(weights) - 1
        operator = _OPERATORS[output if last else hidden]
        out = result if last else None
        gemm = [a, graph.constant(W), graph.constant(b)]
        if operator is None:
            a = graph.node("Gemm", gemm, out)
        else:
            a = graph.node(operator, [graph.node("Gemm", gemm)], out)


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

    The weights are copied: later training does not change the model.
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
    dtype, sizes = net._dtype, net._arch.sizes
    graph = _Graph(dtype)
    _forward_pass(graph, "X", weights, biases, net._activation, net._output, "y_hat")
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
