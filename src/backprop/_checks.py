"""Argument checks shared by the public API: each converts or refuses a value, and a
refusal names the argument, what it got and what it expected."""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _core
from ._layout import MAX_DIM

DTYPES = ("float32", "float64")


def check_name(value, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {allowed}; got {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {allowed}")
    return value


def check_names(value, name: str, allowed: tuple[str, ...], count: int) -> str | tuple[str, ...]:
    """One name, or a list (or tuple) of ``count`` names, as a str or a tuple of them."""
    if isinstance(value, str):
        return check_name(value, name, allowed)
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a name or a list of {count} names, one per hidden layer; "
            f"got {type(value).__name__}"
        )
    if len(value) != count:
        layers = "1 hidden layer" if count == 1 else f"{count} hidden layers"
        raise ValueError(
            f"{name} lists {len(value)} names, but the network has {layers}: give one "
            f"name for all of them or a list of {count}"
        )
    return tuple(check_name(item, f"{name}[{i}]", allowed) for i, item in enumerate(value))


def check_int(value, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return int(value)


def random_generator(seed, name: str = "seed") -> np.random.Generator:
    """``numpy.random.default_rng(seed)``, with a refusal that names the argument."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, a non-negative integer or a Generator; got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as refusal:
        raise type(refusal)(
            f"{name} must be None, a non-negative integer or a Generator; got {seed!r} ({refusal})"
        ) from None


def check_lr(lr, dtype: np.dtype) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a real number; got {lr!r}")
    with np.errstate(over="ignore", under="ignore"):
        try:
            value = float(lr)
        except OverflowError:
            value = math.inf
        # The kernels take lr in the network's dtype: it must stay finite and > 0 there.
        cast = float(dtype.type(value)) if math.isfinite(value) else value
    if not (math.isfinite(cast) and cast > 0):
        raise ValueError(f"lr must be a finite number > 0 in {dtype.name}; got {lr}")
    return value


def check_nonnegative(value, name: str, upper: float = math.inf) -> float:
    """value as a float in [0, upper) (upper = inf: any finite value >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    result = float(value)
    if not (0 <= result < upper):
        expected = "a finite number >= 0" if upper == math.inf else f"a number in [0, {upper})"
        raise ValueError(f"{name} must be {expected}; got {value}")
    return result


def check_sizes(sizes) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes must be a sequence of layer widths like [2, 2, 1]; got {sizes!r}")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must name at least an input and an output layer; got {sizes}")
    return [check_int(s, f"sizes[{i}]", 1, MAX_DIM) for i, s in enumerate(sizes)]


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be one of {DTYPES}; got {dtype!r}") from err
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}; got {dt.name}")
    return np.dtype(dt.name)  # native byte order: the kernels read native numbers only


def as_real_array(value, name: str) -> np.ndarray:
    """value as an ndarray of booleans, integers or floats, else TypeError/ValueError."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} could not be read as a rectangular array: {err}") from err
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}")
    return arr


def to_float(arr: np.ndarray, name: str, dtype: np.dtype, finite: bool = True) -> np.ndarray:
    """arr as a C-contiguous, native-order array of ``dtype`` with only finite values.

    Copies only when the layout or dtype asks for it; the finiteness check is one
    compiled pass over the result, with no temporary array the size of the data.
    ``finite=False`` leaves that check to the caller (``fit`` makes it in the kernel).
    """
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if finite:
        check_finite(out, arr, name)
    return out


def check_finite(out: np.ndarray, source, name: str) -> None:
    """ValueError if ``out`` (``source`` converted) holds NaN or infinity, saying which;
    ``source`` is read again only to word the error."""
    if not _core.all_finite(out.reshape(-1)):
        arr = np.asarray(source)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
        raise ValueError(f"{name} has values too large for {out.dtype.name}")
