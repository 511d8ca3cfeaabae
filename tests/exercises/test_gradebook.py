"""Tests of the gradebook: formats, --partial, names, atomic writes, the refusal without a
sandbox, the rlimits path, --jobs, and the Gradescope autograder recipe in a simulated
/autograder folder."""

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bncourse.exercises import bwrap, select_exercises
from bncourse.exercises.gradebook import (Row, clean_text, display_name, gradescope_results,
                                          render, spreadsheet_safe, write_atomic)
from bncourse.exercises.sandbox import Limits
from bncourse.grade import UNSANDBOXED_EXIT, grade, main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
RECIPE = ROOT / "bncourse" / "exercises" / "gradescope"
POINTS = {ex.id: ex.points for ex in select_exercises("ch01-*")}
STD, COND, GD = sorted(POINTS)[2], sorted(POINTS)[0], sorted(POINTS)[1]
LIMITS = Limits(timeout=8.0)
PAIR = [FIXTURES / "full_credit.ipynb", FIXTURES / "zero_credit.ipynb"]


@pytest.fixture(scope="module")
def partial_rows():
    return grade(PAIR + [FIXTURES / "hardcoded.ipynb"], limits=LIMITS, jobs=2, partial=True,
                 seed=7)


def _by(rows):
    return {(Path(r.submission).stem, r.exercise): r for r in rows}


def test_partial_credit_is_the_share_of_passed_cases(partial_rows):
    table = _by(partial_rows)
    for exercise_id, points in POINTS.items():
        full = table["full_credit", exercise_id]
        assert full.points == points and all(c.passed for c in full.cases)
        hard = table["hardcoded", exercise_id]
        n_passed = sum(c.passed for c in hard.cases)
        assert hard.points == pytest.approx(points * n_passed / len(hard.cases))
        assert len(hard.cases) == len(full.cases) > 0
    labels = [c.label for c in table["full_credit", STD].cases]
    assert labels[0] == "visible case 1" and labels[-1].startswith("hidden case ")


def test_wide_format_has_one_row_per_submission_and_a_column_per_exercise(partial_rows):
    text = render(partial_rows, "wide", {})
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["submission", *sorted(POINTS), "total", "max_points"]
    assert len(table) == 1 + 3
    full = [r for r in table if r[0].endswith("full_credit.ipynb")][0]
    assert [float(v) for v in full[1:]] == [POINTS[e] for e in sorted(POINTS)] + \
        [sum(POINTS.values())] * 2


def test_gradescope_results_one_test_per_case_hidden_ones_after_the_due_date():
    # the shipped seeds: the hard-coded answers pass the visible cases, fail hidden ones
    rows = grade([FIXTURES / "hardcoded.ipynb"], limits=LIMITS, partial=True, seed=0)
    results = json.loads(render(rows, "gradescope", {"seed": 7, "sandbox": "bwrap"}, True))
    n_cases = sum(len(r.cases) for r in rows)
    assert len(results["tests"]) == n_cases
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    assert results["extra_data"] == {"seed": 7, "sandbox": "bwrap"}
    for test in results["tests"]:
        hidden = ": hidden case" in test["name"]
        assert test["visibility"] == ("after_due_date" if hidden else "visible")
        assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
    per_exercise = gradescope_results(rows, {}, partial=False)
    assert [t["name"] for t in per_exercise["tests"]] == [r.exercise for r in rows]
    for test in per_exercise["tests"]:          # a hidden failure's details wait
        assert "float" not in test["output"] and "hidden" in test["output"]


def test_names_and_messages_stay_valid_csv_and_json_whatever_they_hold():
    name = display_name(b"/x/=caf\xe9,\n\"q\".ipynb")
    assert name == '/x/=caf\\xe9,\\n"q".ipynb'
    feedback = "raised ValueError: \ud800 \x1b[31mred\x00 =cmd|' /C calc'!A0\u2028end"
    rows = [Row("=HYPERLINK(\"x\")", STD, 0, 2, feedback), Row(name, STD, 2, 2, "ok")]
    parsed = list(csv.reader(io.StringIO(render(rows, "csv", {}))))
    assert len(parsed) == 3 and all(len(r) == 5 for r in parsed)
    assert parsed[1][0] == "'=HYPERLINK(\"x\")" and parsed[2][0] == name
    assert "\x1b" not in parsed[1][4] and "\\x1b" in parsed[1][4] and "\\ud800" in parsed[1][4]
    json.loads(render(rows, "gradescope", {}))          # encodable, valid
    assert spreadsheet_safe("-1") == "'-1" and spreadsheet_safe("a=b") == "a=b"
    assert clean_text("a\n\tb") == "a b"


def test_the_gradebook_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    out = tmp_path / "gradebook.csv"
    out.write_text("the previous gradebook\n")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, "x" * 10_000_000)
    assert out.read_text() == "the previous gradebook\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gradebook.csv"]
    monkeypatch.undo()
    write_atomic(out, "new\n")
    assert out.read_text() == "new\n"


def _fake_bwrap(tmp_path, text="bwrap: No permissions to creating new namespace"):
    fake = tmp_path / "bwrap"
    fake.write_text(f"#!/bin/sh\necho '{text}' >&2\nexit 1\n")
    fake.chmod(0o755)
    bwrap._probe.cache_clear()
    return fake


