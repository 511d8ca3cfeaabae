"""Input validation shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong type) with a
message of the form ``"<function>: <argument> must be <expected>, got <received>"``
so that a learner sees what went wrong without reading a NumPy traceback.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

_FLOAT_DTYPES = (np.float32, np.float64)


def fail(func: str, arg: str, expected: str, received: str, exc=ValueError):
    raise exc(f"{func}: {arg} must be {expected}, got {received}")


def check_array(func: str, arg: str, x, *, ndim=None, min_ndim=None, max_ndim=None,
                finite: bool = True) -> np.ndarray:
    """Return ``x`` as a floating NumPy array after checking type, rank and finiteness.

    ``x`` must already be a ``numpy.ndarray`` of dtype float32 or float64: the
    result keeps the input's dtype, so silently converting integers or lists
    would hide a mistake.
    """
    if not isinstance(x, np.ndarray):
        fail(func, arg, "a numpy.ndarray", f"{type(x).__name__}", TypeError)
    if x.dtype.type not in _FLOAT_DTYPES:
        fail(func, arg, "an array of dtype float32 or float64", f"dtype {x.dtype}", TypeError)
    if ndim is not None and x.ndim != ndim:
        fail(func, arg, f"{ndim}-D", f"shape {x.shape} ({x.ndim}-D)")
    if min_ndim is not None and x.ndim < min_ndim:
        fail(func, arg, f"at least {min_ndim}-D", f"shape {x.shape} ({x.ndim}-D)")
    if max_ndim is not None and x.ndim > max_ndim:
        fail(func, arg, f"at most {max_ndim}-D", f"shape {x.shape} ({x.ndim}-D)")
    if finite and not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        fail(func, arg, "finite (no NaN or inf)", f"{bad} non-finite value(s)")
    return x


def check_bn_input(func: str, x, arg: str = "x", *, finite: bool = True) -> np.ndarray:
    """Check a batch-norm input: 2-D to 5-D, channels on axis 1, finite floats.

    ``finite=False`` skips the scan for NaN/inf, for callers that check
    finiteness more cheaply afterwards (see ``check_finite_sums``).
    """
    x = check_array(func, arg, x, finite=finite)
    if not 2 <= x.ndim <= 5:
        fail(func, arg, "2-D to 5-D with channels on axis 1 ((N, C), (N, C, L), "
              "(N, C, H, W) or (N, C, D, H, W))", f"shape {x.shape} ({x.ndim}-D)")
    if x.shape[1] == 0:
        fail(func, arg, "at least one channel on axis 1", f"shape {x.shape}")
    return x


def check_training_size(func: str, x: np.ndarray, arg: str = "x") -> int:
    """Return m = values per channel; batch statistics of a single value are rejected (as torch).

    ``m = 0``, an empty batch, is allowed as torch allows it: nothing is averaged.
    """
    m = x.size // x.shape[1]
    if m == 1:
        fail(func, arg, "more than 1 value per channel in training mode",
             f"shape {x.shape} (1 value per channel)")
    return m


def check_channel_vector(func: str, arg: str, v, num_channels: int, dtype=None,
                         allow_none: bool = False):
    """Check a per-channel vector of shape ``(C,)`` (gamma, beta, running stats)."""
    if v is None:
        if allow_none:
            return None
        fail(func, arg, f"an array of shape ({num_channels},)", "None", TypeError)
    v = check_array(func, arg, v)
    if v.shape != (num_channels,):
        fail(func, arg, f"shape ({num_channels},) to match the {num_channels} channel(s) of x",
              f"shape {v.shape}")
    return v


def check_positive(func: str, arg: str, value) -> float:
    """Check a positive real number (eps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(func, arg, "a positive float", f"{type(value).__name__} {value!r}", TypeError)
    if not math.isfinite(value) or value <= 0:  # math, not NumPy: torch.compile traces it
        fail(func, arg, "a positive float", repr(value))
    return float(value)


def check_momentum(func: str, value, allow_none: bool = True):
    """Check torch's momentum: a float in [0, 1], or None for a cumulative average."""
    if value is None:
        if allow_none:
            return None
        fail(func, "momentum", "a float in [0, 1]", "None", TypeError)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(func, "momentum", "a float in [0, 1] or None", f"{type(value).__name__} {value!r}",
              TypeError)
    if not 0.0 <= value <= 1.0:
        fail(func, "momentum", "a float in [0, 1] (torch's weight of the new batch)",
              repr(value))
    return float(value)


def check_num_features(func: str, value) -> int:
    """Check a positive integer channel count."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(func, "num_features", "a positive int", f"{type(value).__name__} {value!r}",
              TypeError)
    if value <= 0:
        fail(func, "num_features", "a positive int", repr(value))
    return int(value)


def check_fraction(func: str, arg: str, value, *, include_one: bool = False) -> float:
    """Check a real number in [0, 1) (or [0, 1] with ``include_one``), e.g. a decay rate."""
    interval = "[0, 1]" if include_one else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(func, arg, f"a float in {interval}", f"{type(value).__name__} {value!r}", TypeError)
    upper_ok = value <= 1.0 if include_one else value < 1.0
    if not (0.0 <= value and upper_ok):
        fail(func, arg, f"a float in {interval}", repr(value))
    return float(value)


def check_shape(func: str, arg: str, x: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """Check that ``x.shape == shape``; ``what`` says where the expected shape comes from."""
    if x.shape != tuple(shape):
        fail(func, arg, f"shape {tuple(shape)} ({what})", f"shape {x.shape}")
    return x


def check_callable(func: str, arg: str, f):
    """Check that ``f`` can be called."""
    if not callable(f):
        fail(func, arg, "callable", f"{type(f).__name__} {f!r}", TypeError)
    return f


def check_writeable(func: str, arg: str, x: np.ndarray) -> np.ndarray:
    """Check that an array can be updated in place (running buffers)."""
    if not x.flags.writeable:
        fail(func, arg, "a writeable array (it is updated in place)", "a read-only array")
    return x


def check_finite_sums(func: str, arg: str, x: np.ndarray, *sums) -> None:
    """Check ``x`` through sums already computed from it, instead of a separate scan.

    A sum over values is finite exactly when every value is finite and
    nothing overflows. So when all ``sums`` are finite there is nothing to
    do; otherwise ``x`` is scanned to report the non-finite values, and if it
    has none the sums overflowed.
    """
    if all(np.all(np.isfinite(s)) for s in sums):
        return
    check_array(func, arg, x, finite=True)
    fail(func, arg, f"small enough that its per-channel sums fit in {x.dtype}",
          f"values up to {float(np.max(np.abs(x)))!r} (overflow)")


def check_int(func: str, arg: str, value, *, minimum: int = 1) -> int:
    """Check an integer count, size or seed: an ``int`` (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(func, arg, f"an int >= {minimum}", f"{type(value).__name__} {value!r}", TypeError)
    if value < minimum:
        fail(func, arg, f"an int >= {minimum}", repr(value))
    return int(value)


def check_model_batch(func: str, model, x, y) -> None:
    """Check a ``torch.nn.Module`` and a non-empty batch ``(x, y)`` of tensors, same length."""
    # torch is imported here, not at the top, so that the NumPy modules using
    # this file do not load it; the callers of this check have loaded it already.
    import torch

    if not isinstance(model, torch.nn.Module):
        fail(func, "model", "a torch.nn.Module", type(model).__name__, TypeError)
    for arg, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            fail(func, arg, "a torch.Tensor", type(t).__name__, TypeError)
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        fail(func, "y", f"a non-empty batch with as many samples as x ({tuple(x.shape)})",
              f"shape {tuple(y.shape)}")
