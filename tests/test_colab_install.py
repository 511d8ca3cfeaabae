"""The first cell of every notebook installs the version of the package the book was built with.

On Colab (and in any fresh environment) ``bncourse`` is not installed; the
first cell of each chapter installs release ``v<version>`` from the repository
named in ``_config.yml`` (or whatever ``BNCOURSE_SOURCE`` names, for the tests),
where ``<version>`` is ``bncourse.__version__``, the version the book is built
from (the build checks it too: ``book/_ext/build_info.py``). Where the package
is installed it only compares the versions. The cell is shown in the book, and
its comments say what it does. The slow end-to-end check, a chapter run in a
fresh environment, is ``tests/browser/test_fresh_env.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import bncourse

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "book").glob("*.ipynb"))


def repository_url() -> str:
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def install_cell_source(url: str, version: str) -> str:
    """The exact first cell, for the repository ``url`` of ``_config.yml`` and ``version``."""
    return f"""# This page was built with bncourse {version}, the course's package. This cell makes sure you run
# the same version, so that your numbers match the text: where bncourse is missing (Colab, a
# fresh environment) it installs release v{version} from the course's repository; where it is
# already installed (Binder, the book's own build) it only checks the version.
BNCOURSE_VERSION = "{version}"
import importlib.metadata, os, subprocess, sys
try:
    installed = importlib.metadata.version("bncourse")
except importlib.metadata.PackageNotFoundError:
    source = os.environ.get(
        "BNCOURSE_SOURCE", f"git+{url}@v{{BNCOURSE_VERSION}}"
    )
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)
    importlib.invalidate_caches()
    installed = importlib.metadata.version("bncourse")
if installed == BNCOURSE_VERSION:
    print(f"bncourse {{installed}}: the version this page was built with.")
else:
    print(f"bncourse {{installed}} is installed, but this page was built with {{BNCOURSE_VERSION}}:"
          " numbers may differ from the text.")"""


def book_install_cell() -> str:
    return install_cell_source(repository_url(), bncourse.__version__)


def first_cell(notebook: Path) -> dict:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    assert cells, f"{notebook.name} has no cells"
    return cells[0]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebook in book/"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_first_cell_is_the_visible_pinned_install_cell(notebook):
    cell = first_cell(notebook)
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    assert cell["cell_type"] == "code"
    assert source.rstrip() == book_install_cell()
    hidden = {"remove-cell", "remove-input", "hide-cell", "hide-input"}
    assert not hidden & set(cell.get("metadata", {}).get("tags", [])), "the cell must be visible"
    assert not cell.get("outputs"), "commit notebooks without outputs"


def test_the_package_has_one_version_and_the_install_cell_pins_it():
    import importlib.metadata

    assert importlib.metadata.version("bncourse") == bncourse.__version__
    assert f'BNCOURSE_VERSION = "{bncourse.__version__}"' in book_install_cell()
    assert f"@v{{BNCOURSE_VERSION}}" in book_install_cell()


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


def test_install_cell_only_checks_the_version_when_the_package_is_present(tmp_path):
    result = _run_cell([], book_install_cell(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"bncourse {bncourse.__version__}: the version this page was built with.\n"


def test_install_cell_says_so_when_another_version_is_installed(tmp_path):
    result = _run_cell([], install_cell_source(repository_url(), "0.0.0-other"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "but this page was built with 0.0.0-other" in result.stdout


def test_install_cell_calls_pip_with_the_source_when_the_package_is_missing(tmp_path):
    # -S: no site-packages, so bncourse cannot be found and the cell must call pip,
    # which fails on the deliberately missing BNCOURSE_SOURCE.
    result = _run_cell(["-S"], book_install_cell(), tmp_path)
    assert result.returncode != 0
    assert "no-such-source" in result.stderr
