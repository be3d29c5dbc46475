"""The checkpoint file format: an atomic write and a validated read.

A checkpoint is an uncompressed ``.npz`` archive of plain arrays, never pickles:
``format`` ("backprop.Network"), ``version``, ``sizes``, ``activation``, ``output``,
``loss``, ``dtype`` and ``parameters`` (the flat parameter array). In version 1
``activation`` is one name, for every hidden layer; version 2 adds a 1-d array of one
name per hidden layer. A checkpoint with one name is written as version 1, which every
version of backprop reads. Version 3 is a network with batch normalization: each hidden
layer's gamma and beta follow its biases in ``parameters``, and one more entry,
``running``, holds the running statistics (each hidden layer's running means, then its
running variances); a network without it is written as before.

Writing. A checkpoint goes to a regular file or a new path, nothing else: a directory
raises IsADirectoryError, a FIFO, socket or device ValueError, before anything is
written. A symbolic link is followed: the link stays, its target receives the
checkpoint. The checkpoint is written to a temporary file next to the target, flushed
to disk and renamed onto it, so the target holds the old file or the whole new one,
never part of one; a file it replaces keeps its permission bits (and its owner and
group where the process may set them), a new one gets 0666 less the umask.

Temporary files are named ``.<name>.<16 hex digits>.tmp`` after the target ``<name>``.
Their writer holds an exclusive ``flock`` on each from its creation until it is renamed
or removed, so a save can tell a live writer's file (locked) from one left by a writer
that died (unlocked): every save removes the unlocked temporary files of its target
and never touches a locked one. Where there are no locks (no ``flock``, or a file system
without them), a save removes only those unmodified for ``STALE_SECONDS``. A save that
fails removes its own.

Reading. The path is opened without blocking (a FIFO would otherwise wait for a writer)
and read only if it is a regular file.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import re
import secrets
import stat
import time
import zipfile
import zlib
from contextlib import suppress

import numpy as np

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

FORMAT = "backprop.Network"
#: The newest version written and read (see the module docstring).
VERSION = 3
_TEXT = ("format", "activation", "output", "loss", "dtype")
_KEYS = frozenset(_TEXT + ("version", "sizes", "parameters"))
_NORM_KEYS = _KEYS | {"running"}  # version 3
# numpy < 2.1 would store an allow_pickle keyword as one more array; its savez never
# pickles numbers and text anyway.
_SAVEZ_OPTIONS = (
    {"allow_pickle": False} if "allow_pickle" in inspect.signature(np.savez).parameters else {}
)
# Largest size of the small entries of a checkpoint (the text and the layer sizes).
_MAX_ENTRY_BYTES = 1 << 20

# Without flock, a temporary file unmodified for this long is taken for a dead writer's:
# a live writer modifies its file as it writes, and even a checkpoint of gigabytes is
# written and renamed within minutes.
STALE_SECONDS = 3600.0
# A target name longer than this (in bytes) is hashed in its temporary files' names, so
# that they stay within the 255 bytes file systems allow a name.
_MAX_STEM_BYTES = 200
_TOKEN = re.compile(r"[0-9a-f]{16}")
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def write(path, *, sizes, activation, output, loss, dtype, parameters, running=None) -> None:
    """Writes a checkpoint of these entries to the file ``path``, atomically; with
    ``running`` (batch normalization's running statistics), in version 3.

    ``path`` must be a regular file, a new name in an existing directory, or a symbolic
    link to either (followed); a directory raises IsADirectoryError, anything else that
    is not a regular file ValueError.
    """
    name = os.fsdecode(os.fspath(path))
    if not name:
        raise FileNotFoundError(errno.ENOENT, "cannot save a network to an empty path", name)
    target = os.path.realpath(name)
    existing = _stat_or_none(target)
    where = name if target == os.path.abspath(name) else f"{name} (a link to {target})"
    if existing is not None:
        _refuse_special(
            existing, f"cannot save a network to {where}: it is {{}}, not a regular file"
        )
        if not os.access(target, os.W_OK):  # as open(path, "wb") would refuse it
            raise PermissionError(errno.EACCES, "cannot save a network over a file it may "
                                  "not write", name)  # fmt: skip
    elif name.endswith(("/", os.sep)):  # a name for a directory, as open() takes it
        raise IsADirectoryError(errno.EISDIR, "cannot save a network to a directory", name)
    if not os.path.isdir(os.path.dirname(target)):
        raise FileNotFoundError(
            errno.ENOENT, f"cannot save a network to {where}: no such directory", name
        )
    one_name = isinstance(activation, str)
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(3 if running is not None else 1 if one_name else 2),
        "sizes": np.array(sizes, dtype=np.int64),
        "activation": np.array(activation, dtype=np.str_),
        "output": np.array(output),
        "loss": np.array(loss),
        "dtype": np.array(dtype),
        "parameters": parameters,
    }
    if running is not None:
        arrays["running"] = running
    directory, base = os.path.split(target)
    _remove_stale_temporaries(directory, base)
    fd, temporary = _create_temporary(directory, base, existing)
    try:
        # The file stays open, and so locked, until it is renamed: a concurrent save
        # cannot take it for a dead writer's.
        with os.fdopen(fd, "wb") as file:
            if existing is not None:
                _keep_owner_and_mode(fd, temporary, existing)
            np.savez(file, **arrays, **_SAVEZ_OPTIONS)
            file.flush()
            os.fsync(file.fileno())
            os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _refuse_special(st: os.stat_result, message: str) -> None:
    """Raises IsADirectoryError for a directory, ValueError (``message`` naming the kind)
    for anything else that is not a regular file."""
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, message.format("a directory"))
    kind = next((kind for test, kind in _SPECIAL if test(st.st_mode)), "a file of another kind")
    raise ValueError(message.format(kind))


def _temporary_prefix(base: str) -> str:
    """``.<base>.``, the start of the names of ``base``'s temporary files."""
    encoded = os.fsencode(base)
    if len(encoded) > _MAX_STEM_BYTES:
        base = hashlib.sha256(encoded).hexdigest()[:32]
    return f".{base}."


def _create_temporary(directory: str, base: str, existing) -> tuple[int, str]:
    """A new temporary file for ``base`` in ``directory``, open and locked: (fd, path).

    Replacing a file, it starts private (0600) and gets that file's mode before any
    data is written; a new file is created 0666 less the umask.
    """
    prefix = _temporary_prefix(base)
    while True:
        temporary = os.path.join(directory, f"{prefix}{secrets.token_hex(8)}.tmp")
        mode = 0o600 if existing is not None else 0o666
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            if fcntl is None:
                return fd, temporary
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: saves there go by age
                return fd, temporary
            # Another save may have found the file unlocked in the instant between its
            # creation and the lock, and removed it: then start again under a new name.
            if _same_file(os.fstat(fd), temporary):
                return fd, temporary
        except BaseException:
            with suppress(OSError):
                if _same_file(os.fstat(fd), temporary):
                    os.unlink(temporary)
            os.close(fd)
            raise
        os.close(fd)


def _same_file(st: os.stat_result, path: str) -> bool:
    try:
        other = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino)


