"""Tests for bncourse.exercises.ch10: references and plain solutions pass, mistakes fail with hints."""

import numpy as np

from bncourse.exercises import get_exercise
from bncourse.exercises.judge import judge_output


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def group_norm(x, num_groups, gamma, beta, eps):
    n, c = x.shape[:2]
    groups = x.reshape(n, num_groups, -1)
    mean = groups.mean(axis=2, keepdims=True)
    var = groups.var(axis=2, keepdims=True)
    x_hat = ((groups - mean) / np.sqrt(var + eps)).reshape(x.shape)
    view = (1, c) + (1,) * (x.ndim - 2)
    return gamma.reshape(view) * x_hat + beta.reshape(view)


def combine_shard_stats(counts, means, variances):
    n = counts[:, None].astype(np.float64)
    m = n.sum()
    mean = (n * means).sum(axis=0) / m
    m2 = (n * variances).sum(axis=0) + (n * (means - mean) ** 2).sum(axis=0)
    return (mean.astype(means.dtype), (m2 / m).astype(means.dtype),
            (m2 / (m - 1)).astype(means.dtype))


def combine_shard_stats_pairwise(counts, means, variances):
    """Chan et al.'s pairwise update, one shard at a time."""
    n, mean, m2 = 0.0, np.zeros(means.shape[1]), np.zeros(means.shape[1])
    for n_k, mean_k, var_k in zip(counts.astype(np.float64), means, variances):
        delta = mean_k - mean
        total = n + n_k
        mean = mean + delta * n_k / total
        m2 = m2 + n_k * var_k + delta ** 2 * n * n_k / total
        n = total
    return (mean.astype(means.dtype), (m2 / n).astype(means.dtype),
            (m2 / (n - 1)).astype(means.dtype))


def sum_of_squares(*args):
    """The loophole: the textbook E[x^2] - E[x]^2, in either version of the exercise's inputs
    ((sums, sumsqs, counts) before it was closed, (counts, means, variances) now)."""
    if args[0].ndim == 2:
        sums, sumsqs, counts = args
    else:
        counts, means, variances = args
        sums = counts[:, None] * means
        sumsqs = counts[:, None] * (variances + means ** 2)
    m = float(counts.sum())
    mean = sums.sum(axis=0) / m
    var = sumsqs.sum(axis=0) / m - mean ** 2
    return tuple(a.astype(sums.dtype) for a in (mean, var, var * m / (m - 1)))


SOLUTIONS = {"ch10-group-norm": group_norm,
             "ch10-combine-shard-stats": [combine_shard_stats, combine_shard_stats_pairwise]}


def test_group_norm_cases_cover_every_rank_and_group_count():
    ex = get_exercise("ch10-group-norm")
    cases = ex.cases("all")
    assert {c.args["x"].ndim for c in cases} == {2, 3, 4, 5}
    ratios = {c.args["x"].shape[1] // c.args["num_groups"] for c in cases}
    groups = {c.args["num_groups"] for c in cases}
    assert 1 in ratios and 1 in groups       # instance norm and layer norm are both covered


def test_shard_oracle_is_exact_arithmetic_and_agrees_with_the_data():
    """The oracle is not the reference: it agrees with the moments of data we pool ourselves."""
    ex = get_exercise("ch10-combine-shard-stats")
    rng = np.random.default_rng(5)
    shards = [rng.normal(1.0, 2.0, size=(n, 3)) for n in (4, 9, 2)]
    means = np.stack([s.mean(axis=0) for s in shards])
    variances = np.stack([s.var(axis=0) for s in shards])
    mean, var, var_unbiased = ex.expected(np.array([4, 9, 2]), means, variances)
    whole = np.concatenate(shards)
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, whole.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var_unbiased, whole.var(axis=0, ddof=1), rtol=1e-12)


def test_the_sum_of_squares_formula_fails_where_the_mean_is_large():
    """The loophole closed: E[x^2] - E[x]^2 passes the small-mean cases and fails, visibly
    and hidden, where the mean is large against the spread."""
    ex = get_exercise("ch10-combine-shard-stats")
    verdicts = {which: [judge_output(ex, c, c.call(sum_of_squares), ex.expected_output(c))
                        for c in ex.cases(which)] for which in ("visible", "hidden")}
    assert not all(v.passed for v in verdicts["visible"])
    large = [v for v in verdicts["hidden"] if abs(v.case.params.get("offset", 0.0)) >= 1e7]
    assert large and not any(v.passed for v in large)
    assert any(v.passed for v in verdicts["hidden"])    # it is right where nothing cancels
