"""The trainers the benchmark times side by side: backprop, NumPy by hand, PyTorch and
scikit-learn, each doing the same work from the same weights; and how a run is timed. The
compiled peers (JAX, ``torch.compile``) are in ``compiled``, the list of all in ``registry``."""

from __future__ import annotations

import importlib
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .workloads import Data, Params, Workload

# --- trainers -------------------------------------------------------------------------------


def _plain(workload: Workload) -> bool:
    """Plain SGD without batch normalization: what every trainer runs."""
    return workload.optimizer == "sgd" and not workload.batch_norm


class Trainer:
    """One peer. ``prepare`` is untimed set-up, ``run`` the timed work, ``params`` the result."""

    name: ClassVar[str]
    module: ClassVar[str]
    tasks: ClassVar[frozenset[str]] = frozenset({"train", "forward"})

    def __init__(self) -> None:
        self.problem: tuple[Workload, Data, Params] | None = None
        #: mean loss of the epoch trained by ``run``, as ``Network.fit`` defines it
        self.epoch_loss = math.nan

    @classmethod
    def available(cls) -> bool:
        try:
            cls.load()
        except ImportError:
            return False
        return True

    @classmethod
    def load(cls) -> Any:
        return importlib.import_module(cls.module)

    def supports(self, workload: Workload) -> bool:
        return workload.task in self.tasks

    def prepare(self, workload: Workload, data: Data, params: Params) -> None:
        self.problem = (workload, data, params)
        self._prepare(workload, data, params.copy())

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def params(self) -> Params:
        """The current weights and biases, weights in (n_out, n_in) layout."""
        raise NotImplementedError


class BackpropTrainer(Trainer):
    """``Network.from_params(...).fit(X, Y, epochs=1, shuffle=False)`` (with batch norm,
    the gammas and betas written in; with Adam, ``optimizer=optim.Adam(lr)``, a fresh one
    for each run); ``forward(X)``."""

    name = "backprop"
    module = "backprop"

    @classmethod
    def load(cls) -> Any:
        from backprop import Network

        return Network

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        from backprop import optim

        Network = self.load()
        self.workload, self.data = workload, data
        options = {"batch_norm": True} if workload.batch_norm else {}
        self.net = Network.from_params(
            params.weights,
            params.biases,
            activation=workload.activation,
            output=workload.output,
            loss=workload.loss,
            dtype=workload.dtype,
            **options,
        )
        if workload.batch_norm:
            for mine, given in zip(self.net.gammas + self.net.betas, params.gammas + params.betas):
                mine[...] = given
        if workload.optimizer == "adam":
            self.training = {"optimizer": optim.Adam(workload.lr)}
        else:
            self.training = {"lr": workload.lr}

    def run(self) -> None:
        w, (X, Y) = self.workload, self.data
        if w.task == "forward":
            self.net.forward(X)
        else:
            losses = self.net.fit(X, Y, epochs=1, batch_size=w.batch_size, shuffle=False,
                                  **self.training)  # fmt: skip
            self.epoch_loss = float(losses[-1])

    def params(self) -> Params:
        net = self.net
        layers = [net.weights, net.biases]
        if self.workload.batch_norm:
            layers += [net.gammas, net.betas]
        return Params(*([np.array(a) for a in arrays] for arrays in layers))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0, out=z)


_NUMPY_HIDDEN: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable]] = {
    "sigmoid": (_sigmoid, lambda a: a * (1 - a)),
    "tanh": (lambda z: np.tanh(z, out=z), lambda a: 1 - a * a),
    "relu": (_relu, lambda a: a > 0),
    "identity": (lambda z: z, lambda a: 1),
}


