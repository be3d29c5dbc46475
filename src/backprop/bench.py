"""Benchmarks of backprop against its peers: NumPy by hand, PyTorch and scikit-learn.

Every trainer of a workload starts from the same initial weights and trains on the same
data, in the same batches, in the same order, with plain SGD (no momentum, no weight decay).
A trainer is split in two: ``prepare(workload, data, params)`` builds the model and converts
the data (not timed), ``run()`` is exactly the training (or inference) the workload describes
(timed). ``run_table`` runs every installed trainer on every workload in one process and prints
median times.

The digits benchmark times the scikit-learn estimators instead: ``backprop.MLPClassifier``
against ``sklearn.neural_network.MLPClassifier`` fitted with the same parameters on
``sklearn.datasets.load_digits``, one row per library and solver, in a second table.

PyTorch and scikit-learn are optional: this module imports them only when their trainer is
prepared (or the digits benchmark runs), so it imports with NumPy alone.

Run it with ``python -m backprop bench`` (see ``main``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from itertools import pairwise
from typing import Any, ClassVar, NamedTuple, TextIO

import numpy as np

__all__ = [
    "WORKLOADS",
    "TRAINERS",
    "DIGITS",
    "DIGITS_LIBRARIES",
    "Data",
    "DigitsRow",
    "DigitsWorkload",
    "Params",
    "Row",
    "Workload",
    "available_trainers",
    "digits_data",
    "digits_estimator",
    "digits_missing",
    "final_weights",
    "fit_quietly",
    "gemm_gflops",
    "initial_params",
    "main",
    "make_data",
    "make_trainer",
    "measure",
    "measure_digits",
    "run_table",
    "settle",
]

# Seconds of idle before each timed fit of the digits benchmark, where the two libraries
# alternate. Thread pools keep their threads spinning on a core for a while after their
# last job (OpenBLAS's for ~0.1 s on this machine, OpenMP's briefly): without a pause,
# each fit would be timed while the previous fit's library still held a core, which
# penalises whoever uses both cores next (measured on load_digits: backprop's fit took
# 0.26 s right after scikit-learn's, 0.15 s from 0.1 s later on). BACKPROP_BENCH_SETTLE=0
# turns the pause off.
SETTLE_SECONDS = float(os.environ.get("BACKPROP_BENCH_SETTLE", "0.2"))


def settle() -> None:
    """Wait ``SETTLE_SECONDS`` so that every thread pool in the process has gone idle."""
    if SETTLE_SECONDS > 0:
        time.sleep(SETTLE_SECONDS)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark: a network, its training recipe and its data size.

    ``task`` is "train" (one epoch of plain SGD over ``n_samples`` in order) or "forward"
    (outputs of the network for all ``n_samples`` at once). Data are drawn from
    ``np.random.default_rng(seed)``; the initial weights are those of
    ``Network(sizes, seed=seed + 1)`` (Glorot uniform, zero biases).
    """

    name: str
    title: str
    sizes: tuple[int, ...]
    activation: str
    output: str
    loss: str
    batch_size: int
    lr: float
    dtype: str
    n_samples: int
    task: str = "train"
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.name} {self.title}"

    @property
    def n_weights(self) -> int:
        """sum over layers of n_in * n_out"""
        return sum(n_in * n_out for n_in, n_out in pairwise(self.sizes))

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 flops: 2 per weight and sample forward, 4 backward."""
        per_weight = 6 if self.task == "train" else 2
        return per_weight * self.n_samples * self.n_weights

    def scaled(self, scale: float) -> Workload:
        """The same workload on ``scale`` times as many samples (at least one batch)."""
        n = max(self.batch_size, round(self.n_samples * scale))
        return dataclasses.replace(self, n_samples=n)


# fmt: off
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("W1", "tiny-online", (2, 2, 1), "sigmoid", "sigmoid", "mse",
                 batch_size=1, lr=0.1, dtype="float64", n_samples=20_000),
        Workload("W2", "small-batch", (64, 32, 10), "sigmoid", "softmax", "cross_entropy",
                 batch_size=32, lr=0.1, dtype="float64", n_samples=20_000),
        Workload("W3", "mnist-size", (784, 256, 10), "relu", "softmax", "cross_entropy",
                 batch_size=128, lr=0.1, dtype="float32", n_samples=60_000),
        Workload("W4", "wide", (1024, 1024, 1024, 10), "relu", "softmax", "cross_entropy",
                 batch_size=256, lr=0.01, dtype="float32", n_samples=20 * 256),
        Workload("W3f", "mnist-size forward", (784, 256, 10), "relu", "softmax",
                 "cross_entropy", batch_size=128, lr=0.1, dtype="float32", n_samples=60_000,
                 task="forward"),
    ]
}
# fmt: on


class Data(NamedTuple):
    """Inputs X (n, n_in) in the workload's dtype; targets Y: (n, k) values in (0, 1) for
    mse, int64 class labels (n,) for cross_entropy."""

    X: np.ndarray
    Y: np.ndarray


class Params(NamedTuple):
    """weights[l] of shape (n_out, n_in), biases[l] of shape (n_out,)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def copy(self) -> Params:
        return Params([w.copy() for w in self.weights], [b.copy() for b in self.biases])


