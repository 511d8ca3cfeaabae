"""A fresh virtual environment that looks like Colab's, made offline in seconds.

Colab has PyTorch, NumPy, Matplotlib, scikit-learn, tqdm, a Jupyter kernel,
pip and setuptools, but not ``bncourse`` and not the tools that build the book.
``make_colab_like_env`` creates a new virtual environment (without pip's own
bootstrap) and links into its ``site-packages`` exactly the distributions that
``bncourse`` declares as dependencies, the kernel, pip and setuptools, each with
everything it requires in turn, taken from the environment running this code.
A package that a notebook imports without declaring it is therefore missing
there, as it would be on Colab, and ``bncourse`` itself is missing until the
notebook's first cell installs it.

Only new files are ever written into the new environment: pip finds every
dependency already present and installs nothing but ``bncourse``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Present on Colab, and needed to run and install: the kernel, pip, and setuptools
# (pyproject.toml's build backend, used without build isolation when offline).
COLAB_BASE = ("ipykernel", "pip", "setuptools")


def _requirements(dist: importlib.metadata.Distribution) -> list[str]:
    """Names of what ``dist`` requires on this platform, extras left out."""
    environment = {**default_environment(), "extra": ""}
    names = []
    for spec in dist.requires or []:
        requirement = Requirement(spec)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.append(requirement.name)
    return names


def dependency_closure(roots: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """Every installed distribution that ``roots`` need, by canonical name."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        dist = importlib.metadata.distribution(name)  # raises PackageNotFoundError if absent
        found[name] = dist
        todo.extend(_requirements(dist))
    return found


def top_level_entries(dist: importlib.metadata.Distribution) -> set[str]:
    """What ``dist`` puts directly in site-packages: packages, modules, .pth, dist-info."""
    if dist.files is None:
        name = dist.metadata["Name"]
        raise ValueError(f"top_level_entries: {name} must list its files (RECORD), got none")
    return {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}


def make_colab_like_env(env_dir: Path, package: str = "bncourse") -> Path:
    """Create the environment in ``env_dir``; return its Python interpreter.

    ``package`` names the distribution whose declared dependencies are linked;
    the package itself is never linked.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    roots = _requirements(importlib.metadata.distribution(package)) + list(COLAB_BASE)
    closure = dependency_closure(roots)
    if canonicalize_name(package) in closure:
        raise ValueError(
            f"make_colab_like_env: {package} must not depend on itself, got {sorted(closure)}"
        )
    for dist in closure.values():
        source_site = Path(dist.locate_file(""))
        for entry in top_level_entries(dist):
            link = site / entry
            if not link.exists():
                link.symlink_to(source_site / entry)
    return python
