"""Chapter 7 exercises: ghost batch normalization, and the predicted noise of a batch mean.

The expected answers are independent of the references: PyTorch's
``batch_norm`` applied to each ghost batch in turn (float64 or the input's
dtype), and an exhaustive enumeration of every possible batch of a small
population. The references are ``bncourse.ghost_bn.ghost_batch_norm`` and
``bncourse.experiments.batch_noise.predicted_mean_std``. Heavy imports happen inside the
functions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/07_regularization.ipynb"


# --------------------------------------------------------------------------- ghost batch norm

def _ghost_case(seed, n_ghosts=3, ghost_size=4, channels=3, dtype="float64", eps=1e-5,
                drift=3.0):
    """x whose ghost batches differ in mean and spread, so per-ghost statistics matter."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-drift, drift, size=(n_ghosts, 1, channels))
    scale = np.exp(rng.uniform(-1.0, 1.5, size=(n_ghosts, 1, channels)))
    x = (loc + scale * rng.standard_normal((n_ghosts, ghost_size, channels)))
    x = x.reshape(n_ghosts * ghost_size, channels)
    gamma = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.5, 2.0, size=channels)
    beta = rng.normal(size=channels)
    return {"x": x.astype(dtype), "gamma": gamma.astype(dtype), "beta": beta.astype(dtype),
            "ghost_size": int(ghost_size), "eps": float(eps)}


def _ghost_reference(x, gamma, beta, ghost_size, eps):
    import torch

    from bncourse.ghost_bn import ghost_batch_norm

    y = ghost_batch_norm(torch.from_numpy(x), ghost_size, weight=torch.from_numpy(gamma),
                         bias=torch.from_numpy(beta), training=True, eps=eps)
    return y.numpy()


def _ghost_torch(x, gamma, beta, ghost_size, eps):
    """torch's own batch norm on each block of ghost_size consecutive samples, in turn."""
    import torch

    gamma_t, beta_t = torch.from_numpy(gamma), torch.from_numpy(beta)
    chunks = [torch.nn.functional.batch_norm(c, None, None, gamma_t, beta_t, training=True,
                                             eps=eps)
              for c in torch.from_numpy(x).split(ghost_size)]
    return torch.cat(chunks).numpy()


def _normalize(x, gamma, beta, eps, ddof=0, eps_outside=False, axis=0):
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, ddof=ddof, keepdims=True)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return (gamma * (x - mean) / std + beta).astype(x.dtype)


