"""The optimizer objects of ``backprop.optim`` in ``Network.fit``: PyTorch's SGD (with
momentum and Nesterov's form) and Adam against the reference and against
``torch.optim`` as an oracle (skipped without torch), on every kernel path; their state
carried across ``fit`` calls; divergence rewinding it; and the checks of their
arguments."""

import contextlib
import pickle

import numpy as np
import pytest
from conftest import reference_twin

from backprop import DivergenceError, GradientWarning, Network, optim

TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}
ORACLE_TOL = {"float64": dict(rtol=0, atol=1e-10), "float32": dict(rtol=0, atol=2e-6)}


def problem(dtype, n=24, seed=0):
    """Inputs representable in float32 (both dtypes see the same numbers), and labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32).astype(dtype)
    return X, rng.integers(0, 3, size=n)


def network(dtype, seed=1):
    return Network([4, 6, 5, 3], activation=["tanh", "relu"], output="softmax",
                   loss="cross_entropy", dtype=dtype, seed=seed)  # fmt: skip


def parameters(net):
    return [p.copy() for p in net.weights + net.biases]


OPTIMIZERS = {
    "sgd": lambda: optim.SGD(0.2, weight_decay=0.01),
    "momentum": lambda: optim.SGD(0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda: optim.SGD(0.1, momentum=0.8, nesterov=True),
    "adam": lambda: optim.Adam(0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
    # a first-moment weight 1 - b1 above 1/2 takes lerp's other form
    "adam-low-beta": lambda: optim.Adam(0.02, betas=(0.3, 0.9)),
}


def noise_tolerance(opt, dtype):
    """How far Adam may move a parameter whose gradient is rounding noise (see
    ``test_torch_oracle``): in float64 the noise stays far below eps; in float32 each step
    may move it by about lr (twice that bounds it)."""
    return dict(rtol=0, atol=1e-9 if dtype == "float64" else 2 * opt.lr * opt.t)


def reference_fit(net, X, y, opt, **args):
    """The reference's fit with ``opt``'s hyper-parameters."""
    ref = reference_twin(net)
    settings = dict(lr=opt.lr, weight_decay=opt.weight_decay)
    if isinstance(opt, optim.Adam):
        settings["adam"] = dict(betas=opt.betas, eps=opt.eps)
    else:
        settings.update(momentum=opt.momentum, nesterov=opt.nesterov)
    return ref, ref.fit(X, y, **settings, **args)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_fit_matches_reference(name, dtype, kernel_path):
    X, y = problem(dtype)
    net = network(dtype)
    opt = OPTIMIZERS[name]()
    args = dict(epochs=3, batch_size=8, shuffle=True, seed=4)
    ref, ref_losses = reference_fit(net, X, y, opt, **args)
    losses = net.fit(X, y, optimizer=opt, **args)
    np.testing.assert_allclose(losses, ref_losses, **TOL[dtype])
    for got, want in zip(net.weights + net.biases, ref.weights + ref.biases, strict=True):
        np.testing.assert_allclose(got, np.array(want), **TOL[dtype])
    assert opt.t == 9


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_batch_norm_fit_matches_reference(name, dtype, layout):
    """With batch normalization the optimizers train gammas and betas too, as the
    reference does. The hidden biases before it, and the running means that hold them,
    are checked as loosely as ``test_torch_oracle`` explains (Adam turns their rounding
    noise into steps)."""
    X, y = problem(dtype)
    net = Network([4, 6, 5, 3], activation=["tanh", "relu"], output="softmax",
                  loss="cross_entropy", dtype=dtype, seed=1, batch_norm=True)  # fmt: skip
    opt = OPTIMIZERS[name]()
    args = dict(epochs=3, batch_size=8, shuffle=True, seed=4)
    ref, ref_losses = reference_fit(net, X, y, opt, **args)
    losses = net.fit(X, y, optimizer=opt, **args)
    tol = TOL[dtype] if name[:4] != "adam" or dtype == "float64" else dict(rtol=0, atol=1e-4)
    noisy = tol if not name.startswith("adam") else noise_tolerance(opt, dtype)
    np.testing.assert_allclose(losses, ref_losses, **tol)
    pairs = [(net.weights, ref.weights, tol), (net.biases[-1:], ref.biases[-1:], tol),
             (net.biases[:-1], ref.biases[:-1], noisy), (net.gammas, ref.gammas, tol),
             (net.betas, ref.betas, tol), (net.running_vars, ref.running_vars, tol),
             (net.running_means, ref.running_means, noisy)]  # fmt: skip
    for got_list, want_list, tolerance in pairs:
        for got, want in zip(got_list, want_list, strict=True):
            np.testing.assert_allclose(got, np.array(want), **tolerance)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_carries_across_fits(name, dtype):
    """Two fits of one epoch are one fit of two, bit for bit: moments and the step count
    carry over."""
    X, y = problem(dtype)
    once, twice = network(dtype), network(dtype)
    opt_once, opt_twice = OPTIMIZERS[name](), OPTIMIZERS[name]()
    losses = once.fit(X, y, epochs=2, batch_size=5, optimizer=opt_once)
    split = twice.fit(X, y, epochs=1, batch_size=5, optimizer=opt_twice)
    split += twice.fit(X, y, epochs=1, batch_size=5, optimizer=opt_twice)
    assert split == losses
    for a, b in zip(parameters(once), parameters(twice), strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt_once.t == opt_twice.t == 10
    # a fresh optimizer each call starts its moments from zero: not the same training
    if name != "sgd":
        fresh = network(dtype)
        fresh.fit(X, y, epochs=1, batch_size=5, optimizer=OPTIMIZERS[name]())
        fresh.fit(X, y, epochs=1, batch_size=5, optimizer=OPTIMIZERS[name]())
        assert not np.array_equal(fresh.weights[0], once.weights[0])


def test_keywords_build_a_fresh_sgd_each_call():
    """lr, momentum, weight_decay and nesterov keep their meaning: an SGD for one call."""
    X, y = problem("float64")
    a, b = network("float64"), network("float64")
    a.fit(X, y, epochs=1, batch_size=6, lr=0.1, momentum=0.9, weight_decay=0.01)
    b.fit(X, y, epochs=1, batch_size=6, optimizer=optim.SGD(0.1, momentum=0.9,
                                                             weight_decay=0.01))  # fmt: skip
    for p, q in zip(parameters(a), parameters(b), strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch-norm"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_torch_oracle(name, dtype, batch_norm):
    """Weights after three epochs, in two fit calls, equal torch.optim's from the same
    start (weight decay on the weights alone, as a parameter group); with batch
    normalization (``BatchNorm1d`` after each hidden ``Linear``) the gammas, betas and
    running statistics too.

    A hidden bias followed by batch normalization has a gradient of 0 in exact
    arithmetic: its computed gradient is rounding noise, which Adam divides by
    sqrt(v) + eps. Each library's noise is its own, so those biases (which change no
    output: the normalization subtracts them again) agree only to what that noise moves
    them, ~1e-10 in float64 and up to lr a step in float32; they, and the running means, which
    hold them, are checked at that tolerance."""
    torch = pytest.importorskip("torch")
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    X, y = problem(dtype, n=30)
    net = Network([4, 6, 5, 3], activation=["tanh", "relu"], output="softmax",
                  loss="cross_entropy", dtype=dtype, seed=1, batch_norm=batch_norm)  # fmt: skip
    layers, linears, norms = [], [], []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=tdtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(linear)
        linears.append(linear)
        if l < net.n_layers - 1:
            if batch_norm:
                norms.append(torch.nn.BatchNorm1d(W.shape[0], dtype=tdtype))
                layers.append(norms[-1])
            layers.append([torch.nn.Tanh(), torch.nn.ReLU()][l])
    model = torch.nn.Sequential(*layers)
    opt = OPTIMIZERS[name]()
    groups = [
        {"params": [m.weight for m in linears], "weight_decay": opt.weight_decay},
        {"params": [m.bias for m in linears] + [p for m in norms for p in m.parameters()],
         "weight_decay": 0.0},
    ]  # fmt: skip
    if name == "adam":
        peer = torch.optim.Adam(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps)
    else:
        peer = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=opt)
    net.fit(X, y, epochs=1, batch_size=8, optimizer=opt)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(3):
        for start in range(0, len(X), 8):
            peer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(Xt[start : start + 8]),
                                                     yt[start : start + 8])  # fmt: skip
            loss.backward()
            peer.step()
    tol = ORACLE_TOL[dtype]
    if name == "adam" and dtype == "float32":
        # Adam's step m / (sqrt(v) + eps) ~ +-lr for a gradient near 0, whatever its
        # rounding: float32's rounding moves a few parameters by ~1e-3 lr
        tol = dict(rtol=0, atol=1e-4)
    noisy = noise_tolerance(opt, dtype)
    for l, linear in enumerate(linears):
        np.testing.assert_allclose(net.weights[l], linear.weight.detach().numpy(), **tol)
        bias_tol = noisy if batch_norm and name == "adam" and l < len(norms) else tol
        np.testing.assert_allclose(net.biases[l], linear.bias.detach().numpy(), **bias_tol)
    for l, norm in enumerate(norms):
        np.testing.assert_allclose(net.gammas[l], norm.weight.detach().numpy(), **tol)
        np.testing.assert_allclose(net.betas[l], norm.bias.detach().numpy(), **tol)
        mean_tol = noisy if name == "adam" else tol  # the means hold those biases
        np.testing.assert_allclose(net.running_means[l], norm.running_mean.numpy(), **mean_tol)
        np.testing.assert_allclose(net.running_vars[l], norm.running_var.numpy(), **tol)
    if name == "adam":
        state = peer.state[linears[0].weight]
        assert opt.t == int(state["step"])


DIVERGING = {
    # Adam's steps are bounded by lr: the bad batch's loss overflows, before its step
    "adam": (lambda: optim.Adam(0.01), 1e200, (0, 3)),
    # the bad batch's step leaves the weights ~1e299: the next epoch's loss overflows
    "momentum": (lambda: optim.SGD(0.1, momentum=0.9), 1e150, (1, 0)),
    # with weights of 1e-10, the bad batch's loss (~1e300) is finite but its gradient is
    # not: the weights overflow, which the kernel sees only at the next batch; fit
    # replays the run to find the step, and rewinds the velocity with theta
    "overflowing-step": (lambda: optim.SGD(0.1, momentum=0.5), 1e170, (0, 3)),
}


@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_rewinds_the_optimizer(name):
    """A diverged fit leaves the weights and the optimizer's state as before the bad
    batch: they equal a run that stopped at that batch."""
    make_optimizer, scale, where = DIVERGING[name]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    Y = rng.normal(size=(40, 2))
    X[30:] *= scale  # the batch from row 30 on
    start = Network([4, 6, 2], activation="relu", output="identity", seed=1)
    small = 1e-10 if name == "overflowing-step" else 1.0

    def make():
        return Network.from_params([w * small for w in start.weights], start.biases,
                                   activation="relu", output="identity")  # fmt: skip

    def warned():
        """Weights of 1e-10 make the hidden layer's gradient vanish: fit says so."""
        if small == 1.0:
            return contextlib.nullcontext()
        return pytest.warns(GradientWarning, match="hidden layer 0")

    net, opt = make(), make_optimizer()
    with pytest.raises(DivergenceError) as info, warned():
        net.fit(X, Y, epochs=3, batch_size=10, optimizer=opt)
    epoch, batch = info.value.epoch, info.value.batch
    assert (epoch, batch) == where
    assert opt.t == 4 * epoch + batch
    twin, twin_opt = make(), make_optimizer()
    if epoch:
        twin.fit(X, Y, epochs=epoch, batch_size=10, optimizer=twin_opt)
    if batch:
        with warned():
            twin.fit(X[: 10 * batch], Y[: 10 * batch], batch_size=10, optimizer=twin_opt)
    for a, b in zip(parameters(net), parameters(twin), strict=True):
        np.testing.assert_array_equal(a, b)
    for moment in ("moment1", "moment2"):
        np.testing.assert_array_equal(getattr(opt, moment), getattr(twin_opt, moment))


