"""The tutorial's closing challenge, shown: ``backprop demo --challenges``.

A deep network of sigmoid layers learns slowly, if at all, because the gradient that
reaches its first layers is a product of many sigmoid derivatives, each at most 1/4: it
vanishes. The tutorial names the remedies: other activations (ReLU) and batch
normalization. This module trains the same deep network three ways on the same data —
sigmoid, ReLU, sigmoid with batch normalization — from weights drawn with the same seed,
and reports, for each, the norm of every layer's weight gradient at the start (so the
vanishing can be seen layer by layer) and the training loss epoch by epoch.
"""

from __future__ import annotations

import sys
import textwrap
import warnings
from dataclasses import dataclass, field

import numpy as np

from .network import Network

# The deep network: 10 hidden layers of 32 units between 16 inputs and 4 classes.
SIZES = [16] + [32] * 10 + [4]
N_SAMPLES = 2048
BATCH_SIZE = 32
LR = 0.1
# name, hidden activation, batch normalization, initialisation
VARIANTS = [
    ("sigmoid", "sigmoid", False, "glorot"),
    ("relu", "relu", False, "he"),
    ("sigmoid + batch norm", "sigmoid", True, "glorot"),
]


@dataclass
class Run:
    """One variant: its name, each layer's ||dL/dW_l|| on the whole data before training,
    the mean training loss of every epoch, and what ``fit`` warned of."""

    name: str
    gradient_norms: list[float]
    losses: list[float]
    warnings: list[str] = field(default_factory=list)


def problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs X ~ N(0, 1) and four classes set by a fixed random two-layer network of
    X, so that depth is not needed to learn them but the deep networks must carry the
    signal through."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_SAMPLES, SIZES[0]))
    hidden = np.tanh(X @ rng.standard_normal((SIZES[0], 32)))
    y = (hidden @ rng.standard_normal((32, SIZES[-1]))).argmax(axis=1)
    return X, y


def run(epochs: int = 20, seed: int = 0) -> list[Run]:
    """Trains the three variants with plain SGD (lr 0.1, batches of 32, in order)."""
    X, y = problem(seed)
    runs = []
    for name, activation, batch_norm, init in VARIANTS:
        net = Network(SIZES, activation=activation, output="softmax", loss="cross_entropy",
                      seed=seed + 1, init=init, batch_norm=batch_norm)  # fmt: skip
        _, grad_weights, _ = net.gradients(X, y)
        norms = [float(np.linalg.norm(g)) for g in grad_weights]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = net.fit(X, y, epochs=epochs, batch_size=BATCH_SIZE, lr=LR)
        runs.append(Run(name, norms, losses, [str(w.message) for w in caught]))
    return runs


def report(runs: list[Run], out=None) -> None:
    """Prints the gradient norms layer by layer and the loss curves, side by side."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out)

    width = max(22, *(len(r.name) + 2 for r in runs))
    header = "".join(f"{r.name:>{width}}" for r in runs)
    hidden = len(SIZES) - 2
    say(f"A deep network, {SIZES[0]} inputs, {hidden} hidden layers of {SIZES[1]}, "
        f"{SIZES[-1]} classes (softmax, cross-entropy),")  # fmt: skip
    say(f"trained three ways on the same {N_SAMPLES} samples: SGD, lr {LR}, batches of "
        f"{BATCH_SIZE}.")  # fmt: skip
    say()
    say("The gradient at the start: ||dL/dW|| of each layer (relative to the output layer's)")
    say(f"{'layer':<8}{header}")
    for layer in range(len(SIZES) - 1):
        cells = ""
        for r in runs:
            norm = r.gradient_norms[layer]
            cells += f"{norm:>{width - 11}.2e} ({norm / r.gradient_norms[-1]:7.1e})"
        label = "output" if layer == len(SIZES) - 2 else str(layer + 1)
        say(f"{label:<8}{cells}")
    say()
    say("The training loss, epoch by epoch")
    say(f"{'epoch':<8}{header}")
    epochs = len(runs[0].losses)
    for epoch in sorted({1, 2, 3, 5, *range(10, epochs + 1, 10), epochs}):
        if epoch <= epochs:
            say(f"{epoch:<8}" + "".join(f"{r.losses[epoch - 1]:>{width}.4f}" for r in runs))
    for r in runs:
        for message in r.warnings:
            say(textwrap.fill(f"fit warned, training {r.name}: {message}", width=88,
                              subsequent_indent="    "))  # fmt: skip
    say()
    first = runs[0].gradient_norms
    say(f"With sigmoid layers the first layer's gradient is {first[0] / first[-1]:.1e} of the "
        f"output layer's:")  # fmt: skip
    say("it vanishes on the way back, and the first layers barely learn. ReLU (derivative")
    say("1 where active) and batch normalization (which keeps each layer's inputs to the")
    say("sigmoid near 0, where its derivative is largest) carry the gradient back.")


def plot(runs: list[Run], path: str) -> None:
    """Saves the same as a figure (its format from the file's suffix): gradient norms per
    layer, loss per epoch. Drawn with matplotlib's object API, without pyplot: nothing
    global changes in the calling program."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    layers = np.arange(1, len(SIZES))
    for r in runs:
        left.semilogy(layers, r.gradient_norms, marker="o", label=r.name)
        right.plot(np.arange(1, len(r.losses) + 1), r.losses, label=r.name)
    left.set_xlabel("layer (1 = first hidden, last = output)")
    left.set_ylabel("||dL/dW|| before training")
    left.set_title("The gradient, layer by layer")
    right.set_xlabel("epoch")
    right.set_ylabel("mean training loss")
    right.set_title("Training")
    for axis in (left, right):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=120)
