"""The command line: ``backprop demo`` (the tutorial's worked example; with
``--challenges``, its closing challenge, the vanishing gradient and its remedies:
``challenges``), ``backprop bench`` and ``backprop info`` (the version, CPU targets, BLAS
and threads: ``show_config``).

Run as ``backprop`` or ``python -m backprop``. Without a command it prints its help and
exits with status 0; ``--version`` prints ``backprop <version>``. Every option and
environment variable is checked before any work starts: a bad value exits with status 2,
the usage line and a message naming it. Output cut short by its reader (``| head``) ends
the run quietly, with status 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys

from . import __version__
from ._config import show_config
from ._options import integer
from .network import Network

# The tutorial's 2-2-1 network: inputs, target, weights into each neuron, biases, rate.
X = (0.5, 0.1)
TARGET = 0.6
WEIGHTS = [[[0.4, 0.3], [0.6, 0.9]], [[0.5, 0.7]]]
BIASES = [[0.1, 0.2], [0.3]]
ETA = 0.1
# The demo's training keeps every step's loss: ten million steps take about ten seconds
# and 80 MB, and the loss stopped falling a long way before.
MAX_STEPS = 10_000_000


def worked_example() -> dict[str, float]:
    """Every quantity of the tutorial's example, computed by the library.

    One forward and backward pass through the per-layer kernels (``Network.trace``),
    then one gradient-descent step through the fused training kernel.
    """
    net = Network.from_params(WEIGHTS, BIASES, activation="sigmoid", output="sigmoid", loss="mse")
    t = net.trace(X, [TARGET])
    v = {
        "z1": t.zs[0][0, 0], "h1": t.activations[1][0, 0],
        "z2": t.zs[0][0, 1], "h2": t.activations[1][0, 1],
        "z3": t.zs[1][0, 0], "y_hat": t.activations[2][0, 0],
        "loss": t.loss,
        "dL_dy_hat": t.dloss_doutput[0, 0], "dy_hat_dz3": t.output_prime[0, 0],
        "delta3": t.deltas[1][0, 0],
        "dL_dw31": t.grad_weights[1][0, 0], "dL_dw32": t.grad_weights[1][0, 1],
        "dL_db3": t.grad_biases[1][0],
        "delta1": t.deltas[0][0, 0], "delta2": t.deltas[0][0, 1],
        "dL_dw11": t.grad_weights[0][0, 0], "dL_dw12": t.grad_weights[0][0, 1],
        "dL_dw21": t.grad_weights[0][1, 0], "dL_dw22": t.grad_weights[0][1, 1],
        "dL_db1": t.grad_biases[0][0], "dL_db2": t.grad_biases[0][1],
    }  # fmt: skip
    net.step(X, [TARGET], lr=ETA)
    (w1, w2), (b1, b2) = net.weights, net.biases
    v.update(
        w11=w1[0, 0],
        w12=w1[0, 1],
        w21=w1[1, 0],
        w22=w1[1, 1],
        w31=w2[0, 0],
        w32=w2[0, 1],
        b1=b1[0],
        b2=b1[1],
        b3=b2[0],
    )
    return {name: float(value) for name, value in v.items()}


def demo(steps: int = 1000, out=None) -> None:
    """Print the tutorial's worked example, then train its network on the sample."""
    out = out or sys.stdout
    v = worked_example()

    def say(text: str = "") -> None:
        print(text, file=out)

    def show(label: str, name: str) -> None:
        say(f"    {label:<40} = {v[name]:.15g}")

    say("The tutorial's network: 2 inputs, 2 sigmoid hidden neurons, 1 sigmoid output,")
    say("mean squared error loss, gradient descent with learning rate eta = 0.1.")
    say()
    say("Initial values")
    say(f"    inputs   x1 = {X[0]}, x2 = {X[1]};  target output y = {TARGET}")
    say("    weights  w11 = 0.4, w12 = 0.3 (into hidden neuron 1)")
    say("             w21 = 0.6, w22 = 0.9 (into hidden neuron 2)")
    say("             w31 = 0.5, w32 = 0.7 (into the output neuron)")
    say("    biases   b1 = 0.1, b2 = 0.2, b3 = 0.3")
    say()
    say("Forward pass")
    say("  Hidden layer, first neuron")
    show("z1 = w11*x1 + w12*x2 + b1", "z1")
    show("h1 = sigmoid(z1)", "h1")
    say("  Hidden layer, second neuron")
    show("z2 = w21*x1 + w22*x2 + b2", "z2")
    show("h2 = sigmoid(z2)", "h2")
    say("  Output layer")
    show("z3 = w31*h1 + w32*h2 + b3", "z3")
    show("y^ = sigmoid(z3)", "y_hat")
    say("  Loss")
    show("L = (y^ - y)^2", "loss")
    say()
    say("Backward pass")
    say("  Output layer")
    show("dL/dy^ = 2 (y^ - y)", "dL_dy_hat")
    show("sigmoid'(z3) = y^ (1 - y^)", "dy_hat_dz3")
    show("delta3 = dL/dz3 = dL/dy^ sigmoid'(z3)", "delta3")
    show("dL/dw31 = delta3 h1", "dL_dw31")
    show("dL/dw32 = delta3 h2", "dL_dw32")
    show("dL/db3 = delta3", "dL_db3")
    say("  Hidden layer")
    show("delta1 = delta3 w31 h1 (1 - h1)", "delta1")
    show("delta2 = delta3 w32 h2 (1 - h2)", "delta2")
    show("dL/dw11 = delta1 x1", "dL_dw11")
    show("dL/dw12 = delta1 x2", "dL_dw12")
    show("dL/dw21 = delta2 x1", "dL_dw21")
    show("dL/dw22 = delta2 x2", "dL_dw22")
    show("dL/db1 = delta1", "dL_db1")
    show("dL/db2 = delta2", "dL_db2")
    say()
    say("Weight and bias updates, w := w - eta dL/dw with eta = 0.1")
    for name in ("w11", "w12", "w21", "w22", "w31", "w32", "b1", "b2", "b3"):
        show(name, name)
    say()
    say(f"Training on the same sample: {steps} gradient-descent steps")
    net = Network.from_params(WEIGHTS, BIASES, activation="sigmoid", output="sigmoid", loss="mse")
    losses = net.fit(X, [TARGET], epochs=steps, batch_size=1, lr=ETA)
    say(f"    {'step':>6}   loss before the step")
    shown = sorted({1, 2, 5, 10, 50, 100, 500, *range(1000, steps + 1, 1000), steps})
    for step in (s for s in shown if s <= steps):
        say(f"    {step:>6}   {losses[step - 1]:.6e}")
    say(f"    y^ after training = {net.forward(X)[0, 0]:.6f}  (target {TARGET})")