def test_an_optimizer_belongs_to_one_network():
    X, y = problem("float64")
    opt = optim.Adam(0.01)
    first, second = network("float64"), network("float64")
    first.fit(X, y, optimizer=opt)
    with pytest.raises(ValueError, match="another network"):
        second.fit(X, y, optimizer=opt)
    opt.reset()
    assert opt.t == 0 and opt.moment1 is None
    second.fit(X, y, optimizer=opt)
    assert opt.t == len(X)


def test_pickled_optimizer_keeps_its_state():
    """An optimizer pickled with its network continues training as if never pickled."""
    X, y = problem("float64")
    net, opt = network("float64"), optim.Adam(0.01)
    net.fit(X, y, batch_size=4, optimizer=opt)
    net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
    net.fit(X, y, batch_size=4, optimizer=opt)
    net2.fit(X, y, batch_size=4, optimizer=opt2)
    for a, b in zip(parameters(net), parameters(net2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_repr_and_properties():
    opt = optim.Adam(0.01, betas=(0.8, 0.9), eps=1e-7)
    assert repr(opt) == (
        "Adam(lr=0.01, betas=(0.8, 0.9), eps=1e-07, weight_decay=0.0, convention='pytorch')"
    )
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.8, 0.9, 1e-7)
    assert repr(optim.SGD()) == (
        "SGD(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, convention='pytorch')"
    )


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: optim.SGD(-0.1), ValueError, "lr must be a finite number in \\[0.0"),
        (lambda: optim.SGD(float("nan")), ValueError, "lr"),
        (lambda: optim.SGD("0.1"), TypeError, "lr must be a real number"),
        (lambda: optim.SGD(0.1, momentum=1.0), ValueError, "momentum"),
        (lambda: optim.SGD(0.1, momentum=-0.1), ValueError, "momentum"),
        (lambda: optim.SGD(0.1, nesterov=True), ValueError, "nesterov=True needs"),
        (lambda: optim.SGD(0.1, nesterov=1), TypeError, "nesterov"),
        (lambda: optim.SGD(0.1, weight_decay=-1), ValueError, "weight_decay"),
        (lambda: optim.SGD(0.1, convention="keras"), ValueError, "convention"),
        (lambda: optim.Adam(betas=0.9), TypeError, "betas must be a pair"),
        (lambda: optim.Adam(betas=(0.9, 1.0)), ValueError, "betas\\[1\\]"),
        (lambda: optim.Adam(betas=(-0.1, 0.9)), ValueError, "betas\\[0\\]"),
        (lambda: optim.Adam(eps=-1e-8), ValueError, "eps"),
        (lambda: optim.Adam(lr=float("inf")), ValueError, "lr"),
    ],
)
def test_invalid_settings(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_fit_refuses_mixed_or_foreign_optimizers():
    X, y = problem("float64")
    net = network("float64")
    with pytest.raises(ValueError, match="give lr, weight_decay, momentum and nesterov"):
        net.fit(X, y, lr=0.1, optimizer=optim.SGD(0.1))
    with pytest.raises(ValueError, match="to the optimizer"):
        net.fit(X, y, momentum=0.5, optimizer=optim.Adam())
    with pytest.raises(TypeError, match="PyTorch's convention"):
        net.fit(X, y, optimizer=optim.Adam(convention="scikit-learn"))
    with pytest.raises(TypeError, match="optimizer must be"):
        net.fit(X, y, optimizer="adam")
    # a step size of 0, or one that rounds to 0 in float32, is refused before anything
    # trains
    with pytest.raises(ValueError, match="lr must be a finite number > 0 in float64"):
        net.fit(X, y, optimizer=optim.SGD(0.0))
    small = network("float32")
    with pytest.raises(ValueError, match="lr must be a finite number > 0 in float32"):
        small.fit(X, y, optimizer=optim.SGD(1e-50))
    # a refused call leaves a fresh optimizer unbound
    opt = optim.Adam()
    with pytest.raises(ValueError):
        net.fit(X, y[:-1], optimizer=opt)
    other = network("float64")
    other.fit(X, y, optimizer=opt)
