"""Threads: training runs without the GIL; a network is never used by two threads at once.

Two networks trained in two threads at the same time end bit-identical to the same two
trained one after the other (and the run takes less wall time: printed, not asserted,
as a shared 2-core machine is too noisy to hold a bound). A network already in training
refuses every other use from another thread with RuntimeError, and is unharmed by it.
"""

import _thread
import copy
import pickle
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from backprop import Network


def problem(seed, batch_size):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 32))
    y = rng.integers(0, 8, size=3000)
    net = Network([32, 48, 8], activation="relu", output="softmax", loss="cross_entropy",
                  seed=seed)  # fmt: skip
    epochs = 60 if batch_size == 1 else 300  # ~0.3 s each
    fit = dict(epochs=epochs, batch_size=batch_size, lr=0.01, shuffle=True, seed=seed)
    return net, X, y, fit


# batch 1: hand-written loops only; batch 64: BLAS gemm (one BLAS thread per call, so
# that the two calls do not fight over the cores).
@pytest.mark.parametrize("batch_size", [1, 64])
def test_two_networks_trained_in_two_threads_match_sequential_training(batch_size):
    with threadpool_limits(1):
        sequential = [problem(seed, batch_size) for seed in (0, 1)]
        started = time.perf_counter()
        expected = [net.fit(X, y, **fit) for net, X, y, fit in sequential]
        alone = time.perf_counter() - started

        parallel = [problem(seed, batch_size) for seed in (0, 1)]
        results = [None, None]

        def train(i):
            net, X, y, fit = parallel[i]
            results[i] = net.fit(X, y, **fit)

        threads = [threading.Thread(target=train, args=(i,)) for i in (0, 1)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.perf_counter() - started
    print(f"batch {batch_size}: sequential {alone:.3f} s, two threads {together:.3f} s")
    assert results == expected
    for (a, *_), (b, *_) in zip(sequential, parallel):
        np.testing.assert_array_equal(a._theta, b._theta)


def test_a_network_in_training_refuses_other_threads():
    net, X, y, _ = problem(0, 8)
    refused = {}

    def meanwhile():
        while not net._guard._writing:  # the main thread's fit has taken the network
            time.sleep(0.001)
        calls = {
            "forward": lambda: net.forward(X[:2]),
            "loss": lambda: net.loss(X[:2], y[:2]),
            "gradients": lambda: net.gradients(X[:2], y[:2]),
            "step": lambda: net.step(X[:2], y[:2]),
            "fit": lambda: net.fit(X[:2], y[:2]),
            "trace": lambda: net.trace(X[:2], y[:2]),
            "save": lambda: net.save("never-written.npz"),
            "pickle": lambda: pickle.dumps(net),
            "deepcopy": lambda: copy.deepcopy(net),
        }
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as err:
                refused[name] = str(err)
        _thread.interrupt_main()  # ends the main thread's fit

    helper = threading.Thread(target=meanwhile)
    helper.start()
    with pytest.raises(KeyboardInterrupt):  # ~60 s of training if nothing stopped it
        net.fit(X, y, epochs=10_000, batch_size=8, lr=0.01)
    helper.join()
    assert set(refused) == {
        "forward", "loss", "gradients", "step", "fit", "trace", "save", "pickle", "deepcopy"
    }  # fmt: skip
    assert all("in another thread" in message for message in refused.values())
    # Refusing them changed nothing: the network is free again and works.
    assert not net._guard._writing and net._guard._readers == 0
    assert np.isfinite(net.forward(X)).all()
    assert np.isfinite(net.fit(X[:64], y[:64], epochs=1, batch_size=8)).all()


def test_readers_share_a_network():
    net, X, _, _ = problem(0, 8)
    expected = net.forward(X)
    outputs = [None] * 4

    def read(i):
        for _ in range(10):
            outputs[i] = net.forward(X)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    with threadpool_limits(1):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


def _scipy_blas_threads():
    """The thread count of scipy's OpenBLAS, the BLAS the kernels call; skips without it."""
    from threadpoolctl import threadpool_info

    from backprop import _core

    infos = [i for i in threadpool_info() if "scipy_openblas-" in i["filepath"]]
    if not infos:
        pytest.skip("scipy's BLAS is not an OpenBLAS whose threads can be read")
    assert _core.blas_library()  # backprop found that OpenBLAS and reads its count
    return infos[0]["num_threads"]


def _fits_in_two_threads(fit_once, user_limit_during):
    """Runs fit_once() over and over in two threads; after 0.25 s the main thread sets
    threadpool_limits(user_limit_during), a while later both stop. Returns the scipy
    BLAS counts seen before the user's call."""
    stop = threading.Event()

    def train():
        while not stop.is_set():
            fit_once()

    threads = [threading.Thread(target=train) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        seen = []
        for _ in range(25):
            time.sleep(0.01)
            seen.append(_scipy_blas_threads())
        threadpool_limits(user_limit_during)  # kept: not used as a context manager
        time.sleep(0.25)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return seen


def test_concurrent_kernels_leave_blas_threads_to_the_user():
    """Two fits at once take turns at BLAS's threads and never set their count: the count
    the user set before the fits holds while they run, and the one the user sets while
    they run is the one left after them."""
    _scipy_blas_threads()
    with threadpool_limits(2):
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(4000, 256)), rng.integers(0, 10, size=4000)

        def make():
            return Network([256, 256, 10], activation="relu", output="softmax",
                           loss="cross_entropy", seed=0)  # fmt: skip

        nets = [make(), make()]
        which = threading.local()

        def fit_once():
            if not hasattr(which, "net"):
                which.net = nets.pop()
            which.net.fit(X, y, batch_size=128, lr=0.01)

        seen = _fits_in_two_threads(fit_once, 1)
        assert set(seen) == {2}
        assert _scipy_blas_threads() == 1


def test_concurrent_estimator_fits_leave_the_users_limit():
    """threadpool_limits(1) set while two MLPClassifier fits run in two threads is the
    limit after they end."""
    pytest.importorskip("sklearn")
    from backprop import MLPClassifier

    _scipy_blas_threads()
    with threadpool_limits(2):
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(2000, 256)), rng.integers(0, 10, size=2000)

        def fit_once():
            # three epochs, stopped by the stalled loss before max_iter: no warning (the
            # warnings filters are the process's, not a thread's, to silence one)
            MLPClassifier((256,), tol=1e9, n_iter_no_change=1, random_state=0).fit(X, y)

        seen = _fits_in_two_threads(fit_once, 1)
        assert set(seen) == {2}
        assert _scipy_blas_threads() == 1


def test_concurrent_training_with_blas_threads_matches_sequential_training():
    """With two BLAS threads allowed, two fits at once (whose threaded products take turns
    while they overlap) end bit-identical to the same fits one after the other."""
    with threadpool_limits(2):
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(2000, 256)), rng.integers(0, 10, size=2000)

        def make(seed):
            return Network([256, 256, 10], activation="relu", output="softmax",
                           loss="cross_entropy", seed=seed)  # fmt: skip

        fit = dict(epochs=3, batch_size=128, lr=0.01, shuffle=True, seed=5)
        sequential = [make(s) for s in (0, 1)]
        for net in sequential:
            net.fit(X, y, **fit)
        concurrent = [make(s) for s in (0, 1)]
        threads = [threading.Thread(target=net.fit, args=(X, y), kwargs=fit) for net in concurrent]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for a, b in zip(sequential, concurrent):
            for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
                np.testing.assert_array_equal(wa, wb)
