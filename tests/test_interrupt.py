"""Ctrl-C during fit: honoured within 0.1 s, leaving the weights of the last completed step;
during forward, loss and gradients: within a chunk of rows.

The compiled training loop checks for pending signals every ~2 million multiply-adds
(at least once per batch). After the KeyboardInterrupt the network holds exactly the
weights some whole number of steps produced (found by replaying them one ``step`` at a
time), and it forwards, trains and saves as before. fit starts at once whatever the
number of epochs. forward, loss and gradients run many rows a chunk (~10-40 ms of work)
per kernel call, and Python answers Ctrl-C between two calls.
"""

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import child_env, copy_of
from threadpoolctl import threadpool_limits

import backprop
from backprop import Network

LATENCY = 0.1  # seconds from the signal to the KeyboardInterrupt
# ... in forward, loss and gradients: a chunk's time, with room for a busy machine
CHUNKED_LATENCY = 1.0

# Run by the child process: train until interrupted, then check the network.
CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import backprop
    sys.path.insert(0, sys.argv[2])
    from test_interrupt import check_after_interrupt, problem

    net, X, Y = problem()
    start = net._theta.copy()
    print("training", flush=True)
    try:
        net.fit(X, Y, epochs=100_000, batch_size=128, lr=1e-3)
    except KeyboardInterrupt:
        caught = time.monotonic()
    else:
        sys.exit("fit ran to its end")
    steps = check_after_interrupt(net, start, X, Y, 128, sys.argv[1])
    print(f"caught at {caught!r} after {steps} steps", flush=True)
    """
)


def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 64))
    Y = rng.uniform(size=(2000, 10))
    return Network([64, 128, 10], seed=0), X, Y


def batches(n, batch_size, shuffle=False, seed=None):
    """The batches fit visits, epoch after epoch: lists of row indices."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def check_after_interrupt(net, start, X, Y, batch_size, path, shuffle=False, seed=None):
    """Asserts that net holds the weights of a whole number of steps and still works."""
    twin = copy_of(net)
    twin._theta[...] = start
    steps = 0
    for rows in batches(len(X), batch_size, shuffle, seed):
        if np.array_equal(twin._theta, net._theta):
            break
        assert steps < 10**6, "no number of whole steps gives the interrupted weights"
        twin.step(X[rows], Y[rows], lr=1e-3)
        steps += 1
    assert np.isfinite(net.forward(X)).all()
    net.save(path)
    np.testing.assert_array_equal(backprop.load(path).forward(X), net.forward(X))
    assert np.isfinite(net.fit(X[:64], Y[:64], epochs=2, batch_size=32, lr=1e-3)).all()
    return steps


