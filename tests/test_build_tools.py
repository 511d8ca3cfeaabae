"""The build's own tools: the parallel notebook executor and the version footer.

``tools/execute_notebooks.py`` must store each executed notebook where the book
build finds it (jupyter-cache matches it, outputs included) and fail, with the
traceback, on a notebook whose cell raises. ``book/_ext/build_info.py`` writes
the footer that names the version and commit, and reads the version that a
chapter's install cell pins.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXECUTE = REPO_ROOT / "tools" / "execute_notebooks.py"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_info = _load("build_info", REPO_ROOT / "book" / "_ext" / "build_info.py")


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def _execute(tmp_path: Path, *notebooks: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXECUTE), "--jobs", "2", "--cache", str(tmp_path / "cache"),
         *map(str, notebooks)],
        capture_output=True, text=True, timeout=300,
    )


def test_executed_notebooks_are_found_in_the_cache_with_their_outputs(tmp_path):
    from jupyter_cache import get_cache

    good = _notebook(tmp_path / "good.ipynb", "x = 6 * 7", "print(x)")
    other = _notebook(tmp_path / "other.ipynb", "print('other')")
    result = _execute(tmp_path, good, other)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 of 2 notebooks ran" in result.stdout
    cache = get_cache(str(tmp_path / "cache"))
    record = cache.match_cache_notebook(nbformat.read(good, as_version=4))
    _, merged = cache.merge_match_into_notebook(nbformat.read(good, as_version=4))
    assert record.data["execution_seconds"] > 0
    assert merged.cells[1].outputs[0]["text"] == "42\n"


def test_a_failing_cell_fails_the_run_and_shows_its_traceback(tmp_path):
    good = _notebook(tmp_path / "good.ipynb", "print('fine')")
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('deliberate failure')")
    result = _execute(tmp_path, good, bad)
    assert result.returncode == 1
    assert "FAILED bad.ipynb" in result.stdout or "FAILED " in result.stdout
    assert "deliberate failure" in result.stdout
    assert "1 notebooks failed: " in result.stderr and "bad.ipynb" in result.stderr


def test_execute_rejects_a_missing_notebook_and_bad_jobs(tmp_path):
    missing = subprocess.run([sys.executable, str(EXECUTE), str(tmp_path / "none.ipynb")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such notebook" in missing.stderr
    good = _notebook(tmp_path / "good.ipynb", "1")
    jobs = subprocess.run([sys.executable, str(EXECUTE), "--jobs", "0", str(good)],
                          capture_output=True, text=True)
    assert jobs.returncode == 2 and "--jobs must be at least 1, got 0" in jobs.stderr


def test_footer_names_version_and_linked_commit():
    commit = "0123456789abcdef0123456789abcdef01234567"
    html = build_info.footer_html("1.2.3", commit, False, "https://github.com/o/r/")
    assert 'data-version="1.2.3"' in html and "Built with bncourse 1.2.3" in html
    assert f'href="https://github.com/o/r/commit/{commit}"' in html
    assert f'data-commit="{commit}"' in html and "<code>0123456789ab</code>" in html
    assert "uncommitted" not in html
    assert "with uncommitted changes" in build_info.footer_html("1.2.3", commit, True, "u")
    assert "not a git checkout" in build_info.footer_html("1.2.3", None, False, "u")


def test_git_commit_of_this_repository_and_of_a_folder_without_git(tmp_path):
    commit, _ = build_info.git_commit(REPO_ROOT)
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)
    assert build_info.git_commit(tmp_path) == (None, False)


@pytest.mark.parametrize(
    ("first_source", "expected"),
    [('# comment\nBNCOURSE_VERSION = "0.4.1"\nimport os', "0.4.1"),
     ("import os", None)],
)
def test_pinned_version_reads_the_first_cell(first_source, expected):
    text = json.dumps({"cells": [{"cell_type": "code", "source": first_source}]})
    assert build_info.pinned_version(text) == expected


def test_every_chapter_pins_the_version_the_book_is_built_with():
    import bncourse

    for notebook in sorted((REPO_ROOT / "book").glob("*.ipynb")):
        text = notebook.read_text(encoding="utf-8")
        assert build_info.pinned_version(text) == bncourse.__version__, notebook.name
