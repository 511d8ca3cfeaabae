"""Benchmarks of the study runner: parallel throughput, per-run overhead, a cached re-run.

Three judged figures, in the ``study`` section of ``make bench``:

``throughput``
    40 smoke runs of ``z_vs_a`` (claim 15) on a local Dask cluster of 2
    workers against 1: the paired ratio ``wall(1 worker) / wall(2 workers)``
    over interleaved rounds (the order alternating). Each cluster is started
    and warmed (every worker imports the experiments and runs one throw-away
    run) before the clock starts, so the figure is the runner's scaling, not
    the start-up of Python processes. Goal: at least 1.7 on 2 cores.
``overhead``
    Per-run cost of the runner: ``(wall(1 worker) - direct) / runs``, where
    ``direct`` is the same runs called one after another in this process
    (median over the interleaved rounds of the per-round figure). What it
    contains: serializing the task, the scheduler round trip, the record's way
    back and its SQLite insert, and any slowdown of the experiment inside a
    worker. Reported beside it: ``(wall - sum of the experiment's own seconds
    in the worker) / runs``, the runner's cost alone. Goal: at most 50 ms.
``cached``
    ``python -m bncourse.study run 15 --scale smoke`` when every run is in the
    store already, in a fresh process (interpreter start, registry, the
    committed snapshot read and imported, nothing run). Goal: at most 5 s.

Public API
----------
``study_figure(runs=40, rounds=3, snapshot="book/results") -> section``
``GOALS``
"""

from __future__ import annotations

import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

__all__ = ["study_figure", "GOALS"]

GOALS = {"throughput": (">=", 1.7), "overhead": ("<=", 0.050), "cached": ("<=", 5.0)}
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
        raise RuntimeError(f"study_figure: {summary.ran} runs, {summary.failed} failed")
    return wall, inside


def _direct(tasks) -> float:
    """Seconds to call the experiment of every task directly, one after another, here."""
    from bncourse.study import registered
    from bncourse.study.experiments import get_experiment

    exp = get_experiment(tasks[0].experiment)
    _warm_task(tasks[0])
    registered._digits.cache_clear()         # the workers start with an empty cache too
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
        raise RuntimeError(f"study_figure: cached re-run failed: {done.stdout[-500:]}"
                           f"{done.stderr[-500:]}")
    return seconds


def _row(figure: str, config: str, value: float, unit: str, key: str, **extra) -> dict:
    op, bound = GOALS[key]
    met = value >= bound if op == ">=" else value <= bound
    return {"section": "study", "figure": figure, "config": config, "value": value,
            "unit": unit, "goal": f"{op} {bound:g}", "met": bool(met), **extra}


def study_figure(runs: int = 40, rounds: int = 3, snapshot: str = "book/results") -> dict:
    """Measure the three figures; returns a bench section (see the module docstring)."""
    from bncourse.study.experiments import get_experiment
    from bncourse.study.runner import plan

    tasks = plan([get_experiment(_EXPERIMENT)], "smoke")[:runs]
    if len(tasks) != runs:
        raise ValueError(f"study_figure: runs must be at most {len(tasks)}, got {runs}")
    before = _load()
    start = time.perf_counter()
    walls: dict = {0: [], 1: [], 2: []}        # 0: direct calls in this process
    inside = []
    for r in range(rounds):                     # interleaved, the order rotating
        for workers in ((0, 1, 2), (1, 2, 0), (2, 0, 1))[r % 3]:
            if workers == 0:
                walls[0].append(_direct(tasks))
            else:
                wall, seconds = _wall(tasks, workers)
                walls[workers].append(wall)
                if workers == 1:
                    inside.append(seconds)
    ratios = [a / b for a, b in zip(walls[1], walls[2])]
    overheads = [(a - b) / runs for a, b in zip(walls[1], walls[0])]
    strict = statistics.median((a - b) / runs for a, b in zip(walls[1], inside))
    cached = _cached_seconds(tasks, snapshot)
    rows = [
        _row("throughput, 2 workers / 1 worker", f"{runs} smoke runs of {_EXPERIMENT}",
             statistics.median(ratios), "x", "throughput", per_round=ratios,
             wall_s={"1": walls[1], "2": walls[2]}),
        _row("runner overhead per run", f"(wall with 1 worker - direct calls) / {runs}",
             statistics.median(overheads), "s", "overhead", per_round=overheads,
             wall_s={"direct": walls[0], "1": walls[1]},
             beside_experiment_s=strict),
        _row("fully cached re-run", f"run {_CLAIM} --scale smoke, fresh process", cached, "s",
             "cached"),
    ]
    return {"name": "study", "title": "Study runner: parallel throughput, overhead, cache",
            "experiments": [{"id": _EXPERIMENT, "runs": runs, "rounds": rounds}], "rows": rows,
            "seconds": time.perf_counter() - start,
            "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "load": {"before": before, "after": _load()}}


if __name__ == "__main__":  # pragma: no cover
    for row in study_figure()["rows"]:
        print(f"{row['figure']}: {row['value']:.3f} {row['unit']} (goal {row['goal']}, "
              f"met {row['met']}) {row.get('wall_s', '')}")
