"""The digits benchmark: ``backprop.MLPClassifier`` against scikit-learn's on
``load_digits``, one row per library and solver."""

from __future__ import annotations

import dataclasses
import importlib
import math
import statistics
import time
import warnings
from functools import cache
from typing import Any

import numpy as np

from .trainers import SklearnTrainer

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
    the test split, ``n_iter_`` and ``loss_`` of an untimed first fit of each.

    Each fit starts right after the previous one, as in a program that fits one library's
    model and then the other's: whatever the previous fit's thread pools still do when it
    returns (OpenBLAS's threads spin for a while after their last product) is part of the
    next fit's time."""
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
            wall, cpu = time.perf_counter(), time.process_time()
            fit_quietly(estimator, X, y)
            rows[library].cpu_seconds.append(time.process_time() - cpu)
            rows[library].seconds.append(time.perf_counter() - wall)
    for row in rows.values():
        row.ratio = rows["sklearn"].median / row.median
    return list(rows.values())
