"""The compiled peers: JAX, the whole epoch as one ``jax.jit`` of a ``jax.lax.scan`` over the
batches ("jax") or a jitted step driven from a Python loop over them ("jax-step"), and
``torch.compile`` of PyTorch's training step ("torch-compile").

They do the eager trainers' arithmetic (``trainers``): the same initial weights, the same
batches in the same order, the workload's loss (a mean over the batch) and plain SGD,
W := W - lr dL/dW (W5: batch normalization, BatchNorm1d's, and torch.optim.Adam's steps,
its running statistics and moments carried through the epoch). A batch shorter than the
others ends the epoch when the batch size does not divide the samples, as in the eager
trainers.

What a compiler needs before it runs at full speed (tracing, compiling, a first call) is done
in ``prepare``, once per workload and data: the JAX warm-up calls run on copies of the initial
weights (JAX's arrays are immutable), torch's warm-up steps are undone by loading the initial
weights back into the same parameters. The runs ``measure`` times then compile nothing and
start from the initial weights. Every run ends when its results are computed
(``jax.block_until_ready``): JAX dispatches asynchronously.

JAX computes in float32 unless ``jax_enable_x64`` is on. Preparing a JAX trainer turns it on
(``jax.config.update("jax_enable_x64", True)``, the only place the benchmark sets it), and
it stays on for the rest of the process, as JAX reads it globally: the float64 workloads need
it, and every array made here has the workload's dtype, so float32 workloads stay float32.
"""

from __future__ import annotations

import os
import shutil
import warnings
from functools import cache
from typing import Any

import numpy as np

from .trainers import TorchTrainer, Trainer
from .workloads import Data, Params, Workload

# --- JAX ------------------------------------------------------------------------------------

_HEADS = {("softmax", "cross_entropy"), ("sigmoid", "mse")}


@cache
def _jax_functions(workload: Workload) -> dict[str, Any]:
    """The workload's ``step``, ``epoch`` and ``forward`` as jitted JAX functions.

    A training state is (params, moments, statistics): params a tuple of (W, b) per layer,
    W of shape (n_out, n_in), (W, b, gamma, beta) for a hidden layer with batch
    normalization; moments () for SGD, (m, v, t) for Adam (m and v shaped like params);
    statistics the (running mean, running variance) of each batch-normalized layer, or ().

    step(state, total, x, y) -> (state, total + loss * batch size). epoch(state, xs, ys,
    x_last, y_last) -> (state, sum over the batches of loss * batch size): one
    ``lax.scan`` of the step over the full batches xs[i], ys[i], then the last, shorter
    batch if there is one (None otherwise). The states passed to the jitted functions are
    donated: their buffers are reused for the new ones.
    """
    import jax
    import jax.numpy as jnp

    hidden = {
        "sigmoid": jax.nn.sigmoid,
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "identity": lambda z: z,
    }[workload.activation]
    head, lr = (workload.output, workload.loss), workload.lr
    b1, b2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
    momentum, norm_eps = 0.1, 1e-5  # torch.nn.BatchNorm1d's

    def logits(params, stats, x, training):
        """z of the output layer, and the batch's statistics (training) or ``stats``."""
        a, batch = x, []
        for l, layer in enumerate(params[:-1]):
            z = a @ layer[0].T + layer[1]
            if len(layer) == 4:  # batch normalization, then the activation
                if training:
                    mean, var = jnp.mean(z, axis=0), jnp.var(z, axis=0)
                    batch.append((mean, var))
                else:
                    mean, var = stats[l]
                z = layer[2] * ((z - mean) / jnp.sqrt(var + norm_eps)) + layer[3]
            a = hidden(z)
        W, b = params[-1]
        return a @ W.T + b, batch

    def loss(params, stats, x, y):
        z, batch = logits(params, stats, x, True)
        if head == ("softmax", "cross_entropy"):
            value = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))
        else:
            diff = jax.nn.sigmoid(z) - y
            value = jnp.mean(diff * diff)
        m = x.shape[0]
        # running statistics: the batch's mean and unbiased variance, outside the gradient
        stats = tuple(
            (
                (1 - momentum) * rm + momentum * jax.lax.stop_gradient(mean),
                (1 - momentum) * rv + momentum * jax.lax.stop_gradient(var) * m / (m - 1),
            )
            for (rm, rv), (mean, var) in zip(stats, batch, strict=True)
        )
        return value, stats

    def step(state, total, x, y):
        """One batch: the gradient, then SGD's or Adam's update (torch.optim's forms)."""
        params, moments, stats = state
        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, stats, x, y)
        if moments:
            m, v, t = moments
            t = t + 1
            m = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), m, grads)
            v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
            size = lr / (1 - b1**t)
            root = jnp.sqrt(1 - b2**t)
            params = jax.tree.map(
                lambda p, m, v: p - size * m / (jnp.sqrt(v) / root + eps), params, m, v
            )
            moments = (m, v, t)
        else:
            params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return (params, moments, stats), total + value * x.shape[0]

    def epoch(state, xs, ys, x_last, y_last):
        zero = jnp.zeros((), dtype=workload.dtype)
        state, losses = jax.lax.scan(lambda s, xy: step(s, zero, *xy), state, (xs, ys))
        total = jnp.sum(losses)
        if x_last is not None:
            state, total = step(state, total, x_last, y_last)
        return state, total

    def forward(state, x):
        params, _, stats = state
        z, _ = logits(params, stats, x, False)
        if workload.output == "softmax":
            return jax.nn.softmax(z)
        return jax.nn.sigmoid(z) if workload.output == "sigmoid" else z

    return {
        "step": jax.jit(step, donate_argnums=(0, 1)),
        "epoch": jax.jit(epoch, donate_argnums=0),
        "forward": jax.jit(forward),
    }


