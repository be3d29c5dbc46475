"""Fuzzing the public API: any input gives a finite result of the right shape or a clean error.

Arbitrary arrays (every dtype kind, shapes of any rank including empty, NaN, infinity,
huge and subnormal values, non-contiguous, Fortran-ordered, read-only and byte-swapped)
and arbitrary arguments go to every entry point of ``Network`` and to ``load``. Each
call must return a result of the right shape with finite values, or raise ValueError
or TypeError; training may also raise DivergenceError (or warn, with
``on_divergence="warn"``), and then the weights must still be finite. A call that
fails validation leaves the weights unchanged. No other warning may be issued.

The hypothesis loop runs in a child process (``python tests/test_fuzz.py N DIR``), so a
crash in compiled code fails the test instead of killing the test run. It is
derandomized: CI runs the same cases every time. The suite tries 500 cases;
BACKPROP_FUZZ_EXAMPLES sets another number, and CI also runs 5,000 in a step of its own.
"""

import os
import pickle
import re
import subprocess
import sys
import tempfile
import warnings
from collections import Counter

import numpy as np
from conftest import OUTPUT_LOSSES, child_env
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import backprop
from backprop import _names

EXAMPLES = int(os.environ.get("BACKPROP_FUZZ_EXAMPLES", "500"))

# ---------------------------------------------------------------- the test ---


def test_fuzz_the_public_api_in_a_child_process(tmp_path):
    # Checkpoints are fsync'd: on a RAM file system that costs nothing.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm or tmp_path) as directory:
        child = subprocess.run(
            [
                sys.executable,
                "-X",
                "faulthandler",
                os.path.abspath(__file__),
                str(EXAMPLES),
                directory,
            ],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    report = f"exit code {child.returncode}\n{child.stdout[-4000:]}\n{child.stderr[-8000:]}"
    assert child.returncode == 0, report
    cases = re.search(r"fuzzed (\d+) cases", child.stdout)
    assert cases is not None, report
    assert int(cases.group(1)) >= EXAMPLES, report


# ------------------------------------------------------- the child process ---


def main(examples: int, directory: str) -> None:
    count = [0]

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data):
        count[0] += 1
        one_case(data, directory)

    fuzz()
    print(f"fuzzed {count[0]} cases")
    for outcome, times in sorted(OUTCOMES.items()):
        print(f"{times:6d}  {outcome}")


ACTIVATIONS = list(_names.HIDDEN)
# Training takes the most arguments and has the most ways to end: it is drawn most often.
ACTIONS = ["forward", "loss", "gradients", "trace", "save", "load", "pickle"] + ["step", "fit"] * 3


