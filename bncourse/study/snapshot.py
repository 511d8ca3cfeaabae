"""The committed snapshot under ``book/results/``: export, read back, verify.

``export`` writes one CSV file per experiment, ``<experiment>.csv``, with the
columns :data:`HEADER`: one row per run and metric, ``setting`` as canonical
JSON, ``value`` written with ``repr`` (exact; ``nan`` and ``inf`` for a
diverged run), ``claim`` the ledger ids joined by ``;``. Rows are sorted by
(setting, seed, metric), the file ends with a newline and nothing in it
depends on the order the runs finished in, so re-exporting an unchanged store
gives the same bytes and a diff shows only new or changed runs. Failed runs
are not exported (they are bugs to fix, kept in the store with their
traceback).

``load`` reads a snapshot back into :class:`~bncourse.study.store.RunRecord`
objects (``source="snapshot"``), checking that each row's ``key`` is the key
of its experiment, setting, seed and version. ``verify`` re-runs a random
sample of them in this process and requires the same status and bit-for-bit
the same metrics.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
from typing import Iterable

from bncourse._checks import fail
from bncourse.study.experiments import registry
from bncourse.study.store import RunRecord, Store, canonical_json

__all__ = ["HEADER", "export", "load", "verify", "Check", "DEFAULT_DIR"]

HEADER = ("claim", "experiment", "scale", "setting", "seed", "metric", "value", "commit",
          "versions", "device", "seconds", "version", "status", "threads", "key")
DEFAULT_DIR = os.path.join("book", "results")


def _rows(record: RunRecord) -> list[list]:
    common = dict(claim=";".join(map(str, record.claims)), experiment=record.experiment,
                  scale=record.scale, setting=canonical_json(record.setting),
                  seed=record.seed, commit=record.commit, versions=record.versions,
                  device=record.device, seconds=f"{record.seconds:.4f}",
                  version=record.version, status=record.status, threads=record.threads,
                  key=record.key)
    return [[{**common, "metric": m, "value": repr(float(v))}[h] for h in HEADER]
            for m, v in sorted(record.metrics.items())]


def export(store: Store, out_dir) -> list[str]:
    """Write the snapshot of every ok/diverged run in ``store``; returns the files written."""
    if not isinstance(store, Store):
        fail("export", "store", "a Store", type(store).__name__, TypeError)
    by_experiment: dict = {}
    for rec in store.records():
        if rec.status != "failed":
            by_experiment.setdefault(rec.experiment, []).extend(_rows(rec))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, rows in sorted(by_experiment.items()):
        rows.sort(key=lambda r: (r[3], int(r[4]), r[5]))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
        path = os.path.join(out_dir, f"{name}.csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
        written.append(path)
    return written


def load(snapshot_dir) -> list[RunRecord]:
    """The runs of every ``*.csv`` snapshot file in ``snapshot_dir`` (none if it is absent)."""
    if not os.path.isdir(snapshot_dir):
        return []
    grouped: dict = {}
    for fname in sorted(os.listdir(snapshot_dir)):
        if not fname.endswith(".csv"):
            continue
        path = os.path.join(snapshot_dir, fname)
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ())[:len(HEADER)] != HEADER:
                fail("load", "snapshot_dir", f"CSV files with the header {','.join(HEADER)}",
                      f"{path!r} with {reader.fieldnames}")
            for row in reader:
                grouped.setdefault(row["key"], []).append(row)
    records = []
    for key, rows in grouped.items():
        first = rows[0]
        setting = json.loads(first["setting"])
        rec = RunRecord(experiment=first["experiment"], version=int(first["version"]),
                        setting=setting, seed=int(first["seed"]), scale=first["scale"],
                        claims=tuple(int(c) for c in first["claim"].split(";") if c),
                        status=first["status"],
                        metrics={r["metric"]: float(r["value"]) for r in rows},
                        commit=first["commit"], versions=first["versions"],
                        device=first["device"], threads=int(first["threads"]),
                        seconds=float(first["seconds"]), source="snapshot")
        if rec.key != key:
            fail("load", "snapshot_dir", "rows whose key is run_key(experiment, setting, "
                  "seed, version)", f"key {key[:12]}... for {rec.experiment} {first['setting']}"
                  f" seed {rec.seed} version {rec.version} (expected {rec.key[:12]}...)")
        records.append(rec)
    return sorted(records, key=lambda r: r.key)


@dataclasses.dataclass(frozen=True)
class Check:
    """One verified run: the committed record, the recomputed one, and whether they agree."""

    committed: RunRecord
    recomputed: RunRecord | None
    reproduced: bool
    reason: str = ""


def verify(records: Iterable[RunRecord], sample: int = 5, seed: int | None = None,
           max_seconds: float | None = None, device: str = "cpu") -> list[Check]:
    """Re-run ``sample`` committed runs chosen at random; each must reproduce exactly.

    Parameters
    ----------
    records : iterable of RunRecord
        From :func:`load`.
    sample : int >= 1
        How many to re-run (all of them when there are fewer).
    seed : int, optional
        Seeds the choice (``random.Random(seed)``); None draws a fresh one.
    max_seconds : float, optional
        Choose only among runs whose committed wall time is at most this.
    device : "cpu" or "cuda"

    Returns
    -------
    list of Check
        A run of an experiment that is no longer registered, or registered at
        another version, counts as not reproduced, with the reason.
    """
    from bncourse.study.runner import Task, execute

    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        fail("verify", "sample", "an int >= 1", repr(sample))
    pool = [r for r in records if max_seconds is None or r.seconds <= max_seconds]
    chosen = random.Random(seed).sample(pool, min(sample, len(pool)))
    reg = registry()
    checks = []
    for rec in chosen:
        exp = reg.get(rec.experiment)
        if exp is None or exp.version != rec.version:
            reason = "not registered" if exp is None else \
                f"registered at version {exp.version}, committed at {rec.version}"
            checks.append(Check(rec, None, False, reason))
            continue
        new = execute(Task(rec.experiment, rec.version, rec.setting, rec.seed, rec.scale,
                           rec.claims, device))
        same = new.same_numbers(rec)
        reason = "" if same else (new.traceback.strip().splitlines()[-1] if new.traceback
                                  else "different numbers")
        checks.append(Check(rec, new, same, reason))
    return checks

