"""The sandboxed side of grading, and the wire format shared with the grader.

This file is run as a script, ``python -I -B _child.py RESULT_FD [PATH...]``,
once per submission and exercise, in an empty temporary directory (inside the
bubblewrap sandbox of ``bwrap``, or under resource limits only); the PATHs
are appended to ``sys.path`` (the folder holding NumPy, when ``site`` is off). It must not import
``bncourse`` (the child may not), so it uses only the standard library and
NumPy; the grader imports the same file as a module for :func:`pack`,
:func:`unpack`, :func:`encode` and :func:`decode`.

Protocol
--------
stdin (from the grader): one frame whose header holds the exercise cell's
source, the function name, the limits, the forbidden modules and folders,
and the encoded arguments of every case.

fd ``RESULT_FD`` (to the grader): one frame with ``status`` (``ok``,
``not_attempted``, ``syntax_error``, ``cell_error``, ``missing_function``,
``exit``, ``memory`` or ``violation``), a ``message``, and for ``ok`` one entry per case:
``{"out": tree}`` or ``{"error": text, "kind": kind}``, plus ``modified``
(names of input arrays changed in place).

A frame is ``MAGIC | len(header) (8 bytes, little endian) | header (JSON) |
arrays``: each array travels as its own ``.npy`` blob (offset and length in
the header) and is read back with ``numpy.load(allow_pickle=False)``, so no
pickled object ever crosses the boundary. A value is encoded as a JSON tree
whose leaves are JSON numbers, strings, None, or references to arrays.

Sandbox
-------
Before the learner's code runs, the child limits its address space, CPU
time, file size (0: no file can be written), processes (0: no new process,
enforced by the kernel for a grader that is not root) and core dumps, then installs
an audit hook (``sys.addaudithook``, which Python code cannot remove). The
hook ends the process with status :data:`VIOLATION_EXIT` on: importing a
forbidden module (``bncourse``, torch, ...) or one that starts processes
(``multiprocessing``, ``subprocess``, ...); executing code from a forbidden
package's file, however it was loaded; opening a file for writing;
reading a file outside the Python installation or inside a forbidden
package (paths compared after following symlinks); deleting, renaming or creating files or folders; starting a process
or a signal to another one; sockets; ctypes; changing resource limits; and
walking the garbage collector's object lists (the way to the hook's state).
"""

from __future__ import annotations

import io
import json
import struct
import sys

if __name__ == "__main__":      # the sandboxed child: NumPy's folder (and the like) from argv
    sys.path.extend(sys.argv[2:])

import numpy as np  # noqa: E402

MAGIC = b"BNXGRD01"
VIOLATION_EXIT = 86
MAX_DEPTH = 8
MAX_LEAVES = 10_000
_ARRAY_KINDS = "biufc"      # bool, int, unsigned, float, complex: never object or void


class EncodeError(ValueError):
    """A value that cannot cross the process boundary."""


# --------------------------------------------------------------------------- wire format

def encode(value, arrays: list, depth: int = 0):
    """JSON-able tree for ``value``; arrays (and NumPy/float scalars) go into ``arrays``.

    Supported: ndarray of bool/int/float/complex, Python bool/int/float/str/None,
    NumPy scalars, and tuples, lists and str-keyed dicts of those.
    """
    if depth > MAX_DEPTH:
        raise EncodeError(f"nested more than {MAX_DEPTH} levels deep")
    if len(arrays) > MAX_LEAVES:
        raise EncodeError(f"more than {MAX_LEAVES} values")
    kind = type(value)
    if kind is bool or kind is np.bool_:
        return {"t": "bool", "v": bool(value)}
    if kind is int:
        return {"t": "int", "v": value}
    if value is None:
        return {"t": "none"}
    if kind is str:
        return {"t": "str", "v": value}
    if kind is float:
        arrays.append(np.asarray(value, dtype=np.float64))
        return {"t": "float", "k": len(arrays) - 1}
    if isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise EncodeError(f"a NumPy scalar of dtype {arr.dtype}")
        arrays.append(arr)
        return {"t": "scalar", "k": len(arrays) - 1}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS or value.dtype.fields is not None:
            raise EncodeError(f"an array of dtype {value.dtype} (expected numbers)")
        arrays.append(np.array(value, copy=True, subok=False))
        return {"t": "array", "k": len(arrays) - 1}
    if kind is tuple or kind is list:
        return {"t": kind.__name__, "items": [encode(v, arrays, depth + 1) for v in value]}
    if kind is dict:
        items = []
        for key, v in value.items():
            if type(key) is not str:
                raise EncodeError(f"a dict key of type {type(key).__name__} (expected str)")
            items.append([key, encode(v, arrays, depth + 1)])
        return {"t": "dict", "items": items}
    raise EncodeError(f"a value of type {kind.__name__} (expected arrays, numbers, "
                      f"or tuples/lists/dicts of them)")