def make_data(workload: Workload) -> Data:
    """X ~ N(0, 1); targets from a fixed random linear map M of X, so they can be learnt:
    sigmoid(X M^T) for mse, argmax(X M^T) for cross_entropy."""
    rng = np.random.default_rng(workload.seed)
    n_in, k = workload.sizes[0], workload.sizes[-1]
    X = rng.standard_normal((workload.n_samples, n_in), dtype=np.dtype(workload.dtype))
    M = rng.standard_normal((k, n_in)).astype(workload.dtype)
    scores = X @ M.T
    if workload.loss == "cross_entropy":
        return Data(X, scores.argmax(axis=1).astype(np.int64))
    Y = 1.0 / (1.0 + np.exp(-scores))
    return Data(X, Y.astype(workload.dtype))


def initial_params(workload: Workload) -> Params:
    """Glorot uniform weights and zero biases, drawn as ``Network(sizes, seed=seed + 1)``."""
    rng = np.random.default_rng(workload.seed + 1)
    weights, biases = [], []
    for n_in, n_out in pairwise(workload.sizes):
        limit = math.sqrt(6 / (n_in + n_out))
        weights.append(rng.uniform(-limit, limit, size=(n_out, n_in)).astype(workload.dtype))
        biases.append(np.zeros(n_out, dtype=workload.dtype))
    return Params(weights, biases)


