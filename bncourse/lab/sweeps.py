"""Several seeds, grids of settings, and verdicts computed from the spread.

A difference between two training runs can be noise. The helpers here run
the same experiment over several seeds, summarize a quantity by its mean and a
95% t-interval over seeds, and turn an effect and an explicit threshold into
one of the ledger's verdicts, so the text of a chapter never has to be typed
after looking at the numbers.

Shape letters: S seeds, T points along a curve (evaluation steps, grid values).

Public API
----------
``stack(histories, name) -> ndarray (S, ...)``
    A ``History`` field (``"test_accuracy"``) or probe record (``"p"``) from
    every run, stacked along a new first axis.
``mean_ci(values, axis=0, confidence=0.95) -> Interval``
    Mean and t-interval ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)`` (``s`` the
    sample std, ddof=1) along ``axis``; NaN entries are left out per
    position. Works elementwise for curves ``(S, T)``.
``Interval``
    Dataclass ``mean, low, high, n, confidence`` (arrays or floats), with
    ``half_width``.
``verdict(effect, threshold, confidence=0.95, alternative="greater") -> str``
    One of ``"supported"``, ``"partly supported"``, ``"not supported"`` for a
    claimed effect (per-seed values or an ``Interval``):

    - supported: the interval excludes 0 in the claimed direction and the
      mean effect reaches ``threshold``;
    - partly supported: the interval excludes 0 but the mean is below
      ``threshold`` (real but small);
    - not supported: the interval includes 0 or lies on the other side.
``combine_verdicts(verdicts) -> str``
    Several settings of one claim: all the same -> that verdict; both
    "supported" and "not supported" present -> ``"depends"``; otherwise
    ``"partly supported"``.
``VERDICTS``
    The four labels.
``interval_span(ci, digits=2, scale=100) -> str``
    ``"(95% interval +0.10 to +2.30)"``: an interval in percentage points.
``interval_phrase(ci, digits=2, scale=100) -> str``
    ``"+1.20 percentage points (95% interval +0.10 to +2.30)"``: a mean
    difference with its interval, the form the chapters print and glue.

Examples
--------
>>> import numpy as np
>>> from bncourse.lab.sweeps import mean_ci, verdict, combine_verdicts
>>> results = [float(np.random.default_rng(seed).normal(1.0, 0.1)) for seed in range(5)]
>>> ci = mean_ci(results)
>>> bool(ci.low < ci.mean < ci.high), ci.n
(True, 5)
>>> verdict([0.05, 0.06, 0.04, 0.05], threshold=0.02)    # BN minus no-BN, per seed
'supported'
>>> verdict([0.05, -0.06, 0.04, -0.05], threshold=0.02)
'not supported'
>>> combine_verdicts(["supported", "not supported"])
'depends'
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Iterable

import numpy as np
from scipy import stats

from bncourse._checks import fail

__all__ = ["stack", "mean_ci", "Interval", "verdict", "combine_verdicts", "VERDICTS",
           "interval_span", "interval_phrase"]

VERDICTS = ("supported", "partly supported", "not supported", "depends")


def stack(histories, name: str) -> np.ndarray:
    """Stack a ``History`` attribute or a probe record over runs: shape ``(S, ...)``.

    >>> # stack(histories, "test_accuracy").shape == (len(histories), len(histories[0].steps))
    """
    histories = list(histories)
    if not histories:
        fail("stack", "histories", "a non-empty sequence of History", "an empty one")
    first = histories[0]
    if name in getattr(first, "records", {}):
        return np.stack([np.asarray(h.records[name], dtype=np.float64) for h in histories])
    if not hasattr(first, name):
        fields = [f.name for f in dataclasses.fields(first)] if dataclasses.is_dataclass(first) \
            else []
        fail("stack", "name", f"a History field or record name ({fields} or "
              f"{list(getattr(first, 'records', {}))})", repr(name))
    return np.stack([np.asarray(getattr(h, name), dtype=np.float64) for h in histories])


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean and two-sided confidence interval over seeds (floats, or arrays for curves)."""

    mean: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float
    n: np.ndarray | int
    confidence: float

    @property
    def half_width(self):
        """``(high - low) / 2``, the ``+-`` part."""
        return (np.asarray(self.high) - np.asarray(self.low)) / 2


def _check_confidence(func: str, confidence) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) \
            or not 0.0 < confidence < 1.0:
        fail(func, "confidence", "a float in (0, 1)", repr(confidence))
    return float(confidence)


