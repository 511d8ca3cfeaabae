"""Grade submitted notebooks into a gradebook: ``python -m bncourse.grade``.

Usage::

    python -m bncourse.grade SUBMISSION... --out PATH [--format csv|wide|gradescope]
                             [--partial] [--seed N] [--sandbox bwrap|rlimits] [--jobs N]
    python -m bncourse.grade --list

Each SUBMISSION is a notebook or a folder searched for ``*.ipynb`` (symlinks
are not followed; a symlinked or otherwise irregular file is reported, not
read). Formats: see ``bncourse.exercises.gradebook``.

Which exercises a notebook is graded on: those of ``--exercises PATTERN``
(e.g. ``'ch01-*'``) when given; otherwise those of the chapter whose
notebook has the same file name; otherwise those of every chapter whose
exercise tags the notebook contains. A notebook that cannot be read gets a
row (per exercise, when they are known) saying so.

For every exercise the cases and the expected answers are computed once,
here. Every case's seed is shifted by the session's seed: without
``--seed``, a fresh random one, recorded with the gradebook (in
``PATH.meta.json``, or Gradescope's ``extra_data``) so that ``--seed``
reproduces every grade; answers precomputed from the seeds that ship with
the course match nothing. For every submission and exercise only the
exercise cell runs, in a sandbox (``bncourse.exercises.sandbox``): by
default bubblewrap; where it cannot run, the grader stops with exit status
3 and says why, and ``--sandbox rlimits`` grades with resource limits and
the audit hook only, recorded in the gradebook. Points are all or nothing
(every case must pass), or with ``--partial`` shared equally among the
cases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bncourse.exercises.bwrap import SandboxUnavailable, check_bwrap
from bncourse.exercises.core import Exercise
from bncourse.exercises.gradebook import (COLUMNS, FORMATS, CaseResult, Row, display_name,
                                          render, write_atomic, write_gradebook)
from bncourse.exercises.judge import judge_error, judge_output
from bncourse.exercises.notebook import (MAX_CELL_CHARS, Submission, check_source,
                                         read_submission)
from bncourse.exercises.registry import all_exercises, select_exercises
from bncourse.exercises.sandbox import SANDBOXES, Limits, RunOutcome, run_cell

__all__ = ["Row", "COLUMNS", "grade", "find_notebooks", "write_gradebook", "draw_seed",
           "session_meta", "list_exercises", "main", "UNSANDBOXED_EXIT"]

#: Exit status when bubblewrap cannot run (and ``--sandbox rlimits`` was not asked for).
UNSANDBOXED_EXIT = 3
_SEED_RANGE = 2**31


@dataclass
class _Prepared:
    """An exercise's cases and expected answers, computed once per grading run."""

    exercise: Exercise
    cases: list
    wants: list
    n_visible: int


def draw_seed() -> int:
    """A fresh session seed, from the operating system's random source."""
    return secrets.randbelow(_SEED_RANGE)


