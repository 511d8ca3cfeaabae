"""Exercise cells in notebooks: read them from submissions, make them for chapters.

A submission is read as plain JSON (no nbformat validation, no code
execution): any nbformat-4 notebook whose code cells carry an
``exercise:<id>`` tag. What cannot be read is reported, not raised.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

__all__ = ["Submission", "read_submission", "exercise_cells", "check_source", "TAG_PREFIX"]

TAG_PREFIX = "exercise:"
MAX_NOTEBOOK_BYTES = 50_000_000
_MAGIC = re.compile(r"^(\s*)([%!].*)$", re.MULTILINE)


@dataclass
class Submission:
    """A submitted notebook: the source of each tagged exercise cell, or why it is unreadable.

    Attributes
    ----------
    path : str
    cells : dict
        Exercise id -> list of the sources of the code cells with that tag.
    error : str or None
        Set when the notebook is malformed (then ``cells`` is empty).
    """

    path: str
    cells: dict = field(default_factory=dict)
    error: str | None = None


def _source(cell) -> str:
    src = cell.get("source", "")
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    if isinstance(src, str):
        return src
    raise ValueError("a cell's source is neither a string nor a list of strings")


def read_submission(path) -> Submission:
    """Read the exercise cells of the notebook at ``path``; never raises for a bad file."""
    path = os.fspath(path)
    sub = Submission(path=path)
    try:
        if os.path.getsize(path) > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES} bytes")
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells (not an nbformat 4 notebook)")
        if nb.get("nbformat") != 4:
            raise ValueError(f"nbformat {nb.get('nbformat')!r}, expected 4")
        for cell in nb["cells"]:
            if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
                raise ValueError("a cell without a cell_type")
            meta = cell.get("metadata", {})
            tags = meta.get("tags", []) if isinstance(meta, dict) else []
            if not isinstance(tags, list):
                continue
            for tag in tags:
                if isinstance(tag, str) and tag.startswith(TAG_PREFIX) and \
                        cell["cell_type"] == "code":
                    sub.cells.setdefault(tag[len(TAG_PREFIX):], []).append(_source(cell))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        sub.cells = {}
        sub.error = f"malformed notebook ({type(exc).__name__}: {str(exc)[:200]})"
    return sub


def check_source(source: str) -> str:
    """The cell's code as the grader runs it: IPython magics and shell lines commented out."""
    return _MAGIC.sub(r"\1# \2", source)


def exercise_cells(ex) -> list:
    """The exercise cell (tagged, holding the stub) and the check cell, as nbformat cells.

    Append them after a chapter's "## Exercises" heading::

        nb.cells += exercise_cells(get_exercise("ch01-standardize-train-test"))
    """
    import nbformat

    stub = nbformat.v4.new_code_cell(ex.default_stub().rstrip("\n"),
                                     metadata={"tags": [ex.tag]})
    check = nbformat.v4.new_code_cell(
        f'from bncourse.exercises import check\n\ncheck("{ex.id}", {ex.function})')
    return [stub, check]
