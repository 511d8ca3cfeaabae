"""The runner: one task per run, outcomes stored, stored runs skipped, an existing scheduler."""

import math
import os

import pytest

from bncourse.study.experiments import experiments_for, get_experiment, grid, register
from bncourse.study.runner import Task, execute, plan, run_study
from bncourse.study.store import Store


def test_execute_records_each_outcome(toy_env):
    tasks = plan([get_experiment("toy_outcomes")], "smoke")
    by_seed = {t.seed: execute(t) for t in tasks}
    assert by_seed[0].status == "ok" and by_seed[0].metrics == {"x": 0.1 + 0.2, "z": 1e-300}
    assert by_seed[1].status == "diverged" and math.isnan(by_seed[1].metrics["x"])
    assert by_seed[2].status == "diverged" and by_seed[2].metrics == {"x": math.inf}
    assert "loss exploded" in by_seed[2].traceback
    assert by_seed[3].status == "failed" and by_seed[3].metrics == {}
    assert "ValueError: toy failure in mode a" in by_seed[3].traceback
    assert "Traceback (most recent call last)" in by_seed[3].traceback
    for rec in by_seed.values():
        assert rec.threads == 1 and rec.seconds >= 0 and rec.device.startswith("cpu")
        assert rec.versions.startswith('{"numpy"') and rec.commit


def test_execute_refuses_a_version_the_worker_does_not_have(toy_env):
    (task,) = plan([get_experiment("toy_outcomes")], "smoke")[:1]
    old = Task(task.experiment, 99, task.setting, task.seed, task.scale, task.claims)
    rec = execute(old)
    assert rec.status == "failed" and "version 1 here, 99 asked for" in rec.traceback


def test_a_bad_return_value_is_a_failure(toy_env):
    @register("toy_bad_return", version=1, claims=(),
              settings={s: grid(a=[1]) for s in ("smoke", "book", "study")},
              seeds={s: [0] for s in ("smoke", "book", "study")})
    def bad(seed, device="cpu", *, a):
        return [1.0]

    rec = execute(plan([get_experiment("toy_bad_return")], "smoke")[0])
    assert rec.status == "failed" and "must return a non-empty dict" in rec.traceback


def test_plan_and_experiments_for(toy_env):
    assert [e.name for e in experiments_for(["15", 14, "z_vs_a"])] == ["z_vs_a", "conditioning"]
    tasks = plan(experiments_for(["toy_sleep"]), "smoke")
    assert len(tasks) == 40 and len({t.key for t in tasks}) == 40
    with pytest.raises(ValueError, match="plan: scale must be one of"):
        plan([], "huge")
    with pytest.raises(ValueError, match="experiments_for: targets must be claim ids"):
        experiments_for(["no_such_experiment"])
    with pytest.raises(ValueError, match="experiments_for: targets must be claim ids with a "
                                         "registered experiment"):
        experiments_for([6])


@pytest.fixture(scope="module")
def scheduler(toy_env):
    from distributed import LocalCluster

    saved = dict(os.environ)
    os.environ.update(toy_env)                 # the workers inherit it and import the toys
    try:
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield cluster.scheduler_address
    cluster.close()


def test_run_study_on_an_existing_scheduler(tmp_path, scheduler):
    tasks = plan([get_experiment("toy_outcomes")], "smoke")
    with Store(tmp_path / "s.sqlite") as store:
        first = run_study(tasks, store, scheduler=scheduler, progress=False)
        assert (first.planned, first.stored, first.ran) == (4, 0, 4)
        assert (first.ok, first.diverged, first.failed) == (1, 2, 1)
        again = run_study(tasks, store, scheduler=scheduler, progress=False)
        assert (again.stored, again.ran) == (4, 0)            # nothing is run twice
        retry = run_study(tasks, store, scheduler=scheduler, retry_failed=True, progress=False)
        assert (retry.stored, retry.ran, retry.failed) == (3, 1, 1)
        assert len(store) == 4
        assert {r.seed: r.status for r in store.records()} == {
            0: "ok", 1: "diverged", 2: "diverged", 3: "failed"}


def test_run_study_bad_input(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match="run_study: workers must be an int >= 1"):
            run_study([], store, workers=0)
