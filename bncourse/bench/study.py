"""The study runner's goals in ``make bench``: throughput, per-run overhead, a cached re-run.

The measurements are taken by ``python -m bncourse.study bench`` in a fresh
process (:mod:`bncourse.study.bench` says what each one is); this module runs
it and judges the figures:

``throughput``
    40 smoke runs on a local Dask cluster of 2 workers against 1: the median
    over interleaved rounds of ``wall(1 worker) / wall(2 workers)``. Goal: at
    least 1.7 on this 2-core machine.
``overhead``
    Per-run cost of the runner over calling the experiment directly: the
    median over rounds of ``(wall(1 worker) - wall(direct calls)) / runs``.
    Reported beside it: ``(wall - the experiment's own seconds inside the
    worker) / runs``, the runner's cost without the noise of the experiment's
    own time. Goal: at most 50 ms.
``cached``
    A fully cached re-run of a study in a fresh process. Goal: at most 5 s.

Public API
----------
``GOALS``, ``study_rows(measured) -> list[dict]``, ``study_section(quick=False) -> section``
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

__all__ = ["GOALS", "study_rows", "study_section"]

GOALS = {"throughput": (">=", 1.7), "overhead": ("<=", 0.050), "cached": ("<=", 5.0)}


def _row(figure: str, config: str, value: float, unit: str, key: str, **extra) -> dict:
    op, bound = GOALS[key]
    met = value >= bound if op == ">=" else value <= bound
    return {"section": "study", "figure": figure, "config": config, "value": float(value),
            "unit": unit, "goal": f"{op} {bound:g}", "met": bool(met), **extra}


def study_rows(measured: dict) -> list[dict]:
    """The three judged rows from the JSON of ``python -m bncourse.study bench``."""
    walls, runs = measured["walls"], measured["runs"]
    ratios = [a / b for a, b in zip(walls["1"], walls["2"])]
    overheads = [(a - b) / runs for a, b in zip(walls["1"], walls["0"])]
    alone = [(a - b) / runs for a, b in zip(walls["1"], measured["inside"])]
    what = f"{runs} smoke runs of {measured['experiment']}, {measured['rounds']} rounds"
    return [
        _row("throughput, 2 workers / 1 worker", what, statistics.median(ratios), "x",
             "throughput", per_round=ratios),
        _row("runner overhead per run", what + f"; runner alone "
             f"{1e3 * statistics.median(alone):.1f} ms", statistics.median(overheads), "s",
             "overhead", per_round=overheads),
        _row("fully cached re-run", "run 15 --scale smoke, fresh process", measured["cached"],
             "s", "cached"),
    ]


def study_section(quick: bool = False, snapshot: str = "book/results") -> dict:
    """Measure in a fresh process and return the ``study`` section of the results."""
    runs, rounds = (8, 1) if quick else (40, 3)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "study.json")
        done = subprocess.run([sys.executable, "-m", "bncourse.study", "bench", "--out", out,
                               "--runs", str(runs), "--rounds", str(rounds),
                               "--snapshot", snapshot], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"study_section: python -m bncourse.study bench failed:\n"
                               f"{done.stderr[-2000:]}")
        with open(out, encoding="utf-8") as f:
            measured = json.load(f)
    return {"name": "study", "title": "Study runner: parallel throughput, overhead, cache",
            "experiments": [measured], "rows": study_rows(measured),
            "seconds": measured["seconds"], "measured_at": measured["measured_at"],
            "load": measured["load"]}
