"""The benchmark's workloads: what each trains, on which data, from which weights."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from typing import NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark: a network, its training recipe and its data size.

    ``task`` is "train" (one epoch over ``n_samples`` in order, of plain SGD with step
    ``lr``, or with ``optimizer="adam"`` of PyTorch's Adam with step size ``lr`` and its
    default betas and eps, from fresh moments) or "forward" (outputs of the network for
    all ``n_samples`` at once). ``batch_norm`` puts batch normalization (PyTorch's
    ``BatchNorm1d``: momentum 0.1, eps 1e-5, gammas 1 and betas 0 at the start) between
    each hidden layer's affine map and its activation. Data are drawn from
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
    optimizer: str = "sgd"
    batch_norm: bool = False

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

    @property
    def needed_flops(self) -> int:
        """The flops of the products the task cannot skip, 2 per multiply-add: forward, 2 per
        weight and sample; training adds 2 per weight (its gradient) and 2 per weight past
        the first layer (the deltas: the inputs need none). What a fraction of the machine's
        peak is taken of."""
        first = self.sizes[0] * self.sizes[1]
        per_sample = 2 * self.n_weights
        if self.task == "train":
            per_sample += 2 * self.n_weights + 2 * (self.n_weights - first)
        return per_sample * self.n_samples

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
        Workload("W5", "batch-norm adam", (784, 256, 256, 10), "relu", "softmax",
                 "cross_entropy", batch_size=128, lr=1e-3, dtype="float32", n_samples=60_000,
                 optimizer="adam", batch_norm=True),
    ]
}
# fmt: on


class Data(NamedTuple):
    """Inputs X (n, n_in) in the workload's dtype; targets Y: (n, k) values in (0, 1) for
    mse, int64 class labels (n,) for cross_entropy."""

    X: np.ndarray
    Y: np.ndarray


class Params(NamedTuple):
    """weights[l] of shape (n_out, n_in), biases[l] of shape (n_out,); with batch
    normalization, each hidden layer's gammas[l] and betas[l] too (else empty lists)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    gammas: list[np.ndarray] = []
    betas: list[np.ndarray] = []

    def copy(self) -> Params:
        return Params(*([a.copy() for a in arrays] for arrays in self))


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
    """Glorot uniform weights and zero biases, drawn as ``Network(sizes, seed=seed + 1)``;
    with batch normalization, gammas of 1 and betas of 0."""
    rng = np.random.default_rng(workload.seed + 1)
    weights, biases = [], []
    for n_in, n_out in pairwise(workload.sizes):
        limit = math.sqrt(6 / (n_in + n_out))
        weights.append(rng.uniform(-limit, limit, size=(n_out, n_in)).astype(workload.dtype))
        biases.append(np.zeros(n_out, dtype=workload.dtype))
    if not workload.batch_norm:
        return Params(weights, biases)
    widths = workload.sizes[1:-1]
    gammas = [np.ones(n, dtype=workload.dtype) for n in widths]
    return Params(weights, biases, gammas, [np.zeros(n, dtype=workload.dtype) for n in widths])
