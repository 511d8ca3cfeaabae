"""Where a number came from: the commit, the package versions, the device and the threads.

``commit()`` is ``git rev-parse HEAD`` of the work tree that holds the
package, with ``+dirty`` appended when tracked files have uncommitted changes
(``"unknown"`` outside a git checkout, e.g. an installed wheel). ``versions()``
is a canonical JSON string of the versions that can change a number: Python,
NumPy, SciPy, scikit-learn, PyTorch and statsmodels.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from importlib import metadata

__all__ = ["commit", "versions", "device_name"]

_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "statsmodels")


@functools.lru_cache(maxsize=None)
def commit() -> str:
    """The git commit of the package's work tree (``+dirty`` with local changes)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=None)
def versions() -> str:
    """Canonical JSON ``{"python": ..., "numpy": ..., ...}`` of the versions that matter."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return json.dumps(found, sort_keys=True, separators=(",", ":"))


def device_name(device: str) -> str:
    """``"cpu"`` with the processor architecture, or the CUDA device's name."""
    if device == "cuda":
        import torch

        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.machine()}"
