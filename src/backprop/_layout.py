"""A network as the kernels see it: its architecture and where its parameters live.

All parameters of a network live in one flat array (gradients and optimizer moments
use the same layout). Two packings share it:

- ``Network``'s, layer by layer: ``[W_0, b_0, W_1, b_1, ...]``; with batch
  normalization each hidden layer's gamma_l and beta_l follow its b_l:
  ``[W_0, b_0, gamma_0, beta_0, W_1, ...]``, so that every optimizer trains them
  (without weight decay, as biases);
- scikit-learn's (``grouped``), as it packs them for L-BFGS:
  ``[W_0, W_1, ..., b_0, b_1, ...]``.

``W_l`` is stored row-major as (n_out, n_in), or as (n_in, n_out) when ``transposed``
(scikit-learn's ``coefs_``). ``offsets[2 l]`` and ``offsets[2 l + 1]`` locate W_l and
b_l, ``norm_offsets[l]`` gamma_l (beta_l follows it); the kernels read nothing else of
the layout. Batch normalization's running statistics are not parameters: they live in
an array of their own, ``[mean_0, var_0, mean_1, var_1, ...]`` (``running_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import _core

# Network keeps each W_l transposed, (n_in, n_out), when it has this many weights: its
# products then go to OpenBLAS's small-matrix kernels, which are faster with X @ W than
# with X @ W.T (W2 of the benchmarks, 2,368 weights, trains ~7 % faster). Below, the
# hand-written loops are faster with (n_out, n_in) (the tutorial's network by ~10 %);
# above, from 784 x 256, BLAS is as fast or faster with it too. Measured on the
# benchmarks' machine.
TRANSPOSED_MIN_WEIGHTS = 1024
TRANSPOSED_MAX_WEIGHTS = 16384
# forward, loss and gradients run over many rows a chunk of rows per compiled call, and
# Python answers Ctrl-C between two calls. A chunk's forward pass is about this many
# multiply-adds (~25-50 ms on one core; a gradient pass takes three times as long), ...
CHUNK_WORK = 2**29
# ... but at least this many rows, so that each chunk's products read a wide network's
# weights from memory once for enough rows to stay compute-bound, ...
CHUNK_MIN_ROWS = 64
# ... and at most this many: bounds the workspace (activations, deltas) of a chunk.
# Chunks much shorter cost more per row: [784, 256, 10]'s kernels take ~1.7 times as
# long per row in chunks of 1536 rows as in chunks of 2048 or more.
CHUNK_MAX_ROWS = 4096
# BLAS takes dimensions as C ints: no layer may be wider, nor a batch longer, than this.
MAX_DIM = 2**31 - 1
# The largest array, in bytes, memory can address.
MAX_BYTES = np.iinfo(np.intp).max
# Batch normalization's constants, PyTorch's BatchNorm1d defaults (the kernels' BN_EPS
# and BN_MOMENTUM): running := (1 - MOMENTUM) running + MOMENTUM batch statistic.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def n_weights(sizes) -> int:
    """The number of weights (not biases) of a network of these layer widths."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def n_params(sizes) -> int:
    """The number of weights and biases of a network of these layer widths."""
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def transposed_for(sizes) -> bool:
    """Whether ``Network`` stores the weights of a network of these widths transposed."""
    return TRANSPOSED_MIN_WEIGHTS <= n_weights(sizes) <= TRANSPOSED_MAX_WEIGHTS