def _ghost_mistake(blocks="consecutive", **kwargs):
    def mistake(x, gamma, beta, ghost_size, eps):
        n = x.shape[0]
        k = max(1, n // ghost_size)
        if blocks == "whole":
            return _normalize(x, gamma, beta, eps, **kwargs)
        if blocks == "strided":                     # sample i goes to ghost batch i % k
            y = np.empty_like(x)
            for r in range(k):
                y[r::k] = _normalize(x[r::k], gamma, beta, eps, **kwargs)
            return y
        return np.concatenate([_normalize(x[i:i + ghost_size], gamma, beta, eps, **kwargs)
                               for i in range(0, n, ghost_size)])
    return mistake


_GHOST_MISTAKES = [
    Mistake("normalize each ghost batch with ITS OWN mean and variance; statistics of the "
            "whole batch give ordinary batch norm, which is what ghost batch norm replaces.",
            _ghost_mistake("whole")),
    Mistake("a ghost batch is a block of ghost_size CONSECUTIVE samples: rows 0..g-1, then "
            "g..2g-1, and so on (x.reshape(k, g, C)), not every k-th row.",
            _ghost_mistake("strided")),
    Mistake(hints.UNBIASED_VARIANCE, _ghost_mistake(ddof=1)),
    Mistake(hints.EPS_OUTSIDE_ROOT, _ghost_mistake(eps_outside=True)),
    Mistake("take the statistics over the samples of a ghost batch (axis 0 of each block), "
            "one mean and one variance per channel; averaging over the channels of each "
            "sample is layer normalization.", _ghost_mistake(axis=1)),
]


# --------------------------------------------------------------------------- noise of the mean

def _population_case(seed, n=10, m=3, tail="normal"):
    rng = np.random.default_rng(seed)
    z = rng.standard_t(df=3, size=n) if tail == "heavy" else rng.normal(1.0, 2.0, size=n)
    return {"z": z, "m": int(m)}


def _mean_std_reference(z, m):
    from bncourse.experiments.batch_noise import predicted_mean_std

    return float(predicted_mean_std(z.std(), m, population_size=z.size))


def _mean_std_enumerated(z, m):
    """The standard deviation of the batch mean over EVERY batch of m distinct samples."""
    means = np.array([z[list(batch)].mean() for batch in itertools.combinations(range(z.size), m)])
    return float(np.sqrt(np.mean((means - z.mean()) ** 2)))


_MEAN_STD_MISTAKES = [
    Mistake("the batch holds m DISTINCT samples drawn without replacement from only "
            "N = z.size values, which makes batch means less variable than independent draws: "
            "multiply sigma / sqrt(m) by the finite-population correction "
            "sqrt((N - m) / (N - 1)).",
            lambda z, m: float(z.std() / math.sqrt(m))),
    Mistake("sigma is the population standard deviation of z (np.std's default, ddof=0) when "
            "the correction is sqrt((N - m) / (N - 1)); with ddof=1 the correction becomes "
            "sqrt(1 - m / N). Do not mix the two.",
            lambda z, m: float(z.std(ddof=1) / math.sqrt(m)
                               * math.sqrt((z.size - m) / (z.size - 1)))),
    Mistake("the finite-population correction (N - m) / (N - 1) multiplies the VARIANCE of the "
            "batch mean; the standard deviation gets its square root.",
            lambda z, m: float(z.std() / math.sqrt(m) * (z.size - m) / (z.size - 1))),
    Mistake("return the standard deviation of the batch mean, the square root of its variance "
            "sigma^2 / m * (N - m) / (N - 1).",
            lambda z, m: float(z.var() / m * (z.size - m) / (z.size - 1))),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch07-ghost-batch-norm",
        notebook=NOTEBOOK,
        function="ghost_batchnorm_forward",
        points=2,
        reference=_ghost_reference,
        expected=_ghost_torch,
        make_case=_ghost_case,
        visible=[dict(seed=0), dict(seed=1, n_ghosts=2, ghost_size=5, channels=4,
                                    dtype="float32"),
                 dict(seed=2, n_ghosts=1, ghost_size=6, note="one ghost batch: plain BN")],
        hidden=[dict(seed=701, n_ghosts=8, ghost_size=2, channels=1),
                dict(seed=702, n_ghosts=4, ghost_size=16, channels=7, dtype="float32"),
                dict(seed=703, n_ghosts=5, ghost_size=3, channels=2, eps=1e-3),
                dict(seed=704, n_ghosts=2, ghost_size=32, channels=5, drift=50.0)],
        outputs=("y",),
        rtol={"float32": 2e-5, "float64": 1e-10},
        mistakes=_GHOST_MISTAKES,
        stub='''import numpy as np


def ghost_batchnorm_forward(x, gamma, beta, ghost_size, eps):
    """Ghost batch normalization in training mode.

    x: (N, C) float array, N a multiple of ghost_size; gamma, beta: (C,).
    Split the batch into N // ghost_size ghost batches of ghost_size
    CONSECUTIVE samples; normalize each ghost batch with its own per-channel
    mean and biased variance: y = gamma * (x - mean) / sqrt(var + eps) + beta.
    Returns y, shape (N, C), the dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch07-batch-mean-std",
        notebook=NOTEBOOK,
        function="batch_mean_std",
        points=1,
        reference=_mean_std_reference,
        expected=_mean_std_enumerated,
        make_case=_population_case,
        visible=[dict(seed=0), dict(seed=1, n=12, m=1, note="m = 1"),
                 dict(seed=2, n=9, m=4, tail="heavy")],
        hidden=[dict(seed=711, n=14, m=7), dict(seed=712, n=8, m=8, note="m = N"),
                dict(seed=713, n=13, m=2, tail="heavy"), dict(seed=714, n=11, m=10)],
        outputs=("std",),
        rtol=1e-9,
        mistakes=_MEAN_STD_MISTAKES,
        stub='''import numpy as np


def batch_mean_std(z, m):
    """Predicted standard deviation of the mean of a random mini-batch.

    z: (N,) float64, the values of one unit for all N training samples (fixed
    weights). A batch is m DISTINCT samples drawn at random (without
    replacement). Return the standard deviation of the batch mean over all
    such batches, as a float, from a formula (no sampling).
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
