"""Signatures of the compiled kernels (``_kernels/_core.pyx``, built once per CPU target;
``_core.py`` re-exports the one in use); arrays are float32 or float64, one dtype per call,
C-contiguous; ``intp`` arrays hold sizes, offsets, labels, orders."""

import enum

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float32] | NDArray[np.float64]
Index = NDArray[np.intp]

class Activation(enum.IntEnum):
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4
    EXP = 5
    LEAKY_RELU = 6
    ELU = 7
    GELU = 8
    SOFTPLUS = 9
    SILU = 10

class Loss(enum.IntEnum):
    MSE = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2
    SK_SQUARED_ERROR = 3
    SK_LOG_LOSS = 4
    SK_BINARY_LOG_LOSS = 5
    SK_POISSON = 6

class Mode(enum.IntEnum):
    LOSS_ONLY = 0
    GRADIENTS = 1
    FUSED_STEP = 2

class Status(enum.IntEnum):
    COMPLETED = 0
    LOSS_NOT_FINITE = 1
    WEIGHTS_NOT_FINITE = 2
    INPUT_NOT_FINITE = 3
    INTERRUPTED = 4

class Rule(enum.IntEnum):
    NO_STEP = 0
    SGD = 1
    MOMENTUM = 2
    SK_MOMENTUM = 3
    SK_ADAM = 4
    ADAM = 5

class Path(enum.IntEnum):
    ONE_CORE = 0
    HALVES = 1
    UNITS = 2

TARGET: str

class Plan:
    dtype: np.dtype
    path: Path
    tiny_runs: bool
    tiny_rows: int
    backward: bool
    rows: int
    check_every: int
    grad: Float | None
    rng_state: NDArray[np.uint64]
    n_running: int
    def __init__(
        self,
        arch: object,
        rows: int,
        *,
        optimizer: object | None = ...,
        dropout: float = ...,
        seed: int = ...,
        gather: bool = ...,
        two_cores: bool = ...,
        backward: bool = ...,
        stats: bool = ...,
    ) -> None: ...
    def train(
        self,
        theta: Float,
        X: Float,
        targets: Float | Index,
        *,
        order: Index | None = ...,
        epochs: int = ...,
        losses: NDArray[np.float64],
        optimizer: object,
        steps: NDArray[np.intp],
        check_input: bool = ...,
        running: Float | None = ...,
        grad_norms: NDArray[np.float64] | None = ...,
        update_ratios: NDArray[np.float64] | None = ...,
    ) -> tuple[Status, int, int]: ...
    def batch(
        self,
        theta: Float,
        X: Float,
        targets: Float | Index,
        *,
        mode: int,
        grad: Float | None = ...,
        running: Float | None = ...,
    ) -> float: ...
    def forward(self, theta: Float, X: Float, out: Float, running: Float | None = ...) -> None: ...
    def forward_training(self, theta: Float, X: Float, out: Float) -> None: ...
    def sk_epoch(
        self,
        params: Float,
        X: Float,
        Y: Float,
        sample_weight: Float | None,
        order: Index,
        *,
        optimizer: object,
    ) -> float: ...
    def sk_objective(
        self, params: Float, X: Float, Y: Float, sample_weight: Float | None, grad: Float
    ) -> float: ...

def set_thresholds(
    tile_min_work: int,
    blas_min_work: int,
    narrow_blas_min_work: int,
    split_min_work: int,
    split_min_rows: int | None = ...,
) -> tuple[int, int, int, int, int]: ...
def bind_blas_threads(get_address: int) -> None: ...
def blas_library() -> str | None: ...
def blas_threads() -> int: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> int: ...
def team_state() -> str: ...
def team_size() -> int: ...
def peak_flops(steps: int, doubles: bool, threads: int) -> int: ...
def set_tiny_runs(on: bool) -> bool: ...

TINY_RUNS_TARGET: bool
def all_finite(values: Float) -> bool: ...
def dense(X: Float, W: Float, b: Float, Z: Float) -> None: ...
def activate(Z: Float, A: Float, act: int) -> None: ...
def activation_prime(Z: Float, A: Float, out: Float, act: int) -> None: ...
def output_delta(
    Z: Float, Y: Float, labels: Index, delta: Float, output: int, loss: int
) -> float: ...
def hidden_delta(
    delta: Float, W: Float, Z_prev: Float, A_prev: Float, delta_prev: Float, act: int
) -> None: ...
def weight_gradients(delta: Float, A_prev: Float, grad_W: Float, grad_b: Float) -> None: ...
