"""The package's layout as CONTRIBUTING.md describes it: rooms, import direction, size.

Imports are read from the source with ``ast`` (imports inside functions
count), so these checks hold whatever a test run happens to import.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "bncourse"
MAX_TOP_MODULES = 20
MAX_LINES = 700
# Rooms from the top down; a module may import its own room and the rooms below it.
# Rooms of equal rank do not import each other.
RANK = {"grade": -1, "exercises": 0, "study": 0, "bench": 0, "experiments": 1, "lab": 2,
        "reference": 3}
PRIVATE_SHARED = {"bncourse._checks", "bncourse._kernels"}


def _modules():
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _room(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in RANK:
        return parts[1]
    return "reference"


def _imports(name: str, path: pathlib.Path):
    """(imported module, imported names) for every bncourse import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bncourse"):
                    yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if not mod.startswith("bncourse"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
            if submodules:
                for s in submodules:
                    yield s, []
            else:
                yield mod, names


def _graph():
    return {name: {m for m, _ in _imports(name, path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def test_at_most_twenty_modules_at_the_top():
    top = [p.name for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= MAX_TOP_MODULES, sorted(top)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_too_long(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_no_import_circle():
    graph = _graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_imports_point_down_only():
    upward = []
    for name, deps in _graph().items():
        if name == "bncourse":
            continue
        for dep in deps:
            if dep == "bncourse":
                continue
            if RANK[_room(dep)] < RANK[_room(name)] or (
                    _room(dep) != _room(name) and RANK[_room(dep)] == RANK[_room(name)]):
                upward.append(f"{name} -> {dep}")
    assert not upward, upward


def test_no_module_imports_private_names_of_another():
    # Private names stay in their module; the shared private modules (_checks, _kernels)
    # are the exception, and a package may use its own private modules.
    found = []
    for name, path in MODULES.items():
        for mod, names in _imports(name, path):
            if mod in PRIVATE_SHARED:
                continue
            found += [f"{name}: from {mod} import {n}" for n in names
                      if n.startswith("_") and not n.endswith("__")]
            own_package = mod.rpartition(".")[0] in (name, name.rpartition(".")[0])
            if mod.rpartition(".")[2].startswith("_") and not own_package:
                found.append(f"{name}: imports the private module {mod}")
    assert not found, found


def test_the_package_docstring_maps_every_top_module_and_room():
    doc = (ROOT / "__init__.py").read_text()
    names = [p.stem for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    missing = [n for n in names if f"\n{n} " not in doc]
    assert not missing, missing
