"""Tests for bncourse.exercises.ch11: learner-style solutions, and oracles independent of the references.

The checks every chapter needs run over ``SOLUTIONS`` in test_learner_solutions.py.
"""

import numpy as np
import pytest
import torch

from bncourse.exercises import get_exercise


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def recompute_stats(x, batch_size):
    axes = (0,) + tuple(range(2, x.ndim))
    mean, var, k = np.zeros(x.shape[1]), np.ones(x.shape[1]), 0
    for start in range(0, len(x), batch_size):
        b = x[start:start + batch_size]
        k += 1
        mean += (b.mean(axis=axes) - mean) / k
        var += (b.var(axis=axes, ddof=1) - var) / k
    return mean.astype(x.dtype), var.astype(x.dtype), k


def biases_before_bn(names, kinds, biases, sources):
    users = {n: [m for m, s in zip(names, sources) if n in s.split("+")] for n in names}
    kind = dict(zip(names, kinds))
    return [n for n, k, b in zip(names, kinds, biases)
            if k in ("Linear", "Conv2d") and b and len(users[n]) == 1
            and kind[users[n][0]].startswith("BatchNorm")]


def angular_update(weights, lr):
    w = weights.astype(np.float64)
    n = np.linalg.norm(w, axis=1)
    cos = (w[:-1] * w[1:]).sum(axis=1) / (n[:-1] * n[1:])
    return np.arccos(np.clip(cos, -1, 1)).astype(weights.dtype), (lr / n ** 2).astype(weights.dtype)


SOLUTIONS = {"ch11-recompute-stats": recompute_stats, "ch11-biases-before-bn": biases_before_bn,
             "ch11-angular-update": angular_update}


def test_recompute_oracle_is_update_bn_itself():
    """torch.optim.swa_utils.update_bn on a one-layer model gives the expected buffers."""
    ex = get_exercise("ch11-recompute-stats")
    case = ex.cases("visible")[0]
    x, b = case.args["x"], case.args["batch_size"]
    bn = torch.nn.BatchNorm1d(x.shape[1]).double()
    torch.optim.swa_utils.update_bn([torch.from_numpy(x[i:i + b]) for i in range(0, len(x), b)],
                                    bn)
    mean, var, count = ex.expected_output(case)
    np.testing.assert_allclose(mean, bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(var, bn.running_var.numpy(), rtol=1e-12)
    assert count == 4 == len(range(0, len(x), b))


def test_bias_cases_cover_skip_connections_and_interleaved_rows():
    ex = get_exercise("ch11-biases-before-bn")
    answers = [ex.expected_output(c) for c in ex.cases("all")]
    assert sum(map(bool, answers)) >= len(answers) - 1 and any("b1_conv2" in a for a in answers)
    shared = ex.cases("visible")[2]
    assert "b1_down_conv" not in ex.expected_output(shared)      # it also feeds the sum


def test_angle_oracle_is_accurate_for_tiny_angles():
    ex = get_exercise("ch11-angular-update")
    w = np.stack([np.array([1.0, 0.0]), np.array([np.cos(1e-9), np.sin(1e-9)])])
    angles, eff = ex.expected(w, 0.1)
    assert angles[0] == pytest.approx(1e-9, rel=1e-6)
    np.testing.assert_allclose(eff, [0.1, 0.1], rtol=1e-15)
