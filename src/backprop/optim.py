"""Optimizers: the update rules of the compiled solver family, with their state.

Each optimizer names a rule of ``_kernels/_solvers.pxi`` and its hyper-parameters, and
holds the state the rule carries from step to step (velocities, Adam's moments, the
step count ``t``) in the flat layout of the network's parameters. ``Network`` and the
scikit-learn estimators hand the same objects to the compiled plan, which reads the
hyper-parameters when it is built and steps the state in place.

An optimizer given to ``Network.fit`` belongs to that network from its first ``fit``
on: its state carries over from one call to the next, as a ``torch.optim`` optimizer's
does, so ``fit(epochs=1)`` twice is ``fit(epochs=2)`` once (without shuffling). Using it
with another network raises ValueError; ``reset()`` forgets the state and the network.

Two conventions exist for the gradient a step starts from:

- PyTorch's (``Network``): g is the batch's mean gradient, and weight decay adds
  ``weight_decay * W`` to it (to the weights only: biases, and batch normalization's
  gammas and betas, are not decayed);
- scikit-learn's (the estimators): g is the batch's sum of sample-weighted gradients,
  and the step uses ``(g + weight_decay * W) / sum(sample_weight)`` (weight_decay is
  scikit-learn's ``alpha``).
"""

from __future__ import annotations

import math
import numbers
import weakref

import numpy as np

from ._core import Rule

__all__ = ["SGD", "Adam", "GradientOnly", "Optimizer"]

CONVENTIONS = ("pytorch", "scikit-learn")


def _real(value, name: str, low: float, high: float = math.inf, *, open_low=False) -> float:
    """value as a float in [low, high) ((low, high) with ``open_low``), else an error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    result = float(value)
    above = result > low if open_low else result >= low
    if not (above and result < high and math.isfinite(result)):
        bounds = f"{'(' if open_low else '['}{low}, {high})"
        raise ValueError(f"{name} must be a finite number in {bounds}; got {value!r}")
    return result


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
        # the steps taken, in an array the compiled training loop counts in
        self._steps = np.zeros(1, dtype=np.intp)
        self._owner = None

    @property
    def t(self) -> int:
        """The steps taken (Adam's bias corrections count them)."""
        return int(self._steps[0])

    @t.setter
    def t(self, value: int) -> None:
        self._steps[0] = value

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

    def reset(self) -> Optimizer:
        """Forgets the state and the network it belongs to: the next ``fit`` starts
        afresh, with zero moments and t = 0."""
        self.moment1 = self.moment2 = None
        self.t = 0
        self._owner = None
        return self

    def _state_for(self, net, n_params: int, dtype) -> None:
        """Binds the optimizer to ``net`` on first use (fresh state), or checks that it
        is ``net``'s."""
        owner = self._owner() if self._owner is not None else None
        if owner is None and self._owner is not None:  # its network is gone
            self.reset()
        if self._owner is None:
            fits = (
                self.t > 0
                and all(
                    m is None or (m.shape == (n_params,) and m.dtype == dtype)
                    for m in (self.moment1, self.moment2)
                )
                and (len(self.moments) == 0 or self.moment1 is not None)
            )
            if not fits:  # state of an unpickled optimizer carries over if it fits
                self.init_state(n_params, dtype)
            self._owner = weakref.ref(net)
        elif owner is not net:
            raise ValueError(
                f"this {type(self).__name__} holds the state of another network; give each "
                f"network its own optimizer, or call reset() first"
            )

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_owner"] = None  # a weak reference does not pickle; the state does
        return state

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

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, convention: str = "pytorch"):  # fmt: skip
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False; got {nesterov!r}")
        self.lr = _real(lr, "lr", 0.0)
        # scikit-learn takes momentum in [0, 1]; a momentum of 1 or more never decays
        self.momentum = _real(
            momentum,
            "momentum",
            0.0,
            math.nextafter(1.0, 2.0) if convention == "scikit-learn" else 1.0,
        )
        self.nesterov, self.convention = bool(nesterov), convention
        self.weight_decay = _real(weight_decay, "weight_decay", 0.0)
        if convention == "scikit-learn":
            self.rule = Rule.SK_MOMENTUM
        else:
            if self.nesterov and not self.momentum:
                raise ValueError("nesterov=True needs a momentum > 0")
            self.rule = Rule.MOMENTUM if self.momentum else Rule.SGD
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
    """Adam (Kingma and Ba 2015).

    PyTorch's convention (``torch.optim.Adam``, its operations in its order): at step t,
    ``m := m + (1 - b1) (g - m)``, ``v := b2 v + (1 - b2) g^2``,
    ``theta := theta - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, g
    including ``weight_decay * W`` for the weights. scikit-learn's
    (``convention="scikit-learn"``, its 'adam' solver) is the paper's efficient form of
    section 2: ``theta := theta - lr_t m / (sqrt(v) + eps)``,
    ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``, which differs from PyTorch's in where eps
    enters. ``beta_1``, ``beta_2`` and ``epsilon`` are ``betas`` and ``eps`` under
    scikit-learn's names.
    """

    moments = ("m", "v")

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 convention: str = "pytorch"):  # fmt: skip
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta_1, beta_2); got {betas!r}")
        self.lr = _real(lr, "lr", 0.0)
        self.beta_1 = _real(betas[0], "betas[0]", 0.0, 1.0)
        self.beta_2 = _real(betas[1], "betas[1]", 0.0, 1.0)
        self.epsilon = _real(eps, "eps", 0.0)
        self.weight_decay = _real(weight_decay, "weight_decay", 0.0)
        self.convention = convention
        self.rule = Rule.ADAM if convention == "pytorch" else Rule.SK_ADAM

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta_1, self.beta_2)

    @property
    def eps(self) -> float:
        return self.epsilon

    def _settings(self) -> dict:
        return {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.epsilon,
            "weight_decay": self.weight_decay,
            "convention": self.convention,
        }


class GradientOnly(Optimizer):
    """No step: the gradient of the loss plus scikit-learn's L2 term, for an outside
    optimizer (L-BFGS) to use."""

    def __init__(self, weight_decay: float = 0.0):
        super().__init__()
        self.weight_decay = float(weight_decay)
