"""The tutorial's network in plain Python: readable, not fast.

This module is the oracle of the tests. Every number is a Python float (float64) and every
sum is a ``for`` loop over lists, so each line can be checked against the tutorial by hand.
It computes the same terms in the same order as the compiled ``backprop.Network`` (for example
the sigmoid derivative from the activation, a * (1 - a)), so the two agree to rounding.
Each hidden layer may have its own activation, and every hidden layer may be batch-normalised
(``batch_norm``, as PyTorch's ``BatchNorm1d`` between a ``Linear`` and its activation).

NumPy appears only at the edges: to draw the initial weights and the shuffle order exactly as
the compiled network does, and to turn array-like arguments into lists.

Shapes follow the compiled network: ``weights[l]`` is a list of ``sizes[l + 1]`` rows of
``sizes[l]`` floats (row j holds the weights into neuron j), ``biases[l]`` is a list of
``sizes[l + 1]`` floats, and a batch is a list of rows, one row per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["Network"]


# Activations. Each derivative sits beside its function. Where it can be written exactly from
# the activation a = f(z), it is, because that is what the backward pass has at hand; elu,
# gelu, softplus and silu need z itself (``PRIME_OF_Z``).


def sigmoid(z: float) -> float:
    """sigma(z) = 1 / (1 + exp(-z)), taking exp of non-positive numbers only (no overflow)."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sigmoid_prime(a: float) -> float:
    """sigma'(z) = a * (1 - a), where a = sigma(z)."""
    return a * (1.0 - a)


def tanh(z: float) -> float:
    """tanh(z) = (exp(z) - exp(-z)) / (exp(z) + exp(-z))."""
    return math.tanh(z)


def tanh_prime(a: float) -> float:
    """tanh'(z) = 1 - a * a, where a = tanh(z)."""
    return 1.0 - a * a


def relu(z: float) -> float:
    """relu(z) = max(z, 0)."""
    return max(z, 0.0)


def relu_prime(a: float) -> float:
    """relu'(z) = 1 if a > 0 else 0, where a = relu(z)."""
    return 1.0 if a > 0.0 else 0.0


def identity(z: float) -> float:
    """identity(z) = z."""
    return z


def identity_prime(a: float) -> float:
    """identity'(z) = 1."""
    return 1.0


def leaky_relu(z: float) -> float:
    """leaky_relu(z) = z if z > 0 else 0.01 z."""
    return z if z > 0.0 else z * 0.01


def leaky_relu_prime(a: float) -> float:
    """leaky_relu'(z) = 1 if a > 0 else 0.01, where a = leaky_relu(z) (a > 0 exactly when z > 0)."""
    return 1.0 if a > 0.0 else 0.01


def elu(z: float) -> float:
    """elu(z) = z if z > 0 else exp(z) - 1, taken as expm1(z), which keeps its digits near 0."""
    return z if z > 0.0 else math.expm1(z)


def elu_prime(z: float) -> float:
    """elu'(z) = 1 if z > 0 else exp(z). (From a it would be a + 1, which loses the digits of
    exp(z) for z << 0: the derivative is written from z.)"""
    return 1.0 if z > 0.0 else math.exp(z)


def normal_cdf(z: float) -> float:
    """Phi(z) = (1 + erf(z / sqrt 2)) / 2, taken as erfc(-z / sqrt 2) / 2, which keeps its digits
    for z << 0 where 1 + erf(...) would cancel."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def normal_pdf(z: float) -> float:
    """phi(z) = exp(-z^2 / 2) / sqrt(2 pi)."""
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def gelu(z: float) -> float:
    """gelu(z) = z Phi(z), Phi the standard normal distribution function (the exact form)."""
    return z * normal_cdf(z)


def gelu_prime(z: float) -> float:
    """gelu'(z) = Phi(z) + z phi(z)."""
    return normal_cdf(z) + z * normal_pdf(z)


def softplus(z: float) -> float:
    """softplus(z) = log(1 + exp(z)), and z itself for z > 20 (PyTorch's threshold), where the
    two agree to 2e-9."""
    return z if z > 20.0 else math.log1p(math.exp(z))