def mean_ci(values, axis: int = 0, confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval along ``axis`` (the seeds).

    ``half = t_{(1+confidence)/2}(n - 1) * s / sqrt(n)`` with ``s`` the sample
    standard deviation (ddof=1) and ``n`` the number of finite values at that
    position (NaN values, e.g. from diverged runs, are left out). With fewer
    than 2 finite values the interval is NaN. Scalars come back as floats.

    Parameters
    ----------
    values : array-like, shape (S,) or (S, T, ...)
    axis : int
        The axis that indexes seeds.
    confidence : float in (0, 1)

    Examples
    --------
    >>> ci = mean_ci([1.0, 2.0, 3.0])
    >>> round(ci.mean, 3), round(ci.low, 3), round(ci.high, 3)
    (2.0, -0.484, 4.484)
    """
    confidence = _check_confidence("mean_ci", confidence)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or x.shape[axis] == 0:
        fail("mean_ci", "values", "an array with at least one value along axis "
              f"{axis}", f"shape {x.shape}")
    finite = np.isfinite(x)
    n = finite.sum(axis=axis)
    x0 = np.where(finite, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x0.sum(axis=axis) / n
        dev = np.where(finite, x - np.expand_dims(mean, axis), 0.0)
        sd = np.sqrt((dev ** 2).sum(axis=axis) / (n - 1))
        t = stats.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1))
        half = np.where(n >= 2, t * sd / np.sqrt(n), np.nan)
    mean = np.where(n >= 1, mean, np.nan)
    low, high = mean - half, mean + half
    if np.ndim(mean) == 0:
        return Interval(float(mean), float(low), float(high), int(n), confidence)
    return Interval(mean, low, high, n, confidence)


def verdict(effect, threshold: float, confidence: float = 0.95,
            alternative: str = "greater") -> str:
    """Turn a measured effect into "supported" / "partly supported" / "not supported".

    The claim is "the effect is positive and at least ``threshold``"
    (``alternative="greater"``) or "negative and at most ``-threshold``"
    (``alternative="less"``, e.g. a loss or an error that should shrink).

    Parameters
    ----------
    effect : sequence of per-seed effects, or an ``Interval``
        E.g. final accuracy with BN minus without BN, paired by seed.
    threshold : float >= 0
        The smallest effect that counts as meaningful, in the effect's units,
        fixed *before* looking at the result.
    confidence : float
        Used when ``effect`` is a sequence (t-interval over seeds).
    alternative : {"greater", "less"}

    Returns
    -------
    "supported" if the interval excludes 0 in the claimed direction and the mean
    reaches the threshold; "partly supported" if the interval excludes 0 but
    the mean falls short of the threshold; otherwise "not supported".

    Examples
    --------
    >>> verdict([0.010, 0.012, 0.011], threshold=0.05)   # real, but smaller than claimed
    'partly supported'
    >>> verdict([-0.3, -0.2, -0.25], threshold=0.1, alternative="less")
    'supported'
    """
    func = "verdict"
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
            or not np.isfinite(threshold) or threshold < 0:
        fail(func, "threshold", "a finite float >= 0", repr(threshold))
    if alternative not in ("greater", "less"):
        fail(func, "alternative", "'greater' or 'less'", repr(alternative))
    ci = effect if isinstance(effect, Interval) else mean_ci(effect, confidence=confidence)
    if np.ndim(ci.mean) != 0:
        fail(func, "effect", "one value per seed (1-D) or a scalar Interval",
              f"shape {np.shape(ci.mean)}")
    sign = 1.0 if alternative == "greater" else -1.0
    mean = sign * float(ci.mean)
    low = min(sign * float(ci.low), sign * float(ci.high))
    if not np.isfinite(low) or low <= 0:
        return "not supported"
    return "supported" if mean >= threshold else "partly supported"


def combine_verdicts(verdicts: Iterable[str]) -> str:
    """Combine the verdicts of one claim tested in several settings.

    >>> combine_verdicts(["supported", "supported"])
    'supported'
    >>> combine_verdicts(["supported", "partly supported"])
    'partly supported'
    """
    verdicts = list(verdicts)
    for v in verdicts:
        if v not in VERDICTS:
            fail("combine_verdicts", "verdicts", f"labels from {VERDICTS}", repr(v))
    if not verdicts:
        fail("combine_verdicts", "verdicts", "a non-empty sequence", "an empty one")
    kinds = set(verdicts)
    if len(kinds) == 1:
        return verdicts[0]
    if "depends" in kinds or {"supported", "not supported"} <= kinds:
        return "depends"
    return "partly supported"


def _check_interval(func: str, ci) -> Interval:
    if not isinstance(ci, Interval) or np.ndim(ci.mean) != 0:
        fail(func, "ci", "a scalar Interval from mean_ci", type(ci).__name__, TypeError)
    return ci


def interval_span(ci: Interval, digits: int = 2, scale: float = 100.0) -> str:
    """``"(95% interval +a to +b)"``, the interval of ``ci`` times ``scale``, signed.

    >>> interval_span(mean_ci([0.01, 0.02, 0.03]))
    '(95% interval -0.48 to +4.48)'
    """
    ci = _check_interval("interval_span", ci)
    return (f"({100 * ci.confidence:.0f}% interval {scale * ci.low:+.{digits}f} to "
            f"{scale * ci.high:+.{digits}f})")


def interval_phrase(ci: Interval, digits: int = 2, scale: float = 100.0,
                    unit: str = "percentage points") -> str:
    """A mean difference with its interval: ``"+2.00 percentage points (95% interval ...)"``.

    ``scale=100`` turns a difference of fractions (accuracies) into
    percentage points.

    >>> interval_phrase(mean_ci([0.01, 0.02, 0.03]), digits=1)
    '+2.0 percentage points (95% interval -0.5 to +4.5)'
    """
    ci = _check_interval("interval_phrase", ci)
    return f"{scale * ci.mean:+.{digits}f} {unit} {interval_span(ci, digits, scale)}"