def decode(tree, arrays: list, depth: int = 0):
    """Inverse of :func:`encode`; raises ``ValueError`` on anything unexpected."""
    if depth > MAX_DEPTH or type(tree) is not dict:
        raise ValueError("malformed value tree")
    t = tree.get("t")
    if t == "bool" and type(tree.get("v")) is bool:
        return tree["v"]
    if t == "int" and type(tree.get("v")) is int:
        return tree["v"]
    if t == "str" and type(tree.get("v")) is str:
        return tree["v"]
    if t == "none":
        return None
    if t in ("float", "scalar", "array"):
        k = tree.get("k")
        if type(k) is not int or not 0 <= k < len(arrays):
            raise ValueError("malformed array reference")
        arr = arrays[k]
        if t == "float":
            if arr.shape != () or arr.dtype != np.float64:
                raise ValueError("malformed float")
            return float(arr)
        if t == "scalar":
            if arr.shape != ():
                raise ValueError("malformed scalar")
            return arr[()]
        return arr
    if t in ("tuple", "list") and type(tree.get("items")) is list:
        items = [decode(v, arrays, depth + 1) for v in tree["items"]]
        return tuple(items) if t == "tuple" else items
    if t == "dict" and type(tree.get("items")) is list:
        out = {}
        for pair in tree["items"]:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise ValueError("malformed dict item")
            out[pair[0]] = decode(pair[1], arrays, depth + 1)
        return out
    raise ValueError(f"malformed value tree (type {t!r})")


def pack(header: dict, arrays: list) -> bytes:
    """One frame: header JSON (with array offsets) followed by ``.npy`` blobs."""
    blobs, spans, offset = [], [], 0
    for arr in arrays:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        blob = buf.getvalue()
        blobs.append(blob)
        spans.append([offset, len(blob)])
        offset += len(blob)
    head = json.dumps(dict(header, arrays=spans), allow_nan=False).encode("utf-8")
    return MAGIC + struct.pack("<Q", len(head)) + head + b"".join(blobs)


def unpack(data: bytes, max_array_bytes: int | None = None) -> tuple[dict, list]:
    """Inverse of :func:`pack`; only NumPy arrays of numbers are accepted."""
    if len(data) < 16 or data[:8] != MAGIC:
        raise ValueError("not a result frame")
    (size,) = struct.unpack("<Q", data[8:16])
    if size > len(data) - 16:
        raise ValueError("truncated frame")
    header = json.loads(data[16:16 + size].decode("utf-8"))
    if type(header) is not dict or type(header.get("arrays")) is not list:
        raise ValueError("malformed frame header")
    body = memoryview(data)[16 + size:]
    arrays = []
    for span in header["arrays"]:
        if (type(span) is not list or len(span) != 2 or not all(type(v) is int for v in span)
                or span[0] < 0 or span[1] < 0 or span[0] + span[1] > len(body)):
            raise ValueError("malformed array span")
        blob = io.BytesIO(body[span[0]:span[0] + span[1]])
        arr = np.load(blob, allow_pickle=False)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in _ARRAY_KINDS \
                or arr.dtype.fields is not None:
            raise ValueError("an array of a non-numeric dtype")
        if max_array_bytes is not None and arr.nbytes > max_array_bytes:
            raise ValueError("an array too large")
        arrays.append(arr)
    return header, arrays


# --------------------------------------------------------------------------- the child

_BLOCKED_EVENTS = frozenset({
    "os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.chdir", "os.fchdir",
    "os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir", "os.mkdir", "os.mkfifo",
    "os.mknod", "os.link", "os.symlink", "os.truncate", "os.chmod", "os.chown", "os.chflags",
    "os.lchmod", "os.lchown", "os.utime", "os.setxattr", "os.removexattr", "os.startfile",
    "os.putenv", "os.unsetenv",
    "subprocess.Popen", "pty.spawn", "signal.pthread_kill", "resource.setrlimit",
    "resource.prlimit", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "sys.addaudithook", "sys._current_frames", "tempfile.mkstemp", "tempfile.mkdtemp",
    "mmap.__new__",
})
_BLOCKED_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn", "socket.", "ctypes.",
                     "shutil.", "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.",
                     "_posixsubprocess.", "sqlite3.", "winreg.", "_winapi.", "msvcrt.")


