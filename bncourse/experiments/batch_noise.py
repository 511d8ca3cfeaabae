"""Noise of batch statistics: how much the mean and variance of a random mini-batch scatter.

Fix the network and the data. A unit then has one value ``z_i`` per training
sample, ``i = 1..N``: a finite population with mean ``mu``, variance
``sigma^2`` (population, ddof=0) and fourth central moment ``mu_4``. A
mini-batch of ``m`` samples drawn *without replacement* (as within an epoch
of ``training.train``) has the batch mean and the biased batch variance

    mean_B = sum_{i in B} z_i / m,    var_B = sum_{i in B} (z_i - mean_B)^2 / m,

random through the choice of ``B`` alone. Their standard deviations over
batches are

    std(mean_B) = sigma / sqrt(m) * sqrt((N - m) / (N - 1))                  (exact)
    std(var_B)  ~ sqrt(((m-1)^2 mu_4 - (m-1)(m-3) sigma^4) / m^3) * sqrt((N - m) / (N - 1))

The first is the classical result for sampling without replacement; the
factor ``sqrt((N - m) / (N - 1))`` is the *finite-population correction*
(1 for ``m = 1``, 0 for ``m = N``, where every batch is the whole set). The
second is the exact formula for independent draws (``(m - 1)^2 / m^2`` times
the variance of the unbiased sample variance) with the same correction
applied, an approximation that is good when ``m << N``. Both fall like
``1 / sqrt(m)``: quadrupling the batch halves the noise.

Shape letters: N population size, U units, K batches drawn, m batch size.

Public API
----------
``finite_population_correction(m, n)``   ``sqrt((n - m) / (n - 1))``
``predicted_mean_std(sigma, m, population_size=None)``
``predicted_var_std(sigma2, mu4, m, population_size=None)``
``central_moments(z) -> (mean, var, mu4)``   per unit, population (ddof=0)
``sample_batch_stats(z, m, n_batches, seed=0, include=None) -> (mean (K, U), var (K, U))``
``normalized_value(z, index, m, n_batches, seed=0, eps=1e-5) -> (K, U)``
    What BatchNorm outputs for the fixed sample ``index`` when its ``m - 1``
    batch companions are drawn at random: ``(z_index - mean_B) / sqrt(var_B + eps)``.
``loglog_slope(x, y) -> float``   least-squares slope of ``log y`` against ``log x``

Examples
--------
>>> import numpy as np
>>> z = np.random.default_rng(0).normal(size=1000)
>>> mean, var = sample_batch_stats(z, m=25, n_batches=4000, seed=1)
>>> predicted = predicted_mean_std(z.std(), 25, population_size=1000)
>>> bool(abs(mean.std() / predicted - 1) < 0.05)
True
"""

from __future__ import annotations

import numpy as np

from bncourse._checks import check_array, check_int, fail

__all__ = ["finite_population_correction", "predicted_mean_std", "predicted_var_std",
           "central_moments", "sample_batch_stats", "normalized_value", "loglog_slope"]

_CHUNK_ELEMENTS = 4_000_000   # indicator-matrix entries handled at once (memory bound)


def _check_sizes(func: str, m, n):
    m = np.asarray(m, dtype=np.float64)
    if n is not None:
        n = check_int(func, "population_size", n, minimum=2)
    if np.any(~np.isfinite(m)) or np.any(m < 1) or (n is not None and np.any(m > n)):
        upper = f" and <= population_size={n}" if n is not None else ""
        fail(func, "m", f"batch sizes >= 1{upper}", repr(m.tolist()))
    return m, n


def finite_population_correction(m, n: int):
    """``sqrt((n - m) / (n - 1))``: the factor by which sampling without replacement
    shrinks the standard deviation of a batch mean (elementwise in ``m``).

    >>> finite_population_correction(1, 10), finite_population_correction(10, 10)
    (1.0, 0.0)
    """
    m, n = _check_sizes("finite_population_correction", m, n)
    out = np.sqrt((n - m) / (n - 1))
    return float(out) if out.ndim == 0 else out


def predicted_mean_std(sigma, m, population_size: int | None = None):
    """Standard deviation of the mean of a random batch of ``m`` values.

    ``sigma / sqrt(m)`` for independent draws; times
    ``finite_population_correction(m, population_size)`` for ``m`` distinct
    values drawn without replacement from a population of ``population_size``
    values whose population (ddof=0) standard deviation is ``sigma``. Exact.
    Broadcasts over ``sigma`` (units) and ``m``.

    >>> predicted_mean_std(2.0, 4)
    1.0
    """
    func = "predicted_mean_std"
    m, n = _check_sizes(func, m, population_size)
    sigma = np.asarray(sigma, dtype=np.float64)
    if np.any(~np.isfinite(sigma)) or np.any(sigma < 0):
        fail(func, "sigma", "finite values >= 0", repr(sigma.tolist()))
    out = sigma / np.sqrt(m)
    if n is not None:
        out = out * np.sqrt((n - m) / (n - 1))
    return float(out) if out.ndim == 0 else out