def _softmax_cross_entropy(z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """delta := dL/dz = (softmax(z) - onehot) / n, in place of z; and the mean loss."""
    n = len(z)
    rows = np.arange(n)
    z -= z.max(axis=1, keepdims=True)
    picked = z[rows, labels]
    np.exp(z, out=z)
    total = z.sum(axis=1, keepdims=True)
    z /= total
    loss = float(np.mean(np.log(total[:, 0]) - picked))
    z[rows, labels] -= 1
    z /= n
    return z, loss


def _sigmoid_mse(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """delta := 2 (a - y) / (n k) * a (1 - a) with a = sigmoid(z); and the mean loss."""
    a = _sigmoid(z)
    diff = a - y
    loss = float(np.mean(diff * diff))
    diff *= 2 / diff.size
    diff *= a * (1 - a)
    return diff, loss


_NUMPY_OUTPUT = {
    ("softmax", "cross_entropy"): _softmax_cross_entropy,
    ("sigmoid", "mse"): _sigmoid_mse,
}


class NumpyTrainer(Trainer):
    """Mini-batch SGD written by hand with NumPy: ``@`` for the products, in-place updates;
    plain SGD without batch normalization only."""

    name = "numpy"
    module = "numpy"

    def supports(self, workload: Workload) -> bool:
        return super().supports(workload) and _plain(workload)

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        if workload.task == "train" and (workload.output, workload.loss) not in _NUMPY_OUTPUT:
            raise ValueError(f"numpy trainer: no {workload.output} + {workload.loss} output")
        self.workload, self.data = workload, data
        self.weights, self.biases = params.weights, params.biases

    def run(self) -> None:
        if self.workload.task == "forward":
            self.forward(self.data.X)
        else:
            self.epoch_loss = self.train(*self.data)

    def forward(self, X: np.ndarray) -> np.ndarray:
        hidden, _ = _NUMPY_HIDDEN[self.workload.activation]
        a = X
        for W, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = a @ W.T
            z += b
            a = hidden(z)
        z = a @ self.weights[-1].T
        z += self.biases[-1]
        if self.workload.output == "softmax":
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            return z
        return _sigmoid(z) if self.workload.output == "sigmoid" else z

    def train(self, X: np.ndarray, Y: np.ndarray) -> float:
        w, weights, biases = self.workload, self.weights, self.biases
        hidden, hidden_prime = _NUMPY_HIDDEN[w.activation]
        output_delta = _NUMPY_OUTPUT[w.output, w.loss]
        n = len(X)
        batch = min(w.batch_size, n)
        total = 0.0
        with np.errstate(over="ignore"):  # exp(-z) -> inf gives sigmoid(z) = 0, as it should
            for start in range(0, n, batch):
                x, y = X[start : start + batch], Y[start : start + batch]
                activations = [x]
                for W, b in zip(weights[:-1], biases[:-1], strict=True):
                    z = activations[-1] @ W.T
                    z += b
                    activations.append(hidden(z))
                z = activations[-1] @ weights[-1].T
                z += biases[-1]
                delta, loss = output_delta(z, y)
                total += loss * len(x)
                for layer in reversed(range(len(weights))):
                    a = activations[layer]
                    nabla_w = delta.T @ a
                    nabla_b = delta.sum(axis=0)
                    if layer:
                        delta = delta @ weights[layer]
                        delta *= hidden_prime(a)
                    nabla_w *= w.lr
                    nabla_b *= w.lr
                    weights[layer] -= nabla_w
                    biases[layer] -= nabla_b
        return total / n

    def params(self) -> Params:
        return Params(self.weights, self.biases)


class TorchTrainer(Trainer):
    """nn.Linear layers (each hidden one followed by nn.BatchNorm1d with batch
    normalization), torch.optim.SGD(momentum=0) or torch.optim.Adam, MSELoss /
    CrossEntropyLoss; torch's own default thread count."""

    name = "torch"
    module = "torch"

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        torch = self.load()
        nn = torch.nn
        dtype = getattr(torch, workload.dtype)
        hidden = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "identity": nn.Identity}[
            workload.activation
        ]
        layers: list[Any] = []
        for l, (W, b) in enumerate(zip(params.weights, params.biases, strict=True)):
            linear = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if workload.batch_norm and l < len(params.weights) - 1:
                norm = nn.BatchNorm1d(W.shape[0], dtype=dtype)
                with torch.no_grad():
                    norm.weight.copy_(torch.from_numpy(params.gammas[l]))
                    norm.bias.copy_(torch.from_numpy(params.betas[l]))
                layers.append(norm)
            layers.append(hidden())
        if workload.output == "softmax":
            layers[-1] = nn.Identity() if workload.task == "train" else nn.Softmax(dim=1)
            self.loss_fn = nn.CrossEntropyLoss()
        elif workload.output == "sigmoid" and workload.loss == "mse":
            layers[-1] = nn.Sigmoid()
            self.loss_fn = nn.MSELoss()
        else:
            raise ValueError(f"torch trainer: no {workload.output} + {workload.loss} output")
        self.torch, self.workload = torch, workload
        self.model = nn.Sequential(*layers)
        if workload.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=workload.lr)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=workload.lr, momentum=0)
        self.X = torch.from_numpy(data.X)
        self.Y = torch.from_numpy(data.Y)
        self.step = self.training_step()

    def training_step(self) -> Callable[[Any, Any], Any]:
        """``step(x, y)``: one batch, gradients zeroed, forward, loss, backward and an SGD
        step; returns the batch's loss (a tensor)."""
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer

        def step(x: Any, y: Any) -> Any:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        return step

    def run(self) -> None:
        if self.workload.task == "forward":
            with self.torch.inference_mode():
                self.model(self.X)
            return
        step, X, Y = self.step, self.X, self.Y
        n = len(X)
        batch = min(self.workload.batch_size, n)
        total = 0.0
        for start in range(0, n, batch):
            x, y = X[start : start + batch], Y[start : start + batch]
            total += step(x, y).item() * len(x)
        self.epoch_loss = total / n

    def params(self) -> Params:
        nn = self.torch.nn
        linears = [m for m in self.model if isinstance(m, nn.Linear)]
        norms = [m for m in self.model if isinstance(m, nn.BatchNorm1d)]
        return Params(
            *(
                [getattr(m, name).detach().numpy().copy() for m in modules]
                for modules, name in ((linears, "weight"), (linears, "bias"),
                                      (norms, "weight"), (norms, "bias"))
            )
        )  # fmt: skip


