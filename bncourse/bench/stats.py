"""Timing statistics for fair comparisons on a shared, noisy machine (used by ``bncourse.bench``).

A comparison times its sides interleaved (``bncourse.bench.timing``); the helpers
here summarize the per-round durations and decide, with a noise margin,
whether one side was slower.

Public API
----------
``ratio_summary(num, den) -> dict``
    The paired ratio ``median_r(num[r] / den[r])`` with the quartiles of the
    per-round ratios, the ratio of the medians and the ratio of the minima.
``classify_ratio(summary, margin=0.05) -> str``
    ``"slower"``, ``"faster"``, ``"same"`` or ``"unclear"``.
``torch_threads(n)``
    Context manager: run a block on ``n`` torch threads, then restore.
``timing_summary(times) -> dict``
    Median, minimum and quartiles of one side's durations.
``check_repeats(func, repeats) -> int``
    Validate a number of rounds (an int >= 1).

Examples
--------
>>> import numpy as np
>>> summary = ratio_summary(np.array([2.0, 2.2, 9.0]), np.array([1.0, 1.0, 1.0]))
>>> round(summary["ratio"], 2), classify_ratio(summary)
(2.2, 'slower')
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from bncourse._checks import fail

__all__ = ["ratio_summary", "classify_ratio", "torch_threads", "timing_summary",
           "check_repeats"]


def timing_summary(times) -> dict:
    """Median, minimum and quartiles (seconds) of one side's per-round durations."""
    t = np.asarray(times, dtype=np.float64)
    q25, q50, q75 = np.percentile(t, [25, 50, 75])
    return {"median_s": float(q50), "min_s": float(t.min()), "q25_s": float(q25),
            "q75_s": float(q75), "rounds": int(t.size)}


def ratio_summary(num, den) -> dict:
    """Compare two sides timed in the same rounds: ``num / den`` three ways.

    Args:
        num, den: per-round durations in seconds, shape ``(R,)``, round ``r``
            of one timed next to round ``r`` of the other.

    Returns:
        ``{"ratio", "per_round": [q25, q50, q75], "of_medians", "of_mins"}``:
        the paired ratio ``median_r(num[r] / den[r])`` (the judged figure),
        the quartiles of the per-round ratios, the ratio of the medians and
        the ratio of the minima.

    Raises:
        ValueError: the two have different lengths, are empty, or hold a
            non-positive or non-finite duration.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape or num.size == 0:
        fail("ratio_summary", "num, den", "two non-empty 1-D arrays of the same length",
              f"shapes {num.shape} and {den.shape}")
    if not (np.all(np.isfinite(num)) and np.all(np.isfinite(den))
            and np.all(num > 0) and np.all(den > 0)):
        fail("ratio_summary", "num, den", "positive finite durations",
              f"min {min(num.min(), den.min())!r}")
    quartiles = [float(q) for q in np.percentile(num / den, [25, 50, 75])]
    return {"ratio": quartiles[1], "per_round": quartiles,
            "of_medians": float(np.median(num) / np.median(den)),
            "of_mins": float(num.min() / den.min())}


def classify_ratio(summary: dict, margin: float = 0.05) -> str:
    """Say whether the numerator of a ratio was slower, faster or as fast, beyond noise.

    ``"slower"`` when the numerator was slower by more than ``margin`` in at
    least three rounds out of four (the first quartile of the per-round ratios
    exceeds ``1 + margin``), ``"faster"`` when the third quartile is below
    ``1 - margin``, ``"same"`` when the median per-round ratio lies within
    ``1 +- margin`` (and neither of the above holds), ``"unclear"`` otherwise.

    >>> classify_ratio({"per_round": [1.3, 1.4, 1.5]})
    'slower'
    >>> classify_ratio({"per_round": [0.97, 1.01, 1.04]})
    'same'
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        fail("classify_ratio", "margin", "a float in [0, 1)", repr(margin), TypeError)
    if not 0 <= margin < 1:
        fail("classify_ratio", "margin", "a float in [0, 1)", repr(margin))
    q25, q50, q75 = summary["per_round"]
    if q25 > 1 + margin:
        return "slower"
    if q75 < 1 - margin:
        return "faster"
    if 1 - margin <= q50 <= 1 + margin:
        return "same"
    return "unclear"


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_repeats(func: str, repeats) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        fail(func, "repeats", "an int >= 1", repr(repeats),
              TypeError if not isinstance(repeats, int) or isinstance(repeats, bool)
              else ValueError)
    return repeats
