"""What ``Network.fit`` reports as it trains: every epoch's record, the gradient check
behind ``GradientWarning``, the progress display, and ``diagnose``.

The gradient norms and update ratios of an epoch are computed by the training kernel
(``_kernels/_stats.pxi``); this module turns them into records and messages.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

# A hidden layer's gradient norm outside [VANISHING, EXPLODING] times the output
# layer's draws a GradientWarning.
VANISHING = 1e-4
EXPLODING = 1e4
# numbers per float64 chunk of a norm's sum
_CHUNK = 2**15


class GradientWarning(UserWarning):
    """A hidden layer's gradients are vanishingly small, or explosively large, next to
    the output layer's (``Network.fit`` issues at most one per call)."""


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of ``Network.fit``, as its callbacks receive it and ``history`` keeps it.

    ``epoch`` counts from 0 (``losses[epoch]`` of fit's returned list); ``loss`` is that
    list's entry; ``val_loss`` is ``net.loss(*validation_data)`` just after the epoch
    (None without validation data). ``grad_norms[l]`` is, for layer l (``weights[l]``
    and ``biases[l]`` together), the Euclidean norm of the mean over the epoch's batches
    of each batch's mean-loss gradient dL_B/dtheta_l, without weight decay;
    ``update_ratios[l]`` is ||theta_l after the epoch - before|| / ||theta_l before||
    (infinite if only the latter is 0). Both are None when fit did not take the
    statistics (no callbacks, validation data, early stopping nor verbose).
    """

    epoch: int
    loss: float
    val_loss: float | None = None
    grad_norms: tuple[float, ...] | None = None
    update_ratios: tuple[float, ...] | None = None


def layer_norms(arch, flat: np.ndarray) -> list[float]:
    """||flat_l|| for every layer l of ``arch``'s layout (Network's: each layer's weights
    and biases side by side, then its gammas and betas with batch normalization), all of
    them together, summed in float64 a chunk
    at a time (never a float64 copy of all of ``flat``)."""
    bounds = [*arch.offsets[::2].tolist(), flat.size]
    norms = []
    with np.errstate(all="ignore"):  # inf and NaN stay what they are
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            total = 0.0
            for start in range(lo, hi, _CHUNK):
                part = flat[start : min(start + _CHUNK, hi)].astype(np.float64)
                # einsum's own loop, not np.dot: BLAS would thread a dot this long, and
                # its threads spin on the core the fit is about to use
                total += float(np.einsum("i,i->", part, part))
            norms.append(math.sqrt(total))
    return norms


def gradient_problem(norms) -> str | None:
    """Why the hidden layers' gradient norms, next to the output layer's (the last of
    ``norms``), call for a GradientWarning; None if they do not (or cannot be compared:
    an output norm of 0 or not finite, hidden norms of 0 or NaN)."""
    out = norms[-1]
    if not (math.isfinite(out) and out > 0) or len(norms) < 2:
        return None
    # a gradient of exactly 0 (a ReLU layer no row activates) is not a matter of scale
    ratios = {l: norm / out for l, norm in enumerate(norms[:-1]) if norm > 0}
    if not ratios:
        return None
    # the layer farthest out of range, on a log scale
    worst = max(ratios, key=lambda l: abs(math.log10(max(ratios[l], 1e-300))))
    ratio = ratios[worst]
    if VANISHING <= ratio <= EXPLODING:
        return None
    kind = "vanishing" if ratio < VANISHING else "exploding"
    return (
        f"{kind} gradients: hidden layer {worst}'s gradient norm is {ratio:.3g} times the "
        f"output layer's (outside [{VANISHING:g}, {EXPLODING:g}]); try ReLU hidden "
        f"activations, batch normalization or a smaller learning rate"
    )


class Progress:
    """fit's ``verbose`` display: a tqdm progress bar over the epochs when tqdm is
    installed, else one line per epoch on stderr."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=epochs, unit="epoch", desc="fit")

    def update(self, record: EpochRecord) -> None:
        values = {"loss": f"{record.loss:.4g}"}
        if record.val_loss is not None:
            values["val_loss"] = f"{record.val_loss:.4g}"
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)
            self.bar.update(1)
        else:
            shown = ", ".join(f"{name} {value}" for name, value in values.items())
            print(f"epoch {record.epoch + 1}/{self.epochs}: {shown}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def diagnose(net, X, Y) -> list[float]:
    """The gradient norm of every layer of ``net`` on the batch (X, Y), without training.

    Entry l is ||dL/dtheta_l||, the Euclidean norm of the mean loss's gradient over the
    batch with respect to layer l's weights and biases together (and its gammas and betas
    with batch normalization; ``net.gradients``'s,
    summed in float64): the quantity ``EpochRecord.grad_norms`` averages over an epoch's
    batches. Output layer last; the network is not changed.
    """
    grad = np.empty_like(net._theta)
    net._mean_loss(X, Y, grad)
    return layer_norms(net._arch, grad)
