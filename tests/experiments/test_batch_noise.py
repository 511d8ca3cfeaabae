"""Tests for bncourse.experiments.batch_noise: exhaustive enumeration of batches is the oracle."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bncourse.experiments.batch_noise import (
    _indicators,
    central_moments,
    finite_population_correction,
    loglog_slope,
    normalized_value,
    predicted_mean_std,
    predicted_var_std,
    sample_batch_stats,
)


def _every_batch(z, m):
    """Means and biased variances of all C(N, m) batches of distinct samples."""
    batches = np.array(list(itertools.combinations(range(z.size), m)))
    values = z[batches]
    return values.mean(axis=1), values.var(axis=1)


# ----------------------------------------------------------------------------- predictions

@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 12), data=st.data())
def test_predicted_mean_std_is_exact_without_replacement(n, data):
    m = data.draw(st.integers(1, n))
    z = np.random.default_rng(n * 100 + m).standard_t(3, size=n)
    means, _ = _every_batch(z, m)
    exact = np.sqrt(np.mean((means - z.mean()) ** 2))
    predicted = predicted_mean_std(z.std(), m, population_size=n)
    assert abs(predicted - exact) <= 1e-12 * max(1.0, exact)


def test_predicted_mean_std_for_independent_draws_by_enumeration():
    z = np.array([-1.0, 0.5, 2.0, 4.0])
    m = 3
    draws = np.array(list(itertools.product(z, repeat=m)))      # every ordered draw, equally likely
    exact = draws.mean(axis=1).std()
    assert abs(predicted_mean_std(z.std(), m) - exact) < 1e-14


def test_predicted_var_std_for_independent_draws_by_enumeration():
    rng = np.random.default_rng(1)
    for n, m in [(4, 2), (5, 3), (3, 5), (6, 4)]:
        z = rng.standard_t(3, size=n)
        draws = np.array(list(itertools.product(z, repeat=m)))
        exact = draws.var(axis=1).std()
        _, var, mu4 = central_moments(z)
        assert abs(predicted_var_std(var, mu4, m) - exact) < 1e-12 * max(1.0, exact)


def test_predicted_var_std_with_correction_approximates_sampling_without_replacement():
    # The finite-population factor is exact for the mean and an approximation for the
    # variance; for batches much smaller than the population it is close.
    z = np.random.default_rng(2).normal(size=40)
    _, var, mu4 = central_moments(z)
    for m in (2, 3):
        exact = _every_batch(z, m)[1].std()
        predicted = predicted_var_std(var, mu4, m, population_size=z.size)
        assert abs(predicted / exact - 1) < 0.03
    # ...and it gets the end point right: one batch, the whole set, no noise.
    assert predicted_var_std(var, mu4, z.size, population_size=z.size) == 0.0


def test_gaussian_limit_of_the_variance_noise_is_sqrt_2_over_m():
    m = np.array([10.0, 100.0, 1e4])
    ratio = predicted_var_std(1.0, 3.0, m) / np.sqrt(2 / m)
    assert np.all(np.abs(ratio - 1) < 2 / m)


def test_finite_population_correction_end_points_and_broadcasting():
    assert finite_population_correction(1, 50) == 1.0
    assert finite_population_correction(50, 50) == 0.0
    fpc = finite_population_correction(np.array([1, 2, 5]), 5)
    np.testing.assert_allclose(fpc, np.sqrt([1.0, 3 / 4, 0.0]), rtol=0, atol=1e-15)
    out = predicted_mean_std(np.array([1.0, 2.0]), np.array([[1.0], [4.0]]))
    np.testing.assert_allclose(out, [[1.0, 2.0], [0.5, 1.0]], rtol=0, atol=0)


def test_central_moments_match_scipy():
    z = np.random.default_rng(3).gamma(2.0, size=(200, 3))
    mean, var, mu4 = central_moments(z)
    np.testing.assert_allclose(mean, z.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, stats.moment(z, 2, axis=0), rtol=1e-12)
    np.testing.assert_allclose(mu4, stats.moment(z, 4, axis=0), rtol=1e-12)


# ----------------------------------------------------------------------------- sampling

def test_indicator_rows_mark_m_distinct_samples_and_the_included_one():
    rng = np.random.default_rng(4)
    s = _indicators(rng, 30, 7, 50, include=None)
    assert set(np.unique(s)) <= {0.0, 1.0} and np.all(s.sum(axis=1) == 7)
    s = _indicators(rng, 30, 7, 50, include=12)
    assert np.all(s[:, 12] == 1.0) and np.all(s.sum(axis=1) == 7)
    assert len({tuple(row) for row in s}) > 40          # the batches are not all the same


def test_whole_population_batch_gives_population_statistics():
    z = np.random.default_rng(5).normal(size=(25, 2))
    mean, var = sample_batch_stats(z, m=25, n_batches=3)
    np.testing.assert_allclose(mean, np.broadcast_to(z.mean(axis=0), (3, 2)), rtol=1e-13)
    np.testing.assert_allclose(var, np.broadcast_to(z.var(axis=0), (3, 2)), rtol=1e-12)


def test_sampled_batch_stats_agree_with_enumeration_within_sampling_error():
    z = np.random.default_rng(6).exponential(size=14)
    m, k = 5, 40_000
    mean, var = sample_batch_stats(z, m=m, n_batches=k, seed=7)
    exact_mean, exact_var = _every_batch(z, m)
    # Standard errors of a mean over k independent batches; 5 of them is a generous bound.
    assert abs(mean.mean() - exact_mean.mean()) < 5 * exact_mean.std() / np.sqrt(k)
    assert abs(var.mean() - exact_var.mean()) < 5 * exact_var.std() / np.sqrt(k)
    # The standard deviation of a std estimate is about std / sqrt(2 k) for near-Gaussian data.
    assert abs(mean.std() / exact_mean.std() - 1) < 5 / np.sqrt(2 * k)


def test_sampling_is_reproducible_and_chunking_does_not_matter(monkeypatch):
    z = np.random.default_rng(8).normal(size=(60, 3))
    a = sample_batch_stats(z, m=10, n_batches=20, seed=3)
    b = sample_batch_stats(z, m=10, n_batches=20, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    import bncourse.experiments.batch_noise as bn_noise

    monkeypatch.setattr(bn_noise, "_CHUNK_ELEMENTS", 60 * 7)   # chunks of 7 batches
    c = sample_batch_stats(z, m=10, n_batches=20, seed=3)
    # The generator is consumed row by row, so chunks draw the very same batches.
    np.testing.assert_allclose(c[0], a[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(c[1], a[1], rtol=0, atol=1e-13)


def test_normalized_value_of_a_fixed_sample():
    z = np.random.default_rng(9).normal(size=(40, 2))
    v = normalized_value(z, index=3, m=40, n_batches=4)     # the batch is the whole set
    expected = (z[3] - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + 1e-5)
    np.testing.assert_allclose(v, np.broadcast_to(expected, (4, 2)), rtol=1e-12)
    small = normalized_value(z[:, 0], index=3, m=4, n_batches=3000, seed=1)
    large = normalized_value(z[:, 0], index=3, m=20, n_batches=3000, seed=1)
    assert small.shape == (3000,) and small.std() > 1.5 * large.std()


def test_loglog_slope_recovers_a_power_law():
    x = np.array([2.0, 8.0, 32.0, 128.0])
    assert abs(loglog_slope(x, 3.0 * x ** -0.5) + 0.5) < 1e-12
    assert abs(loglog_slope(x, x ** 2) - 2.0) < 1e-12


# ----------------------------------------------------------------------------- errors

def test_bad_arguments_are_rejected():
    z = np.arange(10.0)
    with pytest.raises(ValueError, match=r"sample_batch_stats: m must be at most the 10 samples, "
                                         r"got 11"):
        sample_batch_stats(z, m=11, n_batches=2)
    with pytest.raises(ValueError, match=r"sample_batch_stats: m must be an int >= 2, got 1"):
        sample_batch_stats(z, m=1, n_batches=2)
    with pytest.raises(TypeError, match=r"sample_batch_stats: z must be a numpy.ndarray, got list"):
        sample_batch_stats([1.0, 2.0], m=2, n_batches=2)
    with pytest.raises(ValueError, match=r"sample_batch_stats: include must be a sample index"):
        sample_batch_stats(z, m=2, n_batches=2, include=10)
    with pytest.raises(ValueError, match=r"predicted_mean_std: m must be batch sizes >= 1 and "
                                         r"<= population_size=5"):
        predicted_mean_std(1.0, 6, population_size=5)
    with pytest.raises(ValueError, match=r"predicted_mean_std: sigma must be finite values >= 0"):
        predicted_mean_std(-1.0, 2)
    with pytest.raises(ValueError, match=r"predicted_var_std: mu4 must be a finite fourth"):
        predicted_var_std(2.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"loglog_slope: x, y must be"):
        loglog_slope([1.0, 2.0], [1.0, -1.0])