def test_without_bubblewrap_the_grader_refuses_and_rlimits_grades(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setenv(bwrap.BWRAP_ENV, str(_fake_bwrap(tmp_path)))
    out = tmp_path / "gradebook.csv"
    try:
        assert main([str(PAIR[0]), "--out", str(out)]) == UNSANDBOXED_EXIT
        err = capsys.readouterr().err
        assert "No permissions to creating new namespace" in err
        assert "apt-get install bubblewrap" in err and "--sandbox rlimits" in err
        assert not out.exists()
        assert main([str(PAIR[0]), "--out", str(out), "--sandbox", "rlimits"]) == 0
    finally:
        monkeypatch.undo()
        bwrap._probe.cache_clear()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sum(float(r["points"]) for r in rows) == sum(POINTS.values())
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["sandbox"] == "rlimits" and "--sandbox rlimits" in meta["reproduce"]


def test_jobs_do_not_change_the_grades(partial_rows):
    serial = grade(PAIR + [FIXTURES / "hardcoded.ipynb"], limits=LIMITS, jobs=1,
                   partial=True, seed=7)
    assert [r[:5] for r in serial] == [r[:5] for r in partial_rows]


def test_the_sandbox_shows_only_python_numpy_and_a_private_tmp():
    from bncourse.exercises.core import Case
    from bncourse.exercises.sandbox import run_cell

    source = '''import os, sys

def look(x):
    return (len([d for d in os.listdir("/proc") if d.isdigit()]) <= 2, os.getuid(), os.path.exists(sys.base_prefix + "/lib"),
            any(os.path.exists(p + "/bncourse") or os.path.exists(p + "/torch")
                for p in sys.path), os.getcwd())
'''
    outcome = run_cell(source, "look", [Case({}, {"x": 1})], forbidden_modules=("bncourse",))
    assert outcome.status == "ok", outcome.message
    few_processes, uid, has_lib, sees_forbidden, cwd = outcome.cases[0][1]
    assert few_processes and uid == 65534 and has_lib and not sees_forbidden
    assert cwd == "/tmp/work"


def test_the_seccomp_filter_is_a_well_formed_program():
    for machine in ("x86_64", "aarch64"):
        program = bwrap.seccomp_filter(machine)
        assert len(program) % 8 == 0 and 10 <= len(program) // 8 <= 30
    assert bwrap.seccomp_filter("sparc") is None


# --------------------------------------------------------------------------- Gradescope

def _autograder(tmp_path, submission: Path) -> Path:
    root = tmp_path / "autograder"
    for sub in ("source", "submission", "results"):
        (root / sub).mkdir(parents=True)
    for name in ("setup.sh", "run_autograder"):
        shutil.copy(RECIPE / name, root / "source" / name)
    shutil.copy(submission, root / "submission" / "my_notebook.ipynb")
    return root


def _run_autograder(root: Path, **env):
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")],
                         env=dict(os.environ, AUTOGRADER=str(root), BNCOURSE_PYTHON=sys.executable,
                                  **env), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_run_autograder_writes_gradescope_results_for_a_submission(tmp_path):
    assert os.access(RECIPE / "run_autograder", os.X_OK)
    root = _autograder(tmp_path, PAIR[0])
    results = _run_autograder(root)
    assert results["score"] == pytest.approx(sum(POINTS.values()))
    assert results["extra_data"]["sandbox"] == "bwrap" and results["extra_data"]["partial"]
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_due_date"}


def test_run_autograder_reports_a_missing_sandbox_in_gradescope(tmp_path):
    root = _autograder(tmp_path, PAIR[0])
    results = _run_autograder(root, BNCOURSE_BWRAP=str(_fake_bwrap(tmp_path)))
    bwrap._probe.cache_clear()
    assert results["score"] == 0 and "no sandbox available" in results["output"]
    assert "apt-get install bubblewrap" in (root / "results" / "grade.log").read_text()
    fallback = _run_autograder(root, BNCOURSE_BWRAP=str(tmp_path / "bwrap"),
                               BNCOURSE_SANDBOX="rlimits", BNCOURSE_GRADE_OPTIONS="")
    assert fallback["score"] == sum(POINTS.values())
    assert fallback["extra_data"]["sandbox"] == "rlimits"
    assert len(fallback["tests"]) == len(POINTS)


def test_setup_sh_installs_bubblewrap_and_the_wheel(tmp_path):
    root = _autograder(tmp_path, PAIR[0])
    (root / "source" / "bncourse-0.1.0-py3-none-any.whl").write_text("")
    (root / "source" / "requirements.txt").write_text("numpy==2.4.6\n")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    stubs = {  # record every call; python3 -m venv makes a pip that records too
        "apt-get": f'echo "apt-get $*" >> {log}',
        "python3": f'echo "python3 $*" >> {log}; mkdir -p "$3/bin"; '
                   f'printf \'#!/bin/sh\\necho "pip $*" >> {log}\\n\' > "$3/bin/pip"; '
                   f'chmod +x "$3/bin/pip"',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("mkdir", "chmod", "printf", "sh"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    run = subprocess.run([shutil.which("bash"), str(root / "source" / "setup.sh")],
                         env={"PATH": str(bin_dir), "AUTOGRADER": str(root)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    calls = log.read_text().splitlines()
    assert any(c.startswith("apt-get install") and "bubblewrap" in c for c in calls)
    assert f"python3 -m venv {root}/venv" in calls
    (pip,) = [c for c in calls if c.startswith("pip install")]
    assert "download.pytorch.org/whl/cpu" in pip and "bncourse-0.1.0-py3-none-any.whl" in pip
    assert f"-c {root}/source/requirements.txt" in pip
    assert stat.S_IMODE((RECIPE / "setup.sh").stat().st_mode) & 0o111
