"""A chapter run where ``bncourse`` is missing installs it and runs to the end.

This is what a reader meets on Colab: the kernel has the scientific stack but
not the course package. The environment is made by ``colab_env`` (the
dependencies that ``bncourse`` declares, a kernel, pip and setuptools); the
first cell of the chapter installs the package from ``BNCOURSE_SOURCE``, here a
copy of this repository, with pip offline. The chapter is the first notebook of
``_toc.yml``.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import nbformat
import pytest
import yaml
from book_paths import REPO_ROOT
from colab_env import make_colab_like_env

EXECUTION_TIMEOUT_S = 600


def first_chapter() -> str:
    """The first document of ``_toc.yml`` that is a notebook, as ``book/name.ipynb``."""
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c for part in toc.get("parts", []) for c in part.get("chapters", [])]
    chapters += toc.get("chapters", [])
    entries = [c["file"] for c in chapters if "file" in c]
    for entry in entries:
        if (REPO_ROOT / f"{entry}.ipynb").is_file():
            return f"{entry}.ipynb"
    pytest.fail("no notebook chapter in _toc.yml")


def copy_source(target):
    """What pip needs to build the package, and the book, copied without build leftovers."""
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "build", "_build", ".ipynb_checkpoints"
    )
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, target / name)
    for name in ("bncourse", "book"):
        shutil.copytree(REPO_ROOT / name, target / name, ignore=ignore)
    return target


def imports_bncourse(python, cwd) -> bool:
    code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('bncourse') else 1)"
    return subprocess.run([str(python), "-c", code], cwd=cwd).returncode == 0


def test_first_chapter_installs_the_package_and_runs_in_a_fresh_environment(tmp_path, monkeypatch):
    source = copy_source(tmp_path / "source")
    python = make_colab_like_env(tmp_path / "env")
    chapter = source / first_chapter()
    assert not imports_bncourse(python, chapter.parent), "bncourse must be missing at first"

    # A kernel spec for the fresh environment, found before any other.
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "fresh", "language": "python"}), encoding="utf-8"
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("BNCOURSE_SOURCE", str(source))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: every dependency is already there
    # pip reads this variable inverted: 0 turns build isolation OFF, so setuptools
    # comes from the environment instead of an index.
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)

    from nbclient import NotebookClient

    notebook = nbformat.read(chapter, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=EXECUTION_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "not every code cell ran"
    assert imports_bncourse(python, chapter.parent), "the first cell did not install bncourse"
    located = subprocess.run(
        [str(python), "-c", "import bncourse; print(bncourse.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert located.startswith(str(tmp_path / "env")), f"bncourse came from {located}"
