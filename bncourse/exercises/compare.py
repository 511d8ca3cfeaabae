"""Compare a learner's output with the expected one.

Outputs are arrays, numbers, strings/None, or tuples/lists/dicts of those
(tuples and lists are interchangeable). The default rule, per array or
number:

    max|got - want| <= atol + rtol * max|want|

a norm-wise relative error (``max|got - want| / max|want|``, the number
reported), which stays meaningful when some entries of ``want`` are zero.
``rtol`` may be a dict by dtype name (``{"float32": 1e-5, "float64": 1e-10}``):
the expected value's dtype picks the tolerance (Python floats are float64).
Arrays must also have the expected shape and, with ``check_dtype``, dtype;
integers, bools and strings must be equal.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Comparison", "compare_outputs", "leaf_pairs", "relative_error", "output_path",
           "resolve_rtol"]


@dataclass
class Comparison:
    """The problems found (empty: the output passes) and the largest relative error."""

    problems: list = field(default_factory=list)
    max_rel_err: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def note_error(self, err: float):
        if self.max_rel_err is None or err > self.max_rel_err or np.isnan(err):
            self.max_rel_err = float(err)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max|got - want| / max|want|`` (0 when both are zero, inf when only ``want`` is)."""
    got = np.asarray(got, dtype=np.float64) if np.asarray(got).dtype.kind != "c" \
        else np.asarray(got)
    want = np.asarray(want, dtype=np.float64) if np.asarray(want).dtype.kind != "c" \
        else np.asarray(want)
    if got.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        diff = np.abs(got - want)
        err = float(np.max(diff)) if not np.any(np.isnan(diff)) else float("nan")
        scale = float(np.max(np.abs(want)))
    if err == 0.0:
        return 0.0
    return err / scale if scale > 0 else float("inf")


def output_path(path: str, key, names) -> str:
    """An item's name: ``z_test`` (a named tuple item), ``var`` (a key of a top-level dict),
    else ``output[1]`` or ``output[0]['var']``."""
    if path == "output" and names and isinstance(key, int) and key < len(names):
        return names[key]
    if path == "output" and isinstance(key, str):
        return key          # a top-level dict: its keys name the outputs
    return f"{path}[{key!r}]"


def resolve_rtol(rtol, dtype) -> float:
    """``rtol`` itself, or its entry for ``dtype`` when it is a dict (the largest if absent)."""
    if isinstance(rtol, dict):
        return float(rtol.get(np.dtype(dtype).name, max(rtol.values())))
    return float(rtol)


def _is_number(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "biufc"
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, str)


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def leaf_pairs(got, want, path: str = "output", names=None):
    """Yield ``(path, got_leaf, want_leaf)`` where the structures agree."""
    if isinstance(want, (tuple, list)):
        if isinstance(got, (tuple, list)) and len(got) == len(want):
            for i, (g, w) in enumerate(zip(got, want)):
                yield from leaf_pairs(g, w, output_path(path, i, names))
        return
    if isinstance(want, dict):
        if isinstance(got, dict):
            for key in want:
                if key in got:
                    yield from leaf_pairs(got[key], want[key], output_path(path, key, None))
        return
    yield path, got, want


def compare_outputs(got, want, *, rtol, atol: float = 0.0, check_dtype: bool = True,
                    names=None) -> Comparison:
    """Compare ``got`` with ``want`` (see the module docstring); never raises on bad ``got``."""
    result = Comparison()
    if names and not isinstance(want, (tuple, list)):
        _compare(got, want, names[0], rtol, atol, check_dtype, None, result)
    else:
        _compare(got, want, "output", rtol, atol, check_dtype, names, result)
    return result


def _compare(got, want, path, rtol, atol, check_dtype, names, result: Comparison):
    problems = result.problems
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            problems.append(f"{path} is {_describe(got)}, expected a tuple of {len(want)} items")
        elif len(got) != len(want):
            problems.append(f"{path} has {len(got)} items, expected {len(want)}")
        else:
            for i, (g, w) in enumerate(zip(got, want)):
                _compare(g, w, output_path(path, i, names), rtol, atol, check_dtype, None, result)
        return
    if isinstance(want, dict):
        if not isinstance(got, dict):
            problems.append(f"{path} is {_describe(got)}, expected a dict with keys "
                            f"{sorted(want)}")
            return
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        if missing or extra:
            problems.append(f"{path} has keys {sorted(map(str, got))}, expected {sorted(want)}")
        for key in want:
            if key in got:
                _compare(got[key], want[key], output_path(path, key, None), rtol, atol,
                         check_dtype, None, result)
        return
    if want is None or isinstance(want, str):
        if not (type(got) is type(want) and got == want):
            problems.append(f"{path} is {got!r}, expected {want!r}")
        return
    if isinstance(want, np.ndarray) and want.ndim > 0:
        if not isinstance(got, np.ndarray):
            problems.append(f"{path} is {_describe(got)}, expected a NumPy array of shape "
                            f"{want.shape}")
            return
        if got.shape != want.shape:
            problems.append(f"{path} has shape {got.shape}, expected {want.shape}")
            return
        if check_dtype and got.dtype != want.dtype:
            problems.append(f"{path} has dtype {got.dtype}, expected {want.dtype}")
        _compare_values(got, want, path, rtol, atol, result)
        return
    # a number: Python or NumPy scalar, or a 0-d array
    if not _is_number(got):
        problems.append(f"{path} is {_describe(got)}, expected a number")
        return
    _compare_values(np.asarray(got), np.asarray(want), path, rtol, atol, result)


def _compare_values(got: np.ndarray, want: np.ndarray, path, rtol, atol, result: Comparison):
    if got.dtype.kind not in "biufc":
        result.problems.append(f"{path} has dtype {got.dtype}, expected numbers")
        return
    if want.dtype.kind in "biu":
        # counts, indices, flags: exact (a float holding the exact integer is fine)
        with np.errstate(all="ignore"):
            equal = got == want
        if not np.all(equal):
            bad = int(np.size(equal) - np.count_nonzero(equal))
            what = f"{bad} of {want.size} entries differ" if want.ndim else \
                f"{got.item()!r} instead of {want.item()!r}"
            result.problems.append(f"{path}: {what}")
        else:
            result.note_error(0.0)
        return
    want_finite = np.isfinite(want)
    got_finite = np.isfinite(got)
    if np.any(want_finite & ~got_finite):
        nan = bool(np.any(np.isnan(got)))
        result.problems.append(f"{path} contains {'NaN' if nan else 'inf'} where the expected "
                               f"values are finite")
        result.note_error(float("nan") if nan else float("inf"))
        return
    if np.any(~want_finite):
        # expected inf/nan entries (e.g. an infinite condition number) must match exactly
        same = np.array_equal(got[~want_finite], want[~want_finite], equal_nan=True)
        if not same:
            result.problems.append(f"{path}: expected {want[~want_finite].ravel()[:3]} where "
                                   f"the output has {got[~want_finite].ravel()[:3]}")
            return
        got, want = got[want_finite], want[want_finite]
    err = relative_error(got, want)
    result.note_error(err)
    with np.errstate(all="ignore"):
        diff = float(np.max(np.abs(got - want))) if want.size else 0.0
        scale = float(np.max(np.abs(want))) if want.size else 0.0
    rtol = resolve_rtol(rtol, want.dtype)
    if diff > atol + rtol * scale:
        tol = f"rtol {rtol:.0e}" + (f", atol {atol:.0e}" if atol else "")
        result.problems.append(f"{path}: max relative error {err:.2e} (tolerance {tol})")
