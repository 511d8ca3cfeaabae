"""The results store: one SQLite row per run, written once.

A *run* is one (experiment, setting, seed) at one experiment version. Its key is

    key = sha256(name + "\\n" + canonical_json(setting) + "\\n" + seed + "\\n" + version)

(hex, see :func:`run_key`), so the same run always has the same key, whatever
the scale that asked for it or the machine that computes it. The table has the
key as its primary key and rows are inserted with ``INSERT OR IGNORE`` in
autocommit mode, each in its own transaction: a process killed at any moment
(kill -9 included) leaves every row either fully written or absent, and a run
is never stored twice. The database runs in WAL mode, so ``status`` can read it
while a study writes; a study has exactly one writer (the client process of
:mod:`bncourse.study.runner`).

Statuses: ``"ok"``; ``"diverged"`` (a result: the experiment reported
non-finite metrics or raised :class:`~bncourse.study.experiments.Diverged`);
``"failed"`` (an exception, stored with its traceback; ``retry_failed`` in the
runner runs it again).

Metrics are stored as JSON text (``json.dumps`` writes floats with ``repr``,
which round-trips exactly, NaN and infinities included), so a value read back
is bit for bit the value computed.

Public API
----------
``canonical_json(value) -> str``, ``run_key(name, setting, seed, version) -> str``,
``RunRecord`` (one row), ``Store(path)`` with ``insert``, ``insert_many``, ``keys``,
``get``, ``records``, ``delete_failed``, ``close``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sqlite3
from typing import Iterable, Iterator

from bncourse._checks import fail

__all__ = ["canonical_json", "run_key", "RunRecord", "Store", "STATUSES"]

STATUSES = ("ok", "diverged", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    version INTEGER NOT NULL,
    setting TEXT NOT NULL,
    seed INTEGER NOT NULL,
    scale TEXT NOT NULL,
    claims TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'diverged', 'failed')),
    metrics TEXT NOT NULL,
    traceback TEXT NOT NULL DEFAULT '',
    commit_id TEXT NOT NULL DEFAULT '',
    versions TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '',
    threads INTEGER NOT NULL DEFAULT 1,
    seconds REAL NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'run'
)
"""
_COLUMNS = ("key", "experiment", "version", "setting", "seed", "scale", "claims", "status",
            "metrics", "traceback", "commit_id", "versions", "device", "threads", "seconds",
            "source")


