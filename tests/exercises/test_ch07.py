"""Tests for bncourse.exercises.ch07: references and plain solutions pass, mistakes get hints."""

import numpy as np

from bncourse.exercises import get_exercise
from bncourse.exercises.ch07 import EXERCISES

IDS = [ex.id for ex in EXERCISES]


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def ghost_batchnorm_forward(x, gamma, beta, ghost_size, eps):
    n, c = x.shape
    blocks = x.reshape(n // ghost_size, ghost_size, c)
    mean = blocks.mean(axis=1, keepdims=True)
    var = blocks.var(axis=1, keepdims=True)
    y = gamma * (blocks - mean) / np.sqrt(var + eps) + beta
    return y.reshape(n, c).astype(x.dtype)


def ghost_batchnorm_loop(x, gamma, beta, ghost_size, eps):
    out = []
    for start in range(0, x.shape[0], ghost_size):
        b = x[start:start + ghost_size]
        out.append(gamma * (b - b.mean(0)) / np.sqrt(((b - b.mean(0)) ** 2).mean(0) + eps) + beta)
    return np.concatenate(out).astype(x.dtype)


def batch_mean_std(z, m):
    n = z.size
    return float(z.std() / np.sqrt(m) * np.sqrt((n - m) / (n - 1)))


def batch_mean_std_ddof1(z, m):
    # The same quantity written with the unbiased variance: S^2 / m * (1 - m / N).
    return float(np.sqrt(z.var(ddof=1) / m * (1 - m / z.size)))


SOLUTIONS = {"ch07-ghost-batch-norm": [ghost_batchnorm_forward, ghost_batchnorm_loop],
             "ch07-batch-mean-std": [batch_mean_std, batch_mean_std_ddof1]}


def test_ghost_oracle_is_torch_per_ghost_batch_and_differs_from_plain_bn():
    ex = get_exercise("ch07-ghost-batch-norm")
    dtypes, differs = set(), False
    for case in ex.cases("all"):
        x = case.args["x"]
        dtypes.add(x.dtype)
        want = ex.expected_output(case)
        assert want.dtype == x.dtype and want.shape == x.shape
        if x.shape[0] > case.args["ghost_size"]:
            whole = case.call(ex.mistakes[0].fn)        # whole-batch statistics
            differs = differs or np.abs(whole - want).max() > 0.1
    assert dtypes == {np.dtype(np.float32), np.dtype(np.float64)} and differs


def test_mean_std_oracle_enumerates_batches_and_agrees_with_the_formula():
    ex = get_exercise("ch07-batch-mean-std")
    for case in ex.cases("all"):
        want, ref = ex.expected_output(case), case.call(ex.reference)
        assert abs(want - ref) <= 1e-12 * max(1.0, abs(want))
    m_equals_n = [c for c in ex.cases("hidden") if c.args["m"] == c.args["z"].size]
    assert m_equals_n and ex.expected_output(m_equals_n[0]) == 0.0
