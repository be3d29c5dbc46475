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
