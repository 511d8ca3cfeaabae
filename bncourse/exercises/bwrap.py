"""The operating-system sandbox of a graded run: a bubblewrap command line.

:func:`bwrap_command` wraps the child's command in ``bwrap`` (Debian package
``bubblewrap``) so that it runs with

* its own user, PID, network, IPC, UTS and mount namespaces
  (``--unshare-all``, no network at all, no further user namespaces), as user
  ``nobody`` without capabilities, in a new session, killed with its parent
  (``--die-with-parent``); when its first process exits, the PID namespace
  ends and every process it started dies with it;
* a root file system that holds only what the exercise may use, read-only:
  the Python interpreter and its standard library (site-packages hidden), the
  allowed third-party packages (NumPy, by default) and the shared libraries
  they link to (found with ``ldd``), plus the child script itself. Neither
  ``bncourse`` nor the grader, the reference solutions, the other
  submissions or the user's files exist in there;
* a private, size-limited, writable ``/tmp`` (its working folder), a fresh
  ``/proc`` and a minimal ``/dev``;
* a seccomp filter (on x86-64 and AArch64) that refuses new processes
  (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``) with ``EPERM``,
  so that a submission cannot multiply its memory or CPU limit.

:func:`check_bwrap` runs Python once in that very sandbox and raises
:class:`SandboxUnavailable`, with the reason and the ways out, where it
cannot be built (an unprivileged container, a kernel without unprivileged
user namespaces, an old bubblewrap) or bubblewrap is not installed. A run
that fails later is then the submission's doing, never the sandbox's.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import shutil
import struct
import subprocess
import sys
import sysconfig
from functools import lru_cache

__all__ = ["SandboxUnavailable", "bwrap_command", "check_bwrap", "module_paths",
           "seccomp_filter", "BWRAP_ENV", "CHILD_PATH"]

#: Environment variable naming the bubblewrap executable (default: ``bwrap`` on PATH).
BWRAP_ENV = "BNCOURSE_BWRAP"
#: Where the child script appears inside the sandbox.
CHILD_PATH = "/sandbox/child.py"
_TMP_BYTES = 64 * 2**20
_NOBODY = "65534"


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here; the message says why and how to proceed."""


def _bwrap() -> str | None:
    return os.environ.get(BWRAP_ENV) or shutil.which("bwrap")


_PROBE = "import os, sys\nsys.path.extend(sys.argv[2:])\n{imports}os.write(int(sys.argv[1]), b'sandbox ok')\n"


