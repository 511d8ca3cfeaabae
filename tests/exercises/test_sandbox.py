"""Tests of the sandbox of a graded run, in both modes: bubblewrap and rlimits.

The audit hook is the same in both; bubblewrap adds the operating system's
boundary, tested here on its own too (a child script without the hook).
"""

import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from bncourse.exercises import Exercise, bwrap
from bncourse.exercises.sandbox import SANDBOXES, Limits, run_cell

LIMITS = Limits(timeout=10.0, memory_mb=1024)


@pytest.fixture(params=SANDBOXES)
def sandbox(request):
    return request.param


def _tiny():
    return Exercise(id="ch99-mean-var", notebook="book/99_tiny.ipynb", function="mean_var",
                    points=1, reference=_mean_var, make_case=_tiny_case,
                    visible=[dict(seed=0)], hidden=[dict(seed=1, n=3)])


def _tiny_case(seed, n=20, dtype="float64"):
    return {"x": np.random.default_rng(seed).normal(size=(n, 2)).astype(dtype)}


def _mean_var(x):
    return {"mean": x.mean(axis=0), "var": x.var(axis=0)}


def _run_in(sandbox, source, **kwargs):
    return _run(source, sandbox, **kwargs)


def _run(source, sandbox="bwrap", **kwargs):
    ex = _tiny()
    return run_cell(source, "mean_var", ex.cases("all"), forbidden_modules=ex.forbidden_modules,
                    sandbox=sandbox, **{"limits": LIMITS, **kwargs})


def test_sandbox_returns_the_outputs_of_a_self_contained_cell(sandbox):
    outcome = _run_in(sandbox, '''import numpy as np

def mean_var(x):
    return {"mean": x.mean(axis=0), "var": x.var(axis=0)}
''')
    assert outcome.status == "ok" and len(outcome.cases) == 2
    for (kind, got, modified), case in zip(outcome.cases, _tiny().cases("all")):
        assert kind == "out" and modified == []
        np.testing.assert_array_equal(got["var"], case.args["x"].var(axis=0))


def test_sandbox_reports_errors_in_place_modification_and_outside_names(sandbox):
    outcome = _run_in(sandbox, '''def mean_var(x):
    x *= 2
    return {"mean": x.mean(axis=0), "var": helper(x)}
''')
    assert outcome.status == "ok"
    assert outcome.cases[0] == ("error", "NameError: name 'helper' is not defined", "exception")
    ok = _run_in(sandbox, "def mean_var(x):\n    x *= 2\n    return 1.0\n")
    assert [c[2] for c in ok.cases] == [["x"], ["x"]]
    assert _run_in(sandbox, "def other(x):\n    return 1\n").status == "missing_function"


@pytest.mark.parametrize("source, message", [
    ("import torch\ndef mean_var(x):\n    return 1\n", "imports torch"),
    ("import sklearn.preprocessing\ndef mean_var(x):\n    return 1\n", "imports sklearn"),
    ("import importlib\nimportlib.import_module('bncourse')\ndef mean_var(x):\n    return 1\n",
     "bncourse"),
    ("import gc\ndef mean_var(x):\n    gc.get_objects()\n", "calls gc.get_objects"),
    ("import os, signal\ndef mean_var(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n",
     "calls os.kill"),
    ("import ctypes\ndef mean_var(x):\n    return ctypes.string_at(0)\n", "calls ctypes"),
    ("import os\nos.chdir('/')\ndef mean_var(x):\n    return 1\n", "calls os.chdir"),
    ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))\n"
     "def mean_var(x):\n    return 1\n", "calls resource.setrlimit"),
    ("import socket\ndef mean_var(x):\n    socket.create_connection(('localhost', 80))\n",
     "calls socket"),
    ("def mean_var(x):\n    return open('/etc/hostname').read()\n", "reads '/etc/hostname'"),
    ("def mean_var(x):\n    return open('../../x', 'rb').read()\n", "reads '../../x'"),
    ("import os\nfd = os.open('new.txt', os.O_CREAT | os.O_WRONLY)\n"
     "def mean_var(x):\n    return 1\n", "for writing"),
])
def test_sandbox_ends_the_child_on_forbidden_operations(source, message, sandbox):
    outcome = _run_in(sandbox, source)
    if sandbox == "bwrap" and "import_module('bncourse')" in source:
        # no import event, and no bncourse in the sandbox to find
        assert outcome.status == "cell_error" and "No module named 'bncourse'" in outcome.message
        return
    assert outcome.status == "violation"
    assert message in outcome.message


