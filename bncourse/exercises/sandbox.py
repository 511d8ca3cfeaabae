"""Run one exercise cell in its own process, with limits, and bring back only numbers.

:func:`run_cell` starts ``python -I -B -u _child.py`` (isolated mode: no
user site, no environment variables, no script folder on ``sys.path``;
unbuffered, so every byte printed is counted), sends it the cell's source
and the cases' arguments on stdin, and reads two pipes: the child's own
output (capped: a flood kills it) and the result frame. A wall-clock timer
kills the whole process group, and so does the end of every run. The child
sets its CPU, memory, file-size, process and core limits and an audit hook
before the learner's code runs (see ``_child``).

Two sandboxes (``sandbox=``):

``"bwrap"`` (default)
    The child runs inside bubblewrap (see ``bwrap``): own PID, network, IPC
    and mount namespaces, a read-only file system holding only Python, NumPy
    and the exercise's allowed modules, a private ``/tmp``, no new processes,
    killed with the grader. The audit hook is a second layer.
``"rlimits"``
    The child runs on the grader's own file system, in an empty temporary
    folder, with the resource limits and the audit hook only.

The outcome is a :class:`RunOutcome`: a status and, when the cell ran, one
entry per case, either the decoded output or the error it raised.
"""

from __future__ import annotations

import importlib.util
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from bncourse.exercises import _child
from bncourse.exercises.bwrap import bwrap_command, check_bwrap, seccomp_filter

__all__ = ["Limits", "RunOutcome", "run_cell", "SANDBOXES"]

#: The sandboxes ``run_cell`` knows, strongest first.
SANDBOXES = ("bwrap", "rlimits")

_CHILD = Path(_child.__file__).resolve()


@dataclass(frozen=True)
class Limits:
    """Resource limits for one exercise of one submission.

    Attributes
    ----------
    timeout : float
        Wall-clock seconds (the CPU limit is the same, rounded up).
    memory_mb : int
        Address-space limit of the child, MiB (NumPy itself needs ~100).
    max_output_bytes : int
        What the cell may print (stdout and stderr together).
    max_result_bytes : int
        Size of the returned outputs.
    """

    timeout: float = 10.0
    memory_mb: int = 1024
    max_output_bytes: int = 1_000_000
    max_result_bytes: int = 64_000_000


@dataclass
class RunOutcome:
    """``status`` is ``"ok"`` when the function ran on every case (each entry of
    ``cases`` is ``("out", value, modified)`` or ``("error", text, kind)``);
    otherwise the cell earned nothing and ``message`` says why."""

    status: str
    message: str = ""
    cases: list = field(default_factory=list)
    wall_s: float = 0.0


@lru_cache(maxsize=None)
def _forbidden_dirs(modules: tuple) -> tuple:
    """Folders of the forbidden packages (without importing them), real and as found."""
    dirs = set()
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        if not locations and spec.origin and os.path.isabs(spec.origin):
            locations = [spec.origin]
        for loc in locations:
            dirs.add(os.path.abspath(loc))
            dirs.add(os.path.realpath(loc))
    return tuple(sorted(dirs))