class _JaxTrainer(Trainer):
    """What both JAX trainers share: the weights as JAX arrays, the data split in batches
    once per workload and data, the compiled functions warmed up then."""

    module = "jax"

    def __init__(self) -> None:
        super().__init__()
        self._ready_for: tuple[Workload, Data] | None = None

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        if workload.task == "train" and (workload.output, workload.loss) not in _HEADS:
            raise ValueError(f"{self.name} trainer: no {workload.output} + {workload.loss} output")
        jax = self.load()
        jax.config.update("jax_enable_x64", True)  # for float64 workloads; see the docstring
        self.jax, self.jnp, self.workload = jax, jax.numpy, workload
        self.initial, self.n = params, len(data.X)
        self.state = self._fresh()
        ready = self._ready_for
        if ready is None or ready[0] != workload or ready[1] is not data:
            self.functions = _jax_functions(workload)
            self._build(workload, data)
            self._ready_for = (workload, data)

    def _fresh(self) -> tuple:
        """The initial training state (``_jax_functions``) in new JAX arrays (the jitted
        functions donate them): the initial weights, zero moments, running means 0 and
        running variances 1."""
        jnp, p = self.jnp, self.initial
        hidden = len(p.gammas)
        params = tuple(
            (jnp.array(W), jnp.array(b))
            + ((jnp.array(p.gammas[l]), jnp.array(p.betas[l])) if l < hidden else ())
            for l, (W, b) in enumerate(zip(p.weights, p.biases, strict=True))
        )
        moments: tuple = ()
        if self.workload.optimizer == "adam":
            zeros = self.jax.tree.map(jnp.zeros_like, params)
            moments = (zeros, self.jax.tree.map(jnp.zeros_like, params),
                       jnp.zeros((), dtype=self.workload.dtype))  # fmt: skip
        stats = tuple((jnp.zeros_like(g), jnp.ones_like(g)) for g in p.gammas)
        return (params, moments, stats)

    def _build(self, workload: Workload, data: Data) -> None:
        """Converts the data and warms the compiled functions up."""
        raise NotImplementedError

    def _batches(self, data: Data) -> tuple[int, int]:
        """(batch size, number of full batches), as the eager trainers cut the samples."""
        n = len(data.X)
        batch = min(self.workload.batch_size, n)
        return batch, n // batch

    def params(self) -> Params:
        layers = self.state[0]
        return Params(
            *([np.array(layer[i]) for layer in layers if len(layer) > i] for i in range(4))
        )


class JaxScanTrainer(_JaxTrainer):
    """The whole epoch one ``jax.jit`` of a ``jax.lax.scan`` over the batches (the last,
    shorter batch, if any, is a step after the scan, in the same jit); forward: one jitted
    call on all the samples."""

    name = "jax"

    def _build(self, workload: Workload, data: Data) -> None:
        jnp = self.jnp
        X, Y = data
        if workload.task == "forward":
            self.X = jnp.array(X)
            self.jax.block_until_ready(self.functions["forward"](self._fresh(), self.X))
            return
        batch, full = self._batches(data)
        end = batch * full
        self.xs = jnp.array(X[:end].reshape(full, batch, *X.shape[1:]))
        self.ys = jnp.array(Y[:end].reshape(full, batch, *Y.shape[1:]))
        self.last = (jnp.array(X[end:]), jnp.array(Y[end:])) if end < len(X) else (None, None)
        warm_up = self.functions["epoch"](self._fresh(), self.xs, self.ys, *self.last)
        self.jax.block_until_ready(warm_up)

    def run(self) -> None:
        if self.workload.task == "forward":
            self.jax.block_until_ready(self.functions["forward"](self.state, self.X))
            return
        state, total = self.functions["epoch"](self.state, self.xs, self.ys, *self.last)
        self.state, total = self.jax.block_until_ready((state, total))
        self.epoch_loss = float(total) / self.n


