"""A fast network's twin in the reference implementation, shared by the tests."""

import numpy as np

from backprop import reference

# Every (output, loss, target kind) the library supports.
HEADS = [
    ("sigmoid", "mse", "rows"),
    ("identity", "mse", "rows"),
    ("softmax", "mse", "rows"),
    ("softmax", "cross_entropy", "labels"),
    ("softmax", "cross_entropy", "probabilities"),
    ("sigmoid", "binary_cross_entropy", "rows"),
]
# Every (output, loss) pair, once.
OUTPUT_LOSSES = list(dict.fromkeys((output, loss) for output, loss, _ in HEADS))


def reference_twin(net):
    """The reference network with ``net``'s weights (as float64) and names."""
    return reference.Network.from_params(
        [w.astype(np.float64) for w in net.weights],
        [b.astype(np.float64) for b in net.biases],
        activation=net.activation,
        output=net.output,
        loss=net.loss_name,
    )
