"""The ledger's verdicts: decide a claimed effect from paired per-seed effects.

A claim of the notes ("BN allows larger learning rates") becomes an *effect*
measured once per seed, paired (the same seed, the same data split, with and
without BN), and a *threshold*: the smallest effect that counts, fixed in the
claims registry (:mod:`bncourse.study.claims`) before any result is seen.
:func:`decide` turns the ``n`` effects into one of :data:`LABELS`:

``"supported"``
    the confidence interval excludes 0 in the claimed direction and the mean
    effect reaches ``threshold``;
``"partly supported"``
    the interval excludes 0 in the claimed direction, the mean falls short;
``"contradicted"``
    the interval excludes 0 in the opposite direction;
``"no meaningful effect"``
    equivalence is shown by two one-sided tests (TOST): the effect lies
    within ``(-threshold, threshold)``;
``"inconclusive"``
    none of these: the data cannot tell.

The first label that holds is the verdict. "Inconclusive" and "no meaningful
effect" are different answers: the first says that more seeds are needed, the
second that an effect of the claimed size has been ruled out.

Statistics
----------
Write ``d_i = s * effect_i`` with ``s = +1`` for ``alternative="greater"`` and
``s = -1`` for ``"less"``, so the claim says ``d > 0``. With ``n`` seeds,
mean ``m`` and sample standard deviation ``sd`` (ddof=1):

- interval: Student's t, ``m +- t_{(1+c)/2}(n-1) * sd / sqrt(n)`` (scipy's
  ``ttest_1samp(...).confidence_interval``), and the two-sided p-value of
  ``d = 0`` from the same test; the interval excludes 0 exactly when
  ``p < 1 - c``;
- equivalence: statsmodels' ``DescrStatsW(effects).ttost_mean(-threshold,
  threshold)`` (the one-sample form of ``ttost_paired``), shown when its
  p-value is below ``1 - c``;
- minimum detectable effect: ``mde = d80(n) * sd``, where ``d80(n)`` is the
  standardized effect that a two-sided one-sample t-test at level ``1 - c``
  detects with 80% power (statsmodels' ``TTestPower().solve_power``). With 3
  seeds ``d80 = 3.26`` standard deviations, with 20 seeds 0.66: a threshold
  below ``mde`` cannot be expected to be seen, and :func:`describe` says so.

Zero variance (every effect equal, as happens when an effect is read off a grid
of settings or counts whole test examples) would make the t-interval zero wide
and the t-test claim certainty. :func:`decide` never does that. The direction
is then decided by the exact sign test (scipy's ``binomtest`` on the signs,
which holds whatever the spread: all ``n`` seeds agree, two-sided ``p =
2 * 0.5**n``, so at least 6 seeds are needed at 95%), and the interval is the
*resolution* interval ``[m - r/2, m + r/2]``: ``r`` is the step of the
measurement (a grid step, ``1 / n_test`` for an accuracy), which the caller
states with ``resolution=``; without it a zero-variance sample is an error.
Equivalence then needs the resolution interval inside the bounds and the
sign test's ``n``. The mde of such a sample is ``r`` when the sign test can
reach significance with ``n`` seeds and infinite otherwise.

:func:`combine` decides a claim tested in several settings. Each setting's
direction test is corrected for multiplicity with Holm's method (statsmodels'
``multipletests(method="holm")``), and so are the equivalence tests:

- corrected settings that disagree in direction: ``"depends"``;
- every setting shown in the claimed direction and reaching the threshold:
  ``"supported"``; some shown in the claimed direction (and none in the
  other): ``"partly supported"``;
- some shown in the opposite direction (and none in the claimed one):
  ``"contradicted"``;
- no direction shown, every setting equivalent: ``"no meaningful effect"``;
  otherwise ``"inconclusive"``.

Public API
----------
``decide(effects, threshold, alternative="greater", confidence=0.95, *, resolution=None)``
    -> :class:`Verdict`.
``combine(verdicts) -> str``
    one of :data:`LABELS` or ``"depends"``.
``describe(verdict, scale=100.0, unit="percentage points", digits=2) -> str``
    the mean difference with its interval in words, for the book.
``LABELS``, ``COMBINED_LABELS``

Examples
--------
>>> v = decide([0.05, 0.06, 0.04, 0.05], threshold=0.02)   # BN minus no BN, per seed
>>> v.label, v.n
('supported', 4)
>>> decide([0.001, -0.002, 0.0015, -0.001, 0.0005, 0.0], threshold=0.02).label
'no meaningful effect'
>>> decide([0.05, -0.06, 0.04, -0.05], threshold=0.02).label
'inconclusive'
>>> combine([v, decide([-0.05, -0.06, -0.04, -0.05], threshold=0.02)])
'depends'
>>> describe(v)
'+5.00 percentage points (95% interval +3.70 to +6.30, 4 seeds)'
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

from bncourse._checks import fail

__all__ = ["decide", "combine", "describe", "Verdict", "LABELS", "COMBINED_LABELS"]

LABELS = ("supported", "partly supported", "contradicted", "no meaningful effect",
          "inconclusive")
COMBINED_LABELS = LABELS + ("depends",)
_ALTERNATIVES = ("greater", "less")
_POWER = 0.8


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The verdict on one claimed effect, with the numbers behind it.

    Attributes
    ----------
    label : str
        One of :data:`LABELS`.
    mean, low, high : float
        Mean effect and its confidence interval, in the effect's own units and
        sign (not flipped for ``alternative="less"``).
    n : int
        Number of seeds (paired effects).
    mde : float
        Smallest true effect (same units) that ``n`` seeds detect with 80%
        power; ``inf`` when no effect could be detected.
    threshold, alternative, confidence : as passed to :func:`decide`.
    p_value : float
        Two-sided p-value of "the effect is 0" (t-test, or sign test).
    p_equivalence : float
        p-value of the TOST equivalence test (1.0 when it cannot be shown).
    method : str
        ``"t"`` (Student's t) or ``"sign"`` (zero variance: exact sign test
        with the stated resolution).
    resolution : float or None
        The measurement step passed to :func:`decide`.
    """

    label: str
    mean: float
    low: float
    high: float
    n: int
    mde: float
    threshold: float
    alternative: str
    confidence: float
    p_value: float
    p_equivalence: float
    method: str
    resolution: float | None = None

    @property
    def sign(self) -> float:
        """``+1`` when the claim is an increase (``"greater"``), ``-1`` for a decrease."""
        return 1.0 if self.alternative == "greater" else -1.0

    @property
    def direction(self) -> int:
        """``+1`` interval beyond 0 in the claimed direction, ``-1`` opposite, ``0`` neither."""
        low, high = sorted((self.sign * self.low, self.sign * self.high))
        return 1 if low > 0 else -1 if high < 0 else 0

    @property
    def underpowered(self) -> bool:
        """True when ``threshold < mde``: an effect the threshold's size would likely be missed."""
        return self.threshold < self.mde

    def __str__(self) -> str:
        return self.label