# --- trainers -------------------------------------------------------------------------------


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
    """``Network.from_params(...).fit(X, Y, epochs=1, shuffle=False)``; ``forward(X)``."""

    name = "backprop"
    module = "backprop"

    @classmethod
    def load(cls) -> Any:
        from backprop import Network

        return Network

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        Network = self.load()
        self.workload, self.data = workload, data
        self.net = Network.from_params(
            params.weights,
            params.biases,
            activation=workload.activation,
            output=workload.output,
            loss=workload.loss,
            dtype=workload.dtype,
        )

    def run(self) -> None:
        w, (X, Y) = self.workload, self.data
        if w.task == "forward":
            self.net.forward(X)
        else:
            losses = self.net.fit(X, Y, epochs=1, batch_size=w.batch_size, lr=w.lr, shuffle=False)
            self.epoch_loss = float(losses[-1])

    def params(self) -> Params:
        return Params(
            [np.asarray(W) for W in self.net.weights], [np.asarray(b) for b in self.net.biases]
        )


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
    """Mini-batch SGD written by hand with NumPy: ``@`` for the products, in-place updates."""

    name = "numpy"
    module = "numpy"

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        if workload.task == "train" and (workload.output, workload.loss) not in _NUMPY_OUTPUT:
            raise ValueError(f"numpy trainer: no {workload.output} + {workload.loss} output")
        self.workload, self.data, self.weights, self.biases = workload, data, *params

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
    """nn.Linear layers, torch.optim.SGD(momentum=0), MSELoss / CrossEntropyLoss; torch's own
    default thread count."""

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
        for W, b in zip(*params, strict=True):
            linear = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, hidden()]
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
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=workload.lr, momentum=0)
        self.X = torch.from_numpy(data.X)
        self.Y = torch.from_numpy(data.Y)

    def run(self) -> None:
        if self.workload.task == "forward":
            with self.torch.inference_mode():
                self.model(self.X)
            return
        model, loss_fn, optimizer, X, Y = self.model, self.loss_fn, self.optimizer, self.X, self.Y
        n = len(X)
        batch = min(self.workload.batch_size, n)
        total = 0.0
        for start in range(0, n, batch):
            x, y = X[start : start + batch], Y[start : start + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        self.epoch_loss = total / n

    def params(self) -> Params:
        linears = [m for m in self.model if isinstance(m, self.torch.nn.Linear)]
        return Params(
            [m.weight.detach().numpy().copy() for m in linears],
            [m.bias.detach().numpy().copy() for m in linears],
        )


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


TRAINERS: dict[str, type[Trainer]] = {
    t.name: t for t in (BackpropTrainer, NumpyTrainer, TorchTrainer, SklearnTrainer)
}


def make_trainer(name: str) -> Trainer:
    return TRAINERS[name]()


def available_trainers(workload: Workload | None = None) -> list[str]:
    """Names of the trainers whose library imports (and which run ``workload``, if given)."""
    return [
        name
        for name, cls in TRAINERS.items()
        if cls.available() and (workload is None or cls().supports(workload))
    ]


def final_weights(trainer: Trainer) -> Params:
    """The trainer's weights and biases after ``run``, weights in (n_out, n_in) layout."""
    return trainer.params()


def measure(trainer: Trainer, repeats: int = 5) -> list[float]:
    """Seconds of ``trainer.run()`` for each of ``repeats`` runs, each run preceded (untimed)
    by ``prepare`` with the problem the trainer was last prepared with, so every run starts
    from the initial weights. The repeats of one trainer run back to back: no pause
    (``settle``) before them, as a core left idle clocks down and a run of milliseconds
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


# --- digits: the scikit-learn estimators --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DigitsWorkload:
    """``MLPClassifier(hidden_layer_sizes, solver, max_iter, random_state)``, every other
    parameter at its default, fitted on the first ``n_train`` samples of the training split of
    ``load_digits`` and scored on the whole test split (see ``digits_data``)."""

    solver: str
    max_iter: int = 200
    n_train: int = 1347  # the whole training split: 1797 digits less the 25 % held out
    hidden_layer_sizes: tuple[int, ...] = (100,)
    random_state: int = 0

    @property
    def name(self) -> str:
        return f"digits {self.solver}"

    @property
    def label(self) -> str:
        return self.name

    @property
    def params(self) -> dict[str, Any]:
        return dict(
            hidden_layer_sizes=self.hidden_layer_sizes,
            solver=self.solver,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )

    def scaled(self, scale: float) -> DigitsWorkload:
        """``scale`` < 1: that fraction of the training samples (at least 100) and of the
        iterations (at least 1). The data set has no more samples, so ``scale`` >= 1 is the
        workload itself."""
        if scale >= 1:
            return self
        return dataclasses.replace(
            self,
            n_train=min(self.n_train, max(100, round(self.n_train * scale))),
            max_iter=max(1, round(self.max_iter * scale)),
        )


DIGITS: dict[str, DigitsWorkload] = {
    solver: DigitsWorkload(solver) for solver in ("sgd", "adam", "lbfgs")
}
DIGITS_LIBRARIES = ("backprop", "sklearn")


def digits_missing() -> str | None:
    """Why the digits benchmark cannot run here, or None if it can."""
    if not SklearnTrainer.available():
        return "scikit-learn is not installed"
    try:
        importlib.import_module("backprop.estimators")
    except ImportError as error:
        return f"backprop.MLPClassifier does not import: {error}"
    return None


@cache
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return tuple(train_test_split(X / 16, y, test_size=0.25, random_state=0))


def digits_data(workload: DigitsWorkload) -> tuple[np.ndarray, ...]:
    """``X_train, y_train, X_test, y_test``: the 8x8 digits with pixels scaled from 0..16 to
    [0, 1], split by ``train_test_split(test_size=0.25, random_state=0)``; the training split
    cut to ``workload.n_train`` samples."""
    X_train, X_test, y_train, y_test = _digits_split()
    n = workload.n_train
    return X_train[:n], y_train[:n], X_test, y_test


def digits_estimator(library: str, workload: DigitsWorkload) -> Any:
    """An unfitted ``MLPClassifier`` of ``library`` ("backprop" or "sklearn")."""
    if library == "backprop":
        from backprop import MLPClassifier
    elif library == "sklearn":
        from sklearn.neural_network import MLPClassifier
    else:
        raise ValueError(f"library must be one of {DIGITS_LIBRARIES}, got {library!r}")
    return MLPClassifier(**workload.params)


def fit_quietly(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """``estimator.fit(X, y)`` without the ConvergenceWarning of a fit that reaches max_iter."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@dataclasses.dataclass
class DigitsRow:
    workload: DigitsWorkload
    trainer: str
    seconds: list[float] = dataclasses.field(default_factory=list)
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)
    accuracy: float = math.nan
    n_iter: int = 0
    loss: float = math.nan
    ratio: float = math.nan

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)