def one_case(data, directory):
    draw = data.draw
    pick = Picker(draw)
    if one_in(draw, 5):
        net = fuzz_constructor(draw, pick)
        if net is None:
            return
    else:
        sizes = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
        output, loss = draw(st.sampled_from(OUTPUT_LOSSES))
        if output == "softmax" and sizes[-1] == 1:
            sizes[-1] = 2
        hidden = st.lists(st.sampled_from(ACTIVATIONS), min_size=len(sizes) - 2,
                          max_size=len(sizes) - 2)  # fmt: skip
        net = backprop.Network(
            sizes,
            activation=draw(st.one_of(st.sampled_from(ACTIVATIONS), hidden)),
            output=output,
            loss=loss,
            dtype=draw(st.sampled_from(["float32", "float64"])),
            seed=draw(st.integers(0, 3)),
        )
    if one_in(draw, 4):  # large weights: saturated units, overflowing outputs
        scale = draw(st.sampled_from([10.0, 1e3, 1e6, 1e30]))
        with np.errstate(over="ignore"):
            net._theta *= net.dtype.type(scale)
        if not np.isfinite(net._theta).all():
            net._theta[...] = 1
    action = draw(st.sampled_from(ACTIONS))
    before = net._theta.copy()
    n = draw(st.integers(1, 6))
    X = pick(hnp.arrays(np.float64, (n, net.sizes[0]), elements=st.floats(-3, 3)),
             any_array((n, net.sizes[0]), "x"))  # fmt: skip
    Y = pick(targets(net, n), any_array((n, net.sizes[-1]), "y"))
    if action == "forward":
        out, err = attempt(net.forward, X)
        if err is None:
            rows = 1 if np.ndim(X) == 1 else np.shape(X)[0]
            check_output(net, out, rows)
    elif action == "loss":
        value, err = attempt(net.loss, X, Y)
        if err is None:
            assert isinstance(value, float) and np.isfinite(value), value
    elif action == "gradients":
        result, err = attempt(net.gradients, X, Y)
        if err is None:
            value, gw, gb = result
            assert np.isfinite(value)
            for g, w in zip(gw + gb, net.weights + net.biases):
                assert g.shape == w.shape and g.dtype == net.dtype and np.isfinite(g).all()
    elif action == "step":
        value, err = attempt(net.step, X, Y, lr=pick(LEARNING_RATES, WILD_LEARNING_RATES))
        if err is None:
            assert np.isfinite(value)
    elif action == "fit":
        kwargs = dict(
            epochs=pick(st.integers(1, 3), st.sampled_from([0, -1, 2**62, 1.5, None, True])),
            batch_size=pick(st.integers(1, 8), st.sampled_from([0, -1, 2**62, 2.0, "4"])),
            lr=pick(LEARNING_RATES, WILD_LEARNING_RATES),
            shuffle=pick(st.booleans(), st.sampled_from([np.bool_(True), "yes", 1, None])),
            seed=pick(st.one_of(st.none(), st.integers(0, 2**70)), st.sampled_from([-1, "s"])),
            on_divergence=pick(st.sampled_from(["raise", "warn"]), st.sampled_from(["", 1])),
        )
        losses, err = attempt(net.fit, X, Y, **kwargs)
        if err is None:
            assert isinstance(losses, list) and len(losses) <= kwargs["epochs"]
            assert kwargs["on_divergence"] == "warn" or len(losses) == kwargs["epochs"]
            assert np.isfinite(losses).all(), losses
    elif action == "trace":
        trace, err = attempt(net.trace, X, Y)
        if err is None:
            assert np.isfinite(trace.loss)
            for a in [*trace.zs, *trace.activations, *trace.deltas, *trace.grad_weights]:
                assert np.isfinite(a).all()
    elif action == "save":
        path = os.path.join(directory, "net.npz")
        net.save(path)
        again = backprop.load(path)
        err = None
        probe = np.linspace(-1, 1, 2 * net.sizes[0]).reshape(2, -1)
        assert np.array_equal(again._theta, net._theta) and again.sizes == net.sizes
        same, e1 = attempt(net.forward, probe)
        copy, e2 = attempt(again.forward, probe)
        assert (e1 is None) == (e2 is None) and (e1 is not None or np.array_equal(same, copy))
    elif action == "load":
        err = fuzz_load(draw, net, directory)
    else:
        again = pickle.loads(pickle.dumps(net))
        err = None
        assert np.array_equal(again._theta, net._theta) and repr(again) == repr(net)
    if isinstance(err, (ValueError, TypeError)):
        assert np.array_equal(net._theta, before), f"a rejected {action} changed the weights"
    assert np.isfinite(net._theta).all() or not np.isfinite(before).all()
    attempt(net.forward, np.zeros(net.sizes[0]))  # nothing is left locked: no RuntimeError


def one_in(draw, n: int) -> bool:
    """True about once in n draws (hypothesis favours the ends of a range: skip them)."""
    return draw(st.integers(0, 2 * n + 1)) in (n, n + 1)


class Picker:
    """Draws each argument from its valid values, or, one time in twenty, from anything.

    One case in ten draws every argument from anything at once.
    """

    def __init__(self, draw):
        self.draw = draw
        self.everything = one_in(draw, 10)

    def __call__(self, valid, anything):
        if self.everything or one_in(self.draw, 20):
            return self.draw(anything)
        return self.draw(valid)