def _keep_owner_and_mode(fd: int, temporary: str, existing: os.stat_result) -> None:
    """Gives the open file ``fd`` (at ``temporary``) the owner, group and mode bits of the
    file it replaces; owner and group only where the process may set them."""
    if hasattr(os, "fchown") and (existing.st_uid, existing.st_gid) != (
        os.geteuid(),
        os.getegid(),
    ):
        with suppress(PermissionError):  # only root may give a file away
            os.fchown(fd, existing.st_uid, existing.st_gid)
    # after fchown, which clears the set-user-ID and set-group-ID bits
    os.chmod(fd if os.chmod in os.supports_fd else temporary, stat.S_IMODE(existing.st_mode))


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Removes the temporary files of ``base`` in ``directory`` that no writer holds."""
    prefix = _temporary_prefix(base)
    candidates = []
    with suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            head, _, suffix = entry.name.rpartition(".")
            if suffix == "tmp" and head.startswith(prefix):
                if _TOKEN.fullmatch(head[len(prefix) :]):
                    candidates.append(entry.path)
    for candidate in candidates:
        with suppress(OSError):
            _remove_if_stale(candidate)


def _remove_if_stale(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and _stale(fd, st) and _same_file(st, path):
            os.unlink(path)
    finally:
        os.close(fd)


def _stale(fd: int, st: os.stat_result) -> bool:
    """Whether the temporary file open at ``fd`` was left by a writer that is gone: no
    process holds its lock (this one now does), or, where there are no locks, it has not
    been modified for ``STALE_SECONDS``."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:  # a live writer holds it
            return False
        except OSError:  # a file system without locks
            pass
    return time.time() - st.st_mtime >= STALE_SECONDS


