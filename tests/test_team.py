"""The two-core paths' team of threads (_kernels/team.h) as a process sees it.

Forking after a two-core fit, or while another thread runs one, leaves a child that
trains again, on two threads, to the same numbers; a worker thread that cannot be
started leaves a fit on one thread, not a dead process; the thread limit comes from
BACKPROP_NUM_THREADS, OMP_NUM_THREADS, ``set_num_threads`` and threadpoolctl. Each
scenario that could hang or kill its process runs in a child process with a timeout.
The team's own checks (every part run once, hot and asleep) are tests/c/test_team.c.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import backprop

pytest.importorskip("sklearn")

# A fit whose epochs take the units path on two threads (one hidden layer of 100 units,
# batches of 200 rows: 1.5 million multiply-adds each), as load_digits' does.
FIT = textwrap.dedent(
    """
    import os, sys, threading
    import numpy as np
    import backprop
    from backprop import MLPClassifier, _core

    rng = np.random.default_rng(0)
    X = rng.random((400, 64))
    y = rng.integers(0, 10, 400)

    def fit():
        clf = MLPClassifier((100,), solver="sgd", batch_size=200, max_iter=4,
                            random_state=0, tol=0, n_iter_no_change=100)
        return np.concatenate([c.ravel() for c in clf.fit(X, y).coefs_])
    """
)


def run(script: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    """Runs FIT and then ``script`` in a child Python; a hang fails on the timeout."""
    child_env = {**os.environ, "BACKPROP_NUM_THREADS": "2", **env}
    try:
        done = subprocess.run(
            [sys.executable, "-c", FIT + textwrap.dedent(script)],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the child hung: {hung.stdout!r} {hung.stderr!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_child_forked_after_a_two_core_fit_trains_again_on_two_threads():
    done = run(
        """
        before = fit()
        assert _core.team_state() == "running", _core.team_state()
        pid = os.fork()
        if pid == 0:
            # the child's first two-core run starts a worker of its own
            ok = np.array_equal(fit(), before) and _core.team_state() == "running"
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert done.stdout.split() == ["child", "0"]


def test_a_fork_pool_after_a_two_core_fit_trains_in_its_workers():
    done = run(
        """
        import multiprocessing

        def fits_equal(_):
            return bool(np.array_equal(fit(), before))

        before = fit()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            print(pool.map_async(fits_equal, range(2)).get(timeout=40))
        """
    )
    assert done.stdout.split() == ["[True,", "True]"]


def test_a_fork_while_another_thread_trains_leaves_a_child_that_trains():
    done = run(
        """
        before = fit()
        stop = threading.Event()

        def keep_fitting():
            while not stop.is_set():
                fit()

        other = threading.Thread(target=keep_fitting)
        other.start()
        codes = []
        for _ in range(5):
            pid = os.fork()
            if pid == 0:
                os._exit(0 if np.array_equal(fit(), before) else 3)
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        stop.set()
        other.join()
        print(codes)
        """
    )
    assert done.stdout.strip() == "[0, 0, 0, 0, 0]"


def test_a_worker_that_cannot_start_leaves_the_fit_on_one_thread():
    """An address-space limit that leaves no room for the worker's stack (8 MiB): the fit
    runs on the calling thread and gives the two-thread numbers."""
    done = run(
        """
        import resource

        backprop.set_num_threads(1)
        one = fit()
        backprop.set_num_threads(2)
        with open("/proc/self/status") as status:
            vm = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
        room = (vm + 6 * 1024) * 1024  # 6 MiB more than now
        resource.setrlimit(resource.RLIMIT_AS, (room, resource.getrlimit(resource.RLIMIT_AS)[1]))
        two = fit()
        print(_core.team_state(), np.array_equal(one, two))
        """
    )
    assert done.stdout.split() == ["failed", "to", "start", "True"]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"BACKPROP_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}, 1),
        ({"BACKPROP_NUM_THREADS": "", "OMP_NUM_THREADS": "1,2"}, 1),
        ({"BACKPROP_NUM_THREADS": "x", "OMP_NUM_THREADS": "3"}, 3),
    ],
)
def test_the_thread_limit_comes_from_the_environment(env, expected):
    done = subprocess.run(
        [sys.executable, "-c", "import backprop; print(backprop.get_num_threads())"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == str(expected), done.stderr


def test_set_num_threads_and_threadpoolctl_limit_the_two_core_paths():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    previous = backprop.set_num_threads(2)
    try:
        assert backprop.get_num_threads() == 2 and backprop._core.team_size() == 2
        with threadpoolctl.threadpool_limits(1, user_api="backprop"):
            assert backprop.get_num_threads() == 1 and backprop._core.team_size() == 1
        assert backprop.get_num_threads() == 2
        info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "backprop"]
        assert [i["num_threads"] for i in info] == [2]
        with pytest.raises(ValueError, match="at least 1"):
            backprop.set_num_threads(0)
    finally:
        backprop.set_num_threads(previous)
