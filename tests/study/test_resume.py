"""A study on a LocalCluster of 2 workers, killed with SIGKILL part-way, resumed: every run once."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from bncourse.study.experiments import get_experiment
from bncourse.study.runner import plan


def count(path) -> int:
    if not os.path.exists(path):
        return 0
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:                    # table not created yet
        return 0
    finally:
        db.close()


def rows(path) -> list:
    db = sqlite3.connect(path)
    out = db.execute("SELECT key, experiment, setting, seed, metrics, seconds FROM runs").fetchall()
    db.close()
    return out


def test_sigkill_part_way_then_resume_runs_each_once(tmp_path, toy_env):
    store = str(tmp_path / "study.sqlite")
    cmd = [sys.executable, "-m", "bncourse.study", "run", "toy_sleep", "--workers", "2",
           "--store", store, "--snapshot", str(tmp_path / "no_snapshot"), "--quiet"]
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=toy_env, cwd=tmp_path, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    try:
        while count(store) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)             # the client and its workers, at once
        proc.wait()
    before = rows(store)
    assert 6 <= len(before) < 40, log.read_text()[-2000:]

    done = subprocess.run(cmd, env=toy_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(before)} already stored" in done.stdout
    after = rows(store)
    planned = {t.key for t in plan([get_experiment("toy_sleep")], "smoke")}
    keys = [r[0] for r in after]
    assert len(keys) == 40 and set(keys) == planned                   # every run, exactly once
    assert len({(r[1], r[2], r[3]) for r in after}) == 40
    assert set(before) <= set(after)                   # the runs stored before the kill unchanged