@st.composite
def learning_rates(draw):
    """Mostly ordinary learning rates; one time in three, one that makes training diverge."""
    if one_in(draw, 3):
        return draw(st.sampled_from([1e3, 1e30, 1e300]))
    return draw(st.one_of(st.floats(1e-4, 1.0), st.sampled_from([np.float32(0.5), 1])))


LEARNING_RATES = learning_rates()
WILD_LEARNING_RATES = st.one_of(
    st.floats(), st.sampled_from([10**400, 0, -1, 1e-50, 1e39, "0.1", None, True])
)


# How the calls ended, by entry point: printed by the child as a summary of what was covered.
OUTCOMES = Counter()


def attempt(function, *args, **kwargs):
    """(result, None), or (None, the ValueError/TypeError/DivergenceError raised).

    Any warning fails, except the RuntimeWarning of fit(on_divergence="warn") and fit's
    one GradientWarning at most (the fuzzed weights often make gradients explode).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result, err = function(*args, **kwargs), None
        except backprop.DivergenceError as e:
            result, err = None, e
        except (ValueError, TypeError) as e:
            result, err = None, e
    name = getattr(function, "__name__", "?")
    OUTCOMES[f"{name}: {type(err).__name__ if err else 'result'}"] += 1
    gradients = [w for w in caught if w.category is backprop.GradientWarning]
    assert len(gradients) <= 1 and (not gradients or name == "fit"), gradients
    for w in caught:
        if w.category is backprop.GradientWarning:
            assert "gradients: hidden layer" in str(w.message), w.message
            continue
        diverged = w.category is RuntimeWarning and "training diverged" in str(w.message)
        assert diverged and kwargs.get("on_divergence") == "warn", f"warning: {w.message}"
    return result, err


def check_output(net, out, rows):
    assert isinstance(out, np.ndarray) and out.dtype == net.dtype
    assert out.shape == (rows, net.sizes[-1]) and np.isfinite(out).all()
    if net.output != "identity":
        assert ((out >= 0) & (out <= 1)).all()


def fuzz_constructor(draw, pick):
    """A Network from arbitrary arguments, or None when they were rightly refused."""
    names = st.sampled_from(
        ["softmax", "swish", "", "RELU", 3, None, b"tanh", ["relu"] * 7, ("gelu", 4)]
    )
    dtypes = ["float32", "float64", np.float32, ">f8", "<f4", "d", None]
    output, loss = draw(st.sampled_from(OUTPUT_LOSSES))
    kwargs = dict(
        activation=pick(st.sampled_from(ACTIVATIONS), names),
        output=pick(st.just(output), names),
        loss=pick(st.just(loss), st.sampled_from(["mse", "hinge", 0])),
        dtype=pick(st.sampled_from(dtypes),
                   st.sampled_from(["float16", "int32", object, "U3", 3, "no such"])),
        seed=pick(st.integers(0, 2**80), st.sampled_from([-1, "s", 1.5])),
    )  # fmt: skip
    if draw(st.booleans()):
        sizes = pick(
            st.lists(st.integers(1, 5), min_size=2, max_size=4),
            st.one_of(
                st.lists(st.integers(-2, 5), max_size=5),
                # too wide for BLAS, or more parameters than memory can address
                st.sampled_from([[2**31, 1], [1, 2**31], [2**62, 2], [2**64, 2], [2**31 - 1] * 2]),
                st.sampled_from([[2, 2.0], [2, True], "22", 5, None, (3, 2), np.array([2, 3])]),
                st.lists(st.sampled_from([np.int64(2), np.uint8(3), np.float64(2)]), min_size=2),
            ),
        )
        net, err = attempt(backprop.Network, sizes, **kwargs)
    else:
        shape = draw(st.lists(st.integers(1, 4), min_size=2, max_size=4))
        weights = [
            pick(hnp.arrays(np.float64, (b, a), elements=st.floats(-3, 3)), any_array((b, a), "x"))
            for a, b in zip(shape[:-1], shape[1:])
        ]
        biases = [
            pick(hnp.arrays(np.float64, (b,), elements=st.floats(-3, 3)), any_array((b,), "x"))
            for b in shape[1:]
        ]
        if one_in(draw, 10):
            weights, biases = pick(st.just(weights), st.just(np.array(1.0))), biases[:-1]
        del kwargs["seed"]
        net, err = attempt(backprop.Network.from_params, weights, biases, **kwargs)
    if err is not None:
        assert not isinstance(err, backprop.DivergenceError)
        return None
    assert np.isfinite(net._theta).all() and net.dtype.isnative
    assert [w.shape for w in net.weights] == list(zip(net.sizes[1:], net.sizes[:-1]))
    return net


def fuzz_load(draw, net, directory):
    """Loads a checkpoint with random bytes changed or cut off: a network or ValueError."""
    path = os.path.join(directory, "net.npz")
    net.save(path)
    raw = bytearray(open(path, "rb").read())
    for _ in range(draw(st.integers(0, 4))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    raw = raw[: draw(st.sampled_from([len(raw), draw(st.integers(0, len(raw)))]))]
    with open(path, "wb") as f:
        f.write(raw)
    loaded, err = attempt(backprop.load, path)
    assert not isinstance(err, (TypeError, backprop.DivergenceError)), err
    if err is None:
        assert isinstance(loaded, backprop.Network) and np.isfinite(loaded._theta).all()
    return None  # the network itself was not used


# Every dtype an array can have: the real kinds are converted, the others refused.
DTYPES = [
    "float64", "float32", "float16", "longdouble", ">f8", ">f4",
    "int8", "int64", "uint64", ">i4", "bool",
    "complex128", "object", "U3", "S2", "datetime64[s]", "timedelta64[ms]",
]  # fmt: skip


@st.composite
def any_array(draw, shape, values):
    """Arrays of the given shape, often, or of another; of any dtype and memory layout."""
    dtype = np.dtype(draw(st.sampled_from(["float64"] * 8 + DTYPES)))
    if one_in(draw, 4):
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    if dtype.kind == "f":
        width = min(8 * dtype.itemsize, 64)
        small = st.floats(-3, 3, width=width)
        wild = st.floats(width=width) if width < 64 else st.floats()
        arr = draw(hnp.arrays(dtype, shape, elements=st.one_of(small, small, small, wild)))
    elif dtype.kind == "O":
        items = st.one_of(st.integers(-3, 3), st.floats(-3, 3), st.none(), st.text(max_size=2))
        arr = np.empty(shape, dtype=object)
        for index in np.ndindex(*shape):
            arr[index] = draw(items)
    elif dtype.kind in "iu" and values == "labels":
        arr = draw(hnp.arrays(dtype, shape, elements=st.integers(0, 3)))
    else:
        arr = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "c", "strided", "fortran", "readonly", "list"]))
    if layout == "strided" and arr.ndim:
        arr = np.repeat(arr, 2, axis=-1)[..., ::2]
    elif layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "readonly":
        arr.flags.writeable = False
    elif layout == "list" and dtype.kind in "biuf" and dtype != np.longdouble:
        return arr.tolist()
    return arr


@st.composite
def targets(draw, net, n):
    """Targets for ``net`` on n samples: labels or rows, mostly valid."""
    k = net.sizes[-1]
    choice = draw(st.integers(0, 3))
    if net.loss_name == "cross_entropy" and choice == 0:
        return draw(any_array((n,), values="labels"))  # of any dtype: some refused
    if net.loss_name == "cross_entropy" and choice == 1:
        return draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    if net.loss_name == "cross_entropy" and choice == 2:
        return draw(hnp.arrays(np.int64, (n,), elements=st.integers(-1, k)))
    if net.loss_name == "cross_entropy":
        p = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0, 1)))
        p[:, 0] += 1e-3
        return p / p.sum(axis=1, keepdims=True)
    return draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0, 1)))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
