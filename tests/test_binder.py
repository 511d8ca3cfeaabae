"""The Binder environment (binder/) installs a CPU build of torch and the package.

Binder cannot be reached from the test machine, so these checks read the files
that repo2docker reads: binder/requirements.txt must name PyTorch's CPU index and
the CPU build of exactly the torch version pinned in requirements.txt, include
those pins, and binder/postBuild must install the package from the repository.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BINDER = REPO_ROOT / "binder"


def requirement_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def torch_pin(lines: list[str]) -> str:
    pins = [m.group(1) for line in lines if (m := re.fullmatch(r"torch\s*==\s*(\S+)", line))]
    assert len(pins) == 1, f"expected one exact torch pin, got {pins}"
    return pins[0]


def test_binder_installs_the_cpu_build_of_the_pinned_torch():
    binder = requirement_lines(BINDER / "requirements.txt")
    root = requirement_lines(REPO_ROOT / "requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in binder
    assert torch_pin(binder) == torch_pin(root).split("+", 1)[0] + "+cpu"


def test_binder_uses_the_pinned_requirements():
    binder = requirement_lines(BINDER / "requirements.txt")
    assert "-r ../requirements.txt" in binder
    assert (BINDER / "../requirements.txt").resolve() == REPO_ROOT / "requirements.txt"


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
