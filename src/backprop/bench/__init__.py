"""Benchmarks of backprop against its peers: NumPy by hand, PyTorch (eager and
``torch.compile``), JAX and scikit-learn.

Every trainer of a workload starts from the same initial weights and trains on the same
data, in the same batches, in the same order, with plain SGD (no momentum, no weight decay),
but W5: batch normalization and PyTorch's Adam, which NumPy's and scikit-learn's trainers
do not run.
A trainer is split in two: ``prepare(workload, data, params)`` builds the model, converts
the data and compiles what its library compiles (not timed), ``run()`` is exactly the
training (or inference) the workload describes (timed). ``run_tables`` runs every installed
trainer on every workload in one process and prints median times.

The digits benchmark times the scikit-learn estimators instead: ``backprop.MLPClassifier``
against ``sklearn.neural_network.MLPClassifier`` fitted with the same parameters on
``sklearn.datasets.load_digits``, one row per library and solver, in a second table.

The contention benchmark (``run_contention``, ``python -m backprop bench --contention``)
times the digits sgd fit and W3 while something else wants the cores, on backprop's default
threads and on one, beside the peers, each condition in a fresh process.

PyTorch, JAX, scikit-learn and matplotlib are optional: this package imports them only when
their trainer is prepared (or the digits benchmark runs, or the figure is drawn), so it
imports with NumPy alone.

The Dask benchmark (``run_dask``, ``python -m backprop bench --dask``) fits
``backprop.MLPClassifier`` on data generated on a local Dask cluster of one, then two
worker processes, and reports an L-BFGS iteration's and an sgd epoch's time, the bytes the
workers sent and their spilling.

Run it with ``python -m backprop bench`` (``command.main``). The package holds the workloads
(``workloads``), the eager trainers and how a run is timed (``trainers``), the compiled
trainers (``compiled``), the list of all (``registry``), the digits benchmark (``digits``),
the tables (``report``), the machine's arithmetic peak (``peak``), the contention benchmark
(``contention``) and the fresh processes it runs in (``isolated``), the Dask benchmark
(``dask_bench``), the JSON record of a run (``record``), the figure of the ratios
(``plot``), the BLAS environment the command runs in (``blas_env``) and the command line
(``command``).
"""

from .command import main
from .compiled import JaxScanTrainer, JaxStepTrainer, TorchCompileTrainer
from .contention import Contention, ContentionRow, run_contention
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
from .peak import Peak, peak_gflops
from .plot import plot_ratios
from .registry import TRAINERS, available_trainers, make_trainer
from .report import Row, Tables, run_table, run_tables
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
    "Tables",
    "Contention",
    "ContentionRow",
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
    "peak_gflops",
    "Peak",
    "plot_ratios",
    "run_contention",
    "run_dask",
    "run_table",
    "run_tables",
]
