"""Where the repository and the built book are, for the tests in this folder."""

from __future__ import annotations

import os
from pathlib import Path

BROWSER_TESTS = Path(__file__).resolve().parent
REPO_ROOT = BROWSER_TESTS.parents[1]


def html_dir_from_env() -> Path:
    """The built HTML book: ``$BNCOURSE_HTML_DIR``, else ``_build/html`` of the repository."""
    return Path(os.environ.get("BNCOURSE_HTML_DIR", REPO_ROOT / "_build" / "html")).resolve()