def find_notebooks(paths) -> list[str]:
    """The notebooks named by ``paths`` (files, or folders searched recursively), in order.

    Folders are walked without following symlinks; a symlink named
    ``*.ipynb`` is listed (and refused when read). Raises
    ``FileNotFoundError`` for a path that does not exist.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            inside = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
                inside += [os.path.join(folder, f) for f in files if f.endswith(".ipynb")]
            found += sorted(inside)
        elif path.exists() or path.is_symlink():
            found.append(str(path))
        else:
            raise FileNotFoundError(f"grade: SUBMISSION must be a notebook or a folder, "
                                    f"got {display_name(path)!r}, which does not exist")
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
    cases = ex.cases("all", seed_offset=seed, shift="all")
    return _Prepared(ex, cases, [ex.expected_output(c) for c in cases], len(ex.visible))


def _label(i: int, n_visible: int) -> str:
    return f"visible case {i + 1}" if i < n_visible else f"hidden case {i + 1 - n_visible}"


def _row(sub: Submission, ex: Exercise, fraction: float, feedback: str, cases=()) -> Row:
    return Row(display_name(sub.path), ex.id, ex.points * fraction, ex.points,
               " ".join(feedback.split()), tuple(cases))


def _grade_one(prep: _Prepared, sub: Submission, limits: Limits, sandbox: str,
               partial: bool) -> Row:
    ex = prep.exercise
    sources = sub.cells.get(ex.id, [])
    if not sources:
        return _row(sub, ex, 0, f"no code cell tagged {ex.tag} (deleted or re-tagged?)")
    note = (f" ({len(sources)} cells are tagged {ex.tag}; the last one was graded.)"
            if len(sources) > 1 else "")
    if len(sources[-1]) > MAX_CELL_CHARS:
        return _row(sub, ex, 0, f"the exercise cell is longer than {MAX_CELL_CHARS} "
                                f"characters; it was not run.{note}")
    outcome = run_cell(ex.graded_source(check_source(sources[-1])), ex.entry, prep.cases,
                       forbidden_modules=ex.forbidden_modules, pure=ex.pure, limits=limits,
                       sandbox=sandbox, allowed_modules=ex.allowed_modules)
    return _verdict(prep, sub, outcome, note, partial)


def _verdict(prep: _Prepared, sub: Submission, outcome: RunOutcome, note: str,
             partial: bool) -> Row:
    ex = prep.exercise
    status, message = outcome.status, outcome.message
    if status == "not_attempted":
        return _row(sub, ex, 0, f"not attempted ({message}).{note}")
    if status == "syntax_error":
        return _row(sub, ex, 0, f"syntax error in the exercise cell, {message}.{note}")
    if status == "cell_error":
        return _row(sub, ex, 0, f"the exercise cell fails when run on its own: {message}. "
                                f"It must be self-contained (its own imports, no names from "
                                f"other cells).{note}")
    if status == "missing_function":
        return _row(sub, ex, 0, f"{message}.{note}")
    if status != "ok":
        return _row(sub, ex, 0, f"no credit: {message}.{note}")
    if len(outcome.cases) != len(prep.cases):
        return _row(sub, ex, 0, "no credit: the code sent back a wrong number of results.")
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
    results = []
    for i, v in enumerate(verdicts):
        detail = f"{v.case.describe()}: " + ("passed" if v.passed else "; ".join(v.problems))
        if v.hints and not v.passed:
            detail += f". Hint: {v.hints[0]}"
        results.append(CaseResult(_label(i, prep.n_visible), i >= prep.n_visible, v.passed,
                                  detail))
    failed = [i for i, v in enumerate(verdicts) if not v.passed]
    n, n_hidden = len(verdicts), len(verdicts) - prep.n_visible
    if not failed:
        return _row(sub, ex, 1, f"passed all {n} cases ({prep.n_visible} visible, {n_hidden} "
                                f"hidden).{note}", results)
    v = verdicts[failed[0]]
    text = (f"failed {len(failed)} of {n} cases; first, {_label(failed[0], prep.n_visible)} "
            f"({v.case.describe()}): {'; '.join(v.problems)}.")
    if v.hints:
        text += f" Hint: {v.hints[0]}"
    fraction = (n - len(failed)) / n if partial else 0
    return _row(sub, ex, fraction, text + note, results)


def grade(paths, *, pattern: str | None = None, seed: int = 0, limits: Limits = Limits(),
          jobs: int | None = None, sandbox: str = "bwrap", partial: bool = False) -> list[Row]:
    """Grade every notebook under ``paths``; one :class:`Row` per submission and exercise.

    Parameters
    ----------
    paths : sequence of str or Path
        Notebooks or folders of notebooks.
    pattern : str, optional
        Grade every notebook on the exercises whose id matches (``"ch01-*"``).
    seed : int
        Added to the seed of every case (0: the cases the course ships;
        :func:`draw_seed` for fresh ones).
    limits : Limits
        Time, memory and output limits of each child process.
    jobs : int, optional
        Exercise cells run at once (default: the number of CPUs).
    sandbox : {"bwrap", "rlimits"}
        ``"bwrap"`` raises ``SandboxUnavailable`` where bubblewrap cannot run.
    partial : bool
        Credit per passed case instead of all or nothing.
    """
    if sandbox not in SANDBOXES:
        raise ValueError(f"grade: sandbox must be one of {SANDBOXES}, got {sandbox!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62:
        raise ValueError(f"grade: seed must be an int in [0, 2**62), got {seed!r}")
    if sandbox == "bwrap":
        check_bwrap()
    submissions = [read_submission(p) for p in find_notebooks(paths)]
    plan = [(sub, _exercises_for(sub, pattern)) for sub in submissions]
    if sandbox == "bwrap":      # every module set in its sandbox, before any grading
        for allowed in {ex.allowed_modules for _, exercises in plan for ex in exercises}:
            check_bwrap(allowed)
    prepared = {}
    for _, exercises in plan:
        for ex in exercises:
            if ex.id not in prepared:
                prepared[ex.id] = _prepare(ex, seed)
    rows: list = []
    tasks = []
    for sub, exercises in plan:
        if sub.error is not None:
            rows += ([_row(sub, ex, 0, sub.error) for ex in exercises] or
                     [Row(display_name(sub.path), "-", 0, 0, sub.error)])
            continue
        if not exercises:
            rows.append(Row(display_name(sub.path), "-", 0, 0,
                            "no exercise cells found (no cell tagged exercise:<id> of a "
                            "known exercise)"))
            continue
        for ex in exercises:
            tasks.append((len(rows), prepared[ex.id], sub))
            rows.append(None)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        futures = [(slot, pool.submit(_grade_one, prep, sub, limits, sandbox, partial))
                   for slot, prep, sub in tasks]
        for slot, future in futures:
            rows[slot] = future.result()
    return rows


def session_meta(*, seed: int, sandbox: str, fmt: str, partial: bool, limits: Limits,
                 seconds: float, n_rows: int) -> dict:
    """What reproduces a gradebook: the seed, the sandbox, the limits and the versions."""
    import numpy

    from bncourse import __version__ as version

    return {"seed": seed, "sandbox": sandbox, "format": fmt, "partial": partial,
            "timeout_s": limits.timeout, "memory_mb": limits.memory_mb,
            "max_output_bytes": limits.max_output_bytes, "bncourse": version,
            "python": platform.python_version(), "numpy": numpy.__version__,
            "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 3),
            "rows": n_rows,
            "reproduce": f"--seed {seed} --sandbox {sandbox}" + (" --partial" * partial)}


def list_exercises(file=None) -> None:
    """Print every exercise: id, notebook, function name and points."""
    file = file or sys.stdout
    exercises = all_exercises()
    table = [("exercise", "notebook", "function", "points")]
    table += [(ex.id, ex.notebook, ex.function, f"{ex.points:g}") for ex in exercises]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3], file=file)
    print(f"{len(exercises)} exercises, {sum(ex.points for ex in exercises):g} points",
          file=file)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bncourse.grade",
        description="Grade submitted notebooks: each exercise cell runs alone in a sandbox, "
                    "on the learner check's cases and on hidden ones, with fresh seeds.")
    p.add_argument("submissions", nargs="*", metavar="SUBMISSION",
                   help="a notebook, or a folder searched for *.ipynb")
    p.add_argument("--out", metavar="PATH", help="gradebook file (default: standard output); "
                   "the session's seed and sandbox go to PATH.meta.json")
    p.add_argument("--format", choices=FORMATS, default="csv",
                   help="csv: a row per submission and exercise; wide: a row per submission; "
                        "gradescope: Gradescope's results.json (default %(default)s)")
    p.add_argument("--partial", action="store_true",
                   help="credit per passed case (default: all or nothing per exercise)")
    p.add_argument("--list", action="store_true", help="list every exercise and exit")
    p.add_argument("--exercises", metavar="PATTERN",
                   help="grade every notebook on the exercises matching PATTERN, e.g. 'ch01-*'")
    p.add_argument("--sandbox", choices=SANDBOXES, default="bwrap",
                   help="bwrap: bubblewrap namespaces (default); rlimits: resource limits "
                        "and the audit hook only, where bubblewrap cannot run")
    p.add_argument("--timeout", type=float, default=Limits.timeout, metavar="SECONDS",
                   help="time limit per submission and exercise (default %(default)g)")
    p.add_argument("--memory-mb", type=int, default=Limits.memory_mb, metavar="MIB",
                   help="memory limit per submission and exercise (default %(default)d)")
    p.add_argument("--max-output", type=int, default=Limits.max_output_bytes, metavar="BYTES",
                   help="output a cell may print (default %(default)d)")
    p.add_argument("--jobs", type=int, default=None, help="parallel sandboxes (default: CPUs)")
    p.add_argument("--seed", type=int, default=None,
                   help="shift every case's seed by N (default: a fresh random seed, "
                        "recorded with the gradebook)")
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
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.seed is not None and not 0 <= args.seed < 2**62:
        parser.error(f"--seed must be in [0, 2**62), got {args.seed}")
    if args.exercises is not None and not select_exercises(args.exercises):
        parser.error(f"--exercises {args.exercises!r} matches no exercise (see --list)")
    limits = Limits(timeout=args.timeout, memory_mb=args.memory_mb,
                    max_output_bytes=args.max_output)
    seed = draw_seed() if args.seed is None else args.seed
    start = time.monotonic()
    try:
        rows = grade(args.submissions, pattern=args.exercises, seed=seed, limits=limits,
                     jobs=args.jobs, sandbox=args.sandbox, partial=args.partial)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    except SandboxUnavailable as exc:
        print(exc, file=sys.stderr)
        return UNSANDBOXED_EXIT
    meta = session_meta(seed=seed, sandbox=args.sandbox, fmt=args.format,
                        partial=args.partial, limits=limits,
                        seconds=time.monotonic() - start, n_rows=len(rows))
    text = render(rows, args.format, meta, args.partial)
    if args.out:
        if args.format != "gradescope":
            write_atomic(args.out + ".meta.json", json.dumps(meta, indent=1) + "\n")
        write_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    totals: dict = {}
    for row in rows:
        got, best = totals.get(row.submission, (0, 0))
        totals[row.submission] = (got + row.points, best + row.max_points)
    for submission, (got, best) in totals.items():
        print(f"{submission}: {got:g} / {best:g} points", file=sys.stderr)
    where = f"gradebook: {args.out} ({len(rows)} rows); " if args.out else ""
    print(f"{where}seed {seed}, sandbox {args.sandbox} (reproduce with {meta['reproduce']})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