def softplus_prime(z: float) -> float:
    """softplus'(z) = exp(z) / (exp(z) + 1), which is sigma(z), and 1 above the threshold."""
    if z > 20.0:
        return 1.0
    e = math.exp(z)
    return e / (e + 1.0)


def silu(z: float) -> float:
    """silu(z) = z sigma(z)."""
    return z * sigmoid(z)


def silu_prime(z: float) -> float:
    """silu'(z) = sigma(z) + z sigma'(z) = sigma(z) (1 + z (1 - sigma(z)))."""
    s = sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


# Sums are plain loops rather than sum(), which compensates rounding from Python 3.12 on: the
# oracle adds in the same order, with the same rounding, as a compiled loop.


def add(xs) -> float:
    """sum_i x_i, added in order of i."""
    total = 0.0
    for x_i in xs:
        total += x_i
    return total


def dot(u: list[float], v: list[float]) -> float:
    """u . v = sum_i u_i v_i, added in order of i."""
    total = 0.0
    for u_i, v_i in zip(u, v, strict=True):
        total += u_i * v_i
    return total


def transpose(m: list[list[float]]) -> list[list[float]]:
    """m^T, so that the columns of m become rows."""
    return [list(column) for column in zip(*m, strict=True)]


def softmax(z: list[float]) -> list[float]:
    """p_j = exp(z_j - max z) / sum_i exp(z_i - max z); shifting by max z keeps exp <= 1."""
    m = max(z)
    exps = [math.exp(z_j - m) for z_j in z]
    total = add(exps)
    return [e / total for e in exps]


def log_sum_exp(z: list[float]) -> float:
    """lse(z) = max z + log(sum_j exp(z_j - max z)), the log-sum-exp trick."""
    m = max(z)
    return m + math.log(add(math.exp(z_j - m) for z_j in z))