#: Modules that start processes (the new process would run without the audit hook).
PROCESS_MODULES = ("subprocess", "multiprocessing", "_multiprocessing", "_posixsubprocess",
                   "concurrent.futures.process", "pty")


def _normalize(path: str, cwd: str) -> str:
    """Absolute, ``.``/``..``-free version of ``path`` using only str operations."""
    if not path.startswith("/"):
        path = cwd + "/" + path
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _resolver(lstat, readlink, is_link):
    """``resolve(path)``: the real path of an absolute path, every symlink followed.

    Built on the given ``os.lstat``/``os.readlink``/``stat.S_ISLNK`` objects
    (captured before the learner's code runs), not on ``os.path.realpath``,
    whose module globals Python code could replace.
    """
    def resolve(path: str) -> str:
        parts, done, hops = path.split("/"), "", 0
        parts.reverse()
        while parts:
            part = parts.pop()
            if part in ("", "."):
                continue
            if part == "..":
                done = done.rpartition("/")[0]
                continue
            candidate = done + "/" + part
            try:
                mode = lstat(candidate).st_mode
            except OSError:
                done = candidate
                continue
            if not is_link(mode):
                done = candidate
                continue
            hops += 1
            if hops > 40:
                return candidate
            target = readlink(candidate)
            if target.startswith("/"):
                done = ""
            parts += reversed(target.split("/"))
        return done or "/"
    return resolve


def _install_guard(result_fd: int, forbidden_modules, forbidden_dirs, read_roots, cwd: str):
    """Install the audit hook. Everything it uses is captured now, so that
    monkeypatching modules later cannot change what it does.

    Paths are compared after following every symlink; a module's code is
    checked where it is executed (the ``exec`` event), so that neither
    ``importlib`` nor entries planted in ``sys.modules`` avoid the check.
    """
    import os
    import stat

    forbidden_modules = frozenset(forbidden_modules)
    process_modules = PROCESS_MODULES
    resolve = _resolver(os.lstat, os.readlink, stat.S_ISLNK)
    forbidden_dirs = tuple({resolve(d).rstrip("/") + "/" for d in forbidden_dirs} |
                           {d.rstrip("/") + "/" for d in forbidden_dirs})
    read_roots = tuple({resolve(d).rstrip("/") + "/" for d in read_roots})
    blocked, prefixes = _BLOCKED_EVENTS, _BLOCKED_PREFIXES
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    write, exit_, dumps, pack_ = os.write, os._exit, json.dumps, struct.pack
    str_, int_, bytes_, type_, getattr_ = str, int, bytes, type, getattr

    def deny(reason: str):
        head = dumps({"status": "violation", "message": reason, "arrays": []}).encode()
        try:
            write(result_fd, MAGIC + pack_("<Q", len(head)) + head)
        finally:
            exit_(VIOLATION_EXIT)

    def refused_name(name) -> bool:
        if type_(name) is not str_:
            return False
        if name.partition(".")[0] in forbidden_modules:
            return True
        return any(name == m or name.startswith(m + ".") for m in process_modules)

    def check_file(path, shown, reading: bool):
        real = resolve(_normalize(path, cwd))
        if (real + "/").startswith(forbidden_dirs):
            deny(f"{'reads' if reading else 'runs'} {shown!r}, a file of a module it may "
                 f"not use")
        if reading and not (real + "/").startswith(read_roots):
            deny(f"reads {shown!r} (reading files is not allowed)")

    def hook(event, args):
        if event == "import":
            if refused_name(args[0]):
                deny(f"imports {args[0]} (the exercise must be solved without it)")
            return
        if event == "exec":
            filename = getattr_(args[0], "co_filename", None)
            if type_(filename) is str_ and filename.startswith("/"):
                check_file(filename, filename, False)
            return
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if type_(path) is int_:           # an already open descriptor
                return
            if type_(path) is bytes_:
                path = path.decode("utf-8", "surrogateescape")
            if type_(path) is not str_:
                deny("opens a file through a path object")
            if (type_(mode) is str_ and ("w" in mode or "a" in mode or "x" in mode
                                         or "+" in mode)) or \
                    (type_(flags) is int_ and flags & write_flags):
                deny(f"opens {path!r} for writing (writing files is not allowed)")
            check_file(path, path, True)
            return
        if event in blocked or event.startswith(prefixes):
            deny(f"calls {event} (not allowed while grading)")

    sys.addaudithook(hook)


