"""The first cell of every notebook installs the course package when it is missing.

On Colab (and in any fresh environment) ``bncourse`` is not installed; the
first cell of each chapter installs it from the repository named in
``_config.yml``, or from ``BNCOURSE_SOURCE`` when that is set, and does
nothing where the package is already importable. The cell is tagged
``remove-cell`` so the rendered book hides it. The slow end-to-end check, a
chapter run in a fresh environment, is ``tests/browser/test_fresh_env.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "book").glob("*.ipynb"))


def repository_url() -> str:
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def install_cell_source(url: str) -> str:
    """The exact first cell, with the repository ``url`` of ``_config.yml``."""
    return (
        "# Install the course package when it is missing (Colab, a fresh Binder); "
        "does nothing otherwise.\n"
        "import importlib.util, os, subprocess, sys\n"
        'if importlib.util.find_spec("bncourse") is None:\n'
        f'    source = os.environ.get("BNCOURSE_SOURCE", "git+{url}")\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], '
        "check=True)"
    )


def first_cell(notebook: Path) -> dict:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    assert cells, f"{notebook.name} has no cells"
    return cells[0]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebook in book/"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_first_cell_is_the_hidden_install_cell(notebook):
    cell = first_cell(notebook)
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    assert cell["cell_type"] == "code"
    assert source.rstrip() == install_cell_source(repository_url())
    assert "remove-cell" in cell.get("metadata", {}).get("tags", [])
    assert not cell.get("outputs"), "commit notebooks without outputs"


def _run_cell(python_args: list[str], source: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BNCOURSE_SOURCE")}
    # A source that pip cannot install: the cell fails if, and only if, it calls pip.
    env["BNCOURSE_SOURCE"] = str(cwd / "no-such-source")
    env["PIP_NO_INDEX"] = "1"
    return subprocess.run(
        [sys.executable, *python_args, "-c", source],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_install_cell_does_nothing_when_the_package_is_present(tmp_path):
    result = _run_cell([], install_cell_source(repository_url()), tmp_path)
    assert result.returncode == 0, result.stderr


def test_install_cell_calls_pip_with_the_source_when_the_package_is_missing(tmp_path):
    # -S: no site-packages, so bncourse cannot be found and the cell must call pip,
    # which fails on the deliberately missing BNCOURSE_SOURCE.
    result = _run_cell(["-S"], install_cell_source(repository_url()), tmp_path)
    assert result.returncode != 0
    assert "no-such-source" in result.stderr