@lru_cache(maxsize=None)
def _probe(executable: str | None, allowed_modules: tuple = ("numpy",)) -> str | None:
    """``None`` when ``executable`` builds our very sandbox and runs Python in it, else why."""
    if executable is None:
        return "bubblewrap (bwrap) is not installed"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bncourse-probe-") as work:
        script = os.path.join(work, "probe.py")
        with open(script, "w") as f:
            f.write(_PROBE.format(imports="".join(f"import {m}\n" for m in allowed_modules)))
        read, write = os.pipe()
        try:
            command = bwrap_command(executable, script, write, None, allowed_modules,
                                    env={"PATH": os.defpath})
            run = subprocess.run(command, pass_fds=(write,), capture_output=True,
                                 timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            return f"{executable} could not be started ({exc})"
        finally:
            os.close(write)
        try:
            answer = os.read(read, 64)
        finally:
            os.close(read)
    if run.returncode != 0 or answer != b"sandbox ok":
        text = run.stderr.decode("utf-8", "replace").strip() or f"exit status {run.returncode}"
        return f"{executable} failed: {text[-300:]}"
    return None


def check_bwrap(allowed_modules=("numpy",)) -> str:
    """The bubblewrap executable, after running Python with ``allowed_modules`` in the very
    sandbox the grader builds (once per process and module set).

    Raises
    ------
    SandboxUnavailable
        With the reason and what to do instead.
    """
    executable = _bwrap()
    reason = _probe(executable, tuple(allowed_modules))
    if reason is not None:
        raise SandboxUnavailable(
            f"grade: cannot sandbox the submissions: {reason}. The grader runs every "
            f"exercise cell inside bubblewrap, which needs user namespaces: install it "
            f"(Debian/Ubuntu: apt-get install bubblewrap) and allow unprivileged user "
            f"namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
            f"user.max_user_namespaces > 0; Ubuntu 24.04: "
            f"kernel.apparmor_restrict_unprivileged_userns=0), or, inside Docker, start the "
            f"container with --security-opt seccomp=unconfined --security-opt "
            f"apparmor=unconfined. Where that is impossible, --sandbox rlimits grades with "
            f"resource limits and an audit hook only (no isolation from the file system; "
            f"the gradebook records it): acceptable inside a throw-away container per "
            f"submission, not on a machine with anything to protect.")
    return executable


# --------------------------------------------------------------------------- the view

def module_paths(name: str) -> tuple[str, list[str]]:
    """``(import_root, paths)`` of an installed top-level module, without importing it.

    ``paths`` are the package folder (or module file) and the folders of
    libraries vendored next to it by wheel repair tools (``numpy.libs``).
    """
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin in (None, "built-in", "frozen") and \
            not spec.submodule_search_locations:
        raise ValueError(f"grade: allowed module {name!r} is not installed (or is built in)")
    if spec.submodule_search_locations:
        paths = [os.path.realpath(p) for p in spec.submodule_search_locations]
    else:
        paths = [os.path.realpath(spec.origin)]
    root = os.path.dirname(paths[0])
    for vendored in (f"{name}.libs", f".{name}.mesonpy.libs", f"{name}.dylibs"):
        candidate = os.path.join(root, vendored)
        if os.path.isdir(candidate):
            paths.append(os.path.realpath(candidate))
    return root, paths


def _stdlib_dirs() -> list[str]:
    dirs = {os.path.realpath(sysconfig.get_path(k, vars={"base": sys.base_prefix,
                                                         "platbase": sys.base_exec_prefix}))
            for k in ("stdlib", "platstdlib")}
    return sorted(d for d in dirs if os.path.isdir(d))


def _shared_objects(paths) -> list[str]:
    """The ``.so`` files under ``paths``, site-packages folders left out."""
    found = []
    for path in paths:
        if os.path.isfile(path):
            found.append(path)
        else:
            for dirpath, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if d not in ("site-packages", "dist-packages")]
                found += [os.path.join(dirpath, f) for f in files
                          if f.endswith(".so") or ".so." in f]
    return found


def _inside(path: str, dirs) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


@lru_cache(maxsize=None)
def _libraries(objects: tuple) -> tuple:
    """The shared libraries that ``objects`` need (``ldd``), or whole system folders."""
    ldd = shutil.which("ldd")
    libs = set()
    if ldd is not None:
        for start in range(0, len(objects), 200):
            run = subprocess.run([ldd, *objects[start:start + 200]], capture_output=True,
                                 text=True, timeout=120)
            for line in run.stdout.splitlines():
                for word in line.split():
                    if word.startswith("/") and os.path.exists(word):
                        libs.add(os.path.normpath(word))
    if not libs:        # no ldd (or it found nothing): the system library folders
        libs = {d for d in ("/lib", "/lib64", "/usr/lib", "/usr/lib64") if os.path.isdir(d)}
    return tuple(sorted(libs))


def _site_dirs_under(dirs) -> list[str]:
    import site

    candidates = set(site.getsitepackages()) | {site.getusersitepackages()}
    for d in dirs:
        candidates |= set(glob.glob(os.path.join(d, "site-packages")))
        candidates |= set(glob.glob(os.path.join(d, "dist-packages")))
    out = []
    for c in candidates:
        real = os.path.realpath(c)
        if os.path.isdir(real) and any(real.startswith(d.rstrip("/") + "/") for d in dirs):
            out.append(real)
    return sorted(set(out))


