"""Grade submitted notebooks into a gradebook: ``python -m bncourse.grade``.

Usage::

    python -m bncourse.grade SUBMISSION... --out gradebook.csv
    python -m bncourse.grade --list

Each SUBMISSION is a notebook or a folder searched for ``*.ipynb``. The
gradebook is CSV with one row per submission and exercise:
``submission,exercise,points,max_points,feedback``.

Which exercises a notebook is graded on: those of ``--exercises PATTERN``
(e.g. ``'ch01-*'``) when given; otherwise those of the chapter whose
notebook has the same file name; otherwise those of every chapter whose
exercise tags the notebook contains. A notebook that cannot be read gets a
row (per exercise, when they are known) saying so.

For every exercise the cases (visible and hidden) and the expected answers
are computed once, here. For every submission and exercise, only the
exercise cell runs, in a sandboxed child process (see
``bncourse.exercises.sandbox``); its outputs are compared here. Points are
all or nothing: every case must pass.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bncourse.exercises.core import Exercise
from bncourse.exercises.judge import judge_error, judge_output
from bncourse.exercises.notebook import Submission, check_source, read_submission
from bncourse.exercises.registry import all_exercises, select_exercises
from bncourse.exercises.sandbox import Limits, RunOutcome, run_cell

__all__ = ["Row", "grade", "find_notebooks", "write_gradebook", "main"]

COLUMNS = ("submission", "exercise", "points", "max_points", "feedback")


class Row(NamedTuple):
    """One line of the gradebook."""

    submission: str
    exercise: str
    points: float
    max_points: float
    feedback: str


@dataclass
class _Prepared:
    """An exercise's cases and expected answers, computed once per grading run."""

    exercise: Exercise
    cases: list
    wants: list
    n_visible: int