def sigint_child(code: str, *args: str, timeout: float) -> tuple[str, str, str, float]:
    """Runs ``code`` in a child Python, sends it SIGINT 0.3 s after its first line of
    output and waits for it to end; returns (that line, the rest of its output, its
    errors, the time the signal was sent). The child has one BLAS thread: on a busy
    machine a batch then takes as long as its work, not as long as the slowest of
    several competing BLAS threads."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=child_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        time.sleep(0.3)  # well inside the compiled call
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=timeout)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, line + out + err
    return line, out, err, sent


def test_sigint_to_a_process_in_fit(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    line, out, err, sent = sigint_child(CHILD, str(tmp_path / "net.npz"), here, timeout=120)
    assert line == "training\n", line + out + err
    caught = float(out.split("caught at ")[1].split()[0])
    latency = caught - sent
    print(f"SIGINT honoured after {1e3 * latency:.2f} ms; {out.strip()}")
    assert 0 <= latency < LATENCY, f"{latency:.3f} s from SIGINT to KeyboardInterrupt"


def interrupt_main_after(seconds: float, sent: list) -> None:
    """Raises KeyboardInterrupt in the main thread ``seconds`` from now, appending the
    time it did so to ``sent``."""

    def interrupt():
        time.sleep(seconds)
        sent.append(time.monotonic())
        _thread.interrupt_main()

    threading.Thread(target=interrupt).start()


@pytest.mark.parametrize("shuffle", [False, True])
def test_interrupt_main_during_fit(shuffle, tmp_path):
    net, X, Y = problem()
    start = net._theta.copy()
    sent = []

    with threadpool_limits(1):  # as in the child process above
        interrupt_main_after(0.2, sent)
        with pytest.raises(KeyboardInterrupt):  # ~30 s if the interrupt were ignored
            net.fit(X, Y, epochs=3000, batch_size=256, lr=1e-3, shuffle=shuffle, seed=7)
        latency = time.monotonic() - sent[0]
        path = tmp_path / "net.npz"
        steps = check_after_interrupt(net, start, X, Y, 256, path, shuffle, seed=7)
    assert latency < LATENCY, f"{latency:.3f} s from interrupt_main to KeyboardInterrupt"
    assert steps > 0


def test_fit_of_half_a_billion_epochs_starts_at_once_and_answers_ctrl_c():
    """fit keeps the losses of the epochs done, block by block: nothing the size of
    ``epochs`` is allocated before the first batch."""
    import tracemalloc

    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    Y = np.array([[0.0], [1.0], [1.0], [0.0]])
    net = Network([2, 2, 1], seed=0)
    start = net._theta.copy()
    sent = []

    tracemalloc.start()
    try:
        interrupt_main_after(0.2, sent)
        with pytest.raises(KeyboardInterrupt):  # minutes, and 4 GB of losses, if ignored
            net.fit(X, Y, epochs=500_000_000, batch_size=2, lr=0.5)
        latency = time.monotonic() - sent[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"interrupted after {1e3 * latency:.2f} ms; peak {peak / 2**20:.1f} MB")
    assert latency < LATENCY, f"{latency:.3f} s from interrupt_main to KeyboardInterrupt"
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB allocated"
    twin = copy_of(net)
    twin._theta[...] = start
    twin.fit(X, Y, epochs=1, batch_size=2, lr=0.5)
    assert not np.array_equal(twin._theta, start)  # it trained before the interrupt
    assert np.isfinite(net.forward(X)).all()


# Run by the child process: one long forward, loss or gradients call, interrupted.
CHUNKED_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from backprop import Network

    net = Network([256, 2048, 2048, 10], seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20_000, 256)), rng.uniform(size=(20_000, 10))
    calls = {
        "forward": lambda rows: net.forward(X[:rows]),
        "loss": lambda rows: net.loss(X[:rows], Y[:rows]),
        "gradients": lambda rows: net.gradients(X[:rows], Y[:rows]),
    }
    call = calls[sys.argv[1]]
    began = time.monotonic()
    call(len(X) // 50)
    print(f"ready {50 * (time.monotonic() - began)!r}", flush=True)  # the whole call's time
    try:
        call(len(X))
    except KeyboardInterrupt:
        caught = time.monotonic()
    else:
        sys.exit("the call ran to its end")
    assert np.isfinite(net.forward(X[:3])).all()  # nothing left locked
    print(f"caught at {caught!r}", flush=True)
    """
)


@pytest.mark.parametrize("method", ["forward", "loss", "gradients"])
def test_sigint_to_a_long_forward_loss_or_gradients(method):
    """Many rows run a chunk per kernel call, and Python answers Ctrl-C between two."""
    line, out, err, sent = sigint_child(CHUNKED_CHILD, method, timeout=300)
    assert line.startswith("ready "), line + out + err
    whole = float(line.split()[1])
    latency = float(out.split("caught at ")[1].split()[0]) - sent
    print(f"{method}: SIGINT honoured after {1e3 * latency:.1f} ms of a ~{whole:.1f} s call")
    assert whole > 3 * CHUNKED_LATENCY  # else the test proves nothing
    assert 0 <= latency < CHUNKED_LATENCY, f"{latency:.3f} s from SIGINT to KeyboardInterrupt"
