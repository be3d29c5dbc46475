"""A Network's public attributes cannot make the kernels misread it.

The architecture and the configuration (sizes, activation, output, loss_name, dtype,
n_layers) are read-only properties read from the one description the kernels use;
``sizes`` is a new list each time. Setting or deleting any public attribute raises
AttributeError; changing what one returns (a list, a name) changes nothing. ``weights``
and ``biases`` are views, writable by design: non-finite values written into them are
refused with ValueError. Where a mistake could crash the interpreter, the attempt runs
in a child process.
"""

import copy
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import child_env

import backprop
from backprop import Network

CONFIGURATION = ["sizes", "activation", "output", "loss_name", "dtype", "n_layers", "batch_norm"]


def run_child(code: str, timeout: float = 120) -> str:
    """Runs ``code`` in a fresh interpreter; asserts it exits normally (no signal, no
    error) and returns what it printed."""
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert child.returncode == 0, f"exit status {child.returncode}\n{child.stdout}{child.stderr}"
    return child.stdout


def network():
    return Network([4, 6, 3], activation="tanh", output="softmax", loss="cross_entropy", seed=0)


def problem():
    rng = np.random.default_rng(0)
    return rng.normal(size=(9, 4)), rng.integers(0, 3, size=9)


def behaviour(net, X, labels):
    """What a network computes: outputs, loss, gradients, a step and a short fit (on a
    copy of it), as arrays."""
    trained = pickle.loads(pickle.dumps(net))
    losses = trained.fit(X, labels, epochs=3, batch_size=4, lr=0.1)
    loss, grad_w, grad_b = net.gradients(X, labels)
    return [net.forward(X), np.array([net.loss(X, labels), loss]), *grad_w, *grad_b,
            np.array(losses), *trained.weights, *trained.biases]  # fmt: skip


def assert_same_behaviour(net, twin, X, labels):
    for got, expected in zip(behaviour(net, X, labels), behaviour(twin, X, labels), strict=True):
        np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------- findings ---

FINDINGS = {
    # the kernels' widths and the checks' once disagreed: a read out of bounds
    "a width changed in place": """
        net.sizes[1] = 1
        assert net.sizes == [4, 64, 3]
    """,
    # labels were read as rows by the MSE kernel
    "the loss renamed": """
        try:
            net.loss_name = "cross_entropy"
        except AttributeError as err:
            assert "Network.from_params" in str(err), err
        else:
            raise SystemExit("loss_name was set")
        assert net.fit(X, Y, epochs=2, batch_size=2) == before.fit(X, Y, epochs=2, batch_size=2)
    """,
    # outputs of the wrong width, misplaced and uninitialised
    "the widths replaced": """
        try:
            net.sizes = [4, 64, 3000]
        except AttributeError:
            pass
        else:
            raise SystemExit("sizes was set")
        assert net.forward(X).shape == (2, 3)
    """,
    # ignored by the kernels, but written by save
    "the activation renamed": """
        try:
            net.activation = "relu"
        except AttributeError:
            pass
        else:
            raise SystemExit("activation was set")
        net.save(sys.argv[1])
        again = backprop.load(sys.argv[1])
        assert again.activation == "sigmoid"
        assert np.array_equal(again.forward(X), net.forward(X))
    """,
}


@pytest.mark.parametrize("finding", list(FINDINGS))
def test_a_changed_attribute_cannot_crash_or_mislead_the_network(finding, tmp_path):
    setup = """
        import sys
        import numpy as np
        import backprop

        net = backprop.Network([4, 64, 3], seed=0)
        before = backprop.Network([4, 64, 3], seed=0)
        X, Y = np.ones((2, 4)), np.full((2, 3), 0.5)
    """
    check = """
        assert np.array_equal(net.forward(X), before.forward(X))
        print("ok")
    """
    code = "".join(textwrap.dedent(part) for part in (setup, FINDINGS[finding], check))
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "net.npz")],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0 and child.stdout == "ok\n", child.stdout + child.stderr


# ------------------------------------------------------------- every name ---

