"""Write the solution notebooks, for instructors: ``make solutions`` (``_build/solutions/``).

Usage::

    .venv/bin/python tests/exercises/make_solutions.py [OUT_FOLDER]

For every chapter notebook with graded exercises, a copy in which each exercise
cell holds the learner-style solution of ``tests/exercises/test_chNN.py``
(the first of its ``SOLUTIONS``, with the module-level helpers it uses), then
every copy graded by ``bncourse.grade`` exactly as a submission would be: the
script fails unless each exercise earns its full points. The copies live
outside the tracked files (``_build/`` is ignored by git), so the notebooks
learners receive keep their stubs.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
import types
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _module(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module         # inspect finds a class's source through it
    spec.loader.exec_module(module)
    return module


def _names(source: str) -> set:
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}


def solution_source(module: types.ModuleType, obj) -> str:
    """The cell for ``obj``: ``import numpy as np``, the helpers it needs, then ``obj`` itself."""
    wanted, order, seen = [obj], [], set()
    while wanted:
        item = wanted.pop()
        if item.__name__ in seen:
            continue
        seen.add(item.__name__)
        order.append(item)
        for name in sorted(_names(textwrap.dedent(inspect.getsource(item)))):
            helper = getattr(module, name, None)
            if (inspect.isfunction(helper) or inspect.isclass(helper)) \
                    and getattr(helper, "__module__", None) == module.__name__:
                wanted.append(helper)
    parts = [textwrap.dedent(inspect.getsource(item)).rstrip() for item in reversed(order)]
    return "import numpy as np\n\n\n" + "\n\n\n".join(parts) + "\n"


def write_solutions(out: Path) -> list[Path]:
    """One solved copy per chapter notebook with solutions; returns their paths."""
    from bncourse.exercises import get_exercise

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(HERE.glob("test_ch[0-9][0-9].py")):
        module = _module(path)
        solved = {}
        for exercise_id, functions in module.SOLUTIONS.items():
            first = functions[0] if isinstance(functions, (list, tuple)) else functions
            solved[exercise_id] = solution_source(module, first)
        notebooks = {get_exercise(i).notebook for i in solved}
        for notebook in sorted(notebooks):
            nb = nbformat.read(ROOT / notebook, as_version=4)
            for cell in nb.cells:
                for tag in cell.metadata.get("tags", []):
                    if tag.startswith("exercise:") and tag[len("exercise:"):] in solved:
                        cell.source = solved[tag[len("exercise:"):]].rstrip("\n")
            target = out / Path(notebook).name
            nbformat.write(nb, target)
            written.append(target)
    return written


def main(argv=None) -> int:
    from bncourse.grade import grade

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ROOT / "_build" / "solutions"
    written = write_solutions(out)
    rows = grade([str(p) for p in written])
    short = [r for r in rows if r.points != r.max_points]
    for r in rows:
        mark = "ok  " if r.points == r.max_points else "FAIL"
        print(f"{mark} {Path(r.submission).name:40s} {r.exercise:30s} "
              f"{r.points:g}/{r.max_points:g}" + ("" if mark == "ok  " else f"  {r.feedback}"))
    total = sum(r.points for r in rows)
    print(f"{len(written)} solution notebooks in {out}: {total:g} of "
          f"{sum(r.max_points for r in rows):g} points, {len(rows)} exercises")
    return 1 if short or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
