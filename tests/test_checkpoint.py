"""Checkpoints: save and load restore a network exactly; no fault leaves a bad file behind.

``Network.save`` writes a versioned ``.npz`` through a temporary file, fsync and rename,
only to a regular file or a new path (a symbolic link is followed), keeping the replaced
file's mode; the next save removes the temporary files a killed save left, never those a
live writer holds. ``backprop.load`` refuses, with ValueError, anything that is not a whole
checkpoint in a regular file, without blocking on a FIFO, and never unpickles. Pickling a
Network round-trips too.
"""

import copy
import errno
import fcntl
import hashlib
import io
import itertools
import os
import pickle
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import types
import zipfile

import numpy as np
import pytest
from conftest import OUTPUT_LOSSES, child_env

import backprop
from backprop import Network, _checkpoint


def trained(sizes=(4, 6, 3), activation="tanh", output="softmax", loss="cross_entropy",
            dtype="float64", seed=0):  # fmt: skip
    net = Network(list(sizes), activation, output, loss, dtype, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(32, sizes[0]))
    k = sizes[-1]
    Y = rng.integers(0, k, size=32) if loss == "cross_entropy" else rng.uniform(size=(32, k))
    net.fit(X, Y, epochs=3, batch_size=5, lr=0.1, shuffle=True, seed=seed)
    return net, X, Y


def saved(tmp_path, net, name="net.npz"):
    path = tmp_path / name
    net.save(path)
    return path


# ------------------------------------------------------------------ round trips ---


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "sizes,activation,head",
    [
        (sizes, activation, head)
        for sizes, activation, head in itertools.product(
            [(4, 6, 3), (3, 2), (5, 8, 7, 2)],
            ["sigmoid", "tanh", "relu", "identity"],
            OUTPUT_LOSSES,
        )
    ],
)
def test_load_restores_the_network_exactly(tmp_path, sizes, activation, head, dtype):
    output, loss = head
    net, X, Y = trained(sizes, activation, output, loss, dtype)
    again = backprop.load(saved(tmp_path, net))
    assert repr(again) == repr(net) and again.dtype == net.dtype
    np.testing.assert_array_equal(again._theta, net._theta)
    np.testing.assert_array_equal(again.forward(X), net.forward(X))
    # and they go on training identically
    a = net.fit(X, Y, epochs=2, batch_size=3, lr=0.05, shuffle=True, seed=1)
    b = again.fit(X, Y, epochs=2, batch_size=3, lr=0.05, shuffle=True, seed=1)
    assert a == b
    np.testing.assert_array_equal(again._theta, net._theta)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "sizes,activation",
    [((4, 6, 5, 3), ["gelu", "relu"]), ((4, 6, 3), ["silu"]), ((4, 6, 5, 3), "elu"),
     ((4, 3), [])],
)  # fmt: skip
def test_an_activation_per_layer_round_trips(tmp_path, sizes, activation, dtype):
    """A list of names is saved as one per hidden layer (checkpoint version 2; one name
    stays version 1), pickled, and read back as the list."""
    net, X, Y = trained(sizes, activation, dtype=dtype)
    path = saved(tmp_path, net)
    with np.load(path, allow_pickle=False) as data:
        assert data["activation"].tolist() == activation
        assert int(data["version"]) == (1 if isinstance(activation, str) else 2)
    for again in (backprop.load(path), pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert again.activation == activation and repr(again) == repr(net)
        np.testing.assert_array_equal(again._theta, net._theta)
        np.testing.assert_array_equal(again.forward(X), net.forward(X))
        a = net._like(net._theta.copy()).fit(X, Y, epochs=1, batch_size=4, lr=0.05)
        assert again.fit(X, Y, epochs=1, batch_size=4, lr=0.05) == a


def test_the_file_is_a_plain_versioned_npz_at_exactly_the_given_path(tmp_path):
    net, _, _ = trained(dtype="float32")
    path = tmp_path / "model"  # no suffix is added
    net.save(str(path))
    assert sorted(os.listdir(tmp_path)) == ["model"]
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == "backprop.Network" and int(data["version"]) == 1
        assert data["sizes"].tolist() == [4, 6, 3]
        assert [str(data[k]) for k in ("activation", "output", "loss", "dtype")] == [
            "tanh", "softmax", "cross_entropy", "float32"
        ]  # fmt: skip
        assert data["parameters"].dtype == np.float32
        # for each layer its weights, row-major (n_out, n_in), then its biases
        flat = [p.ravel() for w, b in zip(net.weights, net.biases) for p in (w, b)]
        np.testing.assert_array_equal(data["parameters"], np.concatenate(flat))


def test_save_replaces_an_existing_file_and_keeps_its_permissions_default(tmp_path):
    first, X, _ = trained(seed=0)
    second, _, _ = trained(seed=1)
    path = saved(tmp_path, first)
    second.save(path)
    np.testing.assert_array_equal(backprop.load(path).forward(X), second.forward(X))
    assert os.listdir(tmp_path) == ["net.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_pickle_and_deepcopy_round_trip(tmp_path):
    for dtype in ("float64", "float32"):
        net, X, _ = trained(dtype=dtype)
        for again in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
            assert repr(again) == repr(net)
            np.testing.assert_array_equal(again.forward(X), net.forward(X))
            again.weights[0][...] = 0  # a copy, not a view of the original
            assert np.any(net.weights[0] != 0)


# ------------------------------------------------------------- faults in save ---


def test_a_save_that_fails_midway_leaves_the_old_file(tmp_path, monkeypatch):
    old, X, _ = trained(seed=0)
    new, _, _ = trained(seed=1)
    path = saved(tmp_path, old)
    before = path.read_bytes()

    def half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half of an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.npz"]  # the temporary file is gone
    np.testing.assert_array_equal(backprop.load(path).forward(X), old.forward(X))


def test_save_syncs_the_file_and_its_directory_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", fd)) or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace",)) or replace(a, b))
    trained()[0].save(tmp_path / "net.npz")
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]


