"""Optimizers: the update rules of the compiled solver family, with their state.

Each optimizer names a rule of ``_kernels/_solvers.pxi`` and its hyper-parameters, and
holds the state the rule carries from step to step (velocities, Adam's moments, the
step count ``t``) in the flat layout of the network's parameters. ``Network`` and the
scikit-learn estimators hand the same objects to the compiled plan, which reads the
hyper-parameters when it is built and steps the state in place.

Two conventions exist for the gradient a step starts from:

- PyTorch's (``Network``): g is the batch's mean gradient, and weight decay adds
  ``weight_decay * W`` to it;
- scikit-learn's (the estimators): g is the batch's sum of sample-weighted gradients,
  and the step uses ``(g + weight_decay * W) / sum(sample_weight)`` (weight_decay is
  scikit-learn's ``alpha``).
"""

from __future__ import annotations

import numpy as np

from ._core import Rule

__all__ = ["SGD", "Adam", "GradientOnly", "Optimizer"]

CONVENTIONS = ("pytorch", "scikit-learn")


class Optimizer:
    """An update rule, its hyper-parameters and its state (see the module docstring)."""

    rule: Rule = Rule.NO_STEP
    lr = 0.0
    weight_decay = 0.0
    momentum = 0.0
    nesterov = False
    beta_1 = beta_2 = epsilon = 0.0
    #: the moments' names, moment1 then moment2 (none: the rule keeps no state)
    moments: tuple[str, ...] = ()

    def __init__(self):
        self.moment1: np.ndarray | None = None
        self.moment2: np.ndarray | None = None
        self.t = 0  # steps taken

    @property
    def decay(self) -> float:
        """The L2 coefficient the kernels add to the weights' gradient."""
        return self.weight_decay

    def init_state(self, n_params: int, dtype) -> Optimizer:
        """Fresh state for ``n_params`` parameters of ``dtype``: zero moments, t = 0."""
        self.moment1 = np.zeros(n_params, dtype=dtype) if len(self.moments) > 0 else None
        self.moment2 = np.zeros(n_params, dtype=dtype) if len(self.moments) > 1 else None
        self.t = 0
        return self

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({fields})"

    def _settings(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and Nesterov's form.

    PyTorch's convention (``torch.optim.SGD``): without momentum
    ``W := (1 - lr weight_decay) W - lr g``, ``b := b - lr g``; with momentum mu,
    ``v := mu v + g``, ``theta := theta - lr v`` (Nesterov: ``theta - lr (g + mu v)``),
    g including the decay term. scikit-learn's (``convention="scikit-learn"``, its
    'sgd' solver): ``v := mu v - lr g``, ``theta := theta + v`` (Nesterov:
    ``theta + mu v - lr g``).
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, convention: str = "pytorch"):  # fmt: skip
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
        self.lr, self.momentum, self.nesterov = float(lr), float(momentum), bool(nesterov)
        self.weight_decay, self.convention = float(weight_decay), convention
        if convention == "scikit-learn":
            self.rule = Rule.SK_MOMENTUM
        else:
            self.rule = Rule.MOMENTUM if momentum else Rule.SGD
        self.moments = ("velocity",) if self.rule != Rule.SGD else ()

    @property
    def velocity(self) -> np.ndarray | None:
        return self.moment1

    def _settings(self) -> dict:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "convention": self.convention,
        }


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) in the efficient form of their section 2, as
    scikit-learn's 'adam' solver takes it: ``m := b1 m + (1 - b1) g``,
    ``v := b2 v + (1 - b2) g^2``, ``theta := theta - lr_t m / (sqrt(v) + epsilon)`` with
    ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``; scikit-learn's gradient convention."""

    rule = Rule.ADAM
    moments = ("m", "v")

    def __init__(self, lr: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, weight_decay: float = 0.0):  # fmt: skip
        super().__init__()
        self.lr, self.beta_1, self.beta_2 = float(lr), float(beta_1), float(beta_2)
        self.epsilon, self.weight_decay = float(epsilon), float(weight_decay)

    def _settings(self) -> dict:
        return {
            "lr": self.lr,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "weight_decay": self.weight_decay,
        }


class GradientOnly(Optimizer):
    """No step: the gradient of the loss plus scikit-learn's L2 term, for an outside
    optimizer (L-BFGS) to use."""

    def __init__(self, weight_decay: float = 0.0):
        super().__init__()
        self.weight_decay = float(weight_decay)