def version() -> str:
    """The version of this copy of backprop: its installed metadata's, or ``__version__``
    where it runs from elsewhere (a source tree), since the metadata found could then be
    another copy's."""
    try:
        distribution = importlib.metadata.distribution("backprop")
    except importlib.metadata.PackageNotFoundError:
        return __version__
    here = os.path.realpath(__file__)
    for file in distribution.files or ():
        if file.name == "__main__.py" and os.path.realpath(file.locate()) == here:
            return distribution.version
    return __version__


def main(argv: list[str] | None = None) -> int:
    """Runs the command line on ``argv`` (default ``sys.argv[1:]``); its exit status."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, where a closed pipe could not be caught
    except BrokenPipeError:  # the reader (e.g. `head`) stopped early: not an error
        # Nothing more can be written, and what is still buffered would fail again on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        os.close(devnull)
        return 0


def _challenges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``demo --challenges [--plot FILE.png]``, its options checked before it trains."""
    from . import challenges
    from .bench.command import _check_output
    from .bench.plot import plot_missing

    if args.steps is not None:
        parser.error("argument --steps: only for the worked example, not with --challenges")
    _check_output(parser, "--plot", args.plot)
    if args.plot is not None and (reason := plot_missing()):
        parser.error(f"argument --plot: {reason}")
    runs = challenges.run()
    challenges.report(runs)
    if args.plot is not None:
        challenges.plot(runs, args.plot)
        print(f"figure drawn in {args.plot}")
    return 0


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="backprop", description="Multilayer perceptrons trained by backpropagation."
    )
    parser.add_argument("--version", action="version", version=f"backprop {version()}")
    commands = parser.add_subparsers(dest="command", metavar="{demo,bench,info}")
    demo_cmd = commands.add_parser("demo", help="the tutorial's worked example, step by step")
    demo_cmd.add_argument(
        "--steps",
        type=integer(1, MAX_STEPS),
        default=None,
        help=f"training steps at the end, from 1 to {MAX_STEPS:,} (default 1000)",
    )
    demo_cmd.add_argument(
        "--challenges",
        action="store_true",
        help="instead, a deep network trained three ways (sigmoid, ReLU, sigmoid with "
        "batch normalization): the vanishing gradient and its remedies",
    )
    demo_cmd.add_argument(
        "--plot",
        metavar="FILE.png",
        help="with --challenges, also draw the gradients and losses into FILE.png "
        '(needs matplotlib: pip install "backprop[plot]")',
    )
    commands.add_parser(
        "bench",
        help="time backprop against its peers (see `backprop bench --help`)",
        add_help=False,
    )
    info_cmd = commands.add_parser(
        "info", help="the version, the CPU targets of the kernels, BLAS and the threads"
    )
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        if rest:
            demo_cmd.error(f"unrecognized arguments: {' '.join(rest)}")
        if not args.challenges:
            if args.plot is not None:
                demo_cmd.error("argument --plot: only with --challenges")
            demo(1000 if args.steps is None else args.steps)
            return 0
        return _challenges(demo_cmd, args)
    if args.command == "info":
        if rest:
            info_cmd.error(f"unrecognized arguments: {' '.join(rest)}")
        show_config()
        return 0
    from .bench import main as bench_main

    # run on this process's own arguments, it is the command, and may start itself again
    return bench_main(rest, command_line=argv is None)


if __name__ == "__main__":
    sys.exit(main())
