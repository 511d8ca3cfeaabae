"""Chapter 10 exercises: group normalization; combining per-shard statistics stably.

The group-norm answers come from ``torch.nn.functional.group_norm`` in
float64; the combination of per-shard means and variances is checked
against exact rational arithmetic on the very statistics the learner
receives (Python's ``fractions``), so the oracle has no rounding error of its
own, on cases whose mean is large against the spread: there the sum-of-squares
formula cancels and fails, and only a stable combination (Chan, Golub and
LeVeque's) passes. The references are ``bncourse.groupnorm`` and
``bncourse.sync_bn.combine_moments``. Heavy imports
happen inside the functions.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/10_beyond_one_batch.ipynb"


# --------------------------------------------------------------------------- group norm

def _gn_case(seed, shape=(4, 6, 3, 3), num_groups=3, dtype="float64", eps=1e-5):
    """x whose samples and channels have different means and spreads; gamma, beta per channel."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    view = (shape[0], shape[1]) + (1,) * (len(shape) - 2)
    loc = rng.uniform(-4.0, 4.0, size=view)
    scale = np.exp(rng.uniform(np.log(0.2), np.log(5.0), size=view))
    x = loc + scale * rng.standard_normal(shape)
    gamma = rng.choice([-1.0, 1.0], size=shape[1]) * rng.uniform(0.5, 2.0, size=shape[1])
    beta = rng.normal(size=shape[1])
    return {"x": x.astype(dtype), "num_groups": int(num_groups),
            "gamma": gamma.astype(dtype), "beta": beta.astype(dtype), "eps": eps}


def _gn_reference(x, num_groups, gamma, beta, eps):
    from bncourse.groupnorm import groupnorm_forward

    return groupnorm_forward(x, num_groups, gamma, beta, eps)[0]


def _gn_torch(x, num_groups, gamma, beta, eps):
    import torch
    import torch.nn.functional as F

    x_t, gamma_t, beta_t = (torch.from_numpy(np.asarray(a, dtype=np.float64))
                            for a in (x, gamma, beta))
    y = F.group_norm(x_t, num_groups, gamma_t, beta_t, eps=float(eps))
    return y.numpy().astype(x.dtype)