def _set_limits(limits: dict):
    import resource

    mem = limits.get("memory_bytes")
    if mem:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = limits.get("cpu_seconds")
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No new process or thread; enforced by the kernel unless the grader runs as root
    # (the bubblewrap sandbox adds a seccomp filter that holds for root too).
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _error_text(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:                       # a learner's exception with a broken __str__
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _snapshot(args: list) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else None for a in args]


def _run(header: dict, arrays: list, result_fd: int, write, exit_):
    import builtins
    import copy
    import os

    def send(frame_header: dict, frame_arrays=()):
        data = pack(frame_header, list(frame_arrays))
        view = memoryview(data)
        while view:
            view = view[write(result_fd, view):]
        exit_(0)

    cases = [[decode(tree, arrays) for tree in case] for case in header["cases"]]
    names = header["arg_names"]
    cwd = os.getcwd()
    roots = {p for p in sys.path if p and p.startswith("/") and p != cwd}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots |= {os.path.realpath(p) for p in list(roots)}
    try:
        # Compiled before the guard: a SyntaxError reads the source "file" to quote it.
        # Any error of the parser (RecursionError, MemoryError) is the cell's, not ours.
        code = compile(header["source"], "<exercise cell>", "exec")
    except SyntaxError as exc:
        send({"status": "syntax_error",
              "message": f"line {exc.lineno}: {str(exc.msg)[:200]}"})
    except BaseException as exc:
        send({"status": "syntax_error", "message": f"it cannot be parsed ({_error_text(exc)})"})
    _install_guard(result_fd, header["forbidden_modules"], header["forbidden_dirs"],
                   sorted(roots), cwd)

    namespace = {"__name__": "__exercise__", "__builtins__": builtins}
    try:
        exec(code, namespace)
    except NotImplementedError:
        send({"status": "not_attempted", "message": "the exercise cell raises NotImplementedError"})
    except SystemExit:
        send({"status": "exit", "message": "the exercise cell calls sys.exit()"})
    except MemoryError:
        send({"status": "memory", "message": "ran out of memory"})
    except BaseException as exc:
        send({"status": "cell_error", "message": _error_text(exc)})
    func = namespace.get(header["function"])
    if not callable(func):
        send({"status": "missing_function",
              "message": f"the exercise cell does not define a function {header['function']}"})

    results, out_arrays = [], []
    for i, args in enumerate(cases):
        before = _snapshot(args)
        try:
            out = func(*copy.deepcopy(args) if not header.get("pure", True) else args)
        except NotImplementedError:
            if i == 0:
                send({"status": "not_attempted",
                      "message": f"{header['function']} still raises NotImplementedError"})
            results.append({"error": "NotImplementedError", "kind": "exception"})
            continue
        except SystemExit:
            send({"status": "exit", "message": f"{header['function']} calls sys.exit()"})
        except MemoryError:
            send({"status": "memory", "message": "ran out of memory"})
        except BaseException as exc:
            results.append({"error": _error_text(exc), "kind": "exception"})
            continue
        modified = [name for name, a, b in zip(names, args, before)
                    if b is not None and not (a.shape == b.shape and
                                              np.array_equal(a, b, equal_nan=True))]
        mark = len(out_arrays)
        try:
            tree = encode(out, out_arrays)
        except EncodeError as exc:
            del out_arrays[mark:]
            results.append({"error": f"returned {exc}", "kind": "unsupported"})
            continue
        results.append({"out": tree, "modified": modified})
    send({"status": "ok", "message": "", "cases": results}, out_arrays)


def main():
    import os

    result_fd = int(sys.argv[1])
    write, exit_ = os.write, os._exit
    data = sys.stdin.buffer.read()
    header, arrays = unpack(data)
    _set_limits(header.get("limits", {}))
    _run(header, arrays, result_fd, write, exit_)


if __name__ == "__main__":
    main()
