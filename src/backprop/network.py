"""The Network: argument checks, allocation, and dispatch to the compiled kernels.

Every public method checks and converts its arguments here (dtype, shape,
contiguity, finiteness, label range) and allocates the outputs before a compiled plan
(``backprop._core.Plan``, which owns the workspace) runs; the kernels trust what they
get. The parameters live in one flat array laid out by ``backprop._layout``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import _checkpoint, _checks, _core, _layout, _monitor, _names, optim
from ._core import Mode, Status
from ._guard import Guard
from ._layout import MAX_BYTES as _MAX_BYTES
from ._layout import MAX_DIM as _MAX_DIM
from ._monitor import EpochRecord, GradientWarning

HIDDEN_ACTIVATIONS = tuple(_names.HIDDEN)
OUTPUT_ACTIVATIONS = tuple(_names.OUTPUT)
LOSSES = tuple(_names.LOSSES)

INITIALISATIONS = ("glorot", "he")

# fit checks X for NaN and infinity batch by batch inside the kernel when a batch holds
# at least this many numbers, else in one pass before training (a call per batch of
# two numbers, W1's, cost more than the pass)
_CHECK_IN_KERNEL_MIN = 256
DIVERGENCE_POLICIES = ("raise", "warn")
# fit's kernel calls run blocks of epochs, from this many (so that training starts at
# once, whatever the number of epochs) doubling up to _FIT_BLOCK (the blocks' losses
# buffer, 8 bytes an epoch)
_FIT_FIRST_BLOCK = 1
_FIT_BLOCK = 2**16
# an unmonitored fit checks its gradients (GradientWarning) once before training, on
# its first batch's rows, at most this many: a small batch's gradient pass, whatever
# the batch size
_GRADIENT_CHECK_ROWS = 64


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite weights; the network keeps the
    weights from before the batch that did.

    Attributes: ``epoch`` and ``batch`` (0-based) where it happened, and ``losses``,
    the losses of the epochs completed before it.
    """

    def __init__(self, message: str, epoch: int, batch: int, losses: list[float]):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.losses = losses


@dataclass
class Trace:
    """Every intermediate quantity of one forward and backward pass (``Network.trace``).

    ``zs[l]`` and ``activations[l + 1]`` are layer l's pre-activations and outputs
    (``activations[0]`` is the input); ``dloss_doutput`` is dL/dy_hat (infinite where
    a probability rounds to 0 or 1 and its target does not);
    ``output_prime`` is out'(z_L) (None for softmax, whose derivative is a matrix);
    ``deltas[l]`` is dL/dz_l; the gradients are those of the mean loss.
    """

    zs: list[np.ndarray]
    activations: list[np.ndarray]
    loss: float
    dloss_doutput: np.ndarray
    output_prime: np.ndarray | None
    deltas: list[np.ndarray]
    grad_weights: list[np.ndarray]
    grad_biases: list[np.ndarray]


class Gradients(tuple):
    """What ``Network.gradients`` returns: the tuple ``(loss, weights, biases)`` (so that
    ``loss, grad_w, grad_b = net.gradients(X, Y)`` unpacks it for any network), with
    attributes ``loss``, ``weights``, ``biases``, and ``gammas`` and ``betas``: dL/dgamma_l
    and dL/dbeta_l of every batch-normalised hidden layer (empty lists without batch
    normalization)."""

    def __new__(cls, loss, weights, biases, gammas=(), betas=()):
        self = super().__new__(cls, (loss, weights, biases))
        self.gammas, self.betas = list(gammas), list(betas)
        return self

    loss = property(lambda self: self[0])
    weights = property(lambda self: self[1])
    biases = property(lambda self: self[2])

    def __reduce__(self):
        return type(self), (*self, self.gammas, self.betas)


# ----------------------------------------------------------------- network ---

_CONFIGURATION = ("sizes", "activation", "output", "loss_name", "dtype", "n_layers", "batch_norm")
_VIEWS = ("weights", "biases", "gammas", "betas", "running_means", "running_vars")


def _read_only_message(name: str, verb: str) -> str:
    """Why a Network's public attribute ``name`` cannot be set or deleted, and what to do."""
    if name in _VIEWS:
        return (
            f"cannot {verb} a Network's {name}; write into its arrays instead "
            f"(net.{name}[l][...] = values)"
        )
    if name in _CONFIGURATION:
        return (
            f"cannot {verb} a Network's {name}: its architecture and configuration are "
            f"fixed when it is built; build a new Network, or use Network.from_params("
            f"net.weights, net.biases, ...) to keep its parameters under other settings"
        )
    return f"cannot {verb} {name!r}: a Network's public attributes are read-only"


def _settable(net, name: str) -> bool:
    """Whether ``name`` may be set on ``net``: private names, and in a subclass the
    public names it adds (never one Network defines)."""
    return name.startswith("_") or (type(net) is not Network and not hasattr(Network, name))


def _check_callbacks(callbacks) -> list:
    """fit's ``callbacks`` as a list of callables (None: none)."""
    if callbacks is None:
        return []
    if callable(callbacks) or isinstance(callbacks, (str, bytes)):
        raise TypeError(
            f"callbacks must be a list of callables; got {callbacks!r} (to pass one "
            f"function f, write callbacks=[f])"
        )
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of callables; got {callbacks!r}") from None
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"callbacks[{i}] must be callable; got {callback!r}")
    return callbacks


def _name_of(names: dict, code: int) -> str:
    """The name under which ``names`` maps to the kernels' ``code``."""
    return next(name for name, value in names.items() if value == code)