def canonical_json(value) -> str:
    """JSON with sorted keys and no spaces: one string per setting, whatever its key order.

    >>> canonical_json({"lr": 0.1, "bn": "before"})
    '{"bn":"before","lr":0.1}'
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        fail("canonical_json", "value", "JSON-serializable data with finite numbers",
              f"{value!r} ({exc})", TypeError)


def run_key(name: str, setting: dict, seed: int, version: int) -> str:
    """The store key of one run (hex SHA-256, 64 characters).

    >>> run_key("conditioning", {"dataset": "wine"}, 0, 1)[:12]
    '0df945c10daf'
    """
    text = f"{name}\n{canonical_json(setting)}\n{int(seed)}\n{int(version)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _dumps_metrics(metrics: dict) -> str:
    return json.dumps({str(k): float(v) for k, v in metrics.items()}, sort_keys=True,
                      separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One stored run: what was run, what came out, and its provenance.

    ``setting`` is a dict, ``metrics`` a dict name -> float, ``claims`` a
    tuple of ledger ids; ``commit`` the git commit (with ``+dirty`` when the
    work tree had changes), ``versions`` a canonical-JSON string of package
    versions, ``threads`` torch's thread count in the worker, ``seconds`` the
    wall time of the experiment call, ``source`` ``"run"`` or ``"snapshot"``
    (read from a committed CSV snapshot).
    """

    experiment: str
    version: int
    setting: dict
    seed: int
    scale: str
    claims: tuple
    status: str
    metrics: dict
    traceback: str = ""
    commit: str = ""
    versions: str = ""
    device: str = ""
    threads: int = 1
    seconds: float = 0.0
    source: str = "run"

    @property
    def key(self) -> str:
        """:func:`run_key` of this run."""
        return run_key(self.experiment, self.setting, self.seed, self.version)

    def _row(self) -> tuple:
        if self.status not in STATUSES:
            fail("RunRecord", "status", f"one of {STATUSES}", repr(self.status))
        return (self.key, self.experiment, int(self.version), canonical_json(self.setting),
                int(self.seed), self.scale, ";".join(str(c) for c in self.claims), self.status,
                _dumps_metrics(self.metrics), self.traceback, self.commit, self.versions,
                self.device, int(self.threads), float(self.seconds), self.source)

    @classmethod
    def _from_row(cls, row: tuple) -> "RunRecord":
        d = dict(zip(_COLUMNS, row))
        return cls(experiment=d["experiment"], version=d["version"],
                   setting=json.loads(d["setting"]), seed=d["seed"], scale=d["scale"],
                   claims=tuple(int(c) for c in d["claims"].split(";") if c),
                   status=d["status"], metrics=json.loads(d["metrics"]),
                   traceback=d["traceback"], commit=d["commit_id"], versions=d["versions"],
                   device=d["device"], threads=d["threads"], seconds=d["seconds"],
                   source=d["source"])

    def same_numbers(self, other: "RunRecord") -> bool:
        """True when status and every metric agree exactly (NaN equals NaN)."""
        if self.status != other.status or set(self.metrics) != set(other.metrics):
            return False
        for name, a in self.metrics.items():
            b = other.metrics[name]
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                return False
        return True


class Store:
    """The SQLite results store at ``path`` (created on first use).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "s.sqlite")
    >>> with Store(path) as store:
    ...     rec = RunRecord("demo", 1, {"a": 1}, 0, "smoke", (14,), "ok", {"x": 0.5})
    ...     store.insert(rec), store.insert(rec), len(store)
    (True, False, 1)
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            fail("Store", "path", "a file path (str or os.PathLike)", type(path).__name__,
                  TypeError)
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() \
            is not None

    def insert(self, record: RunRecord) -> bool:
        """Store ``record`` unless its key is already there; True when it was written."""
        if not isinstance(record, RunRecord):
            fail("Store.insert", "record", "a RunRecord", type(record).__name__, TypeError)
        cur = self._db.execute(
            f"INSERT OR IGNORE INTO runs ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})", record._row())
        return cur.rowcount == 1

    def insert_many(self, records: Iterable[RunRecord]) -> int:
        """Insert many records in one transaction; returns how many were new."""
        rows = [r._row() for r in records]
        before = len(self)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR IGNORE INTO runs ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})", rows)
        return len(self) - before

    def keys(self, status: str | None = None) -> set:
        """Keys of the stored runs (of one status when given)."""
        if status is None:
            return {k for (k,) in self._db.execute("SELECT key FROM runs")}
        return {k for (k,) in self._db.execute("SELECT key FROM runs WHERE status = ?",
                                               (status,))}

    def get(self, key: str) -> RunRecord | None:
        """The record stored under ``key``, or None."""
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else RunRecord._from_row(row)

    def records(self, experiment: str | None = None) -> Iterator[RunRecord]:
        """Every record (of one experiment when given), ordered by key."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        args: tuple = ()
        if experiment is not None:
            sql, args = sql + " WHERE experiment = ?", (experiment,)
        for row in self._db.execute(sql + " ORDER BY key", args).fetchall():
            yield RunRecord._from_row(row)

    def delete_failed(self, keys: Iterable[str]) -> int:
        """Remove failed runs among ``keys`` (so they run again); returns how many."""
        keys = list(keys)
        with self._db:
            self._db.execute("BEGIN")
            n = sum(self._db.execute("DELETE FROM runs WHERE key = ? AND status = 'failed'",
                                     (k,)).rowcount for k in keys)
        return n
