"""Exercise cells in notebooks: read them from submissions, make them for chapters.

A submission is read as plain JSON (no nbformat validation, no code
execution): any nbformat-4 notebook whose code cells carry an
``exercise:<id>`` tag. What cannot be read is reported, not raised: a file
that is not a regular file (a symlink, a FIFO, a device) is refused before it
is opened for reading, at most :data:`MAX_NOTEBOOK_BYTES` are read, and every
parse error (deep nesting included) becomes the submission's error.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field

__all__ = ["Submission", "read_submission", "read_bounded", "exercise_cells", "check_source",
           "TAG_PREFIX", "MAX_NOTEBOOK_BYTES", "MAX_CELL_CHARS"]

TAG_PREFIX = "exercise:"
MAX_NOTEBOOK_BYTES = 20_000_000
#: Longest exercise cell the grader runs (longer ones earn nothing, unparsed).
MAX_CELL_CHARS = 1_000_000
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


def read_bounded(path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing symlinks and anything over ``limit``.

    The file is opened without following a symlink and without blocking (a
    FIFO), checked to be a regular file through its descriptor, and read for at
    most ``limit + 1`` bytes. Raises ``ValueError`` (or ``OSError``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise ValueError("a symbolic link, not a regular file") from None
        raise exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError("not a regular file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"larger than {limit} bytes")
    return b"".join(chunks)


def read_submission(path) -> Submission:
    """Read the exercise cells of the notebook at ``path``; never raises for a bad file."""
    path = os.fspath(path)
    sub = Submission(path=path)
    try:
        nb = json.loads(read_bounded(path, MAX_NOTEBOOK_BYTES).decode("utf-8"))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells (not an nbformat 4 notebook)")
        if nb.get("nbformat") != 4:
            raise ValueError(f"nbformat {repr(nb.get('nbformat'))[:20]}, expected 4")
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
    except Exception as exc:        # whatever the file holds, it is this submission's problem
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
