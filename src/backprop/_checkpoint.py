"""The checkpoint file format: an atomic write and a validated read.

A checkpoint is an uncompressed ``.npz`` archive of plain arrays, never pickles:
``format`` ("backprop.Network"), ``version`` (1), ``sizes``, ``activation``,
``output``, ``loss``, ``dtype`` and ``parameters`` (the flat parameter array). It is
written to a temporary file in the same directory, flushed to disk and renamed onto
the path, so the path holds the old file or the whole new one, never part of one.
"""

from __future__ import annotations

import inspect
import os
import secrets
import zipfile
import zlib
from contextlib import suppress

import numpy as np

FORMAT = "backprop.Network"
VERSION = 1
_TEXT = ("format", "activation", "output", "loss", "dtype")
_KEYS = frozenset(_TEXT + ("version", "sizes", "parameters"))
# numpy < 2.1 would store an allow_pickle keyword as one more array; its savez never
# pickles numbers and text anyway.
_SAVEZ_OPTIONS = (
    {"allow_pickle": False} if "allow_pickle" in inspect.signature(np.savez).parameters else {}
)
# Largest size of the small entries of a checkpoint (the text and the layer sizes).
_MAX_ENTRY_BYTES = 1 << 20


def write(path, *, sizes, activation, output, loss, dtype, parameters) -> None:
    """Writes a checkpoint of these entries to the file ``path``, atomically."""
    path = os.fsdecode(os.fspath(path))
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "sizes": np.array(sizes, dtype=np.int64),
        "activation": np.array(activation),
        "output": np.array(output),
        "loss": np.array(loss),
        "dtype": np.array(dtype),
        "parameters": parameters,
    }
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays, **_SAVEZ_OPTIONS)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Makes a rename in ``directory`` durable (where directories can be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path, build):
    """``build(entries, read_parameters)`` on the checkpoint at ``path``: ``entries``
    holds its sizes (a list of ints) and its text entries; ``read_parameters(n_bytes)``
    reads its parameter array, refusing one of more than n_bytes (plus a header).

    A file that is not a whole, valid checkpoint of this version (truncated, altered,
    written by something else, a pickle), or that ``build`` refuses, raises ValueError
    saying what is wrong. Nothing in the file is unpickled or executed.
    """
    with open(path, "rb") as file:
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
        if names != _KEYS:
            missing, unexpected = _KEYS - names, names - _KEYS
            raise ValueError(
                "its entries differ from a checkpoint's: "
                + ", ".join(
                    f"{n} {sorted(v)}"
                    for n, v in [("missing", missing), ("unexpected", unexpected)]
                    if v
                )
            )

        def entry(name: str, kinds: str, ndim: int, max_bytes: int = _MAX_ENTRY_BYTES):
            if archive.zip.getinfo(f"{name}.npy").file_size > max_bytes:
                raise ValueError(f"{name} is larger than a checkpoint of its network can be")
            value = archive[name]
            if value.dtype.kind not in kinds or value.ndim != ndim:
                raise ValueError(f"{name} has dtype {value.dtype} and shape {value.shape}")
            return value

        entries = {name: str(entry(name, "U", 0)) for name in _TEXT}
        if entries["format"] != FORMAT:
            raise ValueError(f"its format is {entries['format']!r}, not {FORMAT!r}")
        version = int(entry("version", "iu", 0))
        if version != VERSION:
            newer = "a newer" if version > VERSION else "an unknown"
            raise ValueError(
                f"it is in {newer} checkpoint version {version}; this backprop reads version "
                f"{VERSION}"
            )
        entries["sizes"] = [int(s) for s in entry("sizes", "iu", 1)]

        def read_parameters(n_bytes: int) -> np.ndarray:
            return entry("parameters", "f", 1, n_bytes + _MAX_ENTRY_BYTES)

        return build(entries, read_parameters)