# Run by a child process: every public name of a Network, set to hostile values and
# deleted, and every value it returns changed in place; each attempt either raises
# AttributeError or leaves the network computing exactly what a copy made before does.
WALK = """
    import pickle
    import numpy as np
    from test_attributes import assert_same_behaviour, hostile_values, network, problem

    X, labels = problem()
    net = network()
    twin = pickle.loads(pickle.dumps(net))
    names = [name for name in dir(net) if not name.startswith("_")]
    refused = 0
    for name in names:
        for value in hostile_values(net, name):
            try:
                setattr(net, name, value)
            except AttributeError:
                refused += 1
            assert_same_behaviour(net, twin, X, labels)
        try:
            delattr(net, name)
        except AttributeError:
            refused += 1
        assert_same_behaviour(net, twin, X, labels)
        value = getattr(net, name)
        if isinstance(value, list):
            # views, writable by design (batch normalization's: empty lists here)
            if name not in ("weights", "biases", "gammas", "betas", "running_means",
                            "running_vars"):  # fmt: skip
                value[:] = [1] * len(value)
            value.append(value[0] if value else 1)  # empty lists: history before a fit, ...
            del value[0]
            value.clear()
        assert_same_behaviour(net, twin, X, labels)
    print(len(names), refused)
"""


def hostile_values(net, name):
    """Values to try as attribute ``name`` of ``net``: another network's, wrong types,
    wider layers."""
    other = Network([4, 500, 3000], activation="relu", output="sigmoid", loss="mse", seed=1)
    return [getattr(other, name), None, "cross_entropy", [4, 500, 3000], np.zeros(3), 10**9]


def test_every_public_attribute_is_read_only_or_harmless(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r})\n" + textwrap.dedent(WALK)
    names, refused = map(int, run_child(code, timeout=300).split())
    assert names >= 15  # the properties and the methods
    assert refused == names * (len(hostile_values(network(), "sizes")) + 1)


@pytest.mark.parametrize("name", CONFIGURATION + ["weights", "biases", "anything"])
def test_setting_or_deleting_a_public_attribute_says_what_to_do(name):
    net = network()
    expected = {"weights": r"net\.weights\[l\]\[\.\.\.\]", "biases": r"net\.biases\[l\]"}
    match = expected.get(name, "Network.from_params" if name in CONFIGURATION else "read-only")
    with pytest.raises(AttributeError, match=match):
        setattr(net, name, getattr(net, name, None))
    with pytest.raises(AttributeError, match=match):
        delattr(net, name)


def test_sizes_is_a_new_list_each_time():
    net = network()
    assert net.sizes == [4, 6, 3] and isinstance(net.sizes, list)
    assert net.sizes is not net.sizes
    net.sizes.append(7)
    assert net.sizes == [4, 6, 3] and repr(net).startswith("Network([4, 6, 3],")


def test_a_list_of_activations_is_a_new_list_each_time():
    net = Network([4, 6, 5, 3], activation=["gelu", "tanh"], seed=0)
    assert net.activation == ["gelu", "tanh"] and net.activation is not net.activation
    net.activation[0] = "relu"
    assert net.activation == ["gelu", "tanh"] and "activation=['gelu', 'tanh']" in repr(net)


def test_private_names_can_still_be_set():
    """Private names are the library's own: pickling, copies and internal views set them."""
    net = network()
    net._note = "kept"
    assert net._note == "kept"
    del net._note
    X, labels = problem()
    for again in (pickle.loads(pickle.dumps(net)), copy.copy(net), copy.deepcopy(net)):
        assert again.sizes == net.sizes and again.activation == net.activation
        assert_same_behaviour(again, net, X, labels)


def test_a_network_pickled_with_public_configuration_still_loads():
    """Networks once kept their configuration in public attributes."""
    net = network()
    state = net.__getstate__()
    state["sizes"] = [4, 6, 3]
    for name in ("activation", "output", "loss_name"):
        state[name] = getattr(net, name)
    again = Network.__new__(Network)
    again.__setstate__(state)
    X, labels = problem()
    assert repr(again) == repr(net)
    assert_same_behaviour(again, net, X, labels)


def test_a_pickle_whose_names_disagree_with_its_architecture_keeps_the_architecture():
    """The kernels computed with ``_arch``: an old pickle's public names that say
    otherwise are not believed, by repr or save."""
    net = network()
    state = net.__getstate__()
    state.update(activation="relu", output="identity", loss_name="mse", sizes=[4, 1])
    again = Network.__new__(Network)
    again.__setstate__(state)
    assert repr(again) == repr(net)
    X, labels = problem()
    assert_same_behaviour(again, net, X, labels)


