"""Tests for bncourse.lab.sweeps: seeds, grids, t-intervals (scipy as oracle) and verdicts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bncourse.lab.sweeps import (
    VERDICTS,
    Interval,
    combine_verdicts,
    interval_phrase,
    interval_span,
    mean_ci,
    stack,
    verdict,
)
from bncourse.lab.training import History


def _scipy_interval(x, confidence=0.95):
    x = np.asarray(x, dtype=np.float64)
    return stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=stats.sem(x))


@settings(max_examples=50, deadline=None)
# Values on a 1e-3 grid in [-1000, 1000]: the range of accuracies, losses and their
# differences, and far from the underflow where scipy's own sem becomes 0 * inf.
@given(st.lists(st.integers(-10**6, 10**6).map(lambda i: i / 1000), min_size=2, max_size=12),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_mean_ci_matches_scipy(values, confidence):
    x = np.array(values)
    ci = mean_ci(x, confidence=confidence)
    if np.ptp(x) == 0:  # no spread: a zero-width interval (up to summation round-off)
        np.testing.assert_allclose([ci.low, ci.mean, ci.high], x[0], rtol=1e-12, atol=1e-12)
        return
    low, high = _scipy_interval(x, confidence)
    np.testing.assert_allclose([ci.low, ci.high], [low, high], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ci.mean, x.mean(), rtol=1e-12, atol=1e-12)
    assert ci.n == len(x) and ci.confidence == confidence
    np.testing.assert_allclose(ci.half_width, (high - low) / 2, rtol=1e-9, atol=1e-9)


def test_mean_ci_along_axes_and_with_nan():
    rng = np.random.default_rng(0)
    runs = rng.normal(size=(5, 7))
    ci = mean_ci(runs, axis=0)
    assert isinstance(ci, Interval) and ci.mean.shape == (7,)
    for j in range(7):
        low, high = _scipy_interval(runs[:, j])
        np.testing.assert_allclose([ci.low[j], ci.high[j]], [low, high], rtol=1e-12)
    ci_t = mean_ci(runs.T, axis=1)
    np.testing.assert_allclose(ci_t.low, ci.low, rtol=1e-12)
    # NaN (a diverged seed) is left out at that position only.
    runs[2, 3] = np.nan
    ci_nan = mean_ci(runs, axis=0)
    low, high = _scipy_interval(np.delete(runs[:, 3], 2))
    np.testing.assert_allclose([ci_nan.low[3], ci_nan.high[3]], [low, high], rtol=1e-12)
    assert ci_nan.n[3] == 4 and ci_nan.n[0] == 5
    np.testing.assert_allclose(ci_nan.low[0], ci.low[0], rtol=1e-12)


def test_mean_ci_degenerate_cases():
    one = mean_ci([0.7])
    assert one.mean == 0.7 and np.isnan(one.low) and np.isnan(one.high) and one.n == 1
    assert np.isnan(mean_ci([np.nan, np.nan]).mean)
    with pytest.raises(ValueError, match="mean_ci: confidence must be a float in \\(0, 1\\)"):
        mean_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="mean_ci: values must be an array"):
        mean_ci([])


def test_interval_phrase_formats_the_mean_and_interval_in_percentage_points():
    ci = mean_ci([0.010, 0.020, 0.030])
    half = 100 * float(ci.half_width)
    assert interval_span(ci) == f"(95% interval {2 - half:+.2f} to {2 + half:+.2f})"
    assert interval_phrase(ci) == f"+2.00 percentage points {interval_span(ci)}"
    assert interval_phrase(mean_ci([-0.5, -0.7]), digits=1, scale=1.0, unit="nats").startswith(
        "-0.6 nats (95% interval")
    assert interval_span(mean_ci([1.0, 2.0, 3.0], confidence=0.9), scale=1).startswith("(90%")
    with pytest.raises(TypeError, match="interval_phrase: ci must be a scalar Interval"):
        interval_phrase(0.5)
    with pytest.raises(TypeError, match="interval_span: ci must be a scalar Interval"):
        interval_span(mean_ci(np.ones((3, 2)) * [[1], [2], [3]]))


def _history(acc, rec):
    acc = np.asarray(acc, dtype=np.float64)
    return History(steps=np.arange(len(acc)), train_loss=acc, train_accuracy=acc,
                   test_loss=acc, test_accuracy=acc, loss=acc, record_steps=np.arange(len(rec)),
                   records={"p": np.asarray(rec, dtype=np.float64)}, diverged=False,
                   diverged_at=None, seconds=0.0, config={})


def test_stack():
    hs = [_history([0.1, 0.5], [[1, 2, 3]]), _history([0.2, 0.6], [[4, 5, 6]])]
    np.testing.assert_array_equal(stack(hs, "test_accuracy"), [[0.1, 0.5], [0.2, 0.6]])
    assert stack(hs, "p").shape == (2, 1, 3)
    with pytest.raises(ValueError, match="stack: name must be a History field"):
        stack(hs, "accuracy")


@pytest.mark.parametrize("effects, threshold, alternative, expected", [
    ([0.05, 0.06, 0.04, 0.05], 0.02, "greater", "supported"),
    ([0.010, 0.012, 0.011], 0.05, "greater", "partly supported"),
    ([0.05, -0.06, 0.04, -0.05], 0.02, "greater", "not supported"),
    ([-0.05, -0.06, -0.04], 0.02, "greater", "not supported"),
    ([-0.3, -0.2, -0.25], 0.1, "less", "supported"),
    ([0.3, 0.2, 0.25], 0.1, "less", "not supported"),
])
def test_verdict_cases(effects, threshold, alternative, expected):
    assert verdict(effects, threshold, alternative=alternative) == expected


def test_verdict_uses_the_t_interval():
    # Mean 1.0; the 95% interval just includes 0 for this spread, the 80% one does not.
    x = np.array([1.0, 1.0 + 0.7, 1.0 - 0.7])
    low95, _ = _scipy_interval(x, 0.95)
    low80, _ = _scipy_interval(x, 0.80)
    assert low95 < 0 < low80
    assert verdict(x, 0.5) == "not supported"
    assert verdict(x, 0.5, confidence=0.80) == "supported"
    assert verdict(mean_ci(x, confidence=0.80), 0.5) == "supported"
    assert verdict([1.0], 0.5) == "not supported"  # one seed: no interval, no verdict


def test_verdict_bad_input():
    with pytest.raises(ValueError, match="verdict: threshold must be a finite float >= 0"):
        verdict([1.0, 2.0], -1.0)
    with pytest.raises(ValueError, match="verdict: alternative must be"):
        verdict([1.0, 2.0], 0.1, alternative="two-sided")
    with pytest.raises(ValueError, match="verdict: effect must be one value per seed"):
        verdict(np.ones((3, 2)), 0.1)


def test_combine_verdicts():
    assert combine_verdicts(["supported"] * 3) == "supported"
    assert combine_verdicts(["not supported", "not supported"]) == "not supported"
    assert combine_verdicts(["supported", "not supported", "partly supported"]) == "depends"
    assert combine_verdicts(["partly supported", "not supported"]) == "partly supported"
    assert combine_verdicts(["depends", "supported"]) == "depends"
    assert set(VERDICTS) == {"supported", "partly supported", "not supported", "depends"}
    with pytest.raises(ValueError, match="combine_verdicts: verdicts must be labels"):
        combine_verdicts(["yes"])
