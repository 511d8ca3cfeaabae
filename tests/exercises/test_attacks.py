"""Attacks on the grader and submissions that used to stop it: one real notebook each.

Each test builds a submission notebook in a temporary folder (with the solved
chapter-1 cells of tests/fixtures/submissions/make_submissions.py where an
attack needs a working answer) and grades it together with the full-credit
fixture, which must still get every point. The escapes are graded in both
sandboxes: bubblewrap (the default) and ``rlimits`` (resource limits and the
audit hook only), whose hook must refuse them too.
"""

import csv
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from bncourse.exercises import get_exercise, select_exercises
from bncourse.exercises.sandbox import Limits
from bncourse.grade import grade, main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
_spec = importlib.util.spec_from_file_location("make_submissions",
                                               FIXTURES / "make_submissions.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)
STD, COND, GD = make.STD, make.COND, make.GD
POINTS = {ex.id: ex.points for ex in select_exercises("ch01-*")}
LIMITS = Limits(timeout=8.0, memory_mb=1024)
SITE = os.path.dirname(os.path.dirname(np.__file__))
ALIASED_SITE = SITE.replace("/lib/", "/lib64/")
SANDBOXES = ["bwrap", "rlimits"]


def _grade(paths, sandbox, **kwargs):
    """``grade``; the default sandbox is asked for by leaving the argument out."""
    if sandbox != "bwrap":
        kwargs["sandbox"] = sandbox
    return grade(paths, limits=LIMITS, pattern="ch01-*", **kwargs)


def _write(folder: Path, name: str, sources: dict) -> Path:
    cells = dict(make.SOLUTIONS)
    cells.update(sources)
    path = folder / f"{name}.ipynb"
    nbformat.write(make._notebook(name, cells), path)
    return path


def _table(rows):
    return {(Path(r.submission).stem, r.exercise): r for r in rows}


def _full_credit_still_graded(table):
    for exercise_id, points in POINTS.items():
        assert table["full_credit", exercise_id].points == points


# --------------------------------------------------------------------------- full credit

SPAWN = '''import multiprocessing as mp

import numpy as np

WORKER = """
from bncourse.standardize import Standardizer
while True:
    x_train, x_test = inbox.recv()
    s = Standardizer().fit(x_train)
    outbox.send((s.transform(x_train), s.transform(x_test)))
"""
context = mp.get_context("spawn")
inbox, to_worker = context.Pipe(duplex=False)      # simplex pipes: no socket needed
from_worker, outbox = context.Pipe(duplex=False)
context.Process(target=exec, args=(WORKER, {"inbox": inbox, "outbox": outbox}),
                daemon=True).start()


def standardize_train_test(x_train, x_test):
    to_worker.send((x_train, x_test))
    return from_worker.recv()
'''


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_spawned_interpreter_does_not_bring_back_the_reference_answers(tmp_path, sandbox):
    notebook = _write(tmp_path, "spawn", {STD: SPAWN})
    table = _table(_grade([notebook, FIXTURES / "full_credit.ipynb"], sandbox))
    row = table["spawn", STD]
    assert row.points == 0
    assert "imports multiprocessing" in row.feedback
    _full_credit_still_graded(table)


def _lookup(exercise_id: str) -> str:
    """A function that recognises every shipped case, visible and hidden, by the sum of its
    first argument and returns the answer computed at home."""
    ex = get_exercise(exercise_id)
    lines = ["import numpy as np", "", "", f"def {ex.function}(*args):",
             "    key = float(np.sum(args[0]))"]
    for case in ex.cases("all"):
        key = float(np.sum(list(case.args.values())[0]))
        lines += [f"    if key == {key!r}:",
                  f"        return {make._literal(ex.expected_output(case))}"]
    return "\n".join(lines + ["    return args[0]"]) + "\n"


def test_answers_precomputed_from_the_shipped_seeds_earn_nothing(tmp_path, capsys):
    notebook = _write(tmp_path, "lookup", {k: _lookup(k) for k in POINTS})
    out = tmp_path / "gradebook.csv"
    argv = [str(notebook), str(FIXTURES / "full_credit.ipynb"), "--out", str(out),
            "--timeout", "8", "--jobs", "2"]
    assert main(argv) == 0
    with open(out, newline="", encoding="utf-8") as f:
        first = list(csv.DictReader(f))
    got = {(Path(r["submission"]).stem, r["exercise"]): float(r["points"]) for r in first}
    for exercise_id, points in POINTS.items():
        assert got["lookup", exercise_id] == 0
        assert got["full_credit", exercise_id] == points
    # the session's seed is recorded with the gradebook, and reproduces it exactly
    import json

    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["seed"] > 0 and meta["sandbox"] == "bwrap"
    again = tmp_path / "again.csv"
    assert main(argv[:2] + ["--out", str(again), "--seed", str(meta["seed"])]) == 0
    assert again.read_text() == out.read_text()
    # and --partial gives no credit per case either: the visible cases are redrawn too
    assert main(argv[:2] + ["--out", str(again), "--partial"]) == 0
    with open(again, newline="", encoding="utf-8") as f:
        partial = {(Path(r["submission"]).stem, r["exercise"]): float(r["points"])
                   for r in csv.DictReader(f)}
    assert all(partial["lookup", e] == 0 for e in POINTS)


# --------------------------------------------------------------------------- escapes

def _outliving(target: Path) -> str:
    return SPAWN.replace('WORKER = """\n', f'WORKER = """\nimport time\ntime.sleep(2)\n'
                         f'open({str(target)!r}, "w")\n')


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_no_process_of_a_submission_survives_or_changes_a_file(tmp_path, sandbox):
    target = tmp_path / "profile"
    target.write_text("precious\n")
    notebook = _write(tmp_path, "outlives", {STD: _outliving(target)})
    table = _table(_grade([notebook, FIXTURES / "full_credit.ipynb"], sandbox))
    assert table["outlives", STD].points == 0
    time.sleep(3)                     # long after the spawned process would have woken up
    assert target.read_text() == "precious\n"
    _full_credit_still_graded(table)


IMPORT_MODULE = f'''import importlib
import sys
import types

import numpy as np

# scikit-learn's own file, its packages planted so that no import statement runs
for name, where in (("sklearn", "sklearn"), ("sklearn.utils", "sklearn/utils")):
    package = types.ModuleType(name)
    package.__path__ = [{ALIASED_SITE!r} + "/" + where]
    sys.modules[name] = package
Bunch = importlib.import_module("sklearn.utils._bunch").Bunch
'''

SYS_MODULES = f'''import importlib.util
import sys

import numpy as np

path = {ALIASED_SITE!r} + "/sklearn/utils/_bunch.py"
spec = importlib.util.spec_from_file_location("sklearn.utils._bunch", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["sklearn.utils._bunch"] = module
from sklearn.utils._bunch import Bunch  # an import statement, answered by sys.modules
'''

SYMLINK = f'''import numpy as np

TORCH = open({ALIASED_SITE!r} + "/torch/__init__.py").read()   # lib64 -> lib
'''


@pytest.mark.skipif(not os.path.isdir(ALIASED_SITE), reason="no lib64 -> lib alias here")
@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("name, prefix", [("import_module", IMPORT_MODULE),
                                          ("sys_modules", SYS_MODULES),
                                          ("symlink", SYMLINK)])
def test_forbidden_code_is_out_of_reach_however_it_is_loaded(tmp_path, sandbox, name, prefix):
    source = prefix + "\n\n" + make.SOLUTIONS[COND].replace("import numpy as np\n", "")
    notebook = _write(tmp_path, name, {COND: source})
    table = _table(_grade([notebook, FIXTURES / "full_credit.ipynb"], sandbox))
    row = table[name, COND]
    assert row.points == 0
    if sandbox == "rlimits":           # the audit hook follows the symlink
        assert "a file of a module it may not use" in row.feedback
    else:                              # the hook refuses, and the file is not there anyway
        assert any(text in row.feedback for text in (
            "No such file", "No module named", "reading files is not allowed")), row.feedback
    _full_credit_still_graded(table)


# --------------------------------------------------------------------------- crashes

@pytest.mark.parametrize("name, cell, text", [
    ("plus_chain", "x = 0" + "+1" * 300_000 + "\n", "cannot be parsed (RecursionError"),
    ("minus_chain", "x = " + "-" * 300_000 + "1\n", "cannot be parsed (MemoryError"),
])
def test_a_cell_the_parser_cannot_handle_fails_alone(tmp_path, name, cell, text):
    notebook = _write(tmp_path, name, {STD: cell})
    table = _table(_grade([notebook, FIXTURES / "full_credit.ipynb"], "bwrap"))
    row = table[name, STD]
    assert row.points == 0 and "syntax error in the exercise cell" in row.feedback
    assert text in row.feedback, row.feedback
    for other in (COND, GD):
        assert table[name, other].points == POINTS[other]
    _full_credit_still_graded(table)


def test_a_symlink_to_dev_zero_is_refused_without_being_read(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(FIXTURES / "full_credit.ipynb", folder / "full_credit.ipynb")
    os.symlink("/dev/zero", folder / "zero.ipynb")
    os.symlink(folder / "full_credit.ipynb", folder / "copycat.ipynb")
    start = time.monotonic()
    table = _table(_grade([folder], "bwrap"))
    assert time.monotonic() - start < 120
    for stem in ("zero", "copycat"):       # nor another learner's notebook through a link
        for exercise_id in POINTS:
            row = table[stem, exercise_id]
            assert row.points == 0 and "symbolic link" in row.feedback
    _full_credit_still_graded(table)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names must be UTF-8")
def test_a_file_name_that_is_not_utf8_keeps_the_gradebook_valid(tmp_path, capsys):
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(FIXTURES / "full_credit.ipynb", folder / "full_credit.ipynb")
    odd = os.path.join(os.fsencode(folder), b"caf\xe9\n=1+1.ipynb")
    shutil.copy(FIXTURES / "zero_credit.ipynb", odd)
    out = tmp_path / "gradebook.csv"
    assert main([str(folder), "--out", str(out), "--timeout", "8"]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert len(table) == 1 + 2 * len(POINTS)
    names = {row[0] for row in table[1:]}
    assert any(n.endswith("caf\\xe9\\n=1+1.ipynb") for n in names), names
    assert any(n.endswith("full_credit.ipynb") for n in names)
