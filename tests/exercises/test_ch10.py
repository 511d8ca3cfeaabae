"""Tests for bncourse.exercises.ch10: references and plain solutions pass, mistakes fail with hints."""

import numpy as np

from bncourse.exercises import get_exercise


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def group_norm(x, num_groups, gamma, beta, eps):
    n, c = x.shape[:2]
    groups = x.reshape(n, num_groups, -1)
    mean = groups.mean(axis=2, keepdims=True)
    var = groups.var(axis=2, keepdims=True)
    x_hat = ((groups - mean) / np.sqrt(var + eps)).reshape(x.shape)
    view = (1, c) + (1,) * (x.ndim - 2)
    return gamma.reshape(view) * x_hat + beta.reshape(view)


def combine_shard_stats(sums, sumsqs, counts):
    m = int(counts.sum())
    mean = sums.sum(axis=0) / m
    var = sumsqs.sum(axis=0) / m - mean * mean
    return mean, var, var * (m / (m - 1))


SOLUTIONS = {"ch10-group-norm": group_norm, "ch10-combine-shard-stats": combine_shard_stats}


def test_group_norm_cases_cover_every_rank_and_group_count():
    ex = get_exercise("ch10-group-norm")
    cases = ex.cases("all")
    assert {c.args["x"].ndim for c in cases} == {2, 3, 4, 5}
    ratios = {c.args["x"].shape[1] // c.args["num_groups"] for c in cases}
    groups = {c.args["num_groups"] for c in cases}
    assert 1 in ratios and 1 in groups       # instance norm and layer norm are both covered


def test_shard_oracle_is_exact_arithmetic_and_agrees_with_the_data():
    """The oracle is not the reference: it agrees with the moments of data we sum ourselves."""
    ex = get_exercise("ch10-combine-shard-stats")
    rng = np.random.default_rng(5)
    shards = [rng.normal(1.0, 2.0, size=(n, 3)) for n in (4, 9, 2)]
    sums = np.stack([s.sum(axis=0) for s in shards])
    sumsqs = np.stack([(s * s).sum(axis=0) for s in shards])
    mean, var, var_unbiased = ex.expected(sums, sumsqs, np.array([4, 9, 2]))
    whole = np.concatenate(shards)
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, whole.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var_unbiased, whole.var(axis=0, ddof=1), rtol=1e-12)