HIDDEN_ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (tanh, tanh_prime),
    "relu": (relu, relu_prime),
    "identity": (identity, identity_prime),
    "leaky_relu": (leaky_relu, leaky_relu_prime),
    "elu": (elu, elu_prime),
    "gelu": (gelu, gelu_prime),
    "softplus": (softplus, softplus_prime),
    "silu": (silu, silu_prime),
}
# The activations whose derivative is written from z, not from a.
PRIME_OF_Z = ("elu", "gelu", "softplus", "silu")
OUTPUTS = ("sigmoid", "identity", "softmax")
# Each loss and the output it requires (None: any output).
LOSSES = {"mse": None, "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
DTYPES = ("float32", "float64")
# Batch normalization's constants, PyTorch's defaults.
EPS = 1e-5
MOMENTUM = 0.1


MASK64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """The next state and output of SplitMix64 (Steele, Lea and Flood 2014), on 64 bits."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def dropout_masks(state: int, p: float, n: int, widths: list[int]) -> tuple[int, list]:
    """Inverted-dropout masks: for each hidden layer, n rows of 1/(1 - p) (kept, with
    probability 1 - p) or 0 (dropped); uniform draws from the top 53 bits of SplitMix64."""
    keep = 1.0 / (1.0 - p)
    masks = []
    for width in widths:
        layer = []
        for _ in range(n):
            row = []
            for _ in range(width):
                state, z = splitmix64(state)
                u = (z >> 11) * (1.0 / 9007199254740992.0)
                row.append(keep if u >= p else 0.0)
            layer.append(row)
        masks.append(layer)
    return state, masks


class Network:
    """A multilayer perceptron trained by backpropagation, one Python float at a time."""

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Sequence[str] = "sigmoid",
        output: str = "sigmoid",
        loss: str = "mse",
        dtype: str = "float64",
        seed: int | None = None,
        init: str = "glorot",
        batch_norm: bool = False,
    ) -> None:
        self.sizes = [int(size) for size in sizes]
        self._set_names(activation, output, loss, dtype)
        self._start_batch_norm(batch_norm)
        if init not in ("glorot", "he"):
            raise ValueError(f"init must be 'glorot' or 'he', got {init!r}")
        # Glorot (or He) uniform, drawn layer by layer exactly like the compiled network, then
        # cast to dtype so that a float32 network starts from the same float32 values.
        rng = np.random.default_rng(seed)
        self.weights = []
        self.biases = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            limit = math.sqrt(6 / (n_in + n_out if init == "glorot" else n_in))
            w = rng.uniform(-limit, limit, size=(n_out, n_in))
            self.weights.append(w.astype(self.dtype).tolist())
            self.biases.append([0.0] * n_out)

    @classmethod
    def from_params(
        cls,
        weights: Sequence,
        biases: Sequence,
        activation: str | Sequence[str] = "sigmoid",
        output: str = "sigmoid",
        loss: str = "mse",
        dtype: str = "float64",
        batch_norm: bool = False,
        gammas: Sequence | None = None,
        betas: Sequence | None = None,
        running_means: Sequence | None = None,
        running_vars: Sequence | None = None,
    ) -> Network:
        """Build a network from given weights (weights[l] is n_out x n_in) and biases, and
        with ``batch_norm`` the hidden layers' gammas, betas and running statistics (None:
        as a new network starts them)."""
        net = cls.__new__(cls)
        net.weights = [np.asarray(w, dtype=np.float64).tolist() for w in weights]
        net.biases = [np.asarray(b, dtype=np.float64).tolist() for b in biases]
        net.sizes = [len(net.weights[0][0])] + [len(w) for w in net.weights]
        net._set_names(activation, output, loss, dtype)
        net._start_batch_norm(batch_norm)
        given = {"gammas": gammas, "betas": betas, "running_means": running_means,
                 "running_vars": running_vars}  # fmt: skip
        for name, values in given.items():
            if values is not None:
                setattr(net, name, [np.asarray(v, dtype=np.float64).tolist() for v in values])
        return net

    def _start_batch_norm(self, batch_norm: bool) -> None:
        """gamma_l = 1, beta_l = 0, running mean 0 and running variance 1 for every hidden
        layer l with ``batch_norm`` (as PyTorch starts them); empty lists without."""
        self.batch_norm = bool(batch_norm)
        widths = self.sizes[1:-1] if batch_norm else []
        self.gammas = [[1.0] * n for n in widths]
        self.betas = [[0.0] * n for n in widths]
        self.running_means = [[0.0] * n for n in widths]
        self.running_vars = [[1.0] * n for n in widths]

    def _set_names(self, activation, output: str, loss: str, dtype: str) -> None:
        """Checks and keeps the names; ``hidden[l]`` is hidden layer l's activation, from
        ``activation``: one name for every hidden layer, or a list of one per layer."""
        n_hidden = len(self.sizes) - 2
        hidden = [activation] * n_hidden if isinstance(activation, str) else list(activation)
        if len(hidden) != n_hidden:
            raise ValueError(
                f"activation must be one name or a list of {n_hidden} (one per hidden layer), "
                f"got {activation!r}"
            )
        for name in [activation] if isinstance(activation, str) else hidden:
            if name not in HIDDEN_ACTIVATIONS:
                raise ValueError(
                    f"activation must be one of {sorted(HIDDEN_ACTIVATIONS)}, got {name!r}"
                )
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
        if LOSSES[loss] is not None and LOSSES[loss] != output:
            raise ValueError(
                f"loss={loss!r} requires output={LOSSES[loss]!r}, got output={output!r}"
            )
        dtype = np.dtype(dtype).name
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.activation = activation
        self.hidden = hidden
        self.output = output
        self.loss_name = loss
        self.dtype = dtype

    # Public methods: turn array-likes into lists of rows, then do the work on lists.

    def forward(self, X, training: bool = False) -> list[list[float]]:
        """A_L, where A_0 = X and A_l = act(A_{l-1} W_l^T + b_l); batch normalization takes
        the running statistics, or with ``training`` the batch's (without updating them)."""
        X = np.asarray(X, dtype=np.float64)
        _, activations = self.feedforward(X.reshape(-1, X.shape[-1]).tolist(), training=training)
        return activations[-1]

    def loss(self, X, Y) -> float:
        """L(X, Y), the mean loss over the batch (batch statistics; running ones untouched)."""
        X, Y = self._batch(X, Y)
        zs, activations = self.feedforward(X, training=True)
        return self.cost(zs[-1], activations[-1], Y)

    def gradients(self, X, Y) -> tuple:
        """(L, dL/dW_l, dL/db_l for every layer l) for the mean loss over the batch; with
        batch normalization also dL/dgamma_l and dL/dbeta_l for every hidden layer l
        (the running statistics are not updated)."""
        X, Y = self._batch(X, Y)
        result = self.backprop(X, Y)
        return result if self.batch_norm else result[:3]

    def step(self, X, Y, lr: float, weight_decay: float = 0.0) -> float:
        """W_l -= lr * (dL/dW_l + weight_decay * W_l), b_l -= lr * dL/db_l (and gamma_l,
        beta_l likewise, without decay); returns L before. Updates the running statistics."""
        X, Y = self._batch(X, Y)
        return self.update_batch(X, Y, lr, weight_decay)

    def fit(
        self,
        X,
        Y,
        epochs: int = 1,
        batch_size: int = 1,
        lr: float = 0.1,
        shuffle: bool = False,
        seed: int | None = None,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        adam: dict | None = None,
    ) -> list[float]:
        """Mini-batch gradient descent; returns each epoch's sum_b L_b * len(batch_b) / n.

        With dropout, each batch's hidden units are masked by ``dropout_masks``, from a
        SplitMix64 state drawn from the seeded generator before any permutation. With
        ``adam`` (a dict of ``betas`` and ``eps``), each step is Adam's
        (``update_batch_adam``) with step size ``lr``."""
        X, Y = self._batch(X, Y)
        n = len(X)
        batch_size = min(batch_size, n)
        rng = np.random.default_rng(seed)
        state = int(rng.integers(0, 2**63)) if dropout else 0
        widths = self.sizes[1:-1]
        velocity = [
            [[[0.0] * len(w_j) for w_j in w] for w in self.weights],
            [[0.0] * len(b) for b in self.biases],
            [[0.0] * len(g) for g in self.gammas],
            [[0.0] * len(b) for b in self.betas],
        ]
        moments = {"m": None, "v": None, "t": 0}
        epoch_losses = []
        for _ in range(epochs):
            order = rng.permutation(n).tolist() if shuffle else list(range(n))
            total = 0.0
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                masks = None
                if dropout:
                    state, masks = dropout_masks(state, dropout, len(batch), widths)
                Xb, Yb = [X[i] for i in batch], [Y[i] for i in batch]
                if adam is not None:
                    loss_b = self.update_batch_adam(
                        Xb, Yb, lr, weight_decay, masks, adam["betas"], adam["eps"], moments
                    )
                elif momentum:
                    loss_b = self.update_batch_momentum(
                        Xb, Yb, lr, weight_decay, masks, momentum, nesterov, velocity
                    )
                else:
                    loss_b = self.update_batch(Xb, Yb, lr, weight_decay, masks)
                total += loss_b * len(batch)
            epoch_losses.append(total / n)
        return epoch_losses

    # The algorithm, on lists.

    def feedforward(
        self,
        X: list[list[float]],
        masks: list | None = None,
        training: bool = True,
        update_running: bool = False,
    ) -> tuple[list, list]:
        """zs[l] = A_{l-1} W_l^T + b_l and activations[l] = act(zs[l]); activations[0] = X.

        With dropout ``masks``, each hidden activation is multiplied by its mask; the
        activations before that are kept in ``self.unmasked`` for act'. With batch
        normalization, zs[l] of a hidden layer is y = gamma xhat + beta (``batch_norm``),
        what its activation takes; xhat and 1 / sqrt(var + eps) are kept in
        ``self.xhats`` and ``self.invstds`` for the backward pass."""
        last = len(self.weights) - 1
        zs = []
        activations = [X]
        self.unmasked = []
        self.xhats, self.invstds = [], []
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = [
                [dot(w_j, a) + b_j for w_j, b_j in zip(w, b, strict=True)] for a in activations[-1]
            ]
            if self.batch_norm and layer < last:
                z = self.normalise(z, layer, training, update_running)
            if layer < last:
                act, _ = HIDDEN_ACTIVATIONS[self.hidden[layer]]
                a = [[act(z_j) for z_j in z_row] for z_row in z]
                self.unmasked.append(a)
                if masks is not None:
                    a = [
                        [a_j * m_j for a_j, m_j in zip(a_row, m_row, strict=True)]
                        for a_row, m_row in zip(a, masks[layer], strict=True)
                    ]
            elif self.output == "softmax":
                a = [softmax(z_row) for z_row in z]
            elif self.output == "sigmoid":
                a = [[sigmoid(z_j) for z_j in z_row] for z_row in z]
            else:
                a = [[identity(z_j) for z_j in z_row] for z_row in z]
            zs.append(z)
            activations.append(a)
        return zs, activations

    def normalise(self, z: list, layer: int, training: bool, update_running: bool) -> list:
        """y = gamma xhat + beta with xhat = (z - mu) / sqrt(var + eps), column by column:
        mu and the biased var = sum_i (z_i - mu)^2 / n of the batch when ``training``, else
        the running ones. ``update_running``: running := (1 - momentum) running + momentum
        (mu, or the unbiased var n / (n - 1))."""
        n = len(z)
        columns = transpose(z)
        if training:
            mu = [add(column) / n for column in columns]
            var = [
                add((z_i - mu_j) * (z_i - mu_j) for z_i in column) / n
                for column, mu_j in zip(columns, mu, strict=True)
            ]
        else:
            mu, var = self.running_means[layer], self.running_vars[layer]
        if update_running:
            self.running_means[layer] = [
                (1 - MOMENTUM) * r + MOMENTUM * mu_j
                for r, mu_j in zip(self.running_means[layer], mu, strict=True)
            ]
            self.running_vars[layer] = [
                (1 - MOMENTUM) * r + MOMENTUM * (v * n / (n - 1))
                for r, v in zip(self.running_vars[layer], var, strict=True)
            ]
        invstd = [1.0 / math.sqrt(v + EPS) for v in var]
        xhat = [
            [(z_j - mu_j) * s_j for z_j, mu_j, s_j in zip(row, mu, invstd, strict=True)]
            for row in z
        ]
        self.xhats.append(xhat)
        self.invstds.append(invstd)
        gamma, beta = self.gammas[layer], self.betas[layer]
        return [
            [g_j * x_j + b_j for g_j, x_j, b_j in zip(gamma, row, beta, strict=True)]
            for row in xhat
        ]

    def normalise_prime(self, delta: list, layer: int) -> tuple[list, list, list]:
        """(dL/dz, nabla_gamma, nabla_beta) from delta = dL/dy of a normalised layer:
        nabla_gamma = sum_rows delta xhat, nabla_beta = sum_rows delta, and
        dL/dz = gamma invstd (delta - mean_rows(delta) - xhat mean_rows(delta xhat))."""
        n = len(delta)
        xhat, invstd, gamma = self.xhats[layer], self.invstds[layer], self.gammas[layer]
        delta_columns = transpose(delta)
        nabla_gamma = [dot(d, x) for d, x in zip(delta_columns, transpose(xhat), strict=True)]
        nabla_beta = [add(d) for d in delta_columns]
        delta_z = [
            [
                g_j * s_j * (d_j - sb_j / n - x_j * (sg_j / n))
                for d_j, x_j, g_j, s_j, sb_j, sg_j in zip(
                    d_row, x_row, gamma, invstd, nabla_beta, nabla_gamma, strict=True
                )
            ]
            for d_row, x_row in zip(delta, xhat, strict=True)
        ]
        return delta_z, nabla_gamma, nabla_beta

    def cost(self, z: list, a: list, Y: list) -> float:
        """The mean loss of output pre-activations z and activations a against targets Y."""
        n, k = len(a), len(a[0])
        if self.loss_name == "mse":
            # L = sum_ij (a_ij - y_ij)^2 / (n k)
            total = 0.0
            for a_row, y_row in zip(a, Y, strict=True):
                for a_j, y_j in zip(a_row, y_row, strict=True):
                    total += (a_j - y_j) * (a_j - y_j)
            return total / (n * k)
        if self.loss_name == "cross_entropy":
            # L = sum_i (lse(z_i) - sum_j y_ij z_ij) / n
            total = 0.0
            for z_row, y_row in zip(z, Y, strict=True):
                total += log_sum_exp(z_row) - dot(y_row, z_row)
            return total / n
        # binary_cross_entropy: L = sum_ij (max(z, 0) - y z + log1p(exp(-|z|))) / (n k),
        # the form of -y log(a) - (1 - y) log(1 - a) that never takes the log of 0.
        total = 0.0
        for z_row, y_row in zip(z, Y, strict=True):
            for z_j, y_j in zip(z_row, y_row, strict=True):
                total += max(z_j, 0.0) - y_j * z_j + math.log1p(math.exp(-abs(z_j)))
        return total / (n * k)

    def output_delta(self, a: list, Y: list) -> list[list[float]]:
        """delta_L = dL/dZ_L, from the output activations a and the targets Y."""
        n, k = len(a), len(a[0])
        if self.loss_name == "cross_entropy":
            # softmax with cross-entropy: dL/dz = (p - y) / n
            return [
                [(p_j - y_j) / n for p_j, y_j in zip(p, y, strict=True)]
                for p, y in zip(a, Y, strict=True)
            ]
        if self.loss_name == "binary_cross_entropy":
            # sigmoid with binary cross-entropy: dL/dz = (a - y) / (n k)
            return [
                [(a_j - y_j) / (n * k) for a_j, y_j in zip(ar, y, strict=True)]
                for ar, y in zip(a, Y, strict=True)
            ]
        # mse: g = dL/da = 2 (a - y) / (n k), then through the output's derivative
        delta = []
        for a_row, y_row in zip(a, Y, strict=True):
            g = [2.0 * (a_j - y_j) / (n * k) for a_j, y_j in zip(a_row, y_row, strict=True)]
            if self.output == "sigmoid":
                delta.append([g_j * sigmoid_prime(a_j) for g_j, a_j in zip(g, a_row, strict=True)])
            elif self.output == "identity":
                delta.append([g_j * identity_prime(a_j) for g_j, a_j in zip(g, a_row, strict=True)])
            else:
                # softmax Jacobian-vector product: delta_j = p_j (g_j - sum_i g_i p_i)
                gp = dot(g, a_row)
                delta.append([p_j * (g_j - gp) for g_j, p_j in zip(g, a_row, strict=True)])
        return delta

    def backprop(
        self, X: list, Y: list, masks: list | None = None, update_running: bool = False
    ) -> tuple[float, list, list, list, list]:
        """(L, nabla_w, nabla_b, nabla_gamma, nabla_beta): nabla_w[l] = delta_l^T A_{l-1},
        nabla_b[l] = sum_rows delta_l; with batch normalization delta_l is dL/dz_l, carried
        back through the normalization (``normalise_prime``), which gives nabla_gamma[l]
        and nabla_beta[l] (empty lists without it)."""
        zs, activations = self.feedforward(X, masks, True, update_running)
        loss = self.cost(zs[-1], activations[-1], Y)
        n_layers = len(self.weights)
        nabla_w = [None] * n_layers
        nabla_b = [None] * n_layers
        nabla_gamma = [None] * len(self.gammas)
        nabla_beta = [None] * len(self.betas)
        delta = self.output_delta(activations[-1], Y)
        for layer in range(n_layers - 1, -1, -1):
            if self.batch_norm and layer < n_layers - 1:
                delta, nabla_gamma[layer], nabla_beta[layer] = self.normalise_prime(delta, layer)
            a_prev = activations[layer]
            # Sums over the samples of the batch run down the columns of delta and a_prev.
            delta_columns = transpose(delta)
            a_prev_columns = transpose(a_prev)
            nabla_w[layer] = [[dot(d, a) for a in a_prev_columns] for d in delta_columns]
            nabla_b[layer] = [add(d) for d in delta_columns]
            if layer > 0:
                # delta_{l-1} = (delta_l W_l) * act'(z_{l-1}), times the mask with dropout;
                # act' is written from the activations (before the mask) or from z
                name = self.hidden[layer - 1]
                _, act_prime = HIDDEN_ACTIVATIONS[name]
                at = zs[layer - 1] if name in PRIME_OF_Z else self.unmasked[layer - 1]
                primes = [[act_prime(x) for x in row] for row in at]
                if masks is not None:
                    primes = [
                        [p_i * m_i for p_i, m_i in zip(p, m, strict=True)]
                        for p, m in zip(primes, masks[layer - 1], strict=True)
                    ]
                w_columns = transpose(self.weights[layer])
                delta = [
                    [dot(d, w) * p_i for w, p_i in zip(w_columns, p, strict=True)]
                    for d, p in zip(delta, primes, strict=True)
                ]
        return loss, nabla_w, nabla_b, nabla_gamma, nabla_beta

    def update_batch(
        self, X: list, Y: list, eta: float, lmbda: float = 0.0, masks: list | None = None
    ) -> float:
        """W_l -= eta * (nabla_w[l] + lmbda * W_l) and b_l -= eta * nabla_b[l] (gamma_l and
        beta_l likewise); returns L before the update (lmbda: L2 weight decay; biases,
        gammas and betas are not decayed). The batch updates the running statistics."""
        loss, nabla_w, nabla_b, nabla_gamma, nabla_beta = self.backprop(X, Y, masks, True)
        self.weights = [
            [
                [w_ji - eta * (nw_ji + lmbda * w_ji) for w_ji, nw_ji in zip(w_j, nw_j, strict=True)]
                for w_j, nw_j in zip(w, nw, strict=True)
            ]
            for w, nw in zip(self.weights, nabla_w, strict=True)
        ]
        self.biases = [
            [b_j - eta * nb_j for b_j, nb_j in zip(b, nb, strict=True)]
            for b, nb in zip(self.biases, nabla_b, strict=True)
        ]
        self.gammas = [
            [g_j - eta * ng_j for g_j, ng_j in zip(g, ng, strict=True)]
            for g, ng in zip(self.gammas, nabla_gamma, strict=True)
        ]
        self.betas = [
            [b_j - eta * nb_j for b_j, nb_j in zip(b, nb, strict=True)]
            for b, nb in zip(self.betas, nabla_beta, strict=True)
        ]
        return loss

    def update_batch_momentum(
        self,
        X: list,
        Y: list,
        eta: float,
        lmbda: float,
        masks: list | None,
        mu: float,
        nesterov: bool,
        velocity: list,
    ) -> float:
        """SGD with momentum, as PyTorch's: g = nabla (+ lmbda W for weights), v = mu v + g,
        theta -= eta (g + mu v if nesterov else v). ``velocity`` is [v_w, v_b, v_gamma,
        v_beta], updated. The batch updates the running statistics."""
        loss, nabla_w, nabla_b, nabla_gamma, nabla_beta = self.backprop(X, Y, masks, True)
        v_w, v_b = velocity[:2]

        def momentum_step(params: list, nablas: list, velocities: list) -> list:
            """v = mu v + g and p -= eta (g + mu v if nesterov else v), for a list of
            vectors p (their gradients g and velocities v alike)."""
            stepped = []
            for k, (p, g) in enumerate(zip(params, nablas, strict=True)):
                v = [mu * vv + gg for vv, gg in zip(velocities[k], g, strict=True)]
                velocities[k] = v
                stepped.append(
                    [
                        pv - eta * (gg + mu * vv if nesterov else vv)
                        for pv, gg, vv in zip(p, g, v, strict=True)
                    ]
                )
            return stepped

        # each layer's weights row by row (the gradient with its decay term), its biases,
        # gammas and betas as one vector each
        self.weights = [
            momentum_step(
                w,
                [[g + lmbda * wv for g, wv in zip(nw_j, w_j, strict=True)]
                 for nw_j, w_j in zip(nw, w, strict=True)],
                v_w[layer],
            )
            for layer, (w, nw) in enumerate(zip(self.weights, nabla_w, strict=True))
        ]  # fmt: skip
        self.biases = momentum_step(self.biases, nabla_b, v_b)
        self.gammas = momentum_step(self.gammas, nabla_gamma, velocity[2])
        self.betas = momentum_step(self.betas, nabla_beta, velocity[3])
        return loss

    def update_batch_adam(
        self,
        X: list,
        Y: list,
        eta: float,
        lmbda: float,
        masks: list | None,
        betas: tuple[float, float],
        eps: float,
        moments: dict,
    ) -> float:
        """Adam, as PyTorch's: at step t, g = nabla (+ lmbda W for weights),
        m = m + (1 - b1) (g - m), v = b2 v + (1 - b2) g^2, and
        theta -= (eta / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
        ``moments`` holds m and v (flat lists over every W_l then b_l, layer by layer)
        and t, updated."""
        loss, nabla_w, nabla_b, nabla_gamma, nabla_beta = self.backprop(X, Y, masks, True)
        b1, b2 = betas
        # every parameter and its gradient in one flat list: W_0, b_0, W_1, b_1, ..., then
        # the gammas and betas of batch normalization
        params, grads = [], []
        for w, b, nw, nb in zip(self.weights, self.biases, nabla_w, nabla_b, strict=True):
            for w_j, nw_j in zip(w, nw, strict=True):
                params += w_j
                grads += [g + lmbda * wv for g, wv in zip(nw_j, w_j, strict=True)]
            params += b
            grads += nb
        for g, b, ng, nb in zip(self.gammas, self.betas, nabla_gamma, nabla_beta, strict=True):
            params += g + b
            grads += ng + nb
        if moments["m"] is None:
            moments["m"] = [0.0] * len(params)
            moments["v"] = [0.0] * len(params)
        moments["t"] += 1
        t = moments["t"]
        step_size = eta / (1.0 - b1**t)
        root = math.sqrt(1.0 - b2**t)
        m, v = moments["m"], moments["v"]
        for i, g in enumerate(grads):
            m[i] = m[i] + (1.0 - b1) * (g - m[i]) if 1.0 - b1 < 0.5 else g - (g - m[i]) * b1
            v[i] = b2 * v[i] + (1.0 - b2) * g * g
            params[i] = params[i] + -step_size * m[i] / (math.sqrt(v[i]) / root + eps)
        at = 0

        def take(count: int) -> list[float]:
            nonlocal at
            at += count
            return params[at - count : at]

        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            self.weights[layer] = [take(len(w_j)) for w_j in w]
            self.biases[layer] = take(len(b))
        for layer, (g, b) in enumerate(zip(self.gammas, self.betas, strict=True)):
            self.gammas[layer] = take(len(g))
            self.betas[layer] = take(len(b))
        return loss

    # Array-likes in.

    def _batch(self, X, Y) -> tuple[list[list[float]], list[list[float]]]:
        """X as n rows of floats and Y as n rows of k floats; class labels become one-hot rows."""
        X = np.asarray(X, dtype=np.float64)
        single = X.ndim == 1
        if single:
            X = X[np.newaxis, :]
        n, k = len(X), self.sizes[-1]
        Y = np.asarray(Y)
        if self.loss_name == "cross_entropy" and Y.ndim == (0 if single else 1):
            labels = [int(label) for label in Y.reshape(-1).tolist()]
            if any(not 0 <= label < k for label in labels):
                raise ValueError(f"Y holds class labels outside 0..{k - 1}")
            Y = np.array([[1.0 if j == label else 0.0 for j in range(k)] for label in labels])
            Y = Y.reshape(len(labels), k)
        else:
            Y = np.asarray(Y, dtype=np.float64)
            if Y.ndim == 1:
                Y = Y.reshape(1, -1) if single else Y.reshape(-1, 1)
        if Y.shape != (n, k):
            raise ValueError(f"Y has shape {Y.shape}, but the network expects ({n}, {k})")
        return X.tolist(), Y.tolist()