def predicted_var_std(sigma2, mu4, m, population_size: int | None = None):
    """Standard deviation of the biased variance of a random batch of ``m`` values.

    For independent draws from a distribution with variance ``sigma2`` and
    fourth central moment ``mu4`` (exact)::

        Var(var_B) = ((m - 1)^2 mu4 - (m - 1)(m - 3) sigma2^2) / m^3  ~  (mu4 - sigma2^2) / m

    With ``population_size`` the result is multiplied by the finite-population
    correction, an approximation for sampling without replacement that is
    accurate when ``m`` is small compared with the population.

    >>> round(predicted_var_std(1.0, 3.0, 10_000), 5)   # Gaussian: sqrt(2 / m)
    0.01414
    """
    func = "predicted_var_std"
    m, n = _check_sizes(func, m, population_size)
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    mu4 = np.asarray(mu4, dtype=np.float64)
    if np.any(~np.isfinite(sigma2)) or np.any(sigma2 < 0) or np.any(~np.isfinite(mu4)) \
            or np.any(mu4 < sigma2 ** 2 * (1 - 1e-12)):
        fail(func, "mu4", "a finite fourth central moment >= sigma2**2",
              f"mu4={mu4.tolist()!r}, sigma2={sigma2.tolist()!r}")
    var = ((m - 1) ** 2 * mu4 - (m - 1) * (m - 3) * sigma2 ** 2) / m ** 3
    out = np.sqrt(np.maximum(var, 0.0))
    if n is not None:
        out = out * np.sqrt((n - m) / (n - 1))
    return float(out) if out.ndim == 0 else out


def _check_values(func: str, z) -> np.ndarray:
    z = check_array(func, "z", z, min_ndim=1, max_ndim=2)
    if z.shape[0] < 2:
        fail(func, "z", "at least 2 values (one per sample) along axis 0", f"shape {z.shape}")
    return z.astype(np.float64, copy=False)


def central_moments(z):
    """Population mean, variance and fourth central moment of ``z (N,)`` or ``z (N, U)``.

    Returns three floats, or three arrays of shape ``(U,)``.

    >>> central_moments(np.array([-1.0, 1.0]))
    (0.0, 1.0, 1.0)
    """
    z = _check_values("central_moments", z)
    mean = z.mean(axis=0)
    d = z - mean
    var, mu4 = (d ** 2).mean(axis=0), (d ** 4).mean(axis=0)
    if z.ndim == 1:
        return float(mean), float(var), float(mu4)
    return mean, var, mu4


def _indicators(rng, n: int, m: int, k: int, include) -> np.ndarray:
    """``(k, n)`` 0/1 matrix: row r marks the m samples of batch r (distinct indices)."""
    s = np.zeros((k, n))
    if include is None:
        perm = rng.permuted(np.tile(np.arange(n), (k, 1)), axis=1)[:, :m]
    else:
        others = np.delete(np.arange(n), include)
        perm = rng.permuted(np.tile(others, (k, 1)), axis=1)[:, :m - 1]
        perm = np.concatenate([np.full((k, 1), include), perm], axis=1)
    np.put_along_axis(s, perm, 1.0, axis=1)
    return s


def sample_batch_stats(z, m: int, n_batches: int, seed: int = 0, include: int | None = None):
    """Mean and biased variance of ``n_batches`` random batches of ``m`` distinct samples.

    Parameters
    ----------
    z : ndarray (N,) or (N, U), float
        One value per sample (per unit). Every unit sees the same batches.
    m : int in [2, N]
    n_batches : int
        K, the number of batches drawn (independently of each other; within a
        batch the samples are distinct).
    seed : int
        ``np.random.default_rng(seed)``.
    include : int, optional
        Index of a sample that every batch contains (its ``m - 1`` companions
        are drawn from the other ``N - 1`` samples).

    Returns
    -------
    mean, var : ndarray (K,) or (K, U)

    Raises
    ------
    ValueError / TypeError for a bad ``z``, ``m`` outside ``[2, N]``, a bad
    ``n_batches`` or ``include``.
    """
    func = "sample_batch_stats"
    z = _check_values(func, z)
    n = z.shape[0]
    m = check_int(func, "m", m, minimum=2)
    if m > n:
        fail(func, "m", f"at most the {n} samples", repr(m))
    n_batches = check_int(func, "n_batches", n_batches)
    if include is not None:
        include = check_int(func, "include", include, minimum=0)
        if include >= n:
            fail(func, "include", f"a sample index in [0, {n - 1}]", repr(include))
    zz = z.reshape(n, -1)
    centre = zz.mean(axis=0)
    d = zz - centre                      # centring first keeps E[d^2] - E[d]^2 accurate
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    means, variances = [], []
    for start in range(0, n_batches, chunk):
        s = _indicators(rng, n, m, min(chunk, n_batches - start), include)
        first, second = s @ d / m, s @ (d * d) / m
        means.append(first + centre)
        variances.append(np.maximum(second - first ** 2, 0.0))
    mean, var = np.concatenate(means), np.concatenate(variances)
    if z.ndim == 1:
        return mean[:, 0], var[:, 0]
    return mean, var


def normalized_value(z, index: int, m: int, n_batches: int, seed: int = 0, eps: float = 1e-5):
    """BatchNorm's output ``(z_index - mean_B) / sqrt(var_B + eps)`` for one fixed sample.

    Each of the ``n_batches`` batches contains sample ``index`` and ``m - 1``
    other samples drawn at random, so the spread of the result is the noise
    that batch statistics add to that one input. Returns ``(K,)`` or ``(K, U)``.

    >>> z = np.arange(10.0)
    >>> v = normalized_value(z, index=9, m=10, n_batches=3)   # the batch is the whole set
    >>> bool(np.allclose(v, (9 - 4.5) / np.sqrt(z.var() + 1e-5)))
    True
    """
    func = "normalized_value"
    z = _check_values(func, z)
    mean, var = sample_batch_stats(z, m, n_batches, seed=seed, include=index)
    return (z[index] - mean) / np.sqrt(var + eps)


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log(y)`` against ``log(x)``: the exponent ``p`` of ``y ~ x^p``.

    >>> round(loglog_slope([1, 4, 16], [1.0, 0.5, 0.25]), 6)
    -0.5
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2 or np.any(x <= 0) or np.any(y <= 0):
        fail("loglog_slope", "x, y", "two 1-D arrays of the same length >= 2 with positive "
              "values", f"shapes {x.shape} and {y.shape}")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