@dataclass(frozen=True)
class Architecture:
    """Layer widths (input first), the kernels' codes for the hidden and output
    activations and the loss (``_core.Activation``, ``_core.Loss``), the dtype, and the
    parameters' packing (see the module docstring). ``hidden`` is one code for every
    hidden layer, or a tuple of one code per hidden layer. ``batch_norm`` normalises
    every hidden layer (``Network``'s packing only)."""

    sizes: tuple[int, ...]
    hidden: int | tuple[int, ...]
    output: int
    loss: int
    dtype: np.dtype
    transposed: bool = False
    grouped: bool = False
    batch_norm: bool = False

    @cached_property
    def sizes_array(self) -> np.ndarray:
        """``sizes`` as the kernels read them (read-only: plans point into it)."""
        return _read_only(np.array(self.sizes, dtype=np.intp))

    @cached_property
    def hidden_array(self) -> np.ndarray:
        """Every hidden layer's activation code, as the kernels read them (C ints;
        read-only: plans point into it)."""
        n_hidden = len(self.sizes) - 2
        codes = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,) * n_hidden
        return _read_only(np.array(codes, dtype=np.intc))

    @cached_property
    def offsets(self) -> np.ndarray:
        """Start of W_l at [2 l] and of b_l at [2 l + 1] in the flat array (read-only:
        plans point into it)."""
        shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        offsets, at = [], 0
        if self.grouped:
            weights = []
            for n_in, n_out in shapes:
                weights.append(at)
                at += n_in * n_out
            for l, (_, n_out) in enumerate(shapes):
                offsets += [weights[l], at]
                at += n_out
        else:
            for l, (n_in, n_out) in enumerate(shapes):
                offsets += [at, at + n_in * n_out]
                at += n_in * n_out + n_out
                if self.batch_norm and l < len(shapes) - 1:
                    at += 2 * n_out  # gamma_l, beta_l
        return _read_only(np.array(offsets, dtype=np.intp))

    @cached_property
    def norm_offsets(self) -> np.ndarray:
        """Start of gamma_l at [l] for every hidden layer l (beta_l follows it); empty
        without batch normalization (read-only: plans point into it)."""
        if not self.batch_norm:
            return _read_only(np.empty(0, dtype=np.intp))
        return _read_only(self.offsets[1:-1:2] + np.array(self.sizes[1:-1], dtype=np.intp))

    @property
    def n_params(self) -> int:
        return n_params(self.sizes) + (2 * sum(self.sizes[1:-1]) if self.batch_norm else 0)

    @property
    def running_size(self) -> int:
        """The number of running statistics (a mean and a variance per hidden unit)."""
        return 2 * sum(self.sizes[1:-1]) if self.batch_norm else 0

    def new_running(self) -> np.ndarray:
        """Running statistics as PyTorch starts them: means 0, variances 1."""
        running = np.zeros(self.running_size, dtype=self.dtype)
        for var in self.running_vars(running):
            var[...] = 1
        return running

    def weights(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of every W_l in ``theta``, in their stored shape."""
        return [
            theta[o : o + a * b].reshape((a, b) if self.transposed else (b, a))
            for o, a, b in zip(self.offsets[::2], self.sizes[:-1], self.sizes[1:])
        ]

    def biases(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of every b_l in ``theta``."""
        return [theta[o : o + b] for o, b in zip(self.offsets[1::2], self.sizes[1:])]

    def gammas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of every hidden layer's gamma_l in ``theta`` (none without batch norm)."""
        return [theta[o : o + n] for o, n in zip(self.norm_offsets, self.sizes[1:-1])]

    def betas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of every hidden layer's beta_l in ``theta`` (none without batch norm)."""
        return [theta[o + n : o + 2 * n] for o, n in zip(self.norm_offsets, self.sizes[1:-1])]

    def _running_views(self, running: np.ndarray, part: int) -> list[np.ndarray]:
        views, at = [], 0
        if self.batch_norm:
            for n in self.sizes[1:-1]:
                views.append(running[at + part * n : at + (part + 1) * n])
                at += 2 * n
        return views

    def running_means(self, running: np.ndarray) -> list[np.ndarray]:
        """Views of every hidden layer's running mean in ``running``."""
        return self._running_views(running, 0)

    def running_vars(self, running: np.ndarray) -> list[np.ndarray]:
        """Views of every hidden layer's running variance in ``running``."""
        return self._running_views(running, 1)

    def flatten(self, weights, biases, gammas=(), betas=()) -> np.ndarray:
        """A new flat array holding ``weights`` (stored shapes) and ``biases`` (and with
        batch normalization ``gammas`` and ``betas``)."""
        theta = np.empty(self.n_params, dtype=self.dtype)
        views = self.weights(theta) + self.biases(theta) + self.gammas(theta) + self.betas(theta)
        for view, value in zip(views, [*weights, *biases, *gammas, *betas], strict=True):
            view[...] = value
        return theta

    def plan(self, rows: int, **options) -> _core.Plan:
        """A compiled plan for batches of up to ``rows`` rows (see ``_core.Plan``)."""
        return _core.Plan(self, rows, **options)

    def chunk_rows(self) -> int:
        """Rows per compiled call of a pass over many rows: about CHUNK_WORK multiply-adds
        of the forward pass, within [CHUNK_MIN_ROWS, CHUNK_MAX_ROWS]."""
        return max(CHUNK_MIN_ROWS, min(CHUNK_MAX_ROWS, CHUNK_WORK // n_weights(self.sizes)))

    def forward(self, theta: np.ndarray, X: np.ndarray,
                running: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """The network's outputs for the rows of X (C-contiguous, of the dtype), computed
        by the kernels ``chunk_rows()`` rows per call; batch normalization takes the
        ``running`` statistics (each row's output depends on that row alone)."""
        n = X.shape[0]
        out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        rows = self.chunk_rows()
        plan = self.plan(min(n, rows), two_cores=False, backward=False)
        for start in range(0, n, rows):
            plan.forward(theta, X[start : start + rows], out[start : start + rows], running)
        return out

    def forward_training(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The outputs for the rows of X as a training pass computes them: one call over
        all rows, batch normalization from their statistics."""
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        self.plan(X.shape[0], two_cores=False).forward_training(theta, X, out)
        return out

    def mean_loss(self, theta: np.ndarray, X: np.ndarray, targets: np.ndarray,
                  grad: np.ndarray | None = None) -> float:  # fmt: skip
        """L := the mean loss over the rows of X, and grad := dL/dtheta unless None
        (X, targets and grad C-contiguous, of the dtype; targets rows (n, k) or labels).

        The kernels take ``chunk_rows`` rows per call (one call when X has no more):
        over chunks c of n_c rows, L = sum_c (n_c / n) L_c and grad = sum_c (n_c / n)
        grad_c, summed in float64. Over several chunks the per-row terms are summed in
        another order than one call sums them, so L and grad differ from one call's by
        rounding, relative to the terms' size: ~1e-16 in float64, ~1e-7 in float32 (where
        the chunks' float64 sum is the more accurate).

        With batch normalization the statistics are the whole batch's: one call takes
        all rows, whatever their number (its workspace grows with them).
        """
        mode = _core.Mode.LOSS_ONLY if grad is None else _core.Mode.GRADIENTS
        n = X.shape[0]
        rows = n if self.batch_norm else self.chunk_rows()
        plan = self.plan(min(n, rows), two_cores=grad is not None)
        if n <= rows:
            return plan.batch(theta, X, targets, mode=mode, grad=grad)
        part = total = None
        if grad is not None:
            part, scaled, total = np.empty_like(grad), np.empty(grad.shape), np.zeros(grad.shape)
        value = 0.0
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            share = (stop - start) / n
            value += share * plan.batch(theta, X[start:stop], targets[start:stop], mode=mode,
                                        grad=part)  # fmt: skip
            if grad is not None:
                np.multiply(part, share, out=scaled)
                total += scaled
        if grad is not None:
            grad[...] = total
        return value