class JaxStepTrainer(_JaxTrainer):
    """A jitted step (gradient and SGD update of one batch) called from a Python loop over the
    batches, which are JAX arrays made in ``prepare``; train only."""

    name = "jax-step"
    tasks = frozenset({"train"})

    def _build(self, workload: Workload, data: Data) -> None:
        jnp = self.jnp
        X, Y = data
        batch, _ = self._batches(data)
        self.batches = [
            (jnp.array(X[start : start + batch]), jnp.array(Y[start : start + batch]))
            for start in range(0, len(X), batch)
        ]
        step = self.functions["step"]
        shapes = {x.shape: (x, y) for x, y in self.batches}  # the full batch and the last
        for x, y in shapes.values():
            self.jax.block_until_ready(step(self._fresh(), self._zero(), x, y))

    def _zero(self) -> Any:
        return self.jnp.zeros((), dtype=self.workload.dtype)

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        super()._prepare(workload, data, params)
        self.total = self._zero()

    def run(self) -> None:
        step, state, total = self.functions["step"], self.state, self.total
        for x, y in self.batches:
            state, total = step(state, total, x, y)
        self.state, total = self.jax.block_until_ready((state, total))
        self.epoch_loss = float(total) / self.n


# --- torch.compile --------------------------------------------------------------------------


class TorchCompileTrainer(TorchTrainer):
    """``TorchTrainer``'s model, loss and optimizer, its training step (``training_step``:
    zero_grad, forward, loss, backward, optimizer step) compiled by
    ``torch.compile(dynamic=False)``: a graph for each batch shape (the full batches, the
    last shorter one), both compiled in ``prepare``; train only. Inductor, torch.compile's
    default backend, builds C++ on CPU: the trainer is available where torch imports and its
    compiler ($CXX, else g++) is found."""

    name = "torch-compile"
    tasks = frozenset({"train"})

    def __init__(self) -> None:
        super().__init__()
        self._ready_for: tuple[Workload, Data] | None = None

    @classmethod
    def load(cls) -> Any:
        torch = super().load()
        compiler = os.environ.get("CXX", "g++")
        if shutil.which(compiler) is None:
            raise ImportError(f"torch.compile needs a C++ compiler; {compiler} is not found")
        return torch

    def _prepare(self, workload: Workload, data: Data, params: Params) -> None:
        ready = self._ready_for
        if ready is not None and ready[0] == workload and ready[1] is data:
            self._load_weights(params)
            return
        super()._prepare(workload, data, params)
        n = len(self.X)
        batch = min(workload.batch_size, n)
        starts = {0, n - n % batch} - {n}  # a full batch and the last, shorter one, if any
        with warnings.catch_warnings():
            # torch's own warnings while it compiles: Inductor imports torch.jit code that
            # is deprecated, Dynamo's tracing touches the .grad of non-leaf tensors
            warnings.filterwarnings("ignore", module=r"torch\.")
            self.step = self.torch.compile(self.training_step(), dynamic=False)
            for start in sorted(starts):
                self.step(self.X[start : start + batch], self.Y[start : start + batch])
        self._load_weights(params)
        self._ready_for = (workload, data)

    def _load_weights(self, params: Params) -> None:
        """The initial weights (and gammas and betas), copied into the parameters the
        compiled step holds; the running statistics and Adam's moments and step count
        zeroed (running variances 1) in place, so the step's graph stays valid."""
        torch = self.torch
        linears = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        norms = [m for m in self.model if isinstance(m, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            for linear, W, b in zip(linears, params.weights, params.biases, strict=True):
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            for norm, gamma, beta in zip(norms, params.gammas, params.betas, strict=True):
                norm.weight.copy_(torch.from_numpy(gamma))
                norm.bias.copy_(torch.from_numpy(beta))
                norm.running_mean.zero_()
                norm.running_var.fill_(1)
                norm.num_batches_tracked.zero_()
            for state in self.optimizer.state.values():
                for value in state.values():
                    value.zero_()
        self.optimizer.zero_grad()