def _check_real(func: str, arg: str, value, *, positive: bool, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(func, arg, "a real number", f"{type(value).__name__} {value!r}", TypeError)
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        fail(func, arg, "a finite number > 0" if positive else "a finite number", repr(value))
    return value


def _check_effects(func: str, effects) -> np.ndarray:
    if isinstance(effects, (str, bytes, dict)) or np.ndim(effects) == 0 \
            and not hasattr(effects, "__len__"):
        fail(func, "effects", "a 1-D sequence of per-seed effects",
              type(effects).__name__, TypeError)
    try:
        x = np.asarray(effects, dtype=np.float64)
    except (TypeError, ValueError):
        fail(func, "effects", "a 1-D sequence of real numbers", repr(effects)[:80], TypeError)
    if x.ndim != 1:
        fail(func, "effects", "1-D (one effect per seed)", f"shape {x.shape}")
    if x.size < 2:
        fail(func, "effects", "at least 2 paired effects (seeds)", f"{x.size}")
    if not np.all(np.isfinite(x)):
        fail(func, "effects", "finite numbers (a diverged run is a result to count, "
              "not a NaN effect)", f"{int(np.sum(~np.isfinite(x)))} non-finite value(s)")
    return x


def _t_statistics(d: np.ndarray, threshold: float, confidence: float):
    """Interval, p-value, TOST p-value and mde on the claimed-direction scale ``d``."""
    n = d.size
    test = stats.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(confidence)
    p_eq = float(DescrStatsW(d).ttost_mean(-threshold, threshold)[0])
    d80 = TTestPower().solve_power(nobs=n, alpha=1 - confidence, power=_POWER,
                                   alternative="two-sided")
    return float(ci.low), float(ci.high), float(test.pvalue), p_eq, \
        float(d80) * float(np.std(d, ddof=1))


def _sign_statistics(d: np.ndarray, threshold: float, confidence: float, resolution: float):
    """Zero variance: exact sign test for the direction, the resolution interval."""
    n, m, alpha = d.size, float(d[0]), 1 - confidence
    p = 1.0 if m == 0 else float(stats.binomtest(n, n, 0.5).pvalue)
    low, high = m - resolution / 2, m + resolution / 2
    p_all_inside = float(stats.binomtest(n, n, 0.5, alternative="greater").pvalue)
    inside = -threshold < low and high < threshold
    p_eq = p_all_inside if inside else 1.0
    mde = resolution if float(stats.binomtest(n, n, 0.5).pvalue) < alpha else math.inf
    return low, high, p, p_eq, mde


def decide(effects, threshold, alternative: str = "greater", confidence: float = 0.95, *,
           resolution=None) -> Verdict:
    """The verdict on a claimed effect from paired per-seed effects.

    Parameters
    ----------
    effects : sequence of float, shape (n,), n >= 2
        One effect per seed, paired (e.g. test accuracy with BN minus without,
        same seed).
    threshold : float > 0
        The smallest effect that counts, in the effect's units, fixed before the
        data are seen.
    alternative : {"greater", "less"}
        The claimed direction: the effect is positive, or negative (a loss or a
        number of steps that should shrink).
    confidence : float in (0, 1)
        Level of the interval; the tests run at ``alpha = 1 - confidence``.
    resolution : float > 0, optional
        The step of the measurement (a grid step, ``1 / n_test`` for an
        accuracy). Needed when every effect is equal; see the module docstring.

    Returns
    -------
    Verdict
        ``label`` is the first of :data:`LABELS` that holds.

    Raises
    ------
    ValueError, TypeError
        Fewer than 2 effects, non-finite effects, a threshold that is not a
        positive number, an unknown alternative, a confidence outside (0, 1),
        or equal effects without a ``resolution``.

    Examples
    --------
    >>> decide([0.010, 0.012, 0.011], threshold=0.05).label   # real, but smaller than claimed
    'partly supported'
    >>> decide([-0.3, -0.2, -0.25], threshold=0.1, alternative="less").label
    'supported'
    >>> decide([0.25] * 8, threshold=0.5, resolution=0.25).label   # quantized: sign test
    'partly supported'
    """
    func = "decide"
    x = _check_effects(func, effects)
    threshold = _check_real(func, "threshold", threshold, positive=True)
    if alternative not in _ALTERNATIVES:
        fail(func, "alternative", "'greater' or 'less'", repr(alternative))
    confidence = _check_real(func, "confidence", confidence, positive=True)
    if not 0.0 < confidence < 1.0:
        fail(func, "confidence", "a number in (0, 1)", repr(confidence))
    resolution = _check_real(func, "resolution", resolution, positive=True, allow_none=True)
    sign = 1.0 if alternative == "greater" else -1.0
    d = sign * x
    if np.all(d == d[0]):
        if resolution is None:
            fail(func, "resolution", "the step of the measurement (> 0) when every effect is "
                  "equal (zero variance: a t-interval would have zero width)",
                  f"None with all {x.size} effects = {x[0]!r}")
        method = "sign"
        low, high, p, p_eq, mde = _sign_statistics(d, threshold, confidence, resolution)
    else:
        method = "t"
        low, high, p, p_eq, mde = _t_statistics(d, threshold, confidence)
    mean = float(np.mean(d))
    alpha = 1 - confidence
    shown = p < alpha
    if shown and low > 0:
        label = "supported" if mean >= threshold else "partly supported"
    elif shown and high < 0:
        label = "contradicted"
    elif p_eq < alpha:
        label = "no meaningful effect"
    else:
        label = "inconclusive"
    low, high = sorted((sign * low, sign * high))
    return Verdict(label=label, mean=sign * mean, low=low, high=high, n=int(x.size), mde=mde,
                   threshold=threshold, alternative=alternative, confidence=confidence,
                   p_value=p, p_equivalence=p_eq, method=method, resolution=resolution)


def combine(verdicts: Sequence[Verdict]) -> str:
    """The verdict of one claim over several settings, Holm-corrected.

    The direction tests (``Verdict.p_value``) of the settings are corrected
    together with Holm's method at ``alpha = 1 - confidence``, and so are the
    equivalence tests; the rules are in the module docstring. One setting gives
    its own label back.

    Parameters
    ----------
    verdicts : sequence of Verdict
        One per setting, all at the same confidence.

    Returns
    -------
    str
        One of :data:`COMBINED_LABELS`.

    Examples
    --------
    >>> a = decide([0.05, 0.06, 0.04, 0.05], threshold=0.02)
    >>> b = decide([0.011, 0.012, 0.010, 0.011], threshold=0.02)
    >>> combine([a, a]), combine([a, b])
    ('supported', 'partly supported')
    """
    func = "combine"
    if isinstance(verdicts, Verdict) or not isinstance(verdicts, (list, tuple)):
        fail(func, "verdicts", "a list or tuple of Verdict (from decide)",
              type(verdicts).__name__, TypeError)
    if not verdicts:
        fail(func, "verdicts", "a non-empty list of Verdict", "an empty one")
    for i, v in enumerate(verdicts):
        if not isinstance(v, Verdict):
            fail(func, f"verdicts[{i}]", "a Verdict (from decide)", type(v).__name__, TypeError)
    levels = {v.confidence for v in verdicts}
    if len(levels) != 1:
        fail(func, "verdicts", "verdicts at one confidence level", f"levels {sorted(levels)}")
    alpha = 1 - levels.pop()
    shown = multipletests([v.p_value for v in verdicts], alpha=alpha, method="holm")[0]
    equivalent = multipletests([v.p_equivalence for v in verdicts], alpha=alpha,
                               method="holm")[0]
    directions = [v.direction if s else 0 for v, s in zip(verdicts, shown)]
    if 1 in directions and -1 in directions:
        return "depends"
    if 1 in directions:
        reached = [v.sign * v.mean >= v.threshold for v in verdicts]
        return "supported" if all(d == 1 for d in directions) and all(reached) \
            else "partly supported"
    if -1 in directions:
        return "contradicted"
    return "no meaningful effect" if all(equivalent) else "inconclusive"


def describe(verdict: Verdict, scale: float = 100.0, unit: str = "percentage points",
             digits: int = 2) -> str:
    """The mean effect with its interval in words, e.g. for a glued sentence.

    ``scale`` multiplies the numbers (100 turns accuracy fractions into
    percentage points); ``unit`` names what they are then. When the threshold
    is below the minimum detectable effect the sentence says so, since a
    verdict other than "supported" then says little about an effect of the
    threshold's size.

    >>> v = decide([0.02, -0.01, 0.03], threshold=0.01)
    >>> describe(v)   # doctest: +NORMALIZE_WHITESPACE
    '+1.33 percentage points (95% interval -3.84 to +6.50, 3 seeds; the threshold 1.00 is
    below the smallest effect 3 seeds detect with 80% power, 6.79)'
    """
    if not isinstance(verdict, Verdict):
        fail("describe", "verdict", "a Verdict (from decide)", type(verdict).__name__,
              TypeError)
    scale = _check_real("describe", "scale", scale, positive=True)
    if not isinstance(digits, numbers.Integral) or isinstance(digits, bool) or digits < 0:
        fail("describe", "digits", "an int >= 0", repr(digits))
    f = f"{{:+.{digits}f}}"
    level = f"{100 * verdict.confidence:g}%"
    text = (f"{f.format(scale * verdict.mean)} {unit} ({level} interval "
            f"{f.format(scale * verdict.low)} to {f.format(scale * verdict.high)}, "
            f"{verdict.n} seeds")
    if verdict.method == "sign":
        text += f", all equal: sign test, resolution {scale * verdict.resolution:.{digits}f}"
    if verdict.underpowered:
        if math.isinf(verdict.mde):
            text += f"; {verdict.n} equal effects cannot show any effect with a sign test"
        else:
            text += (f"; the threshold {scale * verdict.threshold:.{digits}f} is below the "
                     f"smallest effect {verdict.n} seeds detect with 80% power, "
                     f"{scale * verdict.mde:.{digits}f}")
    return text + ")"