@lru_cache(maxsize=None)
def _view(allowed_modules: tuple) -> tuple[tuple, tuple]:
    """``(bwrap arguments for the file system, import roots)``, cached per module set."""
    python = os.path.realpath(sys.executable)
    stdlib = _stdlib_dirs()
    roots, module_dirs = [], []
    for name in allowed_modules:
        root, paths = module_paths(name)
        if root not in roots:
            roots.append(root)
        module_dirs += paths
    libpython = [p for p in glob.glob(os.path.join(sys.base_prefix, "lib", "libpython*.so*"))]
    objects = [python, *libpython, *_shared_objects(stdlib), *_shared_objects(module_dirs)]
    bound = [python, *stdlib, *module_dirs]
    libs = [lib for lib in _libraries(tuple(sorted(set(objects))))
            if not _inside(lib, bound) and not _inside(os.path.realpath(lib), bound)]
    args = []
    for path in sorted({python, *stdlib, *libpython, *libs}):
        args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    hidden = _site_dirs_under(stdlib)
    for site_dir in hidden:                 # the interpreter's own site-packages: empty
        args += ["--tmpfs", site_dir]
    for path in module_dirs:
        args += ["--ro-bind", path, path]
    for site_dir in hidden:
        args += ["--remount-ro", site_dir]
    return tuple(args), tuple(roots)


def bwrap_command(executable: str, child: str, result_fd: int, seccomp_fd: int | None,
                  allowed_modules=("numpy",), env: dict | None = None) -> list[str]:
    """The command line that runs ``child`` (the child script) in the sandbox.

    Parameters
    ----------
    executable : str
        bubblewrap (from :func:`check_bwrap`).
    child : str
        Path of ``_child.py`` on this machine (bound read-only at :data:`CHILD_PATH`).
    result_fd : int
        The result pipe, inherited by the child.
    seccomp_fd : int or None
        A file descriptor holding :func:`seccomp_filter`'s program.
    allowed_modules : sequence of str
        Top-level third-party modules the exercise may import.
    env : dict
        The child's whole environment.
    """
    view, roots = _view(tuple(allowed_modules))
    args = [executable, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", _NOBODY, "--gid",
            _NOBODY, "--hostname", "sandbox", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--clearenv"]
    for key, value in (env or {}).items():
        args += ["--setenv", key, value]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(_TMP_BYTES), "--tmpfs", "/tmp",
             "--dir", "/tmp/work", "--chdir", "/tmp/work", *view,
             "--ro-bind", child, CHILD_PATH, "--remount-ro", "/"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    python = os.path.realpath(sys.executable)
    return args + ["--", python, "-I", "-S", "-B", "-u", CHILD_PATH, str(result_fd), *roots]


# --------------------------------------------------------------------------- seccomp

# (audit architecture, fork, vfork, clone, clone3); None where a call does not exist.
_ARCHES = {"x86_64": (0xC000003E, 57, 58, 56, 435), "aarch64": (0xC00000B7, None, None, 220, 435)}
_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 0x00050000 | 1, 0x00050000 | 38
_CLONE_THREAD = 0x00010000


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """A classic-BPF seccomp program that refuses new processes; ``None`` on other machines.

    ``fork``/``vfork`` and ``clone`` without ``CLONE_THREAD`` fail with EPERM
    (threads stay possible); ``clone3`` fails with ENOSYS, so that the C
    library falls back to ``clone``. A foreign system-call ABI ends the process.
    """
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit, fork, vfork, clone, clone3 = arch
    prog = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, audit), (_RET, 0, 0, _KILL),
            (_LD_W_ABS, 0, 0, 0)]
    if audit == 0xC000003E:                       # x32 system calls share the architecture
        prog += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, _KILL)]
    for nr in (fork, vfork):
        if nr is not None:
            prog += [(_JEQ, 0, 1, nr), (_RET, 0, 0, _EPERM)]
    prog += [(_JEQ, 0, 1, clone3), (_RET, 0, 0, _ENOSYS),
             (_JEQ, 1, 0, clone), (_RET, 0, 0, _ALLOW),
             (_LD_W_ABS, 0, 0, 16),                # low half of the first argument: flags
             (_JSET, 0, 1, _CLONE_THREAD), (_RET, 0, 0, _ALLOW), (_RET, 0, 0, _EPERM)]
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)