class Relabelled(Network):
    """A subclass whose class attributes shadow the configuration's properties."""

    activation = "relu"
    loss_name = "mse"

    @property
    def sizes(self):
        return [1, 1]

    @property
    def weights(self):
        return [np.zeros((1, 1))]


def test_a_subclass_cannot_make_the_library_misread_its_network(tmp_path):
    """The library reads the architecture the kernels use, never a property a subclass
    overrides: checks, trace, save and load agree with what forward computes."""
    net = Relabelled([4, 6, 3], activation="tanh", output="softmax", loss="cross_entropy",
                     seed=0)  # fmt: skip
    twin = network()
    X, labels = problem()
    np.testing.assert_array_equal(net.forward(X), twin.forward(X))
    np.testing.assert_array_equal(net.loss(X, labels), twin.loss(X, labels))  # labels, not rows
    np.testing.assert_array_equal(net.trace(X, labels).deltas[0], twin.trace(X, labels).deltas[0])
    assert repr(net) == "Relabelled" + repr(twin)[len("Network") :]
    net.save(tmp_path / "net.npz")
    loaded = backprop.load(tmp_path / "net.npz")
    assert repr(loaded) == repr(twin)
    np.testing.assert_array_equal(loaded.forward(X), twin.forward(X))


def test_a_subclass_may_add_public_attributes_of_its_own():
    class Named(Network):
        __slots__ = ("tag",)

        def __init__(self, *args, name="", **kwargs):
            super().__init__(*args, **kwargs)
            self.name = name
            self.tag = 1

    net = Named([2, 2, 1], name="xor", seed=0)
    net.name = "and"
    del net.tag
    assert net.name == "and"
    for name in ("sizes", "activation", "weights", "fit"):
        with pytest.raises(AttributeError, match="cannot set"):
            setattr(net, name, None)
    with pytest.raises(AttributeError, match="read-only"):
        Network([2, 2, 1]).name = "xor"  # a Network itself takes no new public names


def test_save_refuses_weights_load_would_refuse_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "net.npz"
    net = network()
    net.save(path)
    before = path.read_bytes()
    for value in (np.nan, np.inf):
        bad = copy.deepcopy(net)
        bad.biases[1][0] = value
        with pytest.raises(ValueError, match="NaN or infinity; nothing was saved"):
            bad.save(path)
        assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]


def test_the_layout_the_kernels_read_is_read_only():
    net = network()
    for array in (net._arch.sizes_array, net._arch.offsets):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 10**6


def test_weights_written_by_hand_stay_writable_views_and_nan_is_refused():
    X, labels = problem()
    net = network()
    net.weights[1][2, 0] = 0.25
    assert net.weights[1][2, 0] == 0.25  # a view
    net.weights[0][1, 2] = np.nan
    calls = [
        lambda: net.forward(X),
        lambda: net.loss(X, labels),
        lambda: net.gradients(X, labels),
        lambda: net.step(X, labels),
        lambda: net.fit(X, labels),
        lambda: net.trace(X, labels),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="NaN or infinity"):
            call()


def test_bad_weights_written_by_hand_cannot_crash_a_child_process(tmp_path):
    """NaN, infinity or huge weights: a finite result or an error, never a crash."""
    out = run_child(
        f"""
        import numpy as np
        import backprop

        net = backprop.Network([4, 64, 3], seed=0)
        X = np.ones((5000, 4))
        for layer in (0, 1):
            for values in (np.nan, np.inf, 1e308):
                net.weights[layer][...] = values
                for call in (lambda: net.forward(X), lambda: net.loss(X, X[:, :3]),
                             lambda: net.gradients(X, X[:, :3]),
                             lambda: net.fit(X, X[:, :3], batch_size=64)):
                    try:
                        call()
                    except (ValueError, backprop.DivergenceError):
                        pass
        net.save({str(tmp_path / "net.npz")!r})
        try:
            backprop.load({str(tmp_path / "net.npz")!r})
        except ValueError:
            pass
        print("ok")
        """
    )
    assert out == "ok\n"
