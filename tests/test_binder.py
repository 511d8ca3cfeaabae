"""The Binder environment (binder/) holds what readers need to run the chapters, and no more.

Binder cannot be reached from the test machine, so these checks read the files
that repo2docker reads. binder/requirements.txt must name PyTorch's CPU index
and the CPU build of exactly the torch version pinned in requirements.txt; list
every runtime dependency of pyproject.toml, pinned as in requirements.txt, and
nothing else; and resolve, with pip, against the package index (PyTorch's CPU
index is out of reach offline, so the resolution uses the same torch version
from the default index). binder/postBuild must install the package from the
repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
BINDER = REPO_ROOT / "binder"
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
# What builds or tests the book: none of it belongs in a reader's environment.
BUILD_AND_TEST_TOOLS = {
    "jupyter-book", "sphinx", "myst-nb", "myst-parser", "sphinx-book-theme", "sphinx-exercise",
    "sphinxcontrib-bibtex", "jupyter-cache", "selenium", "pytest", "pytest-xdist",
    "pytest-timeout", "hypothesis", "nbval",
}


def requirement_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def pins(lines: list[str]) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line."""
    found = {}
    for line in lines:
        if line.startswith("-"):
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not an exact pin: {line}"
        found[canonicalize_name(requirement.name)] = specs[0].version
    return found


def runtime_dependencies() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {canonicalize_name(Requirement(d).name) for d in project["project"]["dependencies"]}


def test_binder_installs_the_cpu_build_of_the_pinned_torch():
    binder = requirement_lines(BINDER / "requirements.txt")
    root = pins(requirement_lines(REPO_ROOT / "requirements.txt"))
    assert CPU_INDEX in binder
    assert pins(binder)["torch"] == root["torch"].split("+", 1)[0] + "+cpu"


def test_binder_pins_exactly_the_runtime_dependencies_as_requirements_txt_does():
    binder = pins(requirement_lines(BINDER / "requirements.txt"))
    root = pins(requirement_lines(REPO_ROOT / "requirements.txt"))
    assert set(binder) == runtime_dependencies()
    for name, version in binder.items():
        assert version.split("+", 1)[0] == root[name].split("+", 1)[0], name
    assert not any(line.startswith("-r") for line in requirement_lines(BINDER / "requirements.txt"))


def test_binder_requirements_resolve_without_the_build_and_test_tools(tmp_path):
    lines = [line for line in requirement_lines(BINDER / "requirements.txt") if line != CPU_INDEX]
    offline = [re.sub(r"^torch==([^+]+)\+cpu$", r"torch==\1", line) for line in lines]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(offline) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PIP_NO_INDEX"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report), "-r", str(requirements)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text(encoding="utf-8"))["install"]
    }
    assert runtime_dependencies() <= set(resolved)
    assert not BUILD_AND_TEST_TOOLS & set(resolved), sorted(BUILD_AND_TEST_TOOLS & set(resolved))
    for name, version in pins(offline).items():  # a local "+cpu" build counts as that version
        assert resolved[name].split("+", 1)[0] == version, (name, resolved[name], version)


def test_binder_post_build_installs_the_package():
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert post_build.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    commands = requirement_lines(post_build)
    assert "set -euo pipefail" in commands
    assert any(re.search(r"pip install\b.*\s\.$", line) for line in commands), commands


def test_binder_runtime_is_a_python_3_version():
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