def test_sandbox_limits_time_output_and_memory(sandbox):
    loop = _run_in(sandbox, "def mean_var(x):\n    while True:\n        pass\n",
                limits=Limits(timeout=1.0))
    # Stopped by the wall-clock or the CPU-time limit, whichever fires first on a
    # loaded machine; the bound only guards against a hang, it is not a timing test.
    assert loop.status == "timeout" and loop.wall_s < 30.0
    flood = _run_in(sandbox, "print('x' * 5000)\ndef mean_var(x):\n    return 1\n",
                 limits=Limits(max_output_bytes=4000))
    assert flood.status == "flood"
    fine = _run_in(sandbox, "print('x' * 3000)\ndef mean_var(x):\n    return 1\n",
                limits=Limits(max_output_bytes=4000))
    assert fine.status == "ok"
    memory = _run_in(sandbox, "def mean_var(x):\n    return bytearray(600 * 2**20)\n",
                  limits=Limits(memory_mb=256))
    assert memory.status == "memory" and "256 MiB" in memory.message
    big = _run_in(sandbox, "import numpy as np\ndef mean_var(x):\n    return np.zeros(10**6)\n",
               limits=Limits(max_result_bytes=10**6))
    assert big.status == "too_large"


def test_sandbox_reports_a_crash_by_its_signal(sandbox):
    outcome = _run_in(sandbox, "import faulthandler\ndef mean_var(x):\n    faulthandler._sigabrt()\n")
    assert outcome.status == "crash"
    assert signal.Signals.SIGABRT.name in outcome.message



# --------------------------------------------------------------------------- the OS layer

PROBE = r"""
import errno, os, socket, sys
found = {}
try:
    os.fork()
    found["fork"] = "allowed"
except OSError as exc:
    found["fork"] = errno.errorcode[exc.errno]
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    found["net"] = "allowed"
except OSError as exc:
    found["net"] = type(exc).__name__
for path in ("/etc/passwd", sys.argv[-1], os.path.expanduser("~")):
    found[path] = os.path.exists(path)
try:
    open(sys.base_prefix + "/escape.txt", "w")
    found["write_python"] = "allowed"
except OSError as exc:
    found["write_python"] = errno.errorcode[exc.errno]
open("/tmp/mine.txt", "w").write("scratch")
found["tmp"] = open("/tmp/mine.txt").read()
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
os.write(int(sys.argv[1]), repr(found).encode())
"""


def test_bubblewrap_alone_isolates_a_child_without_the_audit_hook(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    secret = tmp_path / "secret.txt"
    secret.write_text("other learners' work")
    program = bwrap.seccomp_filter()
    with tempfile.TemporaryFile() as bpf:
        bpf.write(program or b"")
        bpf.seek(0)
        read, write = os.pipe()
        command = bwrap.bwrap_command(bwrap.check_bwrap(), str(script), write,
                                      bpf.fileno() if program else None)
        command[-1:] = [command[-1], str(secret)]        # the probe looks for it
        run = subprocess.run(command, pass_fds=(write, bpf.fileno()), capture_output=True,
                             timeout=120)
        os.close(write)
        found = eval(os.read(read, 1 << 16).decode())
        os.close(read)
    assert run.returncode == 0, run.stderr
    if program is not None:
        assert found["fork"] == "EPERM"
    assert found["net"] in ("OSError", "TimeoutError") or "Network" in found["net"]
    assert found["net"] != "allowed"
    assert not found["/etc/passwd"] and not found[str(secret)]
    assert found["write_python"] in ("EROFS", "EACCES", "EPERM")
    assert found["tmp"] == "scratch"
    assert len(found["pids"]) <= 2                  # bubblewrap's init and the probe
    assert not (tmp_path / "mine.txt").exists()
    assert not os.path.exists(sys.base_prefix + "/escape.txt")
