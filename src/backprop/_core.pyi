"""Signatures of the compiled kernels (``_core.pyx``); arrays are float32 or float64,
one dtype per call, C-contiguous; ``intp`` arrays hold sizes, offsets, labels, orders."""

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float32] | NDArray[np.float64]
Index = NDArray[np.intp]

ACTIVATIONS: dict[str, int]
LOSSES: dict[str, int]

def set_thresholds(
    tile_min_work: int,
    blas_min_work: int,
    narrow_blas_min_work: int,
    split_min_work: int,
    split_min_rows: int | None = ...,
) -> tuple[int, int, int, int, int]: ...
def splits(sizes: Index, m: int) -> bool: ...
def two_cores(sizes: Index, m: int) -> bool: ...
def split_size(sizes: Index, m: int) -> int: ...
def train(
    theta: Float,
    sizes: Index,
    offsets: Index,
    hidden: int,
    output: int,
    loss: int,
    X: Float,
    Y: Float,
    labels: Index,
    order: Index,
    batch_size: int,
    epochs: int,
    eta: float,
    epoch_losses: NDArray[np.float64],
    acts: Float,
    deltas: Float,
    x_batch: Float,
    y_batch: Float,
    label_batch: Index,
    check_every: int,
    wt: bool = ...,
    decay: float = ...,
    dropout: float = ...,
    rng_state: NDArray[np.uint64] | None = ...,
    factors: Float | None = ...,
    momentum: float = ...,
    nesterov: bool = ...,
    velocity: Float | None = ...,
    grad: Float | None = ...,
    halves: Float | None = ...,
    check_input: bool = ...,
) -> tuple[int, int, int]: ...
def batch(
    theta: Float,
    grad: Float,
    sizes: Index,
    offsets: Index,
    hidden: int,
    output: int,
    loss: int,
    X: Float,
    Y: Float,
    labels: Index,
    eta: float,
    mode: int,
    acts: Float,
    deltas: Float,
    wt: bool = ...,
    decay: float = ...,
    halves: Float | None = ...,
) -> float: ...
def forward(
    theta: Float,
    sizes: Index,
    offsets: Index,
    hidden: int,
    output: int,
    X: Float,
    out: Float,
    work: Float,
    chunk: int,
    wt: bool = ...,
) -> None: ...
def dense(X: Float, W: Float, b: Float, Z: Float) -> None: ...
def activate(Z: Float, A: Float, act: int) -> None: ...
def activation_prime(A: Float, out: Float, act: int) -> None: ...
def output_delta(
    Z: Float, Y: Float, labels: Index, delta: Float, output: int, loss: int
) -> float: ...
def hidden_delta(delta: Float, W: Float, A_prev: Float, delta_prev: Float, act: int) -> None: ...
def weight_gradients(delta: Float, A_prev: Float, grad_W: Float, grad_b: Float) -> None: ...
def sk_epoch(
    params: Float,
    grad: Float,
    moment1: Float,
    moment2: Float,
    sizes: Index,
    offsets: Index,
    hidden: int,
    output: int,
    loss: int,
    X: Float,
    Y: Float,
    sample_weight: Float,
    order: Index,
    batch_size: int,
    alpha: float,
    adam: bool,
    learning_rate: float,
    momentum: float,
    nesterov: bool,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    step: int,
    acts: Float,
    deltas: Float,
    x_batch: Float,
    y_batch: Float,
    sw_batch: Float,
    check_every: int,
    halves: Float | None = ...,
) -> float: ...
def sk_loss_grad(
    params: Float,
    grad: Float,
    sizes: Index,
    offsets: Index,
    hidden: int,
    output: int,
    loss: int,
    X: Float,
    Y: Float,
    sample_weight: Float,
    alpha: float,
    acts: Float,
    deltas: Float,
) -> float: ...
def all_finite(values: Float) -> bool: ...

BLAS_THREAD_CONTROL: bool

def bind_blas_threads(set_address: int, get_address: int) -> None: ...
