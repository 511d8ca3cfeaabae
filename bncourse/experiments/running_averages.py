"""Running averages at inference: the decision on claim 9 from chapter 3's measurements.

Claim 9 of the notes: "at inference the statistics come from exponentially
weighted averages". Chapter 3 measures three things that decide it:

- whether torch's default buffers *are* EWAs (their replay matches
  ``nn.BatchNorm1d`` to round-off);
- whether torch offers another rule (``momentum=None``, the cumulative
  average) that reproduces the population statistics;
- whether statistics recomputed after training ("precise BN") are measurably
  better than the running buffers in some setting (verdicts of the gain).

``claim9_verdict(default_is_ewa, cumulative_available, gain_verdicts) -> str``
"""

from __future__ import annotations

from bncourse._checks import fail

__all__ = ["claim9_verdict"]

_LABELS = ("supported", "partly supported", "not supported")


def claim9_verdict(default_is_ewa: bool, cumulative_available: bool, gain_verdicts) -> str:
    """The ledger's verdict on claim 9.

    - "not supported" when the default buffers are not EWAs;
    - "partly supported" when they are, but torch also offers the cumulative
      average or recomputed statistics beat the buffers in some setting (any
      gain verdict other than "not supported");
    - "supported" otherwise: EWAs, and nothing measurably better.

    >>> claim9_verdict(True, False, ["not supported", "not supported"])
    'supported'
    >>> claim9_verdict(True, False, ["not supported", "partly supported"])
    'partly supported'
    """
    func = "claim9_verdict"
    for arg, value in (("default_is_ewa", default_is_ewa),
                       ("cumulative_available", cumulative_available)):
        if not isinstance(value, bool):
            fail(func, arg, "a bool", f"{type(value).__name__} {value!r}", TypeError)
    gain_verdicts = list(gain_verdicts)
    bad = [v for v in gain_verdicts if v not in _LABELS]
    if not gain_verdicts or bad:
        fail(func, "gain_verdicts", f"a non-empty list of verdicts from {_LABELS}",
             repr(gain_verdicts))
    if not default_is_ewa:
        return "not supported"
    precise_helps = any(v != "not supported" for v in gain_verdicts)
    if cumulative_available or precise_helps:
        return "partly supported"
    return "supported"
