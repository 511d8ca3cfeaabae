"""The verdict on one case: compare, then explain a failure with hints.

Shared by the learner's check (the function runs in the learner's process)
and the grader (the function ran in a sandbox; only its outputs are here).
Either way the expected answer and the mistakes' outputs are computed here,
by the exercise's own code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from bncourse.exercises.compare import compare_outputs
from bncourse.exercises.core import Case, Exercise
from bncourse.exercises.hints import generic_hints

__all__ = ["CaseVerdict", "judge_output", "judge_error"]


@dataclass
class CaseVerdict:
    """Outcome of one case: passed or not, why not, the relative error, and hints."""

    case: Case
    passed: bool
    problems: list = field(default_factory=list)
    max_rel_err: float | None = None
    hints: list = field(default_factory=list)


def judge_error(case: Case, message: str) -> CaseVerdict:
    """The function raised (or returned something that cannot be compared)."""
    return CaseVerdict(case=case, passed=False, problems=[message])


def judge_output(ex: Exercise, case: Case, got, want, modified=()) -> CaseVerdict:
    """Compare ``got`` with ``want`` for ``case``; on failure collect hints.

    ``modified`` names the input arrays the function changed in place (a
    failure for a ``pure`` exercise).
    """
    if ex.compare is not None:
        problems = list(ex.compare(got, want, case))
        max_rel_err = None
    else:
        comparison = compare_outputs(got, want, rtol=ex.rtol, atol=ex.atol,
                                     check_dtype=ex.check_dtype, names=ex.outputs)
        problems, max_rel_err = comparison.problems, comparison.max_rel_err
    if ex.pure and modified:
        problems.append(f"modifies its input {', '.join(modified)} in place (work on a copy, "
                        f"e.g. x = x - mean instead of x -= mean)")
    if not problems:
        return CaseVerdict(case=case, passed=True, max_rel_err=max_rel_err)
    return CaseVerdict(case=case, passed=False, problems=problems, max_rel_err=max_rel_err,
                       hints=_hints(ex, case, got, want))


def _hints(ex: Exercise, case: Case, got, want) -> list[str]:
    hints = []
    for mistake in ex.mistakes:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")      # e.g. the 0 / 0 of a mistake
                wrong = case.call(mistake.fn)
        except Exception:           # a mistake that cannot even run on this case
            continue
        same = compare_outputs(got, wrong, rtol=ex.rtol, atol=ex.atol,
                               check_dtype=False, names=ex.outputs)
        if same.ok:
            hints.append(mistake.hint)
    if not hints:
        hints = generic_hints(got, want, names=ex.outputs)
    return hints
