"""Tests for bncourse.bench.timing: interleaving order, warm-up, medians, errors.

A fake clock makes durations exact: each fake function advances the clock by
a cost drawn from its own list, so the expected medians follow from the lists.
"""

import numpy as np
import pytest

from bncourse.bench.timing import time_interleaved, time_interleaved_all


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.log = []

    def __call__(self):
        return self.now

    def function(self, name, costs):
        costs = iter(costs)

        def fn():
            self.log.append(name)
            self.now += next(costs)

        return fn


def test_rounds_rotate_the_order():
    clock = FakeClock()
    fns = {name: clock.function(name, [1.0] * 4) for name in "abc"}
    time_interleaved_all(fns, repeats=3, warmup=1, timer=clock)
    assert clock.log == list("abc" "bca" "cab" "abc")


def test_warmup_rounds_are_not_timed_and_durations_are_exact():
    clock = FakeClock()
    a_costs = [100.0, 1.0, 2.0, 3.0]      # the first (warm-up) call is slow
    b_costs = [50.0, 10.0, 30.0, 20.0]
    fns = {"a": clock.function("a", a_costs), "b": clock.function("b", b_costs)}
    times = time_interleaved_all(fns, repeats=3, warmup=1, timer=clock)
    np.testing.assert_array_equal(times["a"], a_costs[1:])
    np.testing.assert_array_equal(times["b"], b_costs[1:])
    assert times["a"].dtype == np.float64 and times["a"].shape == (3,)


def test_medians_ignore_an_outlier():
    clock = FakeClock()
    a_costs = [0.0, 1.0, 1.0, 1000.0, 1.0, 1.0]
    b_costs = [0.0, 2.0, 2.0, 2.0, 2.0, 2000.0]
    fns = {"a": clock.function("a", a_costs), "b": clock.function("b", b_costs)}
    medians = time_interleaved(fns, repeats=5, warmup=1, timer=clock)
    assert medians == {"a": np.median(a_costs[1:]), "b": np.median(b_costs[1:])}
    assert medians["b"] / medians["a"] == 2.0
    assert all(isinstance(v, float) for v in medians.values())


def test_real_clock_orders_slow_and_fast():
    x = np.random.default_rng(0).standard_normal(200_000)
    medians = time_interleaved({"fast": lambda: x[:10].sum(), "slow": lambda: np.sort(x)},
                               repeats=5)
    assert 0.0 < medians["fast"] < medians["slow"]


def test_zero_warmup_times_every_call():
    clock = FakeClock()
    fns = {"a": clock.function("a", [5.0, 7.0])}
    times = time_interleaved_all(fns, repeats=2, warmup=0, timer=clock)
    np.testing.assert_array_equal(times["a"], [5.0, 7.0])


@pytest.mark.parametrize(
    "fns, kwargs, exc, match",
    [
        ([len], {}, TypeError, r"time_interleaved: fns must be a mapping.*got list"),
        ({}, {}, ValueError, r"time_interleaved: fns must hold at least one.*empty"),
        ({"a": 3}, {}, TypeError, r"time_interleaved: fns\['a'\] must be callable, got int"),
        ({"a": len}, {"repeats": 0}, ValueError, r"repeats must be an int >= 1, got 0"),
        ({"a": len}, {"repeats": 2.0}, TypeError, r"repeats must be an int >= 1, got float"),
        ({"a": len}, {"repeats": True}, TypeError, r"repeats must be an int >= 1, got bool"),
        ({"a": len}, {"warmup": -1}, ValueError, r"warmup must be an int >= 0, got -1"),
    ],
)
def test_bad_input_raises(fns, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        time_interleaved(fns, **kwargs)


def test_settle_pauses_untimed_before_every_call(monkeypatch):
    pauses, calls = [], []
    monkeypatch.setattr("bncourse.bench.timing.time.sleep", pauses.append)
    clock = iter(np.arange(0.0, 1000.0, 0.5))
    fns = {name: (lambda n=name: calls.append(n)) for name in "ab"}
    times = time_interleaved_all(fns, repeats=3, warmup=1, settle_s=0.02,
                                 timer=lambda: next(clock))
    assert pauses == [0.02] * len(calls) == [0.02] * 8
    assert all(np.all(t == 0.5) for t in times.values())  # the pause is not timed


@pytest.mark.parametrize("settle_s, exc", [(-0.1, ValueError), (float("inf"), ValueError),
                                           ("0.1", TypeError), (True, TypeError)])
def test_bad_settle_time_is_rejected(settle_s, exc):
    with pytest.raises(exc, match="time_interleaved_all: settle_s must be a finite float >= 0"):
        time_interleaved_all({"a": lambda: None}, repeats=1, settle_s=settle_s)