def _child_env(home: str) -> dict:
    env = {"PATH": os.defpath, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8"}
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[var] = "1"
    return env


def run_cell(source: str, function: str, cases, *, forbidden_modules=(), pure: bool = True,
             limits: Limits = Limits(), sandbox: str = "bwrap",
             allowed_modules=("numpy",)) -> RunOutcome:
    """Run ``source`` in a sandboxed child, call ``function`` on every case, return outputs.

    Parameters
    ----------
    source : str
        The exercise cell's code.
    function : str
        Name of the function the cell defines.
    cases : list of core.Case
        Their arguments are sent to the child (built by the caller).
    forbidden_modules : tuple of str
        Top-level modules the child may neither import nor read.
    pure : bool
        Report input arrays modified in place.
    limits : Limits
    sandbox : {"bwrap", "rlimits"}
        See the module docstring. ``"bwrap"`` raises
        ``bwrap.SandboxUnavailable`` where bubblewrap cannot run.
    allowed_modules : sequence of str
        Third-party top-level modules visible in the bubblewrap sandbox.
    """
    if sandbox not in SANDBOXES:
        raise ValueError(f"run_cell: sandbox must be one of {SANDBOXES}, got {sandbox!r}")
    executable = check_bwrap(allowed_modules) if sandbox == "bwrap" else None
    arrays: list = []
    trees = [[_child.encode(v, arrays) for v in case.args.values()] for case in cases]
    names = list(cases[0].args) if cases else []
    header = {
        "source": source, "function": function, "cases": trees, "arg_names": names,
        "pure": bool(pure), "forbidden_modules": list(forbidden_modules),
        "forbidden_dirs": list(_forbidden_dirs(tuple(forbidden_modules) +
                                               _child.PROCESS_MODULES)),
        "limits": {"memory_bytes": int(limits.memory_mb) * 2**20,
                   "cpu_seconds": max(1, math.ceil(limits.timeout))},
    }
    frame = _child.pack(header, arrays)
    with tempfile.TemporaryDirectory(prefix="bncourse-grade-") as work, \
            tempfile.TemporaryFile(dir=work) as stdin:
        stdin.write(frame)
        stdin.seek(0)
        cwd = os.path.join(work, "cwd")
        os.mkdir(cwd)
        start = time.monotonic()
        if executable is None:
            outcome = _execute(stdin, cwd, work, limits, None)
        else:
            with tempfile.TemporaryFile(dir=work) as bpf:
                program = seccomp_filter()
                if program is not None:
                    bpf.write(program)
                    bpf.seek(0)
                outcome = _execute(stdin, cwd, work, limits,
                                   (executable, bpf.fileno() if program else None,
                                    tuple(allowed_modules)))
        outcome.wall_s = time.monotonic() - start
        if outcome.status in ("ok", "not_attempted", "cell_error", "missing_function") and \
                os.listdir(cwd):
            outcome = RunOutcome("violation", "the code wrote files (not allowed while "
                                              "grading)")
    return outcome


def _execute(stdin, cwd: str, home: str, limits: Limits, bwrap) -> RunOutcome:
    result_r, result_w = os.pipe()
    fds = (result_w,)
    if bwrap is None:
        command = [sys.executable, "-I", "-B", "-u", str(_CHILD), str(result_w)]
        env = _child_env(home)
    else:
        executable, seccomp_fd, allowed = bwrap
        fds += (seccomp_fd,) if seccomp_fd is not None else ()
        command = bwrap_command(executable, str(_CHILD), result_w, seccomp_fd, allowed,
                                env=_child_env("/tmp/work"))
        env = {"PATH": os.defpath}
    try:
        proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=fds, cwd=cwd, env=env,
                                start_new_session=True)
    except BaseException:
        os.close(result_r)
        raise
    finally:
        os.close(result_w)
    deadline = time.monotonic() + limits.timeout
    result, output_bytes, reason = bytearray(), 0, None
    sel = selectors.DefaultSelector()
    try:
        sel.register(proc.stdout, selectors.EVENT_READ, "output")
        sel.register(result_r, selectors.EVENT_READ, "result")
        open_streams = 2
        while open_streams and reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = "timeout"
                break
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                elif key.data == "output":
                    output_bytes += len(chunk)
                    if output_bytes > limits.max_output_bytes:
                        reason = "flood"
                        break
                else:
                    result += chunk
                    if len(result) > limits.max_result_bytes:
                        reason = "too_large"
                        break
        if reason is None:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                reason = "timeout"
    finally:
        _kill(proc)         # always: whatever the child started in its group goes too
        sel.close()
        proc.stdout.close()
        os.close(result_r)
    returncode = proc.returncode
    if bwrap is not None and 128 < returncode < 128 + 65:
        returncode = 128 - returncode       # bwrap reports a child's death by signal as 128 + N
    return _classify(returncode, bytes(result), reason, limits)


def _kill(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # the child's own session and group
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _classify(returncode: int, result: bytes, reason, limits: Limits) -> RunOutcome:
    mem = f"limit {limits.memory_mb} MiB"
    if reason == "timeout":
        return RunOutcome("timeout", f"the code did not finish within {limits.timeout:g} s "
                                     f"(an infinite loop?)")
    if reason == "flood":
        return RunOutcome("flood", f"the code printed more than {limits.max_output_bytes} "
                                   f"bytes (output flood)")
    if reason == "too_large":
        return RunOutcome("too_large", f"the code returned more than "
                                       f"{limits.max_result_bytes} bytes")
    if returncode == _child.VIOLATION_EXIT:
        try:
            header, _ = _child.unpack(result)
            message = str(header.get("message", ""))[:300]
        except Exception:
            message = ""
        return RunOutcome("violation", f"the code {message or 'broke the grading rules'}")
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return RunOutcome("timeout", f"the code used more than {math.ceil(limits.timeout)} "
                                         f"s of CPU time (an infinite loop?)")
        if sig == signal.SIGXFSZ:
            return RunOutcome("violation", "the code wrote a file (not allowed while grading)")
        if sig == signal.SIGKILL:
            return RunOutcome("memory", f"the code was killed (out of memory? {mem})")
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return RunOutcome("crash", f"the code crashed (signal {name})")
    if returncode != 0 or not result:
        return RunOutcome("exit", f"the code exited with status {returncode} before returning "
                                  f"results (sys.exit/os._exit, or a crash)")
    try:
        header, arrays = _child.unpack(result)
        status = header.get("status")
        message = str(header.get("message", ""))[:300]
        if status != "ok":
            if status == "memory":
                return RunOutcome("memory", f"the code ran out of memory ({mem})")
            if status not in ("not_attempted", "syntax_error", "cell_error",
                              "missing_function", "exit"):
                raise ValueError(f"unknown status {status!r}")
            return RunOutcome(status, message)
        cases = []
        for entry in header["cases"]:
            if type(entry) is not dict:
                raise ValueError("malformed case entry")
            if "out" in entry:
                modified = entry.get("modified", [])
                if type(modified) is not list or not all(type(m) is str for m in modified):
                    raise ValueError("malformed modified list")
                cases.append(("out", _child.decode(entry["out"], arrays), modified))
            else:
                cases.append(("error", str(entry.get("error", "error"))[:300],
                              str(entry.get("kind", "exception"))))
        return RunOutcome("ok", "", cases)
    except Exception as exc:
        return RunOutcome("bad_result", f"the code sent back a malformed result ({exc})")
