"""The CSV snapshot: deterministic export, exact read-back, verify; and the committed one."""

import csv
import dataclasses
import math
import os
from pathlib import Path

import pytest

from bncourse.study.experiments import get_experiment
from bncourse.study.runner import execute, plan
from bncourse.study.snapshot import HEADER, export, load, verify
from bncourse.study.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED = os.path.join(REPO, "book", "results")


@pytest.fixture
def store(tmp_path, toy_env):
    records = [execute(t) for t in plan([get_experiment("toy_outcomes")], "smoke")]
    records += [execute(t) for t in plan([get_experiment("toy_sleep")], "smoke")[:3]]
    with Store(tmp_path / "s.sqlite") as s:
        s.insert_many(reversed(records))
        yield s


def test_export_is_deterministic_sorted_and_leaves_out_failures(store, tmp_path):
    first = export(store, tmp_path / "a")
    assert [os.path.basename(p) for p in first] == ["toy_outcomes.csv", "toy_sleep.csv"]
    again = export(store, tmp_path / "b")
    for p, q in zip(first, again):
        assert Path(p).read_bytes() == Path(q).read_bytes()
    with open(first[0], newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == HEADER
    assert rows[0][:11] == ["claim", "experiment", "scale", "setting", "seed", "metric",
                            "value", "commit", "versions", "device", "seconds"]
    body = [dict(zip(HEADER, r)) for r in rows[1:]]
    assert [(r["seed"], r["metric"]) for r in body] == [("0", "x"), ("0", "z"), ("1", "x"),
                                                        ("2", "x")]   # seed 3 failed
    assert body[0]["setting"] == '{"mode":"a"}' and body[0]["value"] == repr(0.1 + 0.2)
    assert body[2]["value"] == "nan" and body[3]["value"] == "inf"
    assert body[2]["status"] == "diverged"


def test_load_reads_back_exactly_and_checks_keys(store, tmp_path):
    (path, _) = export(store, tmp_path / "snap")
    loaded = {r.key: r for r in load(tmp_path / "snap")}
    assert len(loaded) == 3 + 3
    for rec in store.records():
        if rec.status != "failed":
            got = loaded[rec.key]
            assert got.same_numbers(rec) and got.source == "snapshot"
            assert (got.setting, got.seed, got.version) == (rec.setting, rec.seed, rec.version)
    assert load(tmp_path / "absent") == []
    Path(path).write_text(Path(path).read_text().replace('""a""', '""b""', 1))
    with pytest.raises(ValueError, match=r"load: snapshot_dir must be rows whose key is"):
        load(tmp_path / "snap")


def test_verify_reproduces_and_catches_a_changed_number(store, tmp_path):
    export(store, tmp_path / "snap")
    records = load(tmp_path / "snap")
    checks = verify(records, sample=10, seed=0)
    assert len(checks) == 6 and all(c.reproduced for c in checks)
    changed = [dataclasses.replace(r, metrics={k: v + 1e-15 if math.isfinite(v) else v
                                               for k, v in r.metrics.items()})
               for r in records if r.status == "ok"]
    bad = verify(changed, sample=2, seed=1)
    assert len(bad) == 2 and not any(c.reproduced for c in bad)
    assert bad[0].reason == "different numbers"
    stale = verify([dataclasses.replace(records[0], version=7)], sample=1)
    assert not stale[0].reproduced and "committed at 7" in stale[0].reason
    with pytest.raises(ValueError, match="verify: sample must be an int >= 1"):
        verify(records, sample=0)


def test_committed_snapshot_reproduces():
    records = load(COMMITTED)
    assert len(records) >= 100, "book/results holds the committed snapshot"
    checks = verify(records, sample=4, max_seconds=0.5)
    assert len(checks) == 4
    assert all(c.reproduced for c in checks), [(c.committed.experiment, c.reason)
                                               for c in checks if not c.reproduced]
