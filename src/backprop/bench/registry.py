"""Every trainer of the benchmark by name, in the order of its tables: backprop, then the
eager peers (``trainers``), then the compiled ones (``compiled``)."""

from __future__ import annotations

from .compiled import JaxScanTrainer, JaxStepTrainer, TorchCompileTrainer
from .trainers import BackpropTrainer, NumpyTrainer, SklearnTrainer, TorchTrainer, Trainer
from .workloads import Workload

TRAINERS: dict[str, type[Trainer]] = {
    t.name: t
    for t in (
        BackpropTrainer,
        NumpyTrainer,
        TorchTrainer,
        SklearnTrainer,
        JaxScanTrainer,
        JaxStepTrainer,
        TorchCompileTrainer,
    )
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
