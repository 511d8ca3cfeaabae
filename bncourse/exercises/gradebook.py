"""The gradebook: its rows, the three export formats, and safe, atomic writing.

A :class:`Row` is one submission and exercise. Three formats (``grade
--format``):

``csv``
    one row per submission and exercise:
    ``submission,exercise,points,max_points,feedback``;
``wide``
    one row per submission, one column per exercise (its points, empty when
    the submission was not graded on it), then ``total`` and ``max_points``:
    the shape learning-management systems import;
``gradescope``
    Gradescope's ``results.json``: one test per exercise, or with
    ``partial`` one per case, hidden cases with ``visibility:
    "after_due_date"`` so that their details stay hidden until then. The
    grading session's facts (seed, sandbox, versions) go in ``extra_data``.

Whatever a file name or a learner's error message holds, the text written is
valid UTF-8 on one line (:func:`clean_text`), a CSV field never starts a
spreadsheet formula (:func:`spreadsheet_safe`), and a file is written to a
temporary file that replaces the target only when complete
(:func:`write_atomic`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Row", "CaseResult", "COLUMNS", "FORMATS", "clean_text", "display_name",
           "spreadsheet_safe", "write_gradebook", "write_wide", "gradescope_results",
           "render", "write_atomic"]

COLUMNS = ("submission", "exercise", "points", "max_points", "feedback")
FORMATS = ("csv", "wide", "gradescope")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class CaseResult:
    """One case of one graded exercise: its label, whether it is hidden and passed, and why."""

    label: str
    hidden: bool
    passed: bool
    detail: str


class Row(NamedTuple):
    """One line of the gradebook (``cases``: the per-case results, empty when none ran)."""

    submission: str
    exercise: str
    points: float
    max_points: float
    feedback: str
    cases: tuple = ()


def clean_text(text: str, collapse: bool = True) -> str:
    """``text`` as printable UTF-8 on one line: whitespace runs become one space (with
    ``collapse``), other control and unpaired-surrogate characters backslash escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    out = []
    for ch in (" ".join(text.split()) if collapse else text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def display_name(path) -> str:
    """A path as text: bytes that are not UTF-8 shown as ``\\xNN``, control characters
    (a newline too) as escapes, so that two names never print alike."""
    raw = os.fsencode(path)
    return clean_text(raw.decode("utf-8", "backslashreplace"), collapse=False)


def spreadsheet_safe(text: str) -> str:
    """Prefix ``'`` to a field a spreadsheet would read as a formula (``=``, ``+``, ...)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _fmt(points: float) -> str:
    return f"{points:g}"


def write_gradebook(rows, file) -> None:
    """Write ``rows`` as CSV: ``submission,exercise,points,max_points,feedback``."""
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([spreadsheet_safe(clean_text(row.submission)), row.exercise,
                         _fmt(row.points), _fmt(row.max_points),
                         spreadsheet_safe(clean_text(row.feedback))])


def write_wide(rows, file) -> None:
    """Write one CSV row per submission: its points per exercise, total and maximum."""
    exercises = sorted({r.exercise for r in rows if r.exercise != "-"})
    table: dict = {}
    for row in rows:
        entry = table.setdefault(row.submission, {})
        if row.exercise != "-":
            entry[row.exercise] = row
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(["submission", *exercises, "total", "max_points"])
    for submission, entry in table.items():
        writer.writerow([spreadsheet_safe(clean_text(submission))]
                        + [_fmt(entry[e].points) if e in entry else "" for e in exercises]
                        + [_fmt(sum(r.points for r in entry.values())),
                           _fmt(sum(r.max_points for r in entry.values()))])


def _test_name(row: Row, several: bool) -> str:
    return f"{clean_text(row.submission)}: {row.exercise}" if several else row.exercise


def _exercise_output(row: Row) -> str:
    """The feedback, without the details of a hidden case (those wait for the due date)."""
    failed = [c for c in row.cases if not c.passed]
    if not failed or not failed[0].hidden:
        return clean_text(row.feedback)
    n_hidden = sum(c.hidden for c in row.cases)
    return (f"failed {len(failed)} of {len(row.cases)} cases, all of them hidden ones "
            f"({len(row.cases) - n_hidden} visible cases pass); the hidden cases' details "
            f"are shown after the due date.")


def gradescope_results(rows, meta: dict, partial: bool = False) -> dict:
    """Gradescope's ``results.json`` for ``rows`` (one submission, or several prefixed)."""
    several = len({r.submission for r in rows}) > 1
    tests = []
    for row in rows:
        name = _test_name(row, several)
        if partial and row.cases:
            each = row.max_points / len(row.cases)
            for case in row.cases:
                tests.append({"name": f"{name}: {case.label}", "score": each if case.passed
                              else 0, "max_score": each, "status": "passed" if case.passed
                              else "failed", "output": clean_text(case.detail),
                              "visibility": "after_due_date" if case.hidden else "visible"})
        else:
            tests.append({"name": name, "score": row.points, "max_score": row.max_points,
                          "status": "passed" if row.points == row.max_points else "failed",
                          "output": _exercise_output(row), "visibility": "visible"})
    note = f"Graded in the {meta.get('sandbox', '?')} sandbox, seed {meta.get('seed', '?')}."
    return {"score": sum(r.points for r in rows), "output": note, "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests, "extra_data": meta}


def render(rows, fmt: str, meta: dict, partial: bool = False) -> str:
    """The gradebook in format ``fmt`` (one of :data:`FORMATS`) as text."""
    if fmt not in FORMATS:
        raise ValueError(f"render: fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "gradescope":
        return json.dumps(gradescope_results(rows, meta, partial), indent=1,
                          ensure_ascii=False) + "\n"
    buf = io.StringIO()
    (write_gradebook if fmt == "csv" else write_wide)(rows, buf)
    return buf.getvalue()


def write_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder,
    flushed to disk, then renamed over ``path``: readers see the old file or the whole
    new one, never part of it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