def _gn_mistake(kind):
    """Group norm with one thing wrong."""
    def mistake(x, num_groups, gamma, beta, eps):
        n, c = x.shape[:2]
        g = 1 if kind == "one-group" else num_groups
        if kind == "interleaved":
            # channel c in group c % G: groups of every G-th channel
            xg = np.swapaxes(x.reshape(n, c // g, g, -1), 1, 2).reshape(n, g, -1)
        else:
            xg = x.reshape(n, g, -1)
        if kind == "batch":
            # statistics of each group over the whole batch, as batch norm would
            axes = (0, 2)
        else:
            axes = (2,)
        mean = xg.mean(axis=axes, keepdims=True)
        var = xg.var(axis=axes, keepdims=True)
        with np.errstate(all="ignore"):            # a group of one value: m - 1 = 0
            if kind == "unbiased":
                m = xg.size // var.size
                var = var * m / (m - 1)
            if kind == "eps-outside":
                x_hat = (xg - mean) / (np.sqrt(var) + eps)
            else:
                x_hat = (xg - mean) / np.sqrt(var + eps)
        if kind == "interleaved":
            x_hat = np.swapaxes(x_hat.reshape(n, g, c // g, -1), 1, 2)
        x_hat = x_hat.reshape(x.shape)
        view = (1, c) + (1,) * (x.ndim - 2)
        return (gamma.reshape(view) * x_hat + beta.reshape(view)).astype(x.dtype)
    return mistake


_GN_MISTAKES = [
    Mistake("group norm never mixes samples: take the statistics of each sample separately "
            "(reduce over the channels of the group and the spatial axes, not over axis 0).",
            _gn_mistake("batch")),
    Mistake("a group is a block of CONSECUTIVE channels, as in torch: reshape x to "
            "(N, G, C // G, ...) so that group g holds channels g * C/G .. (g+1) * C/G - 1.",
            _gn_mistake("interleaved")),
    Mistake("use num_groups groups: with one group you computed layer normalization over "
            "(C, *S).", _gn_mistake("one-group")),
    Mistake(hints.UNBIASED_VARIANCE, _gn_mistake("unbiased")),
    Mistake(hints.EPS_OUTSIDE_ROOT, _gn_mistake("eps-outside")),
]


# --------------------------------------------------------------------------- shard statistics

def _shard_case(seed, counts=(12, 20), channels=3, dtype="float64", loc=2.0, offset=0.0):
    """Each shard's count, mean and biased variance of Gaussian data; the shards' means
    differ by up to ``loc`` and all sit near ``offset`` (a large offset against a spread
    of about 1 is where E[x^2] - E[x]^2 cancels)."""
    rng = np.random.default_rng(seed)
    means, variances = [], []
    for n in counts:
        shift = offset + rng.uniform(-loc, loc, size=channels)          # shards really differ
        x = shift + rng.uniform(0.5, 2.0, size=channels) * rng.standard_normal((n, channels))
        x = x.astype(dtype)
        mean = x.mean(axis=0, dtype=np.float64)
        means.append(mean)
        variances.append(((x - mean) ** 2).mean(axis=0))
    return {"counts": np.array(counts, dtype=np.int64),
            "means": np.stack(means).astype(dtype), "variances": np.stack(variances).astype(dtype)}


def _shard_reference(counts, means, variances):
    import torch

    from bncourse.sync_bn import combine_moments

    n = torch.from_numpy(counts.astype(np.float64))
    mu = torch.from_numpy(means.astype(np.float64))
    m2 = torch.from_numpy(variances.astype(np.float64)) * n.reshape(-1, 1)
    total, mean, var = combine_moments(n, mu, m2)
    return tuple(a.astype(means.dtype) for a in
                 (mean.numpy(), var.numpy(), var.numpy() * total / (total - 1)))


def _shard_exact(counts, means, variances):
    """The statistics of the union in exact rational arithmetic on the given shard statistics."""
    m = sum(int(n) for n in counts)
    out = [], [], []
    for c in range(means.shape[1]):
        mu_k = [Fraction(float(v)) for v in means[:, c]]
        mu = sum(int(n) * v for n, v in zip(counts, mu_k)) / m
        m2 = sum(int(n) * (Fraction(float(v)) + (u - mu) ** 2)
                 for n, v, u in zip(counts, variances[:, c], mu_k))
        for values, value in zip(out, (mu, m2 / m, m2 / (m - 1))):
            values.append(float(value))
    return tuple(np.array(a).astype(means.dtype) for a in out)


def _shard_mistake(kind):
    def mistake(counts, means, variances):
        n = counts.astype(np.float64)[:, None]
        m = float(counts.sum())
        mean = (n * means).sum(axis=0) / m
        if kind == "unweighted-mean":
            mean = means.mean(axis=0)
            var = (n * (variances + (means - mean) ** 2)).sum(axis=0) / m
        elif kind == "average-variances":
            var = (n * variances).sum(axis=0) / m
        elif kind == "sum-of-squares":
            sumsq = (n * (variances + means ** 2)).sum(axis=0)
            var = sumsq / m - mean ** 2
        else:
            var = (n * (variances + (means - mean) ** 2)).sum(axis=0) / m
        var_unbiased = var * m / (m - 1)
        if kind == "swapped":
            var, var_unbiased = var_unbiased, var
        return tuple(np.asarray(a).astype(means.dtype) for a in (mean, var, var_unbiased))
    return mistake


_SHARD_MISTAKES = [
    Mistake("weight each shard by its count: the global mean is not the plain average of "
            "the shard means (they differ when the shards have different sizes).",
            _shard_mistake("unweighted-mean")),
    Mistake("the variance of the whole batch is not the (weighted) average of the shard "
            "variances: it also contains the spread of the shard means around the global "
            "mean.", _shard_mistake("average-variances")),
    Mistake("going back to sums of squares, E[x^2] - E[x]^2, subtracts two nearly equal "
            "large numbers when the mean is large against the spread: the difference loses "
            "most of its digits (catastrophic cancellation). Combine deviations from the "
            "mean instead, which stay small.", _shard_mistake("sum-of-squares")),
    Mistake("var is the biased variance (divide by m, what BN normalizes with); var_unbiased "
            "divides by m - 1 (what torch stores in running_var).",
            _shard_mistake("swapped")),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch10-group-norm",
        notebook=NOTEBOOK,
        function="group_norm",
        points=2,
        reference=_gn_reference,
        expected=_gn_torch,
        make_case=_gn_case,
        visible=[dict(seed=0, note="(N, C, H, W), 3 groups of 2 channels"),
                 dict(seed=1, shape=(3, 8, 5), num_groups=2, dtype="float32"),
                 dict(seed=2, shape=(5, 4), num_groups=4, eps=1e-2,
                      note="(N, C) with one channel per group")],
        hidden=[dict(seed=301, shape=(2, 6, 2, 2, 3), num_groups=2),
                dict(seed=302, shape=(1, 4, 3, 3), num_groups=1, note="a batch of one, LN"),
                dict(seed=303, shape=(6, 12, 4, 4), num_groups=4, dtype="float32"),
                dict(seed=304, shape=(3, 6, 7), num_groups=6, note="instance norm"),
                dict(seed=305, shape=(4, 8), num_groups=2, eps=1e-3)],
        outputs=("y",),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_GN_MISTAKES,
        stub='''import numpy as np


def group_norm(x, num_groups, gamma, beta, eps):
    """Group normalization, as torch.nn.functional.group_norm computes it.

    x: array of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), channels
    on axis 1. num_groups: G, a divisor of C; group g holds the consecutive channels
    g * C/G .. (g + 1) * C/G - 1. For each sample and group, take the mean and the
    biased variance over the group's channels and every trailing axis, then
    y = gamma * (x - mean) / sqrt(var + eps) + beta, with gamma and beta of shape (C,)
    (one per channel). Returns y, the shape and dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch10-combine-shard-stats",
        notebook=NOTEBOOK,
        function="combine_shard_stats",
        points=2,
        reference=_shard_reference,
        expected=_shard_exact,
        make_case=_shard_case,
        visible=[dict(seed=0, note="2 shards of different sizes"),
                 dict(seed=1, counts=(8, 8, 8, 8), channels=2, dtype="float32"),
                 dict(seed=2, counts=(3, 40, 9), channels=4, offset=1e6,
                      note="mean about 1e6, spread about 1")],
        hidden=[dict(seed=401, counts=(1, 1), channels=1, note="two values in all"),
                dict(seed=402, counts=(100,), channels=5, note="a single shard"),
                dict(seed=403, counts=(2, 7, 1, 30, 5), channels=3, dtype="float32"),
                dict(seed=404, counts=(64, 64), channels=8, loc=4.0, offset=1e8,
                     note="mean about 1e8"),
                dict(seed=405, counts=(5, 11, 2), channels=2, loc=0.5, offset=-3e7)],
        outputs=("mean", "var", "var_unbiased"),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_SHARD_MISTAKES,
        stub='''import numpy as np


def combine_shard_stats(counts, means, variances):
    """The mean and variances of a whole batch from statistics computed per shard.

    counts: integer array (K,), the number of values per channel on each of K
    shards. means, variances: arrays (K, C): the mean and the biased variance
    (divided by its own count) of the values of channel c on shard k.

    Returns (mean, var, var_unbiased), each of shape (C,) in the dtype of means:
    the mean, the biased variance (divided by the total count m) and the unbiased
    variance (divided by m - 1) of all the values of each channel, as if the
    shards had been one batch. Means may be large against the spread (1e8 against
    1): the answer must keep its accuracy there.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