class SklearnTrainer(Trainer):
    """MLPClassifier / MLPRegressor with solver="sgd", one ``partial_fit`` = one epoch.

    The estimator is primed by a ``partial_fit`` on one batch (to create its attributes),
    then its coefs_ / intercepts_ are replaced by the shared initial weights. ``partial_fit``
    trains exactly one epoch in order and, unlike ``fit(max_iter=1)``, raises no
    ConvergenceWarning. Its regressor has an identity output and the loss (1/2) mean squared
    error: on an mse workload it does not compute the same function as the others.
    """

    name = "sklearn"
    module = "sklearn.neural_network"
    tasks = frozenset({"train"})

    def supports(self, workload: Workload) -> bool:
        # its 'adam' is the paper's efficient form, not PyTorch's; it has no batch norm
        return super().supports(workload) and _plain(workload)

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        activation = {"sigmoid": "logistic"}.get(workload.activation, workload.activation)
        options = dict(
            hidden_layer_sizes=workload.sizes[1:-1],
            activation=activation,
            solver="sgd",
            alpha=0.0,
            batch_size=workload.batch_size,
            learning_rate="constant",
            learning_rate_init=workload.lr,
            momentum=0.0,
            nesterovs_momentum=False,
            shuffle=False,
            max_iter=1,
            tol=0.0,
            n_iter_no_change=sys.maxsize,
            early_stopping=False,
        )
        X, Y = data
        batch = slice(0, min(workload.batch_size, len(X)))
        if workload.loss == "cross_entropy":
            self.model = MLPClassifier(**options)
            self.model.partial_fit(X[batch], Y[batch], classes=np.arange(workload.sizes[-1]))
            self.Y = Y
        else:
            self.model = MLPRegressor(**options)
            self.Y = Y[:, 0] if Y.shape[1] == 1 else Y
            self.model.partial_fit(X[batch], self.Y[batch])
        self.model.coefs_ = [np.ascontiguousarray(W.T) for W in params.weights]
        self.model.intercepts_ = params.biases
        self.X = X

    def run(self) -> None:
        self.model.partial_fit(self.X, self.Y)
        self.epoch_loss = self.model.loss_

    def params(self) -> Params:
        return Params(
            [W.T.copy() for W in self.model.coefs_], [b.copy() for b in self.model.intercepts_]
        )


def final_weights(trainer: Trainer) -> Params:
    """The trainer's weights and biases after ``run``, weights in (n_out, n_in) layout."""
    return trainer.params()


def measure(trainer: Trainer, repeats: int = 5) -> list[float]:
    """Seconds of ``trainer.run()`` for each of ``repeats`` runs, each run preceded (untimed)
    by ``prepare`` with the problem the trainer was last prepared with, so every run starts
    from the initial weights. The repeats of one trainer run back to back, with no pause
    before them, as a core left idle clocks down and a run of milliseconds
    (W1, W2) would then be timed partly at the lower clock."""
    if trainer.problem is None:
        raise ValueError("measure needs a trainer that has been prepared once")
    seconds = []
    for _ in range(repeats):
        trainer.prepare(*trainer.problem)
        start = time.perf_counter()
        trainer.run()
        seconds.append(time.perf_counter() - start)
    return seconds


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """NumPy float32 n x n matrix product: 2 n^3 flops over the median time."""
    rng = np.random.default_rng(0)
    A, B = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    C = np.empty_like(A)
    np.matmul(A, B, out=C)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(A, B, out=C)
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9
