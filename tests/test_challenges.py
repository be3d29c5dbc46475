"""``backprop demo --challenges`` (``backprop.challenges``): the three networks' gradient
norms are those ``Network.gradients`` gives, the sigmoid network's vanish towards its first
layer while the remedies' do not, the losses printed are ``fit``'s, and the options are
checked before anything trains."""

import importlib.util
import re
import warnings

import numpy as np
import pytest

from backprop import GradientWarning, Network, challenges
from backprop.__main__ import main


@pytest.fixture(scope="module")
def runs():
    return challenges.run(epochs=4)


def test_gradient_norms_are_the_networks_own(runs):
    X, y = challenges.problem()
    for r, (_, activation, batch_norm, init) in zip(runs, challenges.VARIANTS, strict=True):
        net = Network(challenges.SIZES, activation=activation, output="softmax",
                      loss="cross_entropy", seed=1, init=init, batch_norm=batch_norm)  # fmt: skip
        _, grad_weights, _ = net.gradients(X, y)
        np.testing.assert_allclose(r.gradient_norms, [np.linalg.norm(g) for g in grad_weights],
                                   rtol=1e-12)  # fmt: skip
        # fit warns of the sigmoid network's vanishing gradient, and of no other
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = net.fit(X, y, epochs=4, batch_size=challenges.BATCH_SIZE, lr=challenges.LR)
        assert r.losses == losses
        assert [str(w.message) for w in caught] == r.warnings
        vanishing = activation == "sigmoid" and not batch_norm
        assert [w.category for w in caught] == ([GradientWarning] if vanishing else [])


def test_the_sigmoid_gradient_vanishes_and_the_remedies_carry_it(runs):
    sigmoid, relu, normalized = (np.array(r.gradient_norms) for r in runs)
    assert sigmoid[0] / sigmoid[-1] < 1e-4
    assert relu[0] / relu[-1] > 1e-2 and normalized[0] / normalized[-1] > 1e-2
    # and what the remedies carry back trains: their loss falls well below the sigmoid's
    assert runs[1].losses[-1] < 0.9 * runs[0].losses[-1]
    assert runs[2].losses[-1] < 0.9 * runs[0].losses[-1]


def test_report_prints_every_layer_and_epoch(runs, capsys):
    challenges.report(runs)
    out = capsys.readouterr().out
    rows = re.findall(r"^(\d+|output) +((?:\S+ \(\s*\S+\)\s*){3})$", out, re.M)
    assert [label for label, _ in rows] == [str(l) for l in range(1, 11)] + ["output"]
    first = [float(x) for x in re.findall(r"(\S+) \(", rows[0][1])]
    assert first == pytest.approx([r.gradient_norms[0] for r in runs], rel=1e-2)
    assert "fit warned, training sigmoid: vanishing gradients: hidden layer" in out
    losses = re.findall(r"^4 +(\S+) +(\S+) +(\S+)$", out, re.M)
    assert [float(x) for x in losses[0]] == pytest.approx([r.losses[3] for r in runs], abs=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="no matplotlib")
def test_command_draws_the_figure(tmp_path, capsys, monkeypatch):
    run = challenges.run
    monkeypatch.setattr(challenges, "run", lambda: run(epochs=2))
    path = tmp_path / "challenges.png"
    assert main(["demo", "--challenges", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"figure drawn in {path}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--plot", "x.png"], "only with --challenges"),
        (["demo", "--challenges", "--steps", "5"], "only for the worked example"),
        (["demo", "--challenges", "--plot", "/no/such/dir/x.png"], "existing directory"),
    ],
)
def test_bad_options_exit_with_usage_before_training(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(challenges, "run", lambda: pytest.fail("trained before checking"))
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
