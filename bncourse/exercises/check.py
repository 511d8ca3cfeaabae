"""The learner's check: run a function on an exercise's visible cases and say what is wrong.

>>> from bncourse.exercises import check
>>> result = check("ch01-standardize-train-test", standardize_train_test)  # doctest: +SKIP

``check`` prints a report (one line per case; for a failure the output that
differs, its max relative error and a hint) and returns a
:class:`CheckResult`. It never raises because an answer is wrong or the
function crashes: a stub that still raises ``NotImplementedError`` is
reported as "not attempted". Only an unknown exercise id raises.

It also reads the exercise cell's source (IPython keeps it in ``linecache``)
to warn about what would fail at grading time although it works in the
notebook: names defined in other cells, and imports the grader forbids.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dis
import linecache
import traceback
import types
from dataclasses import dataclass, field

import numpy as np

from bncourse.exercises._child import EncodeError, decode, encode
from bncourse.exercises.core import Exercise
from bncourse.exercises.judge import CaseVerdict, judge_error, judge_output
from bncourse.exercises.registry import get_exercise

__all__ = ["check", "CheckResult"]

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"


@dataclass
class CheckResult:
    """What :func:`check` found.

    Attributes
    ----------
    exercise_id : str
    status : str
        ``"passed"``, ``"failed"`` or ``"not attempted"``.
    verdicts : list of CaseVerdict
        One per case run (empty when not attempted).
    warnings : list of str
        Problems the grader would hit although the cases pass here.
    report : str
        The printed text (``print(result)`` shows it again).
    """

    exercise_id: str
    status: str
    verdicts: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    report: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def n_passed(self) -> int:
        return sum(v.passed for v in self.verdicts)

    def __str__(self) -> str:
        return self.report

    def __repr__(self) -> str:
        return (f"CheckResult({self.exercise_id!r}, status={self.status!r}, "
                f"passed={self.n_passed}/{len(self.verdicts)})")

    def _ipython_display_(self):
        # The report is already printed; showing the object again would repeat it.
        pass


def check(exercise_id, func) -> CheckResult:
    """Check ``func`` against the visible cases of exercise ``exercise_id``; print a report.

    Parameters
    ----------
    exercise_id : str or Exercise
        E.g. ``"ch01-standardize-train-test"`` (or the definition itself, to
        try out a new exercise before it is registered).
    func : callable
        The learner's function.

    Returns
    -------
    CheckResult

    Raises
    ------
    ValueError
        If ``exercise_id`` is not a known exercise.
    """
    ex = exercise_id if isinstance(exercise_id, Exercise) else get_exercise(exercise_id)
    head = f"{ex.id} ({ex.function})"
    if not callable(func):
        return _finish(ex, FAILED, [], [], [f"{head}: expected the function {ex.function}, "
                                            f"got {type(func).__name__}."])
    cases = ex.cases("visible")
    verdicts = []
    for i, case in enumerate(cases):
        want = ex.expected_output(case)
        try:
            got, modified = _call(func, case)
        except NotImplementedError as exc:
            if i == 0:
                return _finish(ex, NOT_ATTEMPTED, [], [], [
                    f"{head}: not attempted yet. Replace `raise NotImplementedError` in "
                    f"{ex.function} with your code, run that cell, then run this check again."])
            verdicts.append(judge_error(case, _raised(exc, func)))
            continue
        except Exception as exc:
            verdicts.append(judge_error(case, _raised(exc, func)))
            continue
        try:
            # The same round trip as at grading time: plain arrays, numbers, tuples.
            arrays: list = []
            got = decode(encode(got, arrays), arrays)
        except EncodeError as exc:
            verdicts.append(judge_error(case, f"returned {exc}"))
            continue
        try:
            verdicts.append(judge_output(ex, case, got, want, modified))
        except Exception as exc:       # never let a strange output crash the check
            verdicts.append(judge_error(case, f"could not be compared ({_raised(exc, None)})"))
    warnings = cell_warnings(ex, func)
    status = PASSED if all(v.passed for v in verdicts) else FAILED
    return _finish(ex, status, verdicts, warnings, _report(ex, status, verdicts, warnings))


def _call(func, case):
    """Call on deep copies; return the output and the names of inputs modified in place."""
    args = copy.deepcopy(list(case.args.values()))
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
    got = case.run(func, args)
    modified = [name for name, a, b in zip(case.args, args, before)
                if b is not None and not (a.shape == b.shape and
                                          np.array_equal(a, b, equal_nan=True))]
    return got, modified


def _raised(exc: BaseException, func) -> str:
    text = f"raised {type(exc).__name__}: {exc}"
    filename = getattr(getattr(func, "__code__", None), "co_filename", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    if frames:
        where = frames[-1]
        text += f" (at `{(where.line or '').strip()}`, line {where.lineno} of the cell)"
    return text


def _finish(ex, status, verdicts, warnings, lines) -> CheckResult:
    report = "\n".join(lines)
    print(report)
    return CheckResult(exercise_id=ex.id, status=status, verdicts=verdicts, warnings=warnings,
                       report=report)


def _report(ex, status, verdicts: list[CaseVerdict], warnings) -> list[str]:
    n = len(verdicts)
    passed = sum(v.passed for v in verdicts)
    lines = [f"{ex.id} ({ex.function}): {passed} of {n} cases pass."]
    for i, v in enumerate(verdicts, 1):
        err = "" if v.max_rel_err is None else f"  (max relative error {v.max_rel_err:.1e})"
        lines.append(f"  {'PASS' if v.passed else 'FAIL'}  case {i}: {v.case.describe()}"
                     + (err if v.passed else ""))
        for problem in v.problems:
            lines.append(f"        {problem}")
        for hint in v.hints:
            lines.append(f"        hint: {hint}")
    for warning in warnings:
        lines.append(f"  WARNING  {warning}")
    if status == PASSED and not warnings:
        lines.append("All cases pass. The grader runs the exercise cell on its own, on these "
                     "cases and on hidden ones (other shapes and seeds).")
    elif status == PASSED:
        lines.append("All cases pass here, but fix the warning(s) above: grading would fail.")
    return lines


# --------------------------------------------------------------------------- static checks

def cell_warnings(ex, func) -> list[str]:
    """Warnings about the cell that defines ``func``: forbidden imports, outside names.

    Only for functions defined in ``__main__`` (a notebook's cells, a
    script). Uses the cell's source from ``linecache`` (IPython stores every
    cell there); returns no warnings when the source is not available.
    """
    code = getattr(func, "__code__", None)
    if code is None or getattr(func, "__module__", None) != "__main__":
        return []           # only functions defined in a notebook (or a script)
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return []
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return []
    warnings = []
    imported = _imported_modules(tree)
    bad = sorted(m for m in imported if m.split(".")[0] in ex.forbidden_modules)
    if bad:
        warnings.append(f"the cell imports {', '.join(bad)}: the grader gives no credit to "
                        f"code that uses {', '.join(sorted({m.split('.')[0] for m in bad}))}; "
                        f"write the computation yourself (NumPy is fine).")
    defined = _top_level_names(tree) | set(dir(builtins))
    outside = sorted(name for name in _global_names(code) if name not in defined)
    if outside:
        warnings.append(f"{ex.function} uses {', '.join(outside)}, which the exercise cell does "
                        f"not define or import; the grader runs that cell on its own, so "
                        f"import or define them in the same cell.")
    return warnings


def _imported_modules(tree: ast.AST) -> set:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _top_level_names(tree: ast.Module) -> set:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def _global_names(code: types.CodeType) -> set:
    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(ins.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names