def find_notebooks(paths) -> list[str]:
    """The notebooks named by ``paths`` (files, or folders searched recursively), in order.

    Raises ``FileNotFoundError`` for a path that does not exist.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in p.parts)
        elif path.exists():
            found.append(str(path))
        else:
            raise FileNotFoundError(f"grade: SUBMISSION must be a notebook or a folder, "
                                    f"got {str(path)!r}, which does not exist")
    return found


def _exercises_for(sub: Submission, pattern: str | None) -> list[Exercise]:
    if pattern is not None:
        return select_exercises(pattern)
    everything = all_exercises()
    name = Path(sub.path).name
    by_name = [ex for ex in everything if Path(ex.notebook).name == name]
    if by_name:
        return by_name
    notebooks = {ex.notebook for ex in everything if ex.id in sub.cells}
    return [ex for ex in everything if ex.notebook in notebooks]


def _prepare(ex: Exercise, seed: int) -> _Prepared:
    cases = ex.cases("all", seed_offset=seed)
    return _Prepared(ex, cases, [ex.expected_output(c) for c in cases], len(ex.visible))


def _fmt(points: float) -> str:
    return f"{points:g}"


def _row(sub: Submission, ex: Exercise, passed: bool, feedback: str) -> Row:
    return Row(sub.path, ex.id, ex.points if passed else 0, ex.points,
               " ".join(feedback.split()))


def _grade_one(prep: _Prepared, sub: Submission, limits: Limits) -> Row:
    ex = prep.exercise
    sources = sub.cells.get(ex.id, [])
    if not sources:
        return _row(sub, ex, False, f"no code cell tagged {ex.tag} (deleted or re-tagged?)")
    note = (f" ({len(sources)} cells are tagged {ex.tag}; the last one was graded.)"
            if len(sources) > 1 else "")
    source = check_source(sources[-1])
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return _row(sub, ex, False, f"syntax error in the exercise cell, line {exc.lineno}: "
                                    f"{exc.msg}.{note}")
    outcome = run_cell(source, ex.function, prep.cases, forbidden_modules=ex.forbidden_modules,
                       pure=ex.pure, limits=limits)
    return _row(sub, ex, *_verdict(prep, outcome, limits, note))


def _verdict(prep: _Prepared, outcome: RunOutcome, limits: Limits, note: str):
    ex = prep.exercise
    if outcome.status == "not_attempted":
        return False, f"not attempted ({outcome.message}).{note}"
    if outcome.status == "cell_error":
        return False, (f"the exercise cell fails when run on its own: {outcome.message}. It "
                       f"must be self-contained (its own imports, no names from other "
                       f"cells).{note}")
    if outcome.status == "missing_function":
        return False, f"{outcome.message}.{note}"
    if outcome.status != "ok":
        return False, f"no credit: {outcome.message}.{note}"
    if len(outcome.cases) != len(prep.cases):
        return False, "no credit: the code sent back a wrong number of results."
    verdicts = []
    for case, want, (kind, value, extra) in zip(prep.cases, prep.wants, outcome.cases):
        if kind == "out":
            try:
                verdicts.append(judge_output(ex, case, value, want, extra))
            except Exception as exc:     # a comparison that breaks is a failed case
                verdicts.append(judge_error(case, f"could not be compared ({exc})"))
        else:
            verdicts.append(judge_error(case, f"raised {value}" if extra == "exception"
                                        else value))
    failed = [i for i, v in enumerate(verdicts) if not v.passed]
    n, n_hidden = len(verdicts), len(verdicts) - prep.n_visible
    if not failed:
        return True, (f"passed all {n} cases ({prep.n_visible} visible, {n_hidden} "
                      f"hidden).{note}")
    i = failed[0]
    v = verdicts[i]
    which = (f"visible case {i + 1}" if i < prep.n_visible
             else f"hidden case {i + 1 - prep.n_visible}")
    text = (f"failed {len(failed)} of {n} cases; first, {which} ({v.case.describe()}): "
            f"{'; '.join(v.problems)}.")
    if v.hints:
        text += f" Hint: {v.hints[0]}"
    return False, text + note


def grade(paths, *, pattern: str | None = None, seed: int = 0, limits: Limits = Limits(),
          jobs: int | None = None) -> list[Row]:
    """Grade every notebook under ``paths``; one :class:`Row` per submission and exercise.

    Parameters
    ----------
    paths : sequence of str or Path
        Notebooks or folders of notebooks.
    pattern : str, optional
        Grade every notebook on the exercises whose id matches (``"ch01-*"``).
    seed : int
        Added to the seeds of the hidden cases (fresh hidden cases per session).
    limits : Limits
        Time, memory and output limits of each child process.
    jobs : int, optional
        Child processes run at once (default: the number of CPUs).
    """
    submissions = [read_submission(p) for p in find_notebooks(paths)]
    plan = [(sub, _exercises_for(sub, pattern)) for sub in submissions]
    prepared = {}
    for _, exercises in plan:
        for ex in exercises:
            if ex.id not in prepared:
                prepared[ex.id] = _prepare(ex, seed)
    rows: list = []
    tasks = []
    for sub, exercises in plan:
        if sub.error is not None:
            rows += ([_row(sub, ex, False, sub.error) for ex in exercises] or
                     [Row(sub.path, "-", 0, 0, sub.error)])
            continue
        if not exercises:
            rows.append(Row(sub.path, "-", 0, 0, "no exercise cells found (no cell tagged "
                                                 "exercise:<id> of a known exercise)"))
            continue
        for ex in exercises:
            tasks.append((len(rows), prepared[ex.id], sub))
            rows.append(None)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        futures = [(slot, pool.submit(_grade_one, prep, sub, limits))
                   for slot, prep, sub in tasks]
        for slot, future in futures:
            rows[slot] = future.result()
    return rows


def write_gradebook(rows, file) -> None:
    """Write ``rows`` as CSV with the header ``submission,exercise,points,max_points,feedback``."""
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.submission, row.exercise, _fmt(row.points), _fmt(row.max_points),
                         row.feedback])


def list_exercises(file=None) -> None:
    """Print every exercise: id, notebook, function name and points."""
    file = file or sys.stdout
    exercises = all_exercises()
    table = [("exercise", "notebook", "function", "points")]
    table += [(ex.id, ex.notebook, ex.function, _fmt(ex.points)) for ex in exercises]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3], file=file)
    print(f"{len(exercises)} exercises, {_fmt(sum(ex.points for ex in exercises))} points",
          file=file)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bncourse.grade",
        description="Grade submitted notebooks: each exercise cell runs alone in a sandbox, "
                    "on the learner check's cases and on hidden ones.")
    p.add_argument("submissions", nargs="*", metavar="SUBMISSION",
                   help="a notebook, or a folder searched for *.ipynb")
    p.add_argument("--out", metavar="CSV", help="gradebook file (default: standard output)")
    p.add_argument("--list", action="store_true", help="list every exercise and exit")
    p.add_argument("--exercises", metavar="PATTERN",
                   help="grade every notebook on the exercises matching PATTERN, e.g. 'ch01-*'")
    p.add_argument("--timeout", type=float, default=Limits.timeout, metavar="SECONDS",
                   help="time limit per submission and exercise (default %(default)g)")
    p.add_argument("--memory-mb", type=int, default=Limits.memory_mb, metavar="MIB",
                   help="memory limit per submission and exercise (default %(default)d)")
    p.add_argument("--max-output", type=int, default=Limits.max_output_bytes, metavar="BYTES",
                   help="output a cell may print (default %(default)d)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: CPUs)")
    p.add_argument("--seed", type=int, default=0,
                   help="shift the hidden cases' seeds for this session (default 0)")
    return p


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        list_exercises()
        return 0
    if not args.submissions:
        parser.error("give at least one SUBMISSION (or --list)")
    if args.timeout <= 0 or args.memory_mb < 128 or args.max_output < 0:
        parser.error("--timeout must be positive, --memory-mb at least 128, "
                     "--max-output non-negative")
    if args.exercises is not None and not select_exercises(args.exercises):
        parser.error(f"--exercises {args.exercises!r} matches no exercise (see --list)")
    limits = Limits(timeout=args.timeout, memory_mb=args.memory_mb,
                    max_output_bytes=args.max_output)
    try:
        rows = grade(args.submissions, pattern=args.exercises, seed=args.seed, limits=limits,
                     jobs=args.jobs)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            write_gradebook(rows, f)
    else:
        write_gradebook(rows, sys.stdout)
    totals: dict = {}
    for row in rows:
        got, best = totals.get(row.submission, (0, 0))
        totals[row.submission] = (got + row.points, best + row.max_points)
    for submission, (got, best) in totals.items():
        print(f"{submission}: {_fmt(got)} / {_fmt(best)} points", file=sys.stderr)
    if args.out:
        print(f"gradebook: {args.out} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
