"""The names of activations and losses each API takes, and the kernels' codes for them.

``Network`` speaks the tutorial's and PyTorch's names; the scikit-learn estimators
scikit-learn's. Both map onto the same compiled kernels (``_core.Activation``,
``_core.Loss``).
"""

from ._core import Activation, Loss

#: Network's hidden-layer activations, each as PyTorch defines it (torch.nn.functional,
#: its default parameters: leaky_relu's slope 0.01, elu's alpha 1, gelu's exact erf form,
#: softplus's beta 1 and threshold 20).
HIDDEN = {
    "sigmoid": Activation.SIGMOID,
    "tanh": Activation.TANH,
    "relu": Activation.RELU,
    "identity": Activation.IDENTITY,
    "leaky_relu": Activation.LEAKY_RELU,
    "elu": Activation.ELU,
    "gelu": Activation.GELU,
    "softplus": Activation.SOFTPLUS,
    "silu": Activation.SILU,
}
#: Network's output activations.
OUTPUT = {
    "sigmoid": Activation.SIGMOID,
    "identity": Activation.IDENTITY,
    "softmax": Activation.SOFTMAX,
}
#: Network's losses, and the output activations each is defined for.
LOSSES = {
    "mse": Loss.MSE,
    "cross_entropy": Loss.CROSS_ENTROPY,
    "binary_cross_entropy": Loss.BINARY_CROSS_ENTROPY,
}
LOSS_OUTPUTS = {
    "mse": tuple(OUTPUT),
    "cross_entropy": ("softmax",),
    "binary_cross_entropy": ("sigmoid",),
}

#: scikit-learn's activations (hidden: the first four; output: any).
SK_ACTIVATIONS = {
    "identity": Activation.IDENTITY,
    "logistic": Activation.SIGMOID,
    "tanh": Activation.TANH,
    "relu": Activation.RELU,
    "softmax": Activation.SOFTMAX,
    "exp": Activation.EXP,
}
#: scikit-learn's losses, in its conventions (see ``_kernels/_losses.pxi``).
SK_LOSSES = {
    "squared_error": Loss.SK_SQUARED_ERROR,
    "log_loss": Loss.SK_LOG_LOSS,
    "binary_log_loss": Loss.SK_BINARY_LOG_LOSS,
    "poisson": Loss.SK_POISSON,
}
