"""The SQLite results store: keys, insert-once, exact numbers, WAL."""

import math
import sqlite3

import pytest

from bncourse.study.store import RunRecord, Store, canonical_json, run_key


def record(seed=0, status="ok", metrics=None, **kw):
    return RunRecord("toy_sleep", 1, {"value": 1.0, "sleep": 0.0}, seed, "smoke", (14,), status,
                     {"x": 0.1 + 0.2} if metrics is None else metrics, **kw)


def test_key_depends_on_name_setting_seed_version_only():
    base = run_key("e", {"a": 1, "b": [1, 2]}, 0, 1)
    assert base == run_key("e", {"b": [1, 2], "a": 1}, 0, 1)          # key order
    assert len(base) == 64 and int(base, 16) >= 0
    others = {run_key("f", {"a": 1, "b": [1, 2]}, 0, 1), run_key("e", {"a": 2, "b": [1, 2]}, 0, 1),
              run_key("e", {"a": 1, "b": [1, 2]}, 1, 1), run_key("e", {"a": 1, "b": [1, 2]}, 0, 2)}
    assert base not in others and len(others) == 4
    assert RunRecord("e", 1, {"a": 1}, 0, "smoke", (), "ok", {}).key == \
        RunRecord("e", 1, {"a": 1}, 0, "study", (3,), "ok", {}).key    # scale is not in the key


def test_canonical_json_rejects_what_json_cannot_write_exactly():
    assert canonical_json({"b": None, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":null}'
    with pytest.raises(TypeError, match="canonical_json: value must be JSON-serializable"):
        canonical_json({"a": float("nan")})
    with pytest.raises(TypeError, match="canonical_json: value must be"):
        canonical_json({"a": object()})


def test_insert_once_and_exact_round_trip(tmp_path):
    path = tmp_path / "s.sqlite"
    tricky = {"x": 0.1 + 0.2, "tiny": 5e-324, "nan": math.nan, "inf": -math.inf}
    with Store(path) as store:
        assert store.insert(record(metrics=tricky, traceback="", commit="abc"))
        assert not store.insert(record(metrics={"x": 99.0}))       # same key: ignored
        assert len(store) == 1
    with Store(path) as store:                                     # reopened from disk
        got = store.get(record().key)
        assert got.metrics["x"] == 0.1 + 0.2 and got.metrics["tiny"] == 5e-324
        assert math.isnan(got.metrics["nan"]) and got.metrics["inf"] == -math.inf
        assert got.same_numbers(record(metrics=tricky))
        assert not got.same_numbers(record(metrics={**tricky, "x": 0.3}))
        assert got.setting == {"value": 1.0, "sleep": 0.0} and got.claims == (14,)
        assert got.commit == "abc" and store.get("0" * 64) is None


def test_wal_mode_and_a_reader_during_writes(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        reader = sqlite3.connect(path)
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for seed in range(5):
            store.insert(record(seed))
            assert reader.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == seed + 1
        reader.close()


def test_primary_key_forbids_a_duplicate_even_by_hand(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.insert(record())
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO runs (key, experiment, version, setting, seed, scale, claims, "
                   "status, metrics) VALUES (?, 'x', 1, '{}', 0, 'smoke', '', 'ok', '{}')",
                   (record().key,))
    db.close()


def test_insert_many_keys_and_delete_failed(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        recs = [record(0), record(1, status="failed", metrics={}, traceback="Traceback ..."),
                record(2, status="diverged", metrics={"x": math.nan})]
        assert store.insert_many(recs) == 3 and store.insert_many(recs) == 0
        assert store.keys("failed") == {recs[1].key}
        assert store.keys() == {r.key for r in recs}
        assert store.delete_failed(r.key for r in recs) == 1      # only the failure goes
        assert store.keys() == {recs[0].key, recs[2].key}
        assert [r.seed for r in store.records("toy_sleep")] == sorted(
            [0, 2], key=lambda s: record(s).key)


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="Store: path must be a file path"):
        Store(3)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(TypeError, match="Store.insert: record must be a RunRecord"):
            store.insert({"key": "x"})
        with pytest.raises(ValueError, match="RunRecord: status must be one of"):
            store.insert(record(status="crashed"))
