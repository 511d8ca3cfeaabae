"""Hints for common mistakes: ready-made texts, and diagnoses that need no exercise knowledge.

Exercise modules pair the texts with implementations of the mistake
(:class:`bncourse.exercises.Mistake`); a hint is shown when the learner's
output matches the mistaken implementation's output. :func:`generic_hints`
looks only at the output and the expected one: transposed or reshaped
arrays, a constant factor (including the ``sqrt((m - 1) / m)`` of an
unbiased variance), a constant shift, a flipped sign, a changed dtype.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises.compare import leaf_pairs

__all__ = [
    "UNBIASED_VARIANCE", "BIASED_RUNNING_VARIANCE", "WRONG_AXES", "MOMENTUM_CONVENTION",
    "EPS_OUTSIDE_ROOT", "MISSING_PARENTHESES", "KEEP_DTYPE", "generic_hints",
]

UNBIASED_VARIANCE = (
    "normalize with the biased variance, which divides by m (np.var's default, ddof=0); "
    "the unbiased one (ddof=1, torch.var's default) divides by m - 1.")
BIASED_RUNNING_VARIANCE = (
    "torch stores the unbiased variance in running_var: multiply the batch's biased "
    "variance by m / (m - 1) before the update.")
WRONG_AXES = (
    "take the statistics over every axis except the channel axis 1: axis=0 for (N, C), "
    "axis=(0, 2) for (N, C, L), axis=(0, 2, 3) for (N, C, H, W).")
MOMENTUM_CONVENTION = (
    "torch's momentum is the weight of the NEW batch: running = (1 - momentum) * running "
    "+ momentum * batch_stat. The decay convention (0.9 on the old value) is the other way "
    "round.")
EPS_OUTSIDE_ROOT = (
    "eps belongs inside the square root: (x - mean) / np.sqrt(var + eps), not "
    "(x - mean) / (np.sqrt(var) + eps).")
MISSING_PARENTHESES = (
    "x - mean / np.sqrt(var + eps) divides only the mean; write (x - mean) / np.sqrt(var + eps).")
KEEP_DTYPE = (
    "keep the input's dtype: a float64 constant or np.float64 array mixed into float32 "
    "input turns the result into float64; use x.dtype (or .astype(x.dtype)).")

_TINY = 1e-9


def generic_hints(got, want, names=None) -> list[str]:
    """Hints read off the first mismatching output; an empty list when none applies."""
    hints = []
    for path, g, w in leaf_pairs(got, want, names=names):
        if not isinstance(w, np.ndarray) or w.ndim == 0 or not isinstance(g, np.ndarray):
            continue
        if g.shape != w.shape:
            hints += _shape_hints(path, g, w)
        else:
            if g.dtype != w.dtype and w.dtype.kind == "f":
                hints.append(f"{path}: {KEEP_DTYPE}")
            if g.dtype.kind in "biuf" and w.dtype.kind == "f":
                hints += _value_hints(path, g.astype(np.float64), w.astype(np.float64))
        if hints:
            break
    return hints


def _shape_hints(path, g, w) -> list[str]:
    if g.ndim == w.ndim >= 2 and g.shape == w.shape[::-1]:
        return [f"{path} looks transposed (shape {g.shape} instead of {w.shape}): check the "
                f"axis you reduce over and the order of matrix products."]
    if g.size == w.size:
        return [f"{path} has the right number of values in the wrong shape: check axes "
                f"and keepdims."]
    if tuple(s for s in g.shape if s != 1) == tuple(s for s in w.shape if s != 1):
        return [f"{path} has extra or missing axes of length 1: check keepdims or reshape."]
    if g.ndim == w.ndim and sum(a != b for a, b in zip(g.shape, w.shape)) == 1:
        axis = next(i for i, (a, b) in enumerate(zip(g.shape, w.shape)) if a != b)
        return [f"{path} has {g.shape[axis]} entries along axis {axis} instead of "
                f"{w.shape[axis]}: an off-by-one count, or statistics over the wrong axis?"]
    return []


def _value_hints(path, g, w) -> list[str]:
    if not np.all(np.isfinite(g)):
        if np.any(np.isnan(g)):
            return [f"{path} contains NaN: a division by zero (a constant feature or channel "
                    f"has zero variance) or the square root of a negative number?"]
        return [f"{path} contains inf: a division by zero or an overflow?"]
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    if scale == 0.0 or w.size < 2:
        return []
    ww = float(np.sum(w * w))
    c = float(np.sum(g * w)) / ww if ww > 0 else 0.0
    if c != 0.0 and abs(c - 1.0) > 1e-6 and float(np.max(np.abs(g - c * w))) <= 1e-6 * scale:
        return [_factor_hint(path, c)]
    shift = g - w
    mean_shift = float(np.mean(shift))
    if abs(mean_shift) > 1e-6 * scale and float(np.max(np.abs(shift - mean_shift))) \
            <= 1e-6 * scale:
        return [f"{path} is the expected value shifted by a constant ({mean_shift:.4g}): "
                f"a mean that was not subtracted, or subtracted twice?"]
    return []


def _factor_hint(path: str, c: float) -> str:
    if abs(c + 1.0) <= 1e-6:
        return f"{path} has the right size and the wrong sign."
    text = f"{path} is {c:.6g} times the expected value"
    # sqrt((m-1)/m), (m-1)/m, sqrt(m/(m-1)), m/(m-1): a variance with the wrong divisor
    for power, label in ((2.0, "sqrt"), (1.0, "")):
        r = abs(c) ** power
        if r < 1.0:
            m, form = 1.0 / (1.0 - r), "(m - 1) / m"
        else:
            m, form = r / (r - 1.0), "m / (m - 1)"
        if 2 <= round(m) <= 1e6 and abs(m - round(m)) < 1e-4 * m:
            ratio = f"{label}({form})" if label else form
            return (f"{text}, which is {ratio} with m = {round(m)}: the variance is divided "
                    f"by the wrong count (biased, 1/m, versus unbiased, 1/(m - 1)).")
    return text + ": a constant factor is missing or extra."
