"""Every figure of the chapters has a name, a caption and alternative text that describes it.

Figures are the outputs of code cells whose metadata names them
(``mystnb.figure.name``) and captions them (``mystnb.figure.caption``); myst-nb
writes ``mystnb.image.alt`` into the ``alt`` attribute of the image, which is
what a screen reader reads out instead of the picture. The alternative text
must say what the figure shows and what to read from it: at least
``MIN_FIGURE_ALT_WORDS`` words, and not the caption again. The browser test
(tests/browser) checks the same on the built pages, for every image.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "book").glob("*.ipynb"))


def _min_words() -> int:
    spec = importlib.util.spec_from_file_location(
        "accessibility", REPO_ROOT / "tests" / "browser" / "accessibility.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MIN_FIGURE_ALT_WORDS


MIN_FIGURE_ALT_WORDS = _min_words()


def figures(notebook: Path) -> list[dict]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [c["metadata"]["mystnb"] for c in cells
            if "figure" in c.get("metadata", {}).get("mystnb", {})]


def test_the_chapters_have_figures():
    assert sum(len(figures(n)) for n in NOTEBOOKS) > 0


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_every_figure_has_a_name_a_caption_and_alt_text(notebook):
    problems = []
    for meta in figures(notebook):
        figure = meta["figure"]
        name = figure.get("name", "<no name>")
        alt = (meta.get("image", {}).get("alt") or "").strip()
        if not figure.get("caption", "").strip():
            problems.append(f"{name}: no caption")
        if len(alt.split()) < MIN_FIGURE_ALT_WORDS:
            problems.append(f"{name}: alt text of {len(alt.split())} words {alt!r}, "
                            f"expected at least {MIN_FIGURE_ALT_WORDS}")
        elif alt == figure.get("caption", "").strip():
            problems.append(f"{name}: the alt text repeats the caption")
    assert problems == [], "\n".join(problems)
