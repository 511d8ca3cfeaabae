"""Run a study on Dask distributed: one task per (experiment, setting, seed), one writer.

:func:`run_study` lists the runs of the chosen experiments at one scale, drops
those already in the store (which first takes in the committed snapshot, so a
study resumes on a fresh machine from what was committed), and submits the
rest to a Dask cluster:

- by default an embedded ``LocalCluster(n_workers=workers, threads_per_worker=1,
  processes=True)``: one process per worker, one thread each;
- with ``scheduler="tcp://host:8786"`` an existing cluster. On a Slurm machine a
  course starts one with dask-jobqueue (``pip install dask-jobqueue``)::

      from dask_jobqueue import SLURMCluster
      cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00")
      cluster.scale(jobs=32)
      print(cluster.scheduler_address)     # pass this as --scheduler

  (or ``dask scheduler`` on one node and ``dask worker ADDRESS --nthreads 1``
  in each job); the workers need this package installed at the same commit.

Each task runs :func:`execute` in a worker: ``torch.set_num_threads(1)``, the
experiment called with its explicit seed, its wall time measured, an exception
caught and returned as a ``"failed"`` record with its traceback, a divergence
returned as a ``"diverged"`` record. Records come back to the client, which
writes each one to the SQLite store as soon as its future completes
(``distributed.as_completed``), so the store has a single writer and a study
killed at any moment loses only the runs in flight. A tqdm bar counts runs and
shows the time left.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import sys
import time
import traceback
from typing import Iterable

from bncourse._checks import fail
from bncourse.study import provenance
from bncourse.study.experiments import SCALES, Diverged, Experiment, get_experiment
from bncourse.study.store import RunRecord, Store, run_key

__all__ = ["Task", "execute", "plan", "run_study", "StudySummary", "local_cluster"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One run to compute, with the provenance the client knows."""

    experiment: str
    version: int
    setting: dict
    seed: int
    scale: str
    claims: tuple
    device: str = "cpu"
    commit: str = ""
    versions: str = ""

    @property
    def key(self) -> str:
        """The store key of the run."""
        return run_key(self.experiment, self.setting, self.seed, self.version)


def _check_metrics(name: str, metrics) -> dict:
    if not isinstance(metrics, dict) or not metrics:
        raise TypeError(f"experiment {name}: must return a non-empty dict metric -> float, "
                        f"got {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"experiment {name}: metric {k!r} must be a str -> real number, "
                            f"got {type(v).__name__}")
        out[k] = float(v)
    return out