class Network:
    """A fully connected feed-forward network trained by backpropagation.

    ``sizes`` gives the width of every layer, input first: ``[2, 2, 1]`` is the
    tutorial's network. Hidden layers use ``activation``, one name for all of them or a
    list of one name per hidden layer (``["relu", "gelu"]`` for sizes ``[4, 8, 8, 1]``):
    ``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"identity"``, ``"leaky_relu"`` (slope 0.01
    below 0), ``"elu"`` (alpha 1), ``"gelu"`` (z Phi(z), the exact form), ``"softplus"``
    (log(1 + e^z), z itself above 20) or ``"silu"`` (z sigma(z)), each as PyTorch's
    ``torch.nn.functional`` defines it. The last layer uses ``output``; ``loss`` is what
    training minimises:

    - ``"mse"``: mean over every output element of (y_hat - y)^2 (no 1/2 factor);
    - ``"cross_entropy"`` (with ``output="softmax"``): mean over samples of
      -log p[class]; targets are integer classes or rows of class probabilities;
    - ``"binary_cross_entropy"`` (with ``output="sigmoid"``): mean over every output
      element of -(y log p + (1 - y) log(1 - p)).

    Weights start uniform in (-r, r), biases at zero, drawn from
    ``numpy.random.default_rng(seed)``: ``init="glorot"`` (the default),
    r = sqrt(6 / (n_in + n_out)), keeps the variance of sigmoid and tanh layers;
    ``init="he"``, r = sqrt(6 / n_in), that of ReLU layers, whose outputs are zero half
    the time (He et al. 2015). ``weights[l]`` has shape (n_out, n_in): row j holds the
    weights into neuron j of layer l.

    The architecture and configuration (``sizes``, ``activation``, ``output``,
    ``loss_name``, ``dtype``) are fixed when the network is built: setting or deleting
    any public attribute raises AttributeError (build a new network, or use
    ``Network.from_params(net.weights, net.biases, ...)``). ``weights`` and ``biases``
    are views to write into, in place.

    ``batch_norm=True`` inserts batch normalization after every hidden layer's affine
    map, before its activation, as PyTorch's ``BatchNorm1d`` after a ``Linear`` (which
    keeps its bias): y = gamma (z - mu) / sqrt(var + 1e-5) + beta per unit. Training
    passes (``fit``, ``step``, ``loss``, ``gradients``, ``forward(X, training=True)``)
    take mu and the biased var from the batch; ``fit`` and ``step`` also update the
    running statistics, running := 0.9 running + 0.1 (the batch's mean, or its unbiased
    variance), which ``forward(X)`` uses. ``gammas`` (start at 1) and ``betas`` (at 0)
    are trained like the biases (no weight decay); they and ``running_means`` (start at
    0) and ``running_vars`` (at 1) are views to write into, one per hidden layer. A
    training batch needs two rows or more.
    """

    def __init__(
        self,
        sizes,
        activation: str | Sequence[str] = "sigmoid",
        output: str = "sigmoid",
        loss: str = "mse",
        dtype="float64",
        seed=None,
        init: str = "glorot",
        batch_norm: bool = False,
    ):
        self._configure(sizes, activation, output, loss, dtype, batch_norm)
        init = _checks.check_name(init, "init", INITIALISATIONS)
        rng = _checks.random_generator(seed)
        sizes = self._arch.sizes
        for W, fan_in, fan_out in zip(self._layers()[0], sizes[:-1], sizes[1:]):
            limit = math.sqrt(6.0 / (fan_in + fan_out if init == "glorot" else fan_in))
            W[...] = rng.uniform(-limit, limit, size=W.shape)

    @classmethod
    def from_params(
        cls,
        weights,
        biases,
        activation: str | Sequence[str] = "sigmoid",
        output: str = "sigmoid",
        loss: str = "mse",
        dtype="float64",
        batch_norm: bool = False,
        *,
        gammas=None,
        betas=None,
        running_means=None,
        running_vars=None,
    ) -> Network:
        """A network with the given weights (each (n_out, n_in)) and biases (each (n_out,));
        ``activation`` as for ``Network``: one name, or one per hidden layer. With
        ``batch_norm``, ``gammas``, ``betas``, ``running_means`` and ``running_vars`` give
        one array of each hidden layer's width each (None: as a new network starts them;
        running variances must be >= 0)."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
            raise TypeError("weights must be a list of 2-D arrays, one per layer")
        if isinstance(biases, np.ndarray) or not isinstance(biases, (list, tuple)):
            raise TypeError("biases must be a list of 1-D arrays, one per layer")
        if len(weights) == 0 or len(weights) != len(biases):
            raise ValueError(
                f"weights and biases must have one entry per layer; got {len(weights)} "
                f"weights and {len(biases)} biases"
            )
        ws = [_checks.as_real_array(w, f"weights[{l}]") for l, w in enumerate(weights)]
        bs = [_checks.as_real_array(b, f"biases[{l}]") for l, b in enumerate(biases)]
        for l, (w, b) in enumerate(zip(ws, bs)):
            if w.ndim != 2 or w.size == 0:
                raise ValueError(f"weights[{l}] must be a non-empty 2-D array; got {w.shape}")
            if b.shape != (w.shape[0],):
                raise ValueError(f"biases[{l}] must have shape ({w.shape[0]},); got {b.shape}")
            if l > 0 and w.shape[1] != ws[l - 1].shape[0]:
                raise ValueError(
                    f"weights[{l}] takes {w.shape[1]} inputs, but layer {l - 1} has "
                    f"{ws[l - 1].shape[0]} outputs"
                )
        net = cls.__new__(cls)
        net._configure([ws[0].shape[1]] + [w.shape[0] for w in ws], activation, output, loss,
                       dtype, batch_norm)  # fmt: skip
        weights, biases = net._layers()
        for l, (w, b) in enumerate(zip(ws, bs)):
            weights[l][...] = _checks.to_float(w, f"weights[{l}]", net._dtype)
            biases[l][...] = _checks.to_float(b, f"biases[{l}]", net._dtype)
        given = {"gammas": gammas, "betas": betas, "running_means": running_means,
                 "running_vars": running_vars}  # fmt: skip
        for name, values in given.items():
            if values is None:
                continue
            if not net._arch.batch_norm:
                raise ValueError(f"{name} given, but batch_norm is False")
            views = getattr(net, "_" + name)()
            if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
                raise TypeError(f"{name} must be a list of 1-D arrays, one per hidden layer")
            if len(values) != len(views):
                raise ValueError(f"{name} must have {len(views)} entries (one per hidden "
                                 f"layer); got {len(values)}")  # fmt: skip
            for l, (view, value) in enumerate(zip(views, values)):
                value = _checks.as_real_array(value, f"{name}[{l}]")
                if value.shape != view.shape:
                    raise ValueError(f"{name}[{l}] must have shape {view.shape}; got {value.shape}")
                view[...] = _checks.to_float(value, f"{name}[{l}]", net._dtype)
                if name == "running_vars" and (view < 0).any():
                    raise ValueError(f"{name}[{l}] must be >= 0")
        return net

    def _configure(self, sizes, activation, output, loss, dtype, batch_norm=False) -> None:
        sizes = _checks.check_sizes(sizes)
        activation = _checks.check_names(activation, "activation", HIDDEN_ACTIVATIONS,
                                         len(sizes) - 2)  # fmt: skip
        output = _checks.check_name(output, "output", OUTPUT_ACTIVATIONS)
        loss = _checks.check_name(loss, "loss", LOSSES)
        if output not in _names.LOSS_OUTPUTS[loss]:
            raise ValueError(
                f"loss={loss!r} needs output in {_names.LOSS_OUTPUTS[loss]}; got output={output!r}"
            )
        self._dtype = _checks.check_dtype(dtype)
        if not isinstance(batch_norm, (bool, np.bool_)):
            raise TypeError(f"batch_norm must be True or False; got {batch_norm!r}")
        self._arch = _layout.Architecture(
            sizes=tuple(sizes),
            hidden=int(_names.HIDDEN[activation])
            if isinstance(activation, str)
            else tuple(int(_names.HIDDEN[name]) for name in activation),
            output=int(_names.OUTPUT[output]),
            loss=int(_names.LOSSES[loss]),
            dtype=self._dtype,
            transposed=_layout.transposed_for(sizes),
            batch_norm=bool(batch_norm),
        )
        n = self._arch.n_params
        if n * self._dtype.itemsize > _MAX_BYTES:
            raise ValueError(f"sizes {sizes} make {n} parameters, more than memory can address")
        self._theta = np.zeros(n, dtype=self._dtype)
        for gamma in self._arch.gammas(self._theta):
            gamma[...] = 1
        self._running = self._arch.new_running()
        self._guard = Guard()

    # ------------------------------------------------------------ properties ---
    # The architecture and the configuration are fixed when the network is built: the
    # kernels read them from ``_arch``, and the properties below are read from it too.

    @property
    def sizes(self) -> list[int]:
        """Every layer's width, input first; a new list each time (changing it changes
        nothing: build another network for other widths)."""
        return list(self._arch.sizes)

    @property
    def activation(self) -> str | list[str]:
        """The hidden layers' activation: one name, or a list of one name per hidden
        layer when the network was built with a list (a new list each time)."""
        return self._activation

    @property
    def output(self) -> str:
        """The output layer's activation."""
        return self._output

    @property
    def loss_name(self) -> str:
        """The loss training minimises."""
        return self._loss_name

    # The names of the architecture's codes, which the library's own code reads (never
    # the public properties above, which a subclass may override).
    _output = property(lambda self: _name_of(_names.OUTPUT, self._arch.output))
    _loss_name = property(lambda self: _name_of(_names.LOSSES, self._arch.loss))

    @property
    def _activation(self) -> str | list[str]:
        hidden = self._arch.hidden
        if isinstance(hidden, tuple):  # one code per hidden layer
            return [_name_of(_names.HIDDEN, code) for code in hidden]
        return _name_of(_names.HIDDEN, hidden)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def n_layers(self) -> int:
        return len(self._arch.sizes) - 1

    @property
    def weights(self) -> list[np.ndarray]:
        """Per-layer weight matrices (n_out, n_in); views: writing into them changes the net."""
        return self._layers()[0]

    @property
    def biases(self) -> list[np.ndarray]:
        """Per-layer bias vectors (n_out,); views into the network's parameters."""
        return self._layers()[1]

    @property
    def batch_norm(self) -> bool:
        """Whether every hidden layer is batch-normalised."""
        return self._arch.batch_norm

    @property
    def gammas(self) -> list[np.ndarray]:
        """Batch normalization's scale of every hidden layer (n_out,); views into the
        network's parameters (an empty list without batch normalization)."""
        return self._gammas()

    @property
    def betas(self) -> list[np.ndarray]:
        """Batch normalization's shift of every hidden layer (n_out,); views into the
        network's parameters (an empty list without batch normalization)."""
        return self._betas()

    @property
    def running_means(self) -> list[np.ndarray]:
        """Every hidden layer's running mean of its pre-activations (n_out,), which
        ``forward`` normalises with; views (an empty list without batch normalization)."""
        return self._running_means()

    @property
    def running_vars(self) -> list[np.ndarray]:
        """Every hidden layer's running (unbiased) variance of its pre-activations
        (n_out,); views (an empty list without batch normalization)."""
        return self._running_vars()

    def _gammas(self) -> list[np.ndarray]:
        return self._arch.gammas(self._theta)

    def _betas(self) -> list[np.ndarray]:
        return self._arch.betas(self._theta)

    def _running_means(self) -> list[np.ndarray]:
        return self._arch.running_means(self._running)

    def _running_vars(self) -> list[np.ndarray]:
        return self._arch.running_vars(self._running)

    @property
    def history(self) -> list[EpochRecord]:
        """One ``EpochRecord`` per epoch the last ``fit`` completed (a new list each
        time; see ``fit``). It is pickled with the network; ``save`` does not write it."""
        losses, records = self.__dict__.get("_history", ((), None))
        if records is not None:
            return list(records)
        return [EpochRecord(epoch, loss) for epoch, loss in enumerate(losses)]

    def _layers(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(weights, biases) as views into the parameters, read from the architecture the
        kernels use: the library's own code reads these, never the public properties a
        subclass may override."""
        stored = self._arch.weights(self._theta)
        weights = [W.T for W in stored] if self._arch.transposed else stored
        return weights, self._arch.biases(self._theta)

    def __setattr__(self, name: str, value) -> None:
        if not _settable(self, name):
            raise AttributeError(_read_only_message(name, "set"))
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if not _settable(self, name):
            raise AttributeError(_read_only_message(name, "delete"))
        object.__delattr__(self, name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({list(self._arch.sizes)}, activation={self._activation!r}, "
            f"output={self._output!r}, loss={self._loss_name!r}, dtype={self._dtype.name!r}"
            + (", batch_norm=True)" if self._arch.batch_norm else ")")
        )

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_guard"]
        with self._guard.reading():  # never the half-updated weights of a running fit
            state["_theta"] = self._theta.copy()
            state["_running"] = self._running.copy()
        return state

    def __setstate__(self, state):
        state = dict(state)
        # the names are read from the architecture the kernels computed with: a network
        # pickled while its configuration was stored as names keeps no copy of them
        for stored in ("sizes", "activation", "output", "loss_name"):
            state.pop(stored, None)
            state.pop("_" + stored, None)
        self.__dict__.update(state)
        if "_running" not in state:  # pickled before batch normalization existed
            self._running = self._arch.new_running()
        self._guard = Guard()

    # ---------------------------------------------------------------- checks ---

    def _check_X(self, X, name: str = "X", finite: bool = True) -> tuple[np.ndarray, bool]:
        arr = _checks.as_real_array(X, name)
        single = arr.ndim == 1
        if single:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be 1-D (one sample) or 2-D (n_samples, n_features); "
                f"got {arr.ndim}-D with shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            raise ValueError(f"{name} has no samples")
        n_in = self._arch.sizes[0]
        if arr.shape[1] != n_in:
            raise ValueError(f"{name} has {arr.shape[1]} features, but the network expects {n_in}")
        return _checks.to_float(arr, name, self._dtype, finite), single

    def _check_Y(self, Y, n: int, single: bool, name: str = "Y"):
        """Targets as (dense rows (n, k), integer labels (n,)); the unused one is empty."""
        k = self._arch.sizes[-1]
        arr = _checks.as_real_array(Y, name)
        no_labels = np.empty(0, dtype=np.intp)
        if self._loss_name == "cross_entropy" and (
            arr.ndim == 0 or (arr.ndim == 1 and not (single and arr.shape[0] == k and k > 1))
        ):
            labels = arr.reshape(-1)
            if labels.shape[0] != n:
                raise ValueError(f"{name} has {labels.shape[0]} labels but X has {n} samples")
            if arr.dtype.kind == "f":
                if not np.isfinite(labels).all():
                    raise ValueError(f"{name} contains NaN or infinity")
                if not (labels == np.round(labels)).all():
                    raise ValueError(f"{name} holds class labels, which must be whole numbers")
            bad = (labels < 0) | (labels >= k)
            if bad.any():
                raise ValueError(
                    f"{name} contains label {labels[bad][0].item()!r}, but the network has "
                    f"{k} outputs (classes 0 to {k - 1})"
                )
            return np.empty((0, k), dtype=self._dtype), labels.astype(np.intp)
        if arr.ndim == 0 or (arr.ndim == 1 and (single or k == 1)):
            arr = arr.reshape(n if arr.size == n * k else -1, k) if arr.size % k == 0 else arr
        if arr.ndim != 2 or arr.shape[1] != k:
            raise ValueError(f"{name} must have shape ({n}, {k}); got {np.shape(Y)}")
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} samples but X has {n}")
        rows = _checks.to_float(arr, name, self._dtype)
        if self._loss_name == "binary_cross_entropy" and ((rows < 0) | (rows > 1)).any():
            raise ValueError(f"{name} must lie in [0, 1] for binary_cross_entropy")
        if self._loss_name == "cross_entropy":
            if (rows < 0).any():
                raise ValueError(f"{name} rows are class probabilities and must be >= 0")
            tol = 1e-4 if self._dtype == np.float32 else 1e-8
            with np.errstate(over="ignore"):
                sums = rows.sum(axis=1, dtype=np.float64)
            if not np.allclose(sums, 1.0, rtol=0, atol=tol):
                raise ValueError(f"{name} rows are class probabilities and must sum to 1")
        return rows, no_labels

    # ----------------------------------------------------------- computation ---

    def forward(self, X, training: bool = False) -> np.ndarray:
        """The network's outputs y_hat, shape (n_samples, n_outputs); 1-D X is one sample.

        Many rows run a chunk at a time (~10-40 ms of work each), and Ctrl-C is answered
        between two chunks. A row's outputs depend on that row alone, up to rounding: the
        size of its chunk can choose another product kernel (``_kernels/_gemm.pxi``).

        Batch normalization uses the running statistics; with ``training=True`` it uses
        the statistics of X's rows instead, as a training pass does (one pass over all
        rows, which must be two or more; the running statistics are left as they are).
        Without batch normalization ``training`` changes nothing (dropout is ``fit``'s
        alone).
        """
        if not isinstance(training, (bool, np.bool_)):
            raise TypeError(f"training must be True or False; got {training!r}")
        X, _ = self._check_X(X)
        training = training and self._arch.batch_norm
        if training:
            self._check_batch_rows(X.shape[0], "X")
        with self._guard.reading():
            if training:
                out = self._arch.forward_training(self._theta, X)
            else:
                out = self._arch.forward(self._theta, X, self._running if self._arch.batch_norm
                                         else None)  # fmt: skip
            if not np.isfinite(out).all():
                raise ValueError(self._not_finite("the outputs are", X))
        return out

    def _batch(self, X, Y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, targets, Y's dense rows) checked: targets are the rows or integer labels."""
        X, single = self._check_X(X)
        rows, labels = self._check_Y(Y, X.shape[0], single)
        if X.shape[0] > _MAX_DIM:
            raise ValueError(f"X has {X.shape[0]} samples; one batch takes at most {_MAX_DIM}")
        return X, labels if labels.size else rows, rows

    def _check_batch_rows(self, m: int, what: str) -> None:
        """A batch-normalised training batch has two rows or more."""
        if self._arch.batch_norm and m < 2:
            raise ValueError(
                f"{what} has {m} row; batch normalization needs two rows or more in a "
                f"training batch (a batch of one has no variance). Pass more rows, or "
                f"use forward(X) (training=False), which takes the running statistics"
            )

    def _mean_loss(self, X, Y, grad: np.ndarray | None) -> float:
        X, targets, rows = self._batch(X, Y)
        self._check_batch_rows(X.shape[0], "the batch")
        with self._guard.reading():
            value = self._arch.mean_loss(self._theta, X, targets, grad)
            if not (math.isfinite(value) and (grad is None or np.isfinite(grad).all())):
                raise ValueError(self._not_finite("the loss or its gradients are", X, rows))
        return value

    def _check_validation(self, validation_data) -> tuple[np.ndarray, np.ndarray] | None:
        """fit's ``validation_data`` as (X, targets) checked, or None."""
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(
                f"validation_data must be a pair (X_val, Y_val); got "
                f"{type(validation_data).__name__}"
            )
        X, single = self._check_X(validation_data[0], "validation_data[0]")
        rows, labels = self._check_Y(validation_data[1], X.shape[0], single, "validation_data[1]")
        return X, labels if labels.size else rows

    def _check_gradients(self, plan, X, targets, grad) -> bool:
        """Whether the gradient of fit's first batch (its first _GRADIENT_CHECK_ROWS rows
        at most), computed by fit's ``plan`` into ``grad``, calls for a GradientWarning,
        which it then issues (as from fit)."""
        if len(self._arch.sizes) < 3:  # no hidden layer to compare
            return False
        rows = min(plan.rows, X.shape[0], _GRADIENT_CHECK_ROWS)
        masks = plan.rng_state.copy()  # training draws the same dropout masks after it
        plan.batch(self._theta, X[:rows], targets[:rows], mode=Mode.GRADIENTS, grad=grad)
        plan.rng_state[...] = masks
        # (X is not checked yet: the norms may not be finite, and then say nothing)
        problem = _monitor.gradient_problem(_monitor.layer_norms(self._arch, grad))
        if problem:
            warnings.warn(problem, GradientWarning, stacklevel=3)
        return bool(problem)

    def _check_parameters(self) -> None:
        if not np.isfinite(self._theta).all():
            raise ValueError("the network's weights or biases contain NaN or infinity")

    def _not_finite(self, what: str, X: np.ndarray, Y: np.ndarray | None = None) -> str:
        """Why a result overflowed: non-finite parameters, or inputs too large for them."""
        if not np.isfinite(self._theta).all():
            return f"{what} not finite: the network's weights or biases contain NaN or infinity"
        if not np.isfinite(self._running).all() or any(
            (var < 0).any() for var in self._running_vars()
        ):
            return (
                f"{what} not finite: the network's running statistics contain NaN, infinity "
                f"or a negative variance"
            )
        largest = f"largest |X| is {np.abs(X).max():.3g}"
        if Y is not None and Y.size:
            largest += f", largest |Y| is {np.abs(Y).max():.3g}"
        return (
            f"{what} not finite: X or Y holds values too large for this network in "
            f"{self._dtype.name} ({largest})"
        )

    def loss(self, X, Y) -> float:
        """The mean loss over the batch (X, Y).

        Many rows run a chunk at a time, and Ctrl-C is answered between two chunks; the
        mean is then the chunks' means weighted by their rows, which differs from one
        pass's by rounding (``_layout.Architecture.mean_loss``). With batch
        normalization it is a training pass: one pass over all rows (two or more),
        normalised by their statistics; it is a query and leaves the running statistics
        as they are.
        """
        return self._mean_loss(X, Y, None)

    def gradients(self, X, Y) -> Gradients:
        """(loss, dL/dweights, dL/dbiases) of the mean loss over the batch (X, Y), as a
        ``Gradients`` tuple, whose ``gammas`` and ``betas`` attributes hold dL/dgamma_l and
        dL/dbeta_l with batch normalization (empty lists without).

        Many rows run a chunk at a time, as in ``loss``: the gradients are then the
        chunks' gradients weighted by their rows, equal to one pass's up to rounding.
        With batch normalization it is one training pass over all rows (two or more),
        as ``loss``; it is a query and leaves the running statistics as they are.
        """
        grad = np.empty_like(self._theta)
        value = self._mean_loss(X, Y, grad)
        view = self._like(grad)
        return Gradients(value, view.weights, view.biases, view._gammas(), view._betas())

    def step(self, X, Y, lr: float = 0.1, weight_decay: float = 0.0) -> float:
        """One gradient-descent step on the batch; returns the loss L before it.

        W := W - lr (dL/dW + weight_decay W) for every layer's weights (L2 weight decay,
        as PyTorch's SGD applies it; biases are not decayed), b := b - lr dL/db.
        Raises DivergenceError, leaving the weights unchanged, if the loss or the
        updated weights are not finite. The batch is one compiled call: Ctrl-C is
        answered when it ends (``fit`` answers it between batches). With batch
        normalization, gammas and betas step as biases do, and the batch (two rows or
        more) updates the running statistics.
        """
        lr = _checks.check_lr(lr, self._dtype)
        weight_decay = _checks.check_nonnegative(weight_decay, "weight_decay")
        X, targets, _ = self._batch(X, Y)
        self._check_batch_rows(X.shape[0], "the batch")
        running = self._running if self._arch.batch_norm else None
        # as in fit: a mid-size batch may run as two halves, so a step is fit's step exactly
        plan = self._arch.plan(X.shape[0], optimizer=optim.SGD(lr, weight_decay=weight_decay))
        with self._guard.writing():
            self._check_parameters()
            before, running_before = self._theta.copy(), self._running.copy()
            value = plan.batch(self._theta, X, targets, mode=Mode.FUSED_STEP, running=running)
            if not (math.isfinite(value) and np.isfinite(self._theta).all()):
                self._theta[...] = before
                self._running[...] = running_before
                what = "the loss is" if not math.isfinite(value) else "the step made the weights"
                raise DivergenceError(
                    f"the step diverged: {what} not finite (lr={lr}); the weights are "
                    f"unchanged. Try a smaller learning rate.",
                    0,
                    0,
                    [],
                )
        return value

    def fit(
        self,
        X,
        Y,
        epochs: int = 1,
        batch_size: int = 1,
        lr: float | None = None,
        shuffle: bool = False,
        seed=None,
        on_divergence: str = "raise",
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        optimizer: optim.SGD | optim.Adam | None = None,
        validation_data=None,
        callbacks: Sequence[Callable[[EpochRecord], object]] | None = None,
        early_stopping: int | None = None,
        verbose: bool = False,
    ) -> list[float]:
        """Mini-batch gradient descent; returns the mean training loss of every epoch.

        Each epoch visits the samples in order (or in a fresh permutation from
        ``numpy.random.default_rng(seed)`` when ``shuffle``) in batches of
        ``batch_size`` (the last may be smaller; a batch_size above n is n). The loss
        of an epoch is the mean, over its samples, of the loss of the batch each was
        in, taken just before that batch's step (without the decay term).

        ``optimizer`` is a ``backprop.optim.SGD`` or ``backprop.optim.Adam`` (PyTorch's
        update rules, see ``backprop.optim``); it keeps its state (velocities, moments,
        step count) from one call to the next, so ``fit(epochs=1)`` twice is
        ``fit(epochs=2)`` once without shuffling, and belongs to this network from its
        first call. Without one, ``lr`` (default 0.1), ``weight_decay``, ``momentum``
        and ``nesterov`` build a fresh ``optim.SGD`` for this call alone: its velocity
        starts at zero with each call. ``weight_decay`` adds L2 weight decay to every
        step, as in ``step``. ``momentum`` = mu > 0 trains with momentum as PyTorch's
        SGD does: a velocity v := mu v + g (g the gradient, plus weight_decay W for the
        weights) and theta := theta - lr v, or theta := theta - lr (g + mu v) with
        ``nesterov``.
        ``dropout`` = p drops each hidden unit of each sample from each batch's forward
        and backward pass with probability p, scaling those kept by 1 / (1 - p)
        (inverted dropout); ``forward`` and the other methods never drop. The masks come
        from a generator seeded by ``numpy.random.default_rng(seed)``, drawn before the
        first permutation, so a seed fixes them too.

        With batch normalization every batch (two rows or more: a ``batch_size`` of 1,
        or a last batch of one row, raises ValueError) updates the running statistics
        too, and gammas and betas train as biases do (no weight decay). Plain SGD's
        step on them is fused into the backward pass like the weights' and biases'.

        If a batch's loss, or the weights after its step, are not finite, training
        stops there and the network keeps the weights it had before that batch.
        Then ``on_divergence="raise"`` raises DivergenceError; ``"warn"`` issues a
        RuntimeWarning with the same message and returns the losses of the epochs
        completed before it.

        Monitoring. After each epoch fit makes an ``EpochRecord``: its number (from 0),
        its loss (this list's entry), the validation loss ``net.loss(*validation_data)``
        just after it when ``validation_data=(X_val, Y_val)`` is given, and per layer
        the gradient norm (of the mean, over the epoch's batches, of each batch's
        mean-loss gradient dL_B/dtheta_l, weights and biases of layer l together, before
        weight decay) and the update ratio ||theta_l after - before|| / ||theta_l
        before||. Each of ``callbacks`` is called with it, ``f(record)``, and training
        stops when one returns a true value; fit then returns the losses so far. A
        callback may read the network (``forward``, ``loss``, ``history``, pickling),
        not train it (RuntimeError). ``early_stopping=k`` (with validation_data) stops
        after k epochs in a row without a lower validation loss, and leaves the network
        with the weights (and batch normalization's running statistics) of the epoch of
        the lowest one, whenever fit returns normally
        (not after a divergence, which keeps the weights from before the bad batch).
        ``verbose=True`` shows the epochs' progress: a tqdm bar when tqdm is installed,
        else a line per epoch on stderr (counting epochs from 1).

        The statistics are computed inside the compiled loop, but only when asked for:
        with callbacks, validation_data, early_stopping or verbose, each epoch is then
        one compiled call, and every batch's gradient is stored before its step
        (plain SGD otherwise fuses the step into the backward pass), which changes the
        weights by rounding only, and costs 40-65 % on a network as small as the
        tutorial's (9-13 % on [64, 100, 10] in batches of 32). Without them the records
        in ``history`` hold the epoch and the loss alone.

        ``history`` holds the records of the epochs the last fit completed, also when it
        raised (a divergence, Ctrl-C, a callback's exception); a fit refused by its
        argument checks leaves it as it was. A ``GradientWarning`` (at most one per
        fit) says when a hidden layer's gradient norm is below 1e-4 or above 1e4 times
        the output layer's: checked on each epoch's statistics when fit takes them,
        else once before training, on the gradient of the first batch (its first 64
        rows at most). A layer whose gradient is exactly 0 (a ReLU layer that no row
        activates, say) is not reported.
        """
        given = X
        # X's values are checked by the first epoch's batches as they are used (status 3),
        # while the rows are in cache: a pass over all of X beforehand cost W2 ~6 %
        X, single = self._check_X(X, finite=False)
        rows, labels = self._check_Y(Y, X.shape[0], single)
        epochs = _checks.check_int(epochs, "epochs", 0, _MAX_BYTES // 8)  # one float64 loss each
        batch_size = _checks.check_int(batch_size, "batch_size", 1)
        if optimizer is None:
            weight_decay = _checks.check_nonnegative(weight_decay, "weight_decay")
            momentum = _checks.check_nonnegative(momentum, "momentum", 1.0)
            if not isinstance(nesterov, (bool, np.bool_)):
                raise TypeError(f"nesterov must be True or False; got {nesterov!r}")
            if nesterov and not momentum:
                raise ValueError("nesterov=True needs a momentum > 0")
            lr = _checks.check_lr(0.1 if lr is None else lr, self._dtype)
        else:
            if not isinstance(optimizer, (optim.SGD, optim.Adam)) or (
                optimizer.convention != "pytorch"
            ):
                raise TypeError(
                    f"optimizer must be a backprop.optim.SGD or backprop.optim.Adam with "
                    f"PyTorch's convention; got {optimizer!r}"
                )
            if lr is not None or weight_decay or momentum or nesterov:
                raise ValueError(
                    "give lr, weight_decay, momentum and nesterov to the optimizer, not to "
                    "fit, when fit is given an optimizer"
                )
            lr = _checks.check_lr(optimizer.lr, self._dtype)
        dropout = _checks.check_nonnegative(dropout, "dropout", 1.0)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
        on_divergence = _checks.check_name(on_divergence, "on_divergence", DIVERGENCE_POLICIES)
        validation = self._check_validation(validation_data)
        callbacks = _check_callbacks(callbacks)
        if early_stopping is not None:
            early_stopping = _checks.check_int(early_stopping, "early_stopping", 1)
            if validation is None:
                raise ValueError(
                    "early_stopping needs validation_data=(X_val, Y_val): it stops when the "
                    "validation loss stops improving"
                )
        if not isinstance(verbose, (bool, np.bool_)):
            raise TypeError(f"verbose must be True or False; got {verbose!r}")
        monitored = bool(callbacks) or validation is not None or early_stopping is not None
        monitored = monitored or bool(verbose)
        rng = _checks.random_generator(seed)
        n = X.shape[0]
        m = min(batch_size, n)
        if m > _MAX_DIM:
            raise ValueError(f"batch_size must be <= {_MAX_DIM}; got {batch_size}")
        if self._arch.batch_norm and (m < 2 or n % m == 1):
            raise ValueError(
                f"batch_size={batch_size} over {n} samples makes a batch of one row, but "
                f"batch normalization needs two rows or more in a training batch (a batch "
                f"of one has no variance); choose a batch_size that leaves none"
            )
        # Batches of a few numbers are checked faster in one pass over X beforehand
        in_kernel = m * X.shape[1] >= _CHECK_IN_KERNEL_MIN
        if epochs == 0 or not in_kernel:
            _checks.check_finite(X, given, "X")
        losses: list[float] = []
        records: list[EpochRecord] | None = [] if monitored else None
        self._history = (losses, records)  # filled as the epochs complete
        if epochs == 0:
            return []
        targets = labels if labels.size else rows
        if optimizer is None:
            optimizer = optim.SGD(lr, momentum, bool(nesterov), weight_decay)
            optimizer.init_state(self._theta.size, self._dtype)
        else:
            optimizer._state_for(self, self._theta.size, self._dtype)
        plan = self._arch.plan(
            m,
            optimizer=optimizer,
            dropout=dropout,
            # the dropout masks' generator state, drawn before any permutation
            seed=int(rng.integers(0, 2**63)) if dropout else 0,
            gather=shuffle,
            stats=monitored,
        )
        running = self._running if self._arch.batch_norm else None
        # a monitored fit's kernel calls run one epoch each, all of them (the replays of
        # _rewind too) taking the statistics, so that they do the same arithmetic
        stats = {}
        if monitored:
            n_layers = len(self._arch.sizes) - 1
            stats = {name: np.empty((1, n_layers)) for name in ("grad_norms", "update_ratios")}

        def train(order, count, epoch_losses, data=(X, targets), check_input=False):
            return plan.train(self._theta, *data, order=order, epochs=count,
                              losses=epoch_losses, optimizer=optimizer,
                              steps=optimizer._steps, check_input=check_input,
                              running=running, **stats)  # fmt: skip

        progress = _monitor.Progress(epochs) if verbose else None
        best_loss, best, since_best = math.inf, None, 0  # best: (theta, running statistics)
        warned = False

        def end_of_epoch(e: int) -> bool:
            """Epoch e's record, its gradient check, display, early stopping and
            callbacks (in that order); whether to stop."""
            nonlocal warned, best_loss, best, since_best
            val_loss = None
            if validation is not None:
                val_loss = self._arch.mean_loss(self._theta, *validation)
            record = EpochRecord(e, losses[e], val_loss,
                                 tuple(stats["grad_norms"][0].tolist()),
                                 tuple(stats["update_ratios"][0].tolist()))  # fmt: skip
            records.append(record)
            problem = None if warned else _monitor.gradient_problem(record.grad_norms)
            if problem:
                warnings.warn(problem, GradientWarning, stacklevel=3)
                warned = True
            if progress is not None:
                progress.update(record)
            stop = False
            if early_stopping is not None:
                if val_loss < best_loss:
                    best_loss, since_best = val_loss, 0
                    best = (self._theta.copy(), self._running.copy())
                else:
                    since_best += 1
                    stop = since_best >= early_stopping
            for callback in callbacks:
                if callback(record):
                    stop = True
            return stop

        # The epochs run in blocks, one kernel call each, and the losses of the blocks
        # done are kept: one epoch per permutation when shuffling, else blocks that double
        # from _FIT_FIRST_BLOCK to _FIT_BLOCK epochs, so that nothing the size of
        # ``epochs`` is allocated before training starts. theta, the optimizer's state and
        # the dropout stream carry over from one call to the next: the blocks do the
        # arithmetic of one call, bit for bit.
        block = np.empty(1 if shuffle or monitored else min(epochs, _FIT_BLOCK))
        size = _FIT_FIRST_BLOCK
        order = None
        # where a diverged call is replayed from: theta, the masks' stream, the optimizer's
        # moments and step count, the running statistics
        live = [
            a
            for a in (self._theta, plan.rng_state, optimizer.moment1, optimizer.moment2,
                      optimizer._steps, running)
            if a is not None
        ]  # fmt: skip
        saved = [np.empty_like(a) for a in live]
        try:
            with self._guard.writing():
                self._check_parameters()
                if not monitored:  # (in the restore point's buffer: free until a call)
                    warned = self._check_gradients(plan, X, targets, saved[0])
                first = 0
                while first < epochs:
                    count = min(size, block.size, epochs - first)
                    size *= 2
                    if shuffle:
                        order = rng.permutation(n).astype(np.intp, copy=False)
                    for copy, array in zip(saved, live):
                        copy[...] = array
                    block[:count] = np.nan  # the kernel writes the loss of each epoch it ends
                    try:
                        status, epoch, batch = train(
                            order,
                            count,
                            block[:count],
                            check_input=in_kernel and first == 0,
                        )
                    except BaseException:  # Ctrl-C: keep the epochs completed
                        if not monitored:
                            ended = ~np.isnan(block[:count])
                            losses += block[: count if ended.all() else ended.argmin()].tolist()
                        raise
                    if status == Status.INPUT_NOT_FINITE or (
                        # training diverged before the check reached every row: a bad row
                        # of X must still be reported as such, not as a divergence
                        status and in_kernel and first == 0 and not _core.all_finite(X.reshape(-1))
                    ):  # a row of X is not finite: undo the call, say which error
                        for array, copy in zip(live, saved):
                            array[...] = copy
                        _checks.check_finite(X, given, "X")  # raises, naming the problem
                        raise ValueError("X contains NaN or infinity")  # X changed meanwhile
                    if status == Status.LOSS_NOT_FINITE and _core.all_finite(self._theta):
                        # the kernel stopped before the bad batch's step: nothing to undo
                        what = "the loss is"
                    elif status:
                        epoch, batch, what = self._rewind(saved, live, train, order, count, m,
                                                          X, targets)  # fmt: skip
                    if status:
                        losses += block[:epoch].tolist()  # the block's epochs before the bad one
                        epoch += first
                        break
                    losses += block[:count].tolist()
                    first += count
                    if monitored and end_of_epoch(first - 1):
                        break
                if not status:  # every epoch ran, or early stopping or a callback stopped it
                    if best is not None:
                        self._theta[...], self._running[...] = best
                    return losses
        finally:
            self._history = (list(losses), records)
            if progress is not None:
                progress.close()
        message = (
            f"training diverged at epoch {epoch}, batch {batch}: {what} not finite "
            f"(lr={lr}); the weights are those from before that batch. "
            f"Try a smaller learning rate."
        )
        if on_divergence == "raise":
            raise DivergenceError(message, epoch, batch, losses)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return losses

    def _rewind(self, saved, live, train, order, epochs, m, X, targets):
        """Replays a diverged ``train`` run from its start up to its first bad batch.

        Needed when a step overflowed the weights: the kernel notices only at the next
        batch's loss, or at the end of the run. The replay repeats the same arithmetic
        (the same dropout masks and optimizer state: ``saved`` holds theta, the dropout
        generator, the optimizer's moments and step count as they were at the start,
        ``live`` the arrays in use): whole epochs until one diverges, then that epoch a
        batch at a time, and leaves theta and the optimizer's state as they were before
        the first batch whose loss, or whose updated weights, were not finite. Returns
        that batch's (epoch, batch, what went wrong).
        """
        for array, copy in zip(live, saved):
            array[...] = copy
        theta = live[0]
        scratch = np.empty(1)
        epoch = 0
        while True:
            if epoch == epochs:  # the same arithmetic again, and no divergence this time
                for array, copy in zip(live, saved):
                    array[...] = copy
                raise RuntimeError(
                    "training diverged but its replay did not: the weights are those from "
                    "before this call to fit"
                )
            epoch_saved = [a.copy() for a in live]
            status, *_ = train(order, 1, scratch)
            if status:
                for array, copy in zip(live, epoch_saved):
                    array[...] = copy
                break
            epoch += 1
        for batch, first in enumerate(range(0, X.shape[0], m)):
            rows_b = order[first : first + m] if order is not None else slice(first, first + m)
            data = (np.ascontiguousarray(X[rows_b]), np.ascontiguousarray(targets[rows_b]))
            before = [a.copy() for a in live]
            status, *_ = train(None, 1, scratch, data=data)
            if status or not _core.all_finite(theta):
                for array, copy in zip(live, before):
                    array[...] = copy
                what = (
                    "the loss is" if status == Status.LOSS_NOT_FINITE
                    else "the step made the weights"
                )  # fmt: skip
                return epoch, batch, what
        for array, copy in zip(live, epoch_saved):
            array[...] = copy
        return epoch, 0, "the loss is"

    def trace(self, X, Y) -> Trace:
        """Every intermediate quantity of one forward and backward pass on (X, Y).

        Runs the per-layer kernels one at a time (z, activation, delta, gradients)
        instead of the fused loop, so each quantity of the worked example can be seen.
        Not for a network with batch normalization (ValueError).
        """
        if self._arch.batch_norm:
            raise ValueError(
                "trace() shows the tutorial's layers, without batch normalization; use "
                "gradients() (and forward(X, training=True)) on a batch-normalised network"
            )
        X, single = self._check_X(X)
        rows, labels = self._check_Y(Y, X.shape[0], single)
        if X.shape[0] > _MAX_DIM:
            raise ValueError(f"X has {X.shape[0]} samples; one batch takes at most {_MAX_DIM}")
        hidden, output, loss = self._arch.hidden_array, self._arch.output, self._arch.loss
        n, k, n_layers = X.shape[0], self._arch.sizes[-1], len(self._arch.sizes) - 1
        zs, activations = [], [X]
        with self._guard.reading():
            weights, biases = ([a.copy() for a in arrays] for arrays in self._layers())
        for l, (W, b) in enumerate(zip(weights, biases)):
            Z = np.empty((n, W.shape[0]), dtype=self._dtype)
            _core.dense(activations[-1], W, b, Z)
            A = np.empty_like(Z)
            _core.activate(Z, A, output if l == n_layers - 1 else int(hidden[l]))
            zs.append(Z)
            activations.append(A)
        delta = np.empty_like(zs[-1])
        value = _core.output_delta(zs[-1].copy(), rows, labels, delta, output, loss)
        y_hat = activations[-1]
        target = rows if labels.size == 0 else np.eye(k, dtype=self._dtype)[labels]
        # dL/dy_hat is infinite where a probability rounds to 0 or 1 against a target
        # that is not; where the target is too, the limit is taken instead of 0/0.
        with np.errstate(all="ignore"):
            if self._loss_name == "mse":
                dloss = 2 * (y_hat - target) / (n * k)
            elif self._loss_name == "cross_entropy":
                dloss = -target / (n * y_hat)
                dloss[(target == 0) & (y_hat == 0)] = 0
            else:
                dloss = (y_hat - target) / (y_hat * (1 - y_hat) * n * k)
                limit = (y_hat == target) & ((y_hat == 0) | (y_hat == 1))
                dloss[limit] = (1 - 2 * target[limit]) / (n * k)
        prime = None
        if self._output != "softmax":
            prime = np.empty_like(y_hat)
            _core.activation_prime(zs[-1], y_hat, prime, output)
        deltas = [delta]
        grad_w, grad_b = [], []
        for l in range(n_layers - 1, -1, -1):
            gW, gb = np.empty_like(weights[l]), np.empty_like(biases[l])
            _core.weight_gradients(deltas[0], activations[l], gW, gb)
            grad_w.insert(0, gW)
            grad_b.insert(0, gb)
            if l > 0:
                d_prev = np.empty_like(activations[l])
                _core.hidden_delta(deltas[0], weights[l], zs[l - 1], activations[l], d_prev,
                                   int(hidden[l - 1]))  # fmt: skip
                deltas.insert(0, d_prev)
        computed = [value, *zs, *activations, *deltas, *grad_w, *grad_b]
        if not all(np.isfinite(a).all() for a in computed):
            raise ValueError(self._not_finite("the pass's values are", X, rows))
        return Trace(zs, activations, value, dloss, prime, deltas, grad_w, grad_b)

    def _like(self, theta: np.ndarray) -> Network:
        """A network of the same architecture over the given flat parameter array (and
        the same running statistics)."""
        net = Network.__new__(Network)
        net.__dict__.update(self.__dict__)
        net._theta = theta
        net._guard = Guard()
        return net

    # ----------------------------------------------------------- checkpoints ---

    def save(self, path) -> None:
        """Writes the network to the file ``path`` (that exact name), for ``load``.

        The file is an uncompressed ``.npz`` archive of plain arrays (no pickles):
        ``format`` ("backprop.Network"), ``version`` (1; 2 when ``activation`` is a
        list), ``sizes``, ``activation`` (a name, or an array of one per hidden layer),
        ``output``, ``loss``, ``dtype`` and ``parameters``, the flat parameter array
        (for each layer its weights, row-major (n_out, n_in), then its biases). With
        batch normalization it is version 3: each hidden layer's gammas and betas follow
        its biases in ``parameters``, and ``running`` holds the running statistics (for
        each hidden layer its running means, then its running variances). It is
        written to a temporary file in the same directory, flushed to disk and then
        renamed onto ``path``, so ``path`` holds the old file or the whole new one,
        never part of one, whatever happens during the save; a replaced file keeps its
        permission bits. ``path`` must be a regular file or a new name: a directory
        raises IsADirectoryError, a FIFO, socket or device ValueError. A symbolic link
        is followed: it stays a link and its target receives the network. Temporary
        files left by a save that was killed are removed by the next save to ``path``.
        What ``open(path, "wb")`` would refuse, save refuses too (a missing directory
        FileNotFoundError, a file the process may not write PermissionError), and
        weights or biases that are NaN or infinite, which ``load`` would refuse,
        ValueError; a refused save leaves ``path`` as it was.
        """
        with self._guard.reading():
            weights, biases = self._layers()
            norms = list(zip(self._gammas(), self._betas()))
            norms += [()] * (len(weights) - len(norms))  # the output layer, or every layer
            parameters = np.concatenate(
                [p.ravel() for w, b, norm in zip(weights, biases, norms) for p in (w, b, *norm)]
            )
            running = self._running.copy() if self._arch.batch_norm else None
        if not _core.all_finite(parameters):  # load would refuse the file: keep the old one
            raise ValueError(
                "the network's weights or biases contain NaN or infinity; nothing was saved"
            )
        if running is not None and not (_core.all_finite(running) and all(
                (var >= 0).all() for var in self._arch.running_vars(running))):  # fmt: skip
            raise ValueError(
                "the network's running statistics contain NaN, infinity or a negative "
                "variance; nothing was saved"
            )
        _checkpoint.write(
            path,
            sizes=list(self._arch.sizes),
            activation=self._activation,
            output=self._output,
            loss=self._loss_name,
            dtype=self._dtype.name,
            parameters=parameters,
            running=running,
        )


def load(path) -> Network:
    """The network ``Network.save`` wrote to ``path``, with bit-identical parameters.

    A file that is not a whole, valid checkpoint of a version this library reads
    (truncated, altered, written by something else, a pickle) raises ValueError
    saying what is wrong, as does a FIFO, socket or device (at once: a FIFO is never
    waited on); a directory raises IsADirectoryError. Nothing in the file is unpickled
    or executed.
    """
    return _checkpoint.read(path, _from_checkpoint)


def _entry_like(array: np.ndarray, like: np.ndarray, name: str) -> np.ndarray:
    """The checkpoint's entry ``name``, checked to have ``like``'s dtype and shape and
    only finite numbers."""
    if array.dtype.name != like.dtype.name or array.shape != like.shape:
        raise ValueError(
            f"{name} has dtype {array.dtype.name} and shape {array.shape}; "
            f"the network needs {like.dtype.name} and {like.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def _from_checkpoint(entries: dict, read_parameters) -> Network:
    """The network a checkpoint's entries describe; ``read_parameters(max_bytes)`` reads
    its flat parameter array (refusing one larger than the network's)."""
    net = Network.__new__(Network)
    net._configure(
        entries["sizes"], entries["activation"], entries["output"], entries["loss"],
        entries["dtype"], entries["running"] is not None,
    )  # fmt: skip
    parameters = _entry_like(read_parameters(net._theta.nbytes), net._theta, "parameters")
    pos = 0
    weights, biases = net._layers()
    norms = list(zip(net._gammas(), net._betas()))
    norms += [()] * (len(weights) - len(norms))
    for w, b, norm in zip(weights, biases, norms):
        for p in (w, b, *norm):
            p[...] = parameters[pos : pos + p.size].reshape(p.shape)
            pos += p.size
    if entries["running"] is not None:
        running = _entry_like(entries["running"](net._running.nbytes), net._running, "running")
        for l, var in enumerate(net._arch.running_vars(running)):
            if (var < 0).any():
                raise ValueError(f"running holds a negative variance (hidden layer {l})")
        net._running[...] = running
    return net
