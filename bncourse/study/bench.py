"""Measurements of the study runner: parallel throughput, per-run overhead, a cached re-run.

``python -m bncourse.study bench --out FILE`` writes them as JSON; ``make bench``
(:mod:`bncourse.bench.study`) runs that in a fresh process and judges them
against its goals. What is measured:

``walls``
    40 smoke runs of ``z_vs_a`` (claim 15) called directly in this process
    (``"0"``), and through :func:`~bncourse.study.runner.run_study` on a local
    cluster of 1 and of 2 workers, in interleaved rounds with the order
    rotating. Each cluster is started and warmed (every worker imports the
    experiments and makes one throw-away run) before the clock starts, so the
    figures are the runner's scaling and cost, not the start-up of Python
    processes.
``inside``
    For each 1-worker round, the sum of the experiment calls' own seconds
    measured inside the worker: ``wall - inside`` is the runner's cost alone.
``cached``
    Seconds of ``python -m bncourse.study run 15 --scale smoke`` in a fresh
    process when every run is in the store already (interpreter start, the
    registry, the committed snapshot read and imported, nothing run).

Public API
----------
``measure(runs=40, rounds=3, snapshot="book/results") -> dict``
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import time

from bncourse._checks import fail

__all__ = ["measure"]

_EXPERIMENT, _CLAIM = "z_vs_a", 15


def _load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen,
            "cpu_count": os.cpu_count()}


def _warm_task(task):
    """A throw-away run of ``task`` at another seed: imports and first-call costs paid."""
    import dataclasses

    from bncourse.study.runner import execute

    execute(dataclasses.replace(task, seed=10_000))
    return True


def _wall(tasks, workers: int) -> tuple[float, float]:
    """Seconds for ``run_study`` of ``tasks`` on a warm local cluster of ``workers`` workers,
    and the sum of the experiment calls' own seconds measured inside the workers."""
    from distributed import Client

    from bncourse.study.runner import local_cluster, run_study
    from bncourse.study.store import Store

    with local_cluster(workers) as cluster, Client(cluster) as client:
        client.run(_warm_task, tasks[0])
        with tempfile.TemporaryDirectory() as tmp, Store(os.path.join(tmp, "s.sqlite")) as store:
            start = time.perf_counter()
            summary = run_study(tasks, store, scheduler=cluster.scheduler_address,
                                progress=False)
            wall = time.perf_counter() - start
            inside = sum(r.seconds for r in store.records())
    if summary.ran != len(tasks) or summary.failed:
        raise RuntimeError(f"measure: {summary.ran} runs, {summary.failed} failed")
    return wall, inside


def _direct(tasks) -> float:
    """Seconds to call the experiment of every task directly, one after another, here."""
    from bncourse.study.experiments import get_experiment
    from bncourse.study.registered import clear_caches

    exp = get_experiment(tasks[0].experiment)
    _warm_task(tasks[0])
    clear_caches()                           # the workers start with empty caches too
    start = time.perf_counter()
    for t in tasks:
        exp.fn(t.seed, t.device, **t.setting)
    return time.perf_counter() - start


def _cached_seconds(tasks, snapshot: str) -> float:
    """Wall time of a fully cached ``run`` in a fresh process."""
    from bncourse.study.runner import execute
    from bncourse.study.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.sqlite")
        with Store(path) as store:
            store.insert_many(execute(t) for t in tasks)
        cmd = [sys.executable, "-m", "bncourse.study", "run", str(_CLAIM), "--scale", "smoke",
               "--store", path, "--snapshot", snapshot, "--quiet"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - start
    if done.returncode != 0 or " 0 run now" not in done.stdout:
        raise RuntimeError(f"measure: cached re-run failed: {done.stdout[-500:]}"
                           f"{done.stderr[-500:]}")
    return seconds


def measure(runs: int = 40, rounds: int = 3, snapshot: str = "book/results") -> dict:
    """Run the measurements (see the module docstring); JSON-ready."""
    from bncourse.study.experiments import get_experiment
    from bncourse.study.runner import plan

    tasks = plan([get_experiment(_EXPERIMENT)], "smoke")[:runs]
    if len(tasks) != runs:
        fail("measure", "runs", f"at most {len(tasks)}", repr(runs))
    before = _load()
    start = time.perf_counter()
    walls: dict = {"0": [], "1": [], "2": []}   # "0": direct calls in this process
    inside = []
    for r in range(rounds):                     # interleaved, the order rotating
        for workers in ((0, 1, 2), (1, 2, 0), (2, 0, 1))[r % 3]:
            if workers == 0:
                walls["0"].append(_direct(tasks))
            else:
                wall, seconds = _wall(tasks, workers)
                walls[str(workers)].append(wall)
                if workers == 1:
                    inside.append(seconds)
    cached = _cached_seconds(tasks, snapshot)
    return {"experiment": _EXPERIMENT, "runs": runs, "rounds": rounds, "walls": walls,
            "inside": inside, "cached": cached, "seconds": time.perf_counter() - start,
            "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "load": {"before": before, "after": _load()}}