def execute(task: Task) -> RunRecord:
    """Compute one run in this process at one thread; never raises for the experiment's errors.

    ``OMP_NUM_THREADS=1`` is set before the experiment can first import torch,
    and ``torch.set_num_threads(1)`` when torch is already loaded.
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    _one_thread()
    status, metrics, trace = "ok", {}, ""
    start = time.perf_counter()
    try:
        exp = get_experiment(task.experiment)
        if exp.version != task.version:
            raise RuntimeError(f"experiment {task.experiment}: version {exp.version} here, "
                               f"{task.version} asked for (different code on this worker)")
        metrics = _check_metrics(task.experiment, exp.fn(task.seed, task.device,
                                                         **task.setting))
        if not all(math.isfinite(v) for v in metrics.values()):
            status = "diverged"
    except Diverged as exc:
        status, metrics, trace = "diverged", dict(exc.metrics), str(exc)
    except Exception:  # noqa: BLE001 - a failure is a stored result, not a crash
        status, metrics, trace = "failed", {}, traceback.format_exc()
    seconds = time.perf_counter() - start
    return RunRecord(experiment=task.experiment, version=task.version, setting=task.setting,
                     seed=task.seed, scale=task.scale, claims=task.claims, status=status,
                     metrics=metrics, traceback=trace, commit=task.commit,
                     versions=task.versions, device=provenance.device_name(task.device),
                     threads=_one_thread(), seconds=seconds)


def _one_thread() -> int:
    """Set torch to one thread if it is loaded; return its thread count (1 when not loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 1
    torch.set_num_threads(1)
    return int(torch.get_num_threads())


def plan(experiments: Iterable[Experiment], scale: str, device: str = "cpu") -> list[Task]:
    """Every task of ``experiments`` at ``scale``, in registry order."""
    if scale not in SCALES:
        fail("plan", "scale", f"one of {SCALES}", repr(scale))
    if device not in ("cpu", "cuda"):
        fail("plan", "device", "'cpu' or 'cuda'", repr(device))
    commit, versions = provenance.commit(), provenance.versions()
    return [Task(e.name, e.version, setting, seed, scale, e.claims, device, commit, versions)
            for e in experiments for setting, seed in e.runs(scale)]


@dataclasses.dataclass
class StudySummary:
    """What :func:`run_study` did: runs planned, already stored, run now, and their outcomes."""

    planned: int = 0
    stored: int = 0
    ran: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    seconds: float = 0.0


def local_cluster(workers: int):
    """The embedded cluster: ``workers`` processes of one thread each (and one BLAS thread)."""
    import dask
    from distributed import LocalCluster

    # The workers' statistical profiler samples every thread's stack 100 times a
    # second: a cost without use here. The scheduler's HTTP server takes a free port
    # (":0"), not 8787, so two studies (or a study and the tests) never collide.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=logging.ERROR,
                            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def _client(workers: int, scheduler: str | None):
    from distributed import Client

    if scheduler is not None:
        return Client(scheduler), None
    cluster = local_cluster(workers)
    return Client(cluster), cluster


def run_study(tasks: list[Task], store: Store, *, workers: int = 2,
              scheduler: str | None = None, retry_failed: bool = False,
              progress: bool = True) -> StudySummary:
    """Run every task not already in ``store`` on a Dask cluster; write records as they finish.

    Parameters
    ----------
    tasks : list of Task
        From :func:`plan`.
    store : Store
        Where the records go (the snapshot should already be imported).
    workers : int >= 1
        Worker processes of the local cluster (ignored with ``scheduler``).
    scheduler : str, optional
        Address of an existing Dask scheduler.
    retry_failed : bool
        Run again the tasks whose stored record is a failure.
    progress : bool
        A tqdm bar over the runs with the estimated time left.
    """
    from distributed import as_completed
    from tqdm import tqdm

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        fail("run_study", "workers", "an int >= 1", repr(workers))
    start = time.perf_counter()
    summary = StudySummary(planned=len(tasks))
    if retry_failed:
        store.delete_failed(t.key for t in tasks)
    stored = store.keys()
    todo, seen = [], set()
    for t in tasks:
        if t.key in stored or t.key in seen:
            continue
        seen.add(t.key)
        todo.append(t)
    summary.stored = len(tasks) - len(todo)
    if todo:
        client, cluster = _client(workers, scheduler)
        try:
            by_key = {f"run-{t.key}": t for t in todo}
            futures = client.map(execute, todo, key=list(by_key), pure=False)
            bar = tqdm(total=len(todo), desc="study runs", unit="run", disable=not progress)
            for future in as_completed(futures):
                if future.status == "error":          # the worker died or could not reply
                    record = execute_failed(by_key[future.key], future.exception())
                else:
                    record = future.result()
                future.release()
                store.insert(record)
                summary.ran += 1
                setattr(summary, record.status, getattr(summary, record.status) + 1)
                bar.update(1)
            bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    summary.seconds = time.perf_counter() - start
    return summary


def execute_failed(task: Task, exc: BaseException) -> RunRecord:
    """The failure record of a task whose worker could not return one (e.g. a killed worker)."""
    return RunRecord(experiment=task.experiment, version=task.version, setting=task.setting,
                     seed=task.seed, scale=task.scale, claims=task.claims, status="failed",
                     metrics={}, traceback="".join(traceback.format_exception(exc)),
                     commit=task.commit, versions=task.versions,
                     device=provenance.device_name(task.device))
