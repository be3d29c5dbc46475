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

The Dask benchmark (``run_dask``, ``python -m backprop bench --dask``) fits
``backprop.MLPClassifier`` on data generated on a local Dask cluster of one, then two
worker processes, and reports an L-BFGS iteration's and an sgd epoch's time, the bytes the
workers sent and their spilling.

Run it with ``python -m backprop bench`` (see ``main``). The package holds the workloads
(``workloads``), the trainers and how a run is timed (``trainers``), the digits benchmark
(``digits``), the Dask benchmark (``dask_bench``) and the tables and command line
(``report``).
"""

from .compiled import JaxScanTrainer, JaxStepTrainer, TorchCompileTrainer
from .dask_bench import DaskRow, dask_missing, run_dask
from .digits import (
    DIGITS,
    DIGITS_LIBRARIES,
    DigitsRow,
    DigitsWorkload,
    digits_data,
    digits_estimator,
    digits_missing,
    fit_quietly,
    measure_digits,
)
from .registry import TRAINERS, available_trainers, make_trainer
from .report import Row, main, run_table
from .trainers import (
    BackpropTrainer,
    NumpyTrainer,
    SklearnTrainer,
    TorchTrainer,
    Trainer,
    final_weights,
    gemm_gflops,
    measure,
)
from .workloads import WORKLOADS, Data, Params, Workload, initial_params, make_data

__all__ = [
    "WORKLOADS",
    "TRAINERS",
    "DIGITS",
    "DIGITS_LIBRARIES",
    "DaskRow",
    "Data",
    "DigitsRow",
    "DigitsWorkload",
    "Params",
    "Row",
    "Trainer",
    "BackpropTrainer",
    "JaxScanTrainer",
    "JaxStepTrainer",
    "NumpyTrainer",
    "SklearnTrainer",
    "TorchTrainer",
    "TorchCompileTrainer",
    "Workload",
    "available_trainers",
    "dask_missing",
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
    "run_dask",
    "run_table",
]