CRASHING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from backprop import Network

    path = sys.argv[1]
    Network([3, 4, 2], seed=0).save(path)
    # the process is killed with the new file written, before the rename
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    Network([3, 4, 2], seed=1).save(path)
    """
)

SAVING_FOREVER = textwrap.dedent(
    """
    import sys
    from backprop import Network

    nets = [Network([30, 40, 20], seed=s) for s in (0, 1)]
    nets[0].save(sys.argv[1])
    print("saving", flush=True)
    i = 0
    while True:
        nets[i % 2].save(sys.argv[1])
        i += 1
    """
)


def test_a_process_killed_during_save_leaves_the_old_file_and_the_next_save_cleans_up(
    tmp_path,
):
    path = tmp_path / "net.npz"
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_SAVE, str(path)], env=child_env(), timeout=60
    )
    assert child.returncode == -signal.SIGKILL
    np.testing.assert_array_equal(backprop.load(path)._theta, Network([3, 4, 2], seed=0)._theta)
    stray = [name for name in os.listdir(tmp_path) if name != "net.npz"]
    assert len(stray) == 1 and stray[0].startswith(".net.npz.") and stray[0].endswith(".tmp")
    Network([3, 4, 2], seed=2).save(path)
    assert os.listdir(tmp_path) == ["net.npz"]


def test_a_process_killed_at_any_moment_while_saving_leaves_a_whole_file(tmp_path):
    path = tmp_path / "net.npz"
    expected = [Network([30, 40, 20], seed=s)._theta for s in (0, 1)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVING_FOREVER, str(path)],
            env=child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline() == "saving\n"
        time.sleep(rng.uniform(0.01, 0.1))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        theta = backprop.load(path)._theta
        assert any(np.array_equal(theta, e) for e in expected)
    Network([30, 40, 20], seed=0).save(path)
    assert os.listdir(tmp_path) == ["net.npz"]  # whatever the kills left, that save removed


# ------------------------------------------------- what save writes to, and how ---


def run_child(code: str, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    """``code`` in a child Python with ``args``; a hang fails the test instead of the run."""
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


SAVE_AND_LOAD = textwrap.dedent(
    """
    import sys
    import backprop

    for call in (lambda: backprop.Network([3, 2]).save(sys.argv[1]),
                 lambda: backprop.load(sys.argv[1])):
        try:
            call()
        except Exception as error:
            print(type(error).__name__, error)
        else:
            print("no error")
    """
)


def special_files(tmp_path, monkeypatch):
    """(kind, path) of a FIFO, a socket and, where mknod is permitted, a character device
    like /dev/null, all made in tmp_path."""
    monkeypatch.chdir(tmp_path)  # a socket's path must be short
    os.mkfifo("fifo")
    files = [("FIFO", tmp_path / "fifo")]
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    sock.close()
    files.append(("socket", tmp_path / "sock"))
    try:
        os.mknod("null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        files.append(("character device", tmp_path / "null"))
    except PermissionError:
        pass
    return files


def kinds(tmp_path):
    return {name: stat.S_IFMT(os.lstat(tmp_path / name).st_mode) for name in os.listdir(tmp_path)}


def test_save_and_load_refuse_fifos_sockets_and_devices_at_once(tmp_path, monkeypatch):
    files = special_files(tmp_path, monkeypatch)
    before = kinds(tmp_path)
    for kind, path in files:
        child = run_child(SAVE_AND_LOAD, path)  # a FIFO opened for reading would block
        assert child.returncode == 0, child.stderr
        saved_, loaded = child.stdout.splitlines()
        assert saved_ == (
            f"ValueError cannot save a network to {path}: it is a {kind}"
            f"{' (named pipe)' if kind == 'FIFO' else ''}, not a regular file"
        )
        assert loaded.startswith(f"ValueError {path} is not a valid backprop checkpoint: it is")
        assert kind in loaded
    assert kinds(tmp_path) == before  # nothing replaced, nothing left


def test_load_of_a_fifo_fails_at_once_without_a_writer(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    child = run_child(
        "import sys, backprop\nbackprop.load(sys.argv[1])", tmp_path / "fifo", timeout=30
    )
    assert "ValueError" in child.stderr and "it is a FIFO (named pipe)" in child.stderr


def test_a_character_device_is_never_replaced(tmp_path):
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod is not permitted here")
    with pytest.raises(ValueError, match="it is a character device, not a regular file"):
        Network([3, 2]).save(tmp_path / "null")
    assert stat.S_ISCHR(os.stat(tmp_path / "null").st_mode)
    assert os.listdir(tmp_path) == ["null"]


def test_a_directory_is_refused_with_is_a_directory_error(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match="cannot save a network to .*dir: it is a dir"):
        Network([3, 2]).save(tmp_path / "dir")
    with pytest.raises(IsADirectoryError, match="it is a directory, not a regular file"):
        backprop.load(tmp_path / "dir")
    assert os.listdir(tmp_path / "dir") == [] and os.listdir(tmp_path) == ["dir"]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    old, X, _ = trained(seed=0)
    new, _, _ = trained(seed=1)
    (tmp_path / "runs").mkdir()
    target = saved(tmp_path / "runs", old, "run-1.npz")
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.join("runs", "run-1.npz"))
    new.save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "run-1.npz")
    np.testing.assert_array_equal(backprop.load(target).forward(X), new.forward(X))
    np.testing.assert_array_equal(backprop.load(link).forward(X), new.forward(X))
    # the temporary file was made (and renamed) next to the target
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "runs"]
    assert os.listdir(tmp_path / "runs") == ["run-1.npz"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    net, X, _ = trained()
    link = tmp_path / "latest.npz"
    link.symlink_to("run-2.npz")
    net.save(link)
    assert link.is_symlink()
    np.testing.assert_array_equal(backprop.load(tmp_path / "run-2.npz").forward(X), net.forward(X))


def test_a_symlink_to_a_fifo_is_refused_naming_both(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to("fifo")
    child = run_child(SAVE_AND_LOAD, tmp_path / "link")
    assert child.stdout.splitlines()[0] == (
        f"ValueError cannot save a network to {tmp_path / 'link'} (a link to "
        f"{tmp_path / 'fifo'}): it is a FIFO (named pipe), not a regular file"
    )
    assert "FIFO" in child.stdout.splitlines()[1]
    assert (tmp_path / "link").is_symlink() and stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o755])
def test_a_replaced_file_keeps_its_permission_bits(tmp_path, monkeypatch, mode):
    path = saved(tmp_path, trained(seed=0)[0])
    os.chmod(path, mode)
    written = []
    savez = np.savez

    def spy(file, **arrays):  # the mode of the temporary file while data is written
        written.append(os.fstat(file.fileno()).st_mode & 0o7777)
        return savez(file, **arrays)

    monkeypatch.setattr(np, "savez", spy)
    trained(seed=1)[0].save(path)
    assert written == [mode]  # never more open than the file it replaces
    assert os.stat(path).st_mode & 0o7777 == mode


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_replaced_file_keeps_its_owner_and_group_when_run_as_root(tmp_path):
    path = saved(tmp_path, trained(seed=0)[0])
    os.chown(path, 12345, 23456)
    trained(seed=1)[0].save(path)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (12345, 23456)


def test_an_interrupted_save_removes_its_temporary_file(tmp_path, monkeypatch):
    path = saved(tmp_path, trained(seed=0)[0])
    before = path.read_bytes()

    def interrupted(file, **arrays):
        file.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trained(seed=1)[0].save(path)
    assert os.listdir(tmp_path) == ["net.npz"] and path.read_bytes() == before


# ----------------------------------------------------------- temporary files ---


def temporary_name(target: str, token: str = "0123456789abcdef") -> str:
    return f".{target}.{token}.tmp"


def test_save_removes_stale_temporary_files_of_its_target_only(tmp_path):
    stale = [temporary_name("net.npz"), temporary_name("net.npz", "fedcba9876543210")]
    others = [
        temporary_name("other.npz"),  # another target's
        ".net.npz.0123456789ABCDEF.tmp",  # not a name save makes
        ".net.npz.0123456789abcdef.tmp.keep",
        ".net.npz.notmine.tmp",
        "net.npz.0123456789abcdef.tmp",
    ]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"PK\x03\x04 half")
    Network([3, 2]).save(tmp_path / "net.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["net.npz", *others])


def test_save_never_removes_a_temporary_file_a_live_writer_holds(tmp_path):
    live = tmp_path / temporary_name("net.npz")
    fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        # flock locks belong to an open file description, so this one excludes the
        # descriptor save opens, as another process's would
        fcntl.flock(fd, fcntl.LOCK_EX)
        Network([3, 2]).save(tmp_path / "net.npz")
        assert sorted(os.listdir(tmp_path)) == sorted(["net.npz", live.name])
    finally:
        os.close(fd)
    Network([3, 2]).save(tmp_path / "net.npz")
    assert os.listdir(tmp_path) == ["net.npz"]


def refused_lock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")


@pytest.mark.parametrize(
    "fcntl_module",
    [None, types.SimpleNamespace(flock=refused_lock, LOCK_EX=2, LOCK_NB=4)],
    ids=["no flock", "no locks on the file system"],
)
def test_without_locks_only_old_temporary_files_are_stale(tmp_path, monkeypatch, fcntl_module):
    monkeypatch.setattr(_checkpoint, "fcntl", fcntl_module)
    old, recent = temporary_name("net.npz"), temporary_name("net.npz", "fedcba9876543210")
    for name in (old, recent):
        (tmp_path / name).write_bytes(b"")
    then = time.time() - _checkpoint.STALE_SECONDS - 1
    os.utime(tmp_path / old, (then, then))
    Network([3, 2]).save(tmp_path / "net.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["net.npz", recent])


def test_a_long_name_gets_short_temporary_names(tmp_path):
    name = "n" * 250  # the longest names file systems take are 255 bytes
    left = tmp_path / f".{hashlib.sha256(name.encode()).hexdigest()[:32]}.0123456789abcdef.tmp"
    left.write_bytes(b"")
    net, X, _ = trained()
    net.save(tmp_path / name)
    np.testing.assert_array_equal(backprop.load(tmp_path / name).forward(X), net.forward(X))
    assert os.listdir(tmp_path) == [name]


SAVING_IN_TURN = textwrap.dedent(
    """
    import sys
    from backprop import Network

    nets = [Network([30, 40, 20], seed=s) for s in (0, 1)]
    for i in range(int(sys.argv[2])):
        nets[i % 2].save(sys.argv[1])
    """
)


def test_two_processes_saving_at_once_both_succeed_and_leave_one_file(tmp_path):
    path = tmp_path / "net.npz"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SAVING_IN_TURN, str(path), "150"],
            env=child_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    theta = backprop.load(path)._theta
    assert any(np.array_equal(theta, Network([30, 40, 20], seed=s)._theta) for s in (0, 1))
    assert os.listdir(tmp_path) == ["net.npz"]


# ------------------------------------------------------------ refused files ---


def tampered(tmp_path, net, **changes):
    """The checkpoint of net with entries replaced (None removes one)."""
    path = saved(tmp_path, net)
    with np.load(path) as data:
        arrays = dict(data)
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(parameters=np.full(51, np.nan)), "parameters contains NaN or infinity"),
        (dict(parameters=np.full(51, np.inf)), "parameters contains NaN or infinity"),
        (dict(parameters=np.zeros(50)), r"parameters has dtype float64 and shape \(50,\)"),
        (dict(parameters=np.zeros((51, 1))), "parameters has dtype"),
        (dict(parameters=np.zeros(51, dtype=np.float32)), "the network needs float64"),
        (dict(parameters=np.zeros(51, dtype=np.int64)), "parameters has dtype int64"),
        (dict(sizes=np.array([4, 7, 3])), r"shape \(51,\); the network needs float64 and \(59,\)"),
        (dict(sizes=np.array([4, 0, 3])), "sizes"),
        (dict(sizes=np.array([[4, 6, 3]])), "sizes has dtype"),
        (dict(sizes=np.array([4.0, 6.0, 3.0])), "sizes has dtype float64"),
        (dict(version=np.array(4)), "newer checkpoint version 4"),
        # version 3 is a batch-normalised network's, with its running statistics
        (dict(version=np.array(3)), "version 3 but has no running statistics"),
        (dict(running=np.ones(12)), "version 1 but has running statistics"),
        (dict(version=np.array(0)), "unknown checkpoint version 0"),
        (dict(version=np.array("1")), "version has dtype"),
        (dict(format=np.array("something.else")), "its format is 'something.else'"),
        (dict(activation=np.array("swish")), "activation='swish' is not supported"),
        # a list of names is version 2's, and has one name per hidden layer
        (dict(activation=np.array(["tanh"])), r"activation has dtype <U4 and shape \(1,\)"),
        (
            dict(activation=np.array(["tanh", "relu"]), version=np.array(2)),
            "activation lists 2 names, but the network has 1 hidden layer",
        ),
        (dict(activation=np.array([1.0]), version=np.array(2)), "activation has dtype float64"),
        (dict(activation=np.array([["tanh"]]), version=np.array(2)), "activation has dtype"),
        (dict(output=np.array("identity")), "loss='cross_entropy' needs output"),
        (dict(dtype=np.array("float16")), "dtype must be one of"),
        (dict(loss=None), r"missing \['loss'\]"),
        (dict(extra=np.zeros(1)), r"unexpected \['extra'\]"),
        (dict(weights=np.zeros(1), parameters=None), r"missing \['parameters'\]"),
    ],
)
def test_tampered_checkpoints_are_refused(tmp_path, changes, match):
    net = Network([4, 6, 3], activation="tanh", output="softmax", loss="cross_entropy")
    path = tampered(tmp_path, net, **changes)
    with pytest.raises(ValueError, match="is not a valid backprop checkpoint: .*" + match):
        backprop.load(path)


def test_truncated_checkpoints_are_refused(tmp_path):
    path = saved(tmp_path, trained()[0])
    whole = path.read_bytes()
    for size in [*range(0, len(whole), 53), len(whole) - 1]:
        path.write_bytes(whole[:size])
        with pytest.raises(ValueError, match="is not a valid backprop checkpoint"):
            backprop.load(path)


def test_corrupted_bytes_are_refused(tmp_path):
    # A stored (uncompressed) archive: every member is checked against its CRC-32.
    path = saved(tmp_path, trained()[0])
    whole = path.read_bytes()
    start = whole.index(b"\x93NUMPY", whole.index(b"parameters.npy"))
    damaged = bytearray(whole)
    damaged[start + 200] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="is not a valid backprop checkpoint"):
        backprop.load(path)


class Payload:
    """Unpickling this object would create the file ``MARK``."""

    MARK = ""

    def __reduce__(self):
        return (open, (self.MARK, "w"))


def test_pickles_are_refused_and_never_run(tmp_path):
    Payload.MARK = str(tmp_path / "ran")
    plain = tmp_path / "net.pkl"
    plain.write_bytes(pickle.dumps(Payload()))
    inside = tmp_path / "net.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(inside, "w") as archive:  # a checkpoint with a pickled entry
        with np.load(saved(tmp_path, trained()[0], "good.npz")) as data:
            for key in data.files:
                with archive.open(f"{key}.npy", "w") as member:
                    if key == "parameters":
                        member.write(buffer.getvalue())
                    else:
                        np.save(member, data[key])
    for path, match in [(plain, "not a .npz archive"), (inside, "(?i)pickle|object")]:
        with pytest.raises(ValueError, match=match):
            backprop.load(path)
    assert not os.path.exists(Payload.MARK)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a .npz archive"),
        (b"hello, world", "not a .npz archive"),
        (b"\x93NUMPY\x01\x00", "not a .npz archive"),
    ],
)
def test_other_files_are_refused(tmp_path, content, match):
    path = tmp_path / "file"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        backprop.load(path)


def test_a_single_array_and_a_foreign_archive_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.savez(tmp_path / "b.npz", x=np.zeros(3))
    for name in ("a.npy", "b.npz"):
        with pytest.raises(ValueError, match="is not a valid backprop checkpoint"):
            backprop.load(tmp_path / name)


def test_a_missing_file_is_not_a_value_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        backprop.load(tmp_path / "nothing.npz")


# ------------------------------------------------------------- unusual paths ---


def test_save_refuses_paths_open_would_refuse_naming_the_users_path(tmp_path, monkeypatch):
    net, X, _ = trained()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="empty path"):
        net.save("")
    with pytest.raises(FileNotFoundError, match=r"nope/x\.npz: no such directory") as missing:
        net.save("nope/x.npz")
    assert ".tmp" not in str(missing.value)  # the user's name, not a temporary file's
    with pytest.raises(IsADirectoryError):
        net.save("new.npz/")  # open("new.npz/", "wb") refuses it too
    assert os.listdir(tmp_path) == []
    path = saved(tmp_path, net)
    before = path.read_bytes()
    # a file the process may not write is refused, as open(path, "wb") would refuse it
    # (root may write any file, so the permission check is what is replaced here)
    monkeypatch.setattr(_checkpoint.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(PermissionError, match="may not write"):
        trained(seed=1)[0].save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.npz"]