def _fsync_directory(directory: str) -> None:
    """Makes a rename in ``directory`` durable (where directories can be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_regular(path):
    """The regular file at ``path``, opened for reading; never blocks on a FIFO."""
    name = os.fsdecode(os.fspath(path))
    message = f"{name} is not a valid backprop checkpoint: it is {{}}, not a regular file"
    # stat first: opening some devices has effects of its own (a tape rewinds)
    _refuse_special(os.stat(path), message)
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK)
    try:
        _refuse_special(os.fstat(fd), message)  # the path may have changed since
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read(path, build):
    """``build(entries, read_parameters)`` on the checkpoint at ``path``: ``entries``
    holds its sizes (a list of ints) and its text entries (``activation`` a str, or a
    list of them), and ``running``: None before version 3, else a function like
    ``read_parameters``; ``read_parameters(n_bytes)``
    reads its parameter array, refusing one of more than n_bytes (plus a header).

    A file that is not a whole, valid checkpoint of this version (truncated, altered,
    written by something else, a pickle), or that ``build`` refuses, raises ValueError
    saying what is wrong. Nothing in the file is unpickled or executed.
    """
    with _open_regular(path) as file:
        try:
            return _read(file, build)
        except (
            ValueError,
            TypeError,
            KeyError,
            EOFError,
            OverflowError,
            MemoryError,
            NotImplementedError,
            RuntimeError,
            OSError,
            zipfile.BadZipFile,
            zlib.error,
        ) as err:
            raise ValueError(
                f"{os.fsdecode(path)} is not a valid backprop checkpoint: {err}"
            ) from err


def _read(file, build):
    head = file.read(4)
    file.seek(0)
    if head != b"PK\x03\x04":  # every .npz is a zip archive; anything else is not read
        raise ValueError(f"it is not a .npz archive (it starts with {head!r})")
    archive = np.load(file, allow_pickle=False)
    with archive:
        names = set(archive.files)
        keys = _NORM_KEYS if "running" in names else _KEYS
        if names != keys:
            missing, unexpected = keys - names, names - keys
            raise ValueError(
                "its entries differ from a checkpoint's: "
                + ", ".join(
                    f"{n} {sorted(v)}"
                    for n, v in [("missing", missing), ("unexpected", unexpected)]
                    if v
                )
            )

        def entry(name: str, kinds: str, ndims: tuple[int, ...],
                  max_bytes: int = _MAX_ENTRY_BYTES):  # fmt: skip
            if archive.zip.getinfo(f"{name}.npy").file_size > max_bytes:
                raise ValueError(f"{name} is larger than a checkpoint of its network can be")
            value = archive[name]
            if value.dtype.kind not in kinds or value.ndim not in ndims:
                raise ValueError(f"{name} has dtype {value.dtype} and shape {value.shape}")
            return value

        format_ = str(entry("format", "U", (0,)))
        if format_ != FORMAT:
            raise ValueError(f"its format is {format_!r}, not {FORMAT!r}")
        version = int(entry("version", "iu", (0,)))
        if not 1 <= version <= VERSION:
            newer = "a newer" if version > VERSION else "an unknown"
            raise ValueError(
                f"it is in {newer} checkpoint version {version}; this backprop reads versions "
                f"1 to {VERSION}"
            )
        if (version >= 3) != ("running" in names):
            raise ValueError(
                f"it is in version {version} but "
                + ("has no running statistics" if version >= 3 else "has running statistics")
            )
        entries = {name: str(entry(name, "U", (0,))) for name in _TEXT if name != "activation"}
        # from version 2, one name per hidden layer, or one for all
        activation = entry("activation", "U", (0, 1) if version >= 2 else (0,))
        entries["activation"] = str(activation) if activation.ndim == 0 else activation.tolist()
        entries["sizes"] = [int(s) for s in entry("sizes", "iu", (1,))]

        def read_parameters(n_bytes: int) -> np.ndarray:
            return entry("parameters", "f", (1,), n_bytes + _MAX_ENTRY_BYTES)

        def read_running(n_bytes: int) -> np.ndarray:
            return entry("running", "f", (1,), n_bytes + _MAX_ENTRY_BYTES)

        entries["running"] = read_running if version >= 3 else None

        return build(entries, read_parameters)