def measure_digits(workload: DigitsWorkload, repeats: int = 5) -> list[DigitsRow]:
    """One row per library: wall and CPU seconds of ``fit`` on a fresh estimator for each of
    ``repeats`` rounds, the libraries alternating (their order flips every round); accuracy on
    the test split, ``n_iter_`` and ``loss_`` of an untimed first fit of each."""
    X, y, X_test, y_test = digits_data(workload)
    rows = {library: DigitsRow(workload, library) for library in DIGITS_LIBRARIES}
    for library, row in rows.items():
        estimator = fit_quietly(digits_estimator(library, workload), X, y)
        row.accuracy = float(estimator.score(X_test, y_test))
        row.n_iter, row.loss = int(estimator.n_iter_), float(estimator.loss_)
    for round_ in range(repeats):
        order = DIGITS_LIBRARIES if round_ % 2 == 0 else DIGITS_LIBRARIES[::-1]
        for library in order:
            estimator = digits_estimator(library, workload)
            settle()
            wall, cpu = time.perf_counter(), time.process_time()
            fit_quietly(estimator, X, y)
            rows[library].cpu_seconds.append(time.process_time() - cpu)
            rows[library].seconds.append(time.perf_counter() - wall)
    for row in rows.values():
        row.ratio = rows["sklearn"].median / row.median
    return list(rows.values())


# --- the table ------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    workload: Workload
    trainer: str
    seconds: list[float]
    ratio: float = math.nan

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def samples_per_second(self) -> float:
        return self.workload.n_samples / self.median

    @property
    def gflops(self) -> float:
        return self.workload.flops / self.median / 1e9


def _environment() -> str:
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    parts = [f"cpus {os.cpu_count()}", f"numpy {np.__version__} ({blas.get('name', '?')})"]
    for name in ("torch", "sklearn"):
        if TRAINERS[name].available():
            module = importlib.import_module(name)
            parts.append(f"{name} {module.__version__}")
            if name == "torch":
                parts[-1] += f" ({module.get_num_threads()} threads)"
    return ", ".join(parts)


NOTES = """\
Measured: median wall time of `run` over the repeats, each repeat prepared afresh (model built,
data converted, shared initial weights loaded: not timed), one trainer's repeats back to back.
Training = one epoch of plain SGD (no momentum, no weight decay) in fixed order, every trainer
from the same Glorot weights on the same Gaussian data; forward = outputs (softmax included) for
all samples in one call. GFLOP/s counts 2 flops per weight and sample forward, 6 for training.
ratio = median time of the fastest peer / this median (peers exclude backprop; > 1 is faster
than every peer). Every trainer computes the loss of each batch (backprop's fit returns the
epoch loss). sklearn: MLP*.partial_fit, which also validates its input and binarizes labels on
each call and computes an (alpha = 0) L2 term per batch. On W1 it is MLPRegressor: identity
output and loss (1/2) mean squared error instead of a sigmoid output and mean squared error, so
it does not compute the same function there."""


def _print_table(rows: list[Row], file: TextIO) -> None:
    header = f"{'workload':<22} {'trainer':<9} {'median s':>10} {'samples/s':>12} "
    header += f"{'GFLOP/s':>8} {'ratio':>6}"
    print(header, file=file)
    print("-" * len(header), file=file)
    for row in rows:
        print(
            f"{row.workload.label:<22} {row.trainer:<9} {row.median:>10.4f} "
            f"{row.samples_per_second:>12,.0f} {row.gflops:>8.3g} {row.ratio:>6.2f}",
            file=file,
        )


