"""Resources and determinism: nothing leaks over many cycles; a seed fixes every weight;
training's memory is bounded.

2,000 cycles of create, fit, forward, save and load on a tiny network leave the resident
memory flat (growth under 5 MB after a warm-up), no file descriptor open and no
temporary file behind. The same seeds give bit-identical weights, run after run and
process after process, with shuffling on. ``fit`` allocates its workspaces once: its peak
memory is the data and a few batches.
"""

import gc
import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from conftest import child_env

import backprop
from backprop import Network

# 1,600 measured cycles: a leak of 3.3 KB or more a cycle exceeds MAX_GROWTH
CYCLES = 2_000
WARM_UP = 400
MAX_GROWTH = 5 * 2**20  # bytes


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_create_fit_forward_save_load_cycles_leave_memory_flat(tmp_path):
    X = np.random.default_rng(0).normal(size=(8, 3))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    # Checkpoints are fsync'd: on a RAM file system that costs nothing.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm or tmp_path) as directory:
        path = os.path.join(directory, "net.npz")

        def cycle(i):
            net = Network([3, 5, 3], activation="relu", output="softmax",
                          loss="cross_entropy", seed=i)  # fmt: skip
            net.fit(X, y, epochs=2, batch_size=4, lr=0.1, shuffle=True, seed=i)
            out = net.forward(X)
            net.save(path)
            assert np.array_equal(backprop.load(path).forward(X), out)

        for i in range(WARM_UP):
            cycle(i)
        gc.collect()
        memory, descriptors = resident_bytes(), open_descriptors()
        for i in range(WARM_UP, CYCLES):
            cycle(i)
        gc.collect()
        growth = resident_bytes() - memory
        print(f"resident memory grew {growth / 2**20:.2f} MB over {CYCLES - WARM_UP} cycles")
        assert growth < MAX_GROWTH
        assert open_descriptors() == descriptors
        assert os.listdir(directory) == ["net.npz"]


def train(dtype, batch_size, seed=0):
    rng = np.random.default_rng(100)
    X = rng.normal(size=(200, 12))
    y = rng.integers(0, 4, size=200)
    net = Network([12, 40, 4], activation="tanh", output="softmax", loss="cross_entropy",
                  dtype=dtype, seed=seed)  # fmt: skip
    losses = net.fit(X, y, epochs=5, batch_size=batch_size, lr=0.05, shuffle=True, seed=seed)
    return net, losses


CASES = [(dtype, batch) for dtype in ("float64", "float32") for batch in (1, 16, 200)]


@pytest.mark.parametrize("dtype,batch_size", CASES)
def test_the_same_seed_gives_bit_identical_weights(dtype, batch_size):
    first, losses = train(dtype, batch_size)
    for _ in range(3):
        again, again_losses = train(dtype, batch_size)
        np.testing.assert_array_equal(again._theta, first._theta)
        assert again_losses == losses
    other, _ = train(dtype, batch_size, seed=1)
    assert not np.array_equal(other._theta, first._theta)


DIGEST = textwrap.dedent(
    """
    import hashlib, sys
    sys.path.insert(0, sys.argv[1])
    from test_resources import CASES, train

    for dtype, batch in CASES:
        print(hashlib.sha256(train(dtype, batch)[0]._theta.tobytes()).hexdigest())
    """
)


def test_the_same_seed_gives_the_same_weights_in_another_process():
    here = os.path.dirname(os.path.abspath(__file__))
    runs = [
        subprocess.run(
            [sys.executable, "-c", DIGEST, here],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        for _ in range(2)
    ]
    here_digests = [hashlib.sha256(train(*case)[0]._theta.tobytes()).hexdigest() for case in CASES]
    assert runs[0] == runs[1] == here_digests


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_peak_memory_is_data_plus_a_few_batches(shuffle):
    """Training allocates its workspaces once: the peak above the data and parameters is
    a few batches' activations, copies of the parameters and the epoch's order, and it
    does not grow with the number of samples beyond that order."""
    import tracemalloc

    rng = np.random.default_rng(0)
    batch = 128
    net = Network([784, 256, 10], activation="relu", output="softmax", loss="cross_entropy",
                  dtype="float32", seed=0)  # fmt: skip

    def peak_of_fit(n):
        X = rng.normal(size=(n, 784)).astype(np.float32)
        labels = rng.integers(0, 10, size=n)
        net.fit(X[:256], labels[:256], batch_size=batch)  # first call: imports, caches
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            net.fit(X, labels, epochs=2, batch_size=batch, lr=0.01, shuffle=shuffle, seed=0)
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    small, large = peak_of_fit(3000), peak_of_fit(6000)
    activations = batch * (256 + 10) * 4
    # the parameters and fit's restore point; an epoch's order and its cast
    budget = 4 * activations + 3 * net._theta.nbytes + 2 * 6000 * 8 + batch * 784 * 4 + 64_000
    assert large < budget, (large, budget)
    assert large - small <= 2 * 3000 * 8 + 4096, (small, large)
