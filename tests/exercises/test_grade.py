"""Tests of bncourse.grade on real submission notebooks (tests/fixtures/submissions).

The fixtures are written by tests/fixtures/submissions/make_submissions.py:
a full-credit and a zero-credit submission, the notebook as distributed, one
with answers hard-coded for the visible cases, one notebook per robustness
case of the sandbox, and a malformed file. Every robustness notebook solves
some exercises correctly, so the tests also see that grading goes on.
"""

import contextlib
import csv
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bncourse.exercises import check, get_exercise, select_exercises
from bncourse.exercises.notebook import read_submission
from bncourse.exercises.sandbox import Limits
from bncourse.grade import COLUMNS, find_notebooks, grade, main, write_gradebook

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
CHAPTER1 = ROOT / "book" / "01_normalizing_inputs.ipynb"
STD, COND, GD = "ch01-standardize-train-test", "ch01-zca-whitening", "ch01-gradient-descent"
POINTS = {ex.id: ex.points for ex in select_exercises("ch01-*")}
LIMITS = Limits(timeout=4.0, memory_mb=1024)
PACKAGE = ROOT / "bncourse"


# The file that patches_checker.ipynb tries to append to.
TARGET = PACKAGE / "exercises" / "compare.py"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() + str(path.stat().st_mtime_ns)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the whole fixture folder once: {(notebook stem, exercise id): Row}."""
    before = _digest(TARGET)
    workdir = tmp_path_factory.mktemp("grading-cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        rows = grade([FIXTURES], pattern="ch01-*", limits=LIMITS, jobs=2)
    after = _digest(TARGET)
    return {(Path(r.submission).stem, r.exercise): r for r in rows}, rows, workdir, \
        before == after


def test_one_row_per_submission_and_chapter1_exercise(graded):
    table, rows, _, _ = graded
    stems = sorted(p.stem for p in FIXTURES.glob("*.ipynb"))
    assert len(stems) >= 15
    assert sorted({s for s, _ in table}) == stems
    assert len(rows) == len(stems) * len(POINTS) == len(table)
    for row in rows:
        assert row.max_points == POINTS[row.exercise]
        assert row.points in (0, row.max_points)
        assert row.feedback and "\n" not in row.feedback


def test_full_credit_submission_gets_every_point(graded):
    table, *_ = graded
    for exercise_id, points in POINTS.items():
        row = table["full_credit", exercise_id]
        assert row.points == points, row.feedback
        assert row.feedback.startswith("passed all")
        assert "hidden" in row.feedback


def test_zero_credit_submission_gets_nothing_and_a_hint(graded):
    table, *_ = graded
    for exercise_id in POINTS:
        row = table["zero_credit", exercise_id]
        assert row.points == 0
        assert "failed" in row.feedback and "max relative error" in row.feedback
        assert "Hint:" in row.feedback
    assert "ddof=0" in table["zero_credit", STD].feedback
    assert "PCA whitening" in table["zero_credit", COND].feedback
    assert "without a factor 2" in table["zero_credit", GD].feedback


def test_notebook_as_distributed_is_not_attempted(graded):
    table, *_ = graded
    for exercise_id in POINTS:
        row = table["untouched", exercise_id]
        assert row.points == 0 and row.feedback.startswith("not attempted")


def test_answers_hard_coded_for_the_visible_cases_pass_the_check_but_earn_nothing(graded):
    table, *_ = graded
    nb = nbformat.read(FIXTURES / "hardcoded.ipynb", as_version=4)
    for exercise_id in POINTS:
        ex = get_exercise(exercise_id)
        (cell,) = [c for c in nb.cells if ex.tag in c.metadata.get("tags", [])]
        namespace = {}
        exec(compile(cell.source, "<hardcoded>", "exec"), namespace)
        with contextlib.redirect_stdout(io.StringIO()):
            assert check(ex.id, namespace[ex.function]).passed
        row = table["hardcoded", exercise_id]
        assert row.points == 0 and "hidden case" in row.feedback


ROBUSTNESS = [
    # notebook, exercise, text in the feedback; the notebook's other exercises are solved
    ("crash", STD, "crashed (signal SIGSEGV)"),
    ("crash", COND, "fails when run on its own: ZeroDivisionError"),
    # The wall-clock or the CPU-time limit stops it, whichever fires first under load.
    ("infinite_loop", STD, "(an infinite loop?)"),
    ("infinite_loop", COND, "(an infinite loop?)"),
    ("exits", STD, "calls sys.exit()"),
    ("exits", COND, "exited with status 0 before returning results"),
    ("memory", STD, "ran out of memory (limit 1024 MiB)"),
    ("memory", COND, "ran out of memory (limit 1024 MiB)"),
    ("output_flood", STD, "printed more than 1000000 bytes"),
    ("output_flood", COND, "printed more than 1000000 bytes"),
    ("patches_checker", STD, "imports bncourse.exercises.compare"),
    # np.testing imports subprocess, refused; bncourse does not exist in the sandbox
    ("patches_checker", COND, "imports subprocess"),
    ("patches_checker", GD, "'NoneType' object has no attribute 'origin'"),
    ("imports_reference", STD, "imports bncourse.standardize"),
    ("imports_reference", COND, "imports bncourse.experiments.conditioning"),
    ("imports_reference", GD, "'NoneType' object has no attribute 'origin'"),
    ("writes_files", STD, "opens 'answers.txt' for writing"),
    ("writes_files", COND, "calls os.mkdir"),
    ("writes_files", GD, "imports subprocess"),
    ("not_self_contained", STD, "NameError: name 'training_statistics' is not defined"),
    ("missing_cell", COND, "syntax error in the exercise cell, line 1"),
    ("missing_cell", GD, "no code cell tagged exercise:ch01-gradient-descent"),
    ("malformed", STD, "malformed notebook (JSONDecodeError"),
    ("malformed", COND, "malformed notebook (JSONDecodeError"),
    ("malformed", GD, "malformed notebook (JSONDecodeError"),
]


@pytest.mark.parametrize("notebook, exercise_id, text", ROBUSTNESS)
def test_misbehaving_code_gets_no_credit_and_the_rest_is_graded(graded, notebook, exercise_id,
                                                               text):
    table, *_ = graded
    row = table[notebook, exercise_id]
    assert row.points == 0
    assert text in row.feedback
    broken = {e for n, e, _ in ROBUSTNESS if n == notebook}
    for other in set(POINTS) - broken:
        assert table[notebook, other].points == POINTS[other], table[notebook, other].feedback


def test_every_robustness_notebook_breaks_something_and_solves_something_else():
    notebooks = {n for n, _, _ in ROBUSTNESS}
    assert notebooks | {"full_credit", "zero_credit", "untouched", "hardcoded"} == \
        {p.stem for p in FIXTURES.glob("*.ipynb")}
    solved_somewhere = {n for n in notebooks
                        if {e for m, e, _ in ROBUSTNESS if m == n} != set(POINTS)}
    assert notebooks - solved_somewhere == {"patches_checker", "imports_reference",
                                            "writes_files", "malformed"}


def test_a_magic_line_is_ignored_and_self_contained_cells_pass(graded):
    table, *_ = graded
    assert table["not_self_contained", COND].points == POINTS[COND]


def test_submissions_cannot_change_files_or_the_package(graded):
    _, _, workdir, package_unchanged = graded
    assert package_unchanged
    assert list(workdir.iterdir()) == []
    leftovers = {"answers.txt", "cache", "escaped.txt"}
    assert not leftovers & {p.name for p in FIXTURES.iterdir()}
    assert not leftovers & {p.name for p in ROOT.iterdir()}


def test_chapter_notebook_is_graded_on_its_exercises_by_name_or_by_tags(tmp_path):
    renamed = tmp_path / "alice.ipynb"
    shutil.copy(CHAPTER1, renamed)
    rows = grade([CHAPTER1, renamed], limits=LIMITS)
    chapter1 = [r for r in rows if r.submission == str(CHAPTER1)]
    assert sorted(r.exercise for r in chapter1) == sorted(POINTS)
    assert sorted(r.exercise for r in rows if r.submission == str(renamed)) == sorted(POINTS)
    assert all(r.points == 0 and r.feedback.startswith("not attempted") for r in rows)


def test_hidden_cases_can_be_redrawn_per_session(tmp_path):
    rows = grade([FIXTURES / "full_credit.ipynb", FIXTURES / "hardcoded.ipynb"], seed=12345,
                 limits=LIMITS)
    got = {(Path(r.submission).stem, r.exercise): r.points for r in rows}
    for exercise_id, points in POINTS.items():
        assert got["full_credit", exercise_id] == points
        assert got["hardcoded", exercise_id] == 0


def test_unknown_notebooks_and_missing_paths(tmp_path):
    stranger = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]),
                   stranger)
    (row,) = grade([stranger], limits=LIMITS)
    assert row.exercise == "-" and row.max_points == 0 and "no exercise cells" in row.feedback
    (tmp_path / "broken.ipynb").write_text("{")
    rows = grade([tmp_path], limits=LIMITS)
    assert [r.exercise for r in rows] == ["-", "-"]
    assert "malformed notebook" in rows[0].feedback
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_notebooks([tmp_path / "nowhere"])
    checkpoints = tmp_path / ".ipynb_checkpoints"
    checkpoints.mkdir()
    shutil.copy(stranger, checkpoints / "notes-checkpoint.ipynb")
    assert find_notebooks([tmp_path]) == sorted(str(p) for p in tmp_path.glob("*.ipynb"))


def test_command_line_writes_the_gradebook(tmp_path, capsys):
    out = tmp_path / "gradebook.csv"
    status = main([str(FIXTURES / "full_credit.ipynb"), str(FIXTURES / "zero_credit.ipynb"),
                   "--out", str(out), "--timeout", "5", "--jobs", "2"])
    assert status == 0
    with open(out, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == COLUMNS
    body = table[1:]
    assert len(body) == 2 * len(POINTS)
    total = {}
    for submission, exercise, points, max_points, feedback in body:
        assert float(max_points) == POINTS[exercise]
        total[Path(submission).stem] = total.get(Path(submission).stem, 0) + float(points)
    assert total == {"full_credit": sum(POINTS.values()), "zero_credit": 0}
    err = capsys.readouterr().err
    assert f"full_credit.ipynb: {sum(POINTS.values()):g} / {sum(POINTS.values()):g} points" in err


def test_command_line_rejects_bad_arguments(tmp_path, capsys):
    for argv in ([], [str(tmp_path / "none.ipynb")], ["x.ipynb", "--exercises", "ch77-*"],
                 ["x.ipynb", "--timeout", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "matches no exercise" in capsys.readouterr().err


def test_list_prints_every_exercise_with_notebook_function_and_points():
    result = subprocess.run([sys.executable, "-m", "bncourse.grade", "--list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["exercise", "notebook", "function", "points"]
    for ex_id in POINTS:
        ex = get_exercise(ex_id)
        (line,) = [ln for ln in lines if ln.startswith(ex.id + " ")]
        assert line.split() == [ex.id, ex.notebook, ex.function, f"{ex.points:g}"]
    assert lines[-1].endswith("points")


def test_gradebook_csv_quotes_feedback_with_commas():
    from bncourse.grade import Row

    buf = io.StringIO()
    write_gradebook([Row("a, b.ipynb", STD, 0, 2, 'failed, "quoted"; hint')], buf)
    assert list(csv.reader(io.StringIO(buf.getvalue()))) == [
        list(COLUMNS), ["a, b.ipynb", STD, "0", "2", 'failed, "quoted"; hint']]


def test_fixture_notebooks_are_valid_except_the_malformed_one():
    for path in sorted(FIXTURES.glob("*.ipynb")):
        sub = read_submission(path)
        assert (sub.error is not None) == (path.stem == "malformed"), path
        if path.stem != "malformed":
            nbformat.validate(nbformat.read(path, as_version=4))
    # named unlike the chapter, so the grader must find their exercises by the cell tags
    assert CHAPTER1.stem not in {p.stem for p in FIXTURES.glob("*.ipynb")}