DIGITS_NOTES = """\
Measured: median wall time of `fit` on a fresh estimator, and the median CPU time of the process
over the same fits (all its threads: scikit-learn's products run in NumPy's BLAS, backprop's in
its own kernels, on both cores at this size). backprop.MLPClassifier and
sklearn.neural_network.MLPClassifier alternate in one process, their order flipping every
repeat, after one untimed fit of each, each fit after the same 0.2 s pause (without it, NumPy's
OpenBLAS threads, still spinning after a scikit-learn fit, take a core from the fit that
follows); both get the same float64 arrays and the same parameters, so they should fit the same
model: accuracy (on the held-out 25 %), n_iter_ and loss_ come from that first fit and show
whether they did. ConvergenceWarning (max_iter reached) is silenced. ratio = sklearn's median
time / this median (> 1: faster than sklearn)."""


def _print_digits_table(rows: list[DigitsRow], file: TextIO) -> None:
    header = f"{'workload':<22} {'library':<9} {'median s':>10} {'cpu s':>8} "
    header += f"{'accuracy':>8} {'n_iter_':>7} {'loss_':>10} {'ratio':>6}"
    print(header, file=file)
    print("-" * len(header), file=file)
    for row in rows:
        print(
            f"{row.workload.label:<22} {row.trainer:<9} {row.median:>10.4f} "
            f"{row.cpu_median:>8.3f} {row.accuracy:>8.4f} {row.n_iter:>7} {row.loss:>10.4g} "
            f"{row.ratio:>6.2f}",
            file=file,
        )


def run_table(
    workloads: Sequence[str | Workload] = (*WORKLOADS, "digits"),
    repeats: int = 5,
    scale: float = 1.0,
    progress: bool = True,
    file: TextIO | None = None,
    trainers: Sequence[str] | None = None,
    gemm_size: int = 2048,
) -> list[Row | DigitsRow]:
    """Time every available trainer on each workload, in this process, and print the table.

    The name "digits" among ``workloads`` adds the second table: the two MLPClassifiers on
    every solver of ``DIGITS`` (whatever ``trainers`` says), or a note if they cannot run.
    """
    file = sys.stdout if file is None else file
    with_digits = "digits" in workloads
    chosen = [WORKLOADS[w] if isinstance(w, str) else w for w in workloads if w != "digits"]
    chosen = [w.scaled(scale) for w in chosen]
    digits_skipped = digits_missing() if with_digits else None
    digits = (
        [w.scaled(scale) for w in DIGITS.values()] if with_digits and not digits_skipped else []
    )
    names = list(TRAINERS) if trainers is None else list(trainers)
    missing = [name for name in names if not TRAINERS[name].available()]
    plan = [
        (w, name)
        for w in chosen
        for name in names
        if name not in missing and TRAINERS[name]().supports(w)
    ]
    total = len(plan) + bool(chosen) + len(digits)
    steps = iter(range(1, total + 1))

    def announce(what: str) -> None:
        if progress:
            print(f"[{next(steps)}/{total}] {what} ...", file=sys.stderr, flush=True)

    print(f"backprop benchmarks: {repeats} repeats, scale {scale:g}; {_environment()}", file=file)
    rows: list[Row | DigitsRow] = []
    if chosen:
        rows += _run_workloads(chosen, plan, repeats, gemm_size, announce, file)
        if missing:
            print(f"not available (skipped): {', '.join(missing)}", file=file)
        print("\n" + NOTES, file=file)
    if digits_skipped:
        print(f"\ndigits: skipped, {digits_skipped}", file=file)
    elif digits:
        rows += _run_digits(digits, repeats, announce, file)
    return rows


def _load_average(before: float) -> str:
    # Other processes on the machine slow multi-threaded code most (torch's and BLAS's threads
    # wait for each other), so each table says how busy the machine was.
    return f"1-minute load average: {before:.2f} before, {os.getloadavg()[0]:.2f} after"


