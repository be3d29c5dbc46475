"""Ctrl-C during fit: honoured within 0.1 s, leaving the weights of the last completed step.

The compiled training loop checks for pending signals every ~2 million multiply-adds
(at least once per batch). After the KeyboardInterrupt the network holds exactly the
weights some whole number of steps produced (found by replaying them one ``step`` at a
time), and it forwards, trains and saves as before.
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


def test_sigint_to_a_process_in_fit(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "net.npz"), here],
        # One BLAS thread: on a busy machine a batch then takes as long as its work,
        # not as long as the slowest of several competing BLAS threads.
        env=child_env(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "training\n"
        time.sleep(0.3)  # well inside the compiled loop
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, out + err
    caught = float(out.split("caught at ")[1].split()[0])
    latency = caught - sent
    print(f"SIGINT honoured after {1e3 * latency:.2f} ms; {out.strip()}")
    assert 0 <= latency < LATENCY, f"{latency:.3f} s from SIGINT to KeyboardInterrupt"


@pytest.mark.parametrize("shuffle", [False, True])
def test_interrupt_main_during_fit(shuffle, tmp_path):
    net, X, Y = problem()
    start = net._theta.copy()
    sent = []

    def interrupt():
        time.sleep(0.2)
        sent.append(time.monotonic())
        _thread.interrupt_main()

    with threadpool_limits(1):  # as in the child process above
        threading.Thread(target=interrupt).start()
        with pytest.raises(KeyboardInterrupt):  # ~30 s if the interrupt were ignored
            net.fit(X, Y, epochs=3000, batch_size=256, lr=1e-3, shuffle=shuffle, seed=7)
        latency = time.monotonic() - sent[0]
        path = tmp_path / "net.npz"
        steps = check_after_interrupt(net, start, X, Y, 256, path, shuffle, seed=7)
    assert latency < LATENCY, f"{latency:.3f} s from interrupt_main to KeyboardInterrupt"
    assert steps > 0