def _run_workloads(
    chosen: list[Workload],
    plan: list[tuple[Workload, str]],
    repeats: int,
    gemm_size: int,
    announce: Callable[[str], None],
    file: TextIO,
) -> list[Row]:
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    for workload, name in plan:
        announce(f"{workload.name} {name}")
        data, params = _problem(workload)
        trainer = make_trainer(name)
        trainer.prepare(workload, data, params)
        rows.append(Row(workload, name, measure(trainer, repeats)))
    announce("gemm")
    gemm = gemm_gflops(gemm_size, repeats=max(repeats, 3))
    for workload in chosen:
        mine = [row for row in rows if row.workload == workload]
        peers = [row.median for row in mine if row.trainer != "backprop"]
        for row in mine:
            row.ratio = min(peers) / row.median if peers else math.nan

    print(_load_average(load_before), file=file)
    _print_table(rows, file)
    print(f"\nNumPy float32 gemm {gemm_size}x{gemm_size}: {gemm:.1f} GFLOP/s", file=file)
    for row in rows:
        if row.trainer == "backprop" and row.workload.name == "W4":
            fraction = f"{row.gflops:.1f} GFLOP/s = {row.gflops / gemm:.0%} of gemm"
            print(f"backprop on W4: {fraction}", file=file)
    return rows


def _blas_threads() -> str:
    """The BLAS libraries loaded and their thread counts, if threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ""
    blas = []
    for lib in threadpool_info():
        if lib["user_api"] == "blas":
            folder = os.path.basename(os.path.dirname(lib["filepath"]))
            owner = folder.removesuffix(".libs") if folder.endswith(".libs") else lib["prefix"]
            blas.append(f"{owner}'s {lib['internal_api']} {lib['num_threads']}")
    return f"; BLAS threads: {', '.join(blas)}" if blas else ""


def _run_digits(
    digits: list[DigitsWorkload],
    repeats: int,
    announce: Callable[[str], None],
    file: TextIO,
) -> list[DigitsRow]:
    load_before = os.getloadavg()[0]
    rows: list[DigitsRow] = []
    for workload in digits:
        announce(f"{workload.name} {' and '.join(DIGITS_LIBRARIES)}")
        rows += measure_digits(workload, repeats)
    w = digits[0]
    n_test = len(digits_data(w)[3])
    model = f"hidden_layer_sizes={w.hidden_layer_sizes}, max_iter={w.max_iter}"
    print(
        f"\ndigits: MLPClassifier({model}, random_state={w.random_state})\n"
        f"on load_digits / 16: {w.n_train} training and {n_test} test samples",
        file=file,
    )
    print(_load_average(load_before) + _blas_threads(), file=file)
    _print_digits_table(rows, file)
    print("\n" + DIGITS_NOTES, file=file)
    return rows


_PROBLEMS: dict[Workload, tuple[Data, Params]] = {}


def _problem(workload: Workload) -> tuple[Data, Params]:
    """Data and initial weights, made once per workload and shared by all its trainers."""
    if workload not in _PROBLEMS:
        _PROBLEMS.clear()
        _PROBLEMS[workload] = make_data(workload), initial_params(workload)
    return _PROBLEMS[workload]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m backprop bench [--repeats N] [--scale S] [--workloads W1,W3,digits] ...``"""
    names = [*WORKLOADS, "digits"]
    parser = argparse.ArgumentParser(
        prog="python -m backprop bench",
        description="Time backprop against NumPy, PyTorch and scikit-learn on fixed workloads.",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per trainer")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the samples (smoke runs); digits: also of max_iter, at most 1",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(names),
        help=f"comma-separated, from {','.join(names)} (digits: backprop.MLPClassifier "
        "against scikit-learn's on load_digits, every solver)",
    )
    parser.add_argument(
        "--trainers",
        default=",".join(TRAINERS),
        help=f"from {','.join(TRAINERS)} (not for digits)",
    )
    parser.add_argument("--gemm-size", type=int, default=2048, help="n of the gemm reference")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    for value, known, option in (
        (workloads, names, "--workloads"),
        (trainers, TRAINERS, "--trainers"),
    ):
        unknown = [v for v in value if v not in known]
        if unknown:
            parser.error(
                f"{option}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}"
            )
    if args.repeats < 1 or args.scale <= 0:
        parser.error(f"--repeats must be >= 1 and --scale > 0, got {args.repeats}, {args.scale}")
    run_table(
        workloads,
        repeats=args.repeats,
        scale=args.scale,
        progress=not args.no_progress,
        trainers=trainers,
        gemm_size=args.gemm_size,
    )
    return 0
