"""Tests for bncourse.exercises.ch06: references and plain solutions pass, mistakes get hints."""

import numpy as np

from bncourse.exercises import get_exercise
from bncourse.exercises.ch06 import EXERCISES

IDS = [ex.id for ex in EXERCISES]


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def largest_stable_lr(lrs, accuracies, target):
    ok = np.nan_to_num(accuracies, nan=-np.inf) >= target
    out = np.full(accuracies.shape[1], np.nan)
    for s in range(accuracies.shape[1]):
        if ok[:, s].any():
            out[s] = lrs[ok[:, s]].max()
    return out


def bn_relu_grad_norms(x, weights, w_out, dlogits):
    eps = 1e-5
    weights = list(weights) + [w_out]
    h, tape = x, []
    for w in weights[:-1]:
        z = h @ w
        mean = z.mean(axis=0)
        inv_std = 1.0 / np.sqrt(((z - mean) ** 2).mean(axis=0) + eps)
        x_hat = (z - mean) * inv_std
        tape.append((h, x_hat, inv_std))
        h = np.maximum(x_hat, 0.0)
    grads = [h.T @ dlogits]
    dh = dlogits @ weights[-1].T
    for (h_in, x_hat, inv_std), w in zip(reversed(tape), reversed(weights[:-1])):
        dy = np.where(x_hat > 0, dh, 0.0)
        m = dy.shape[0]
        dz = inv_std / m * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))
        grads.append(h_in.T @ dz)
        dh = dz @ w.T
    return np.array([np.sqrt((g ** 2).sum()) for g in reversed(grads)], dtype=x.dtype)


SOLUTIONS = {"ch06-largest-stable-lr": [largest_stable_lr],
             "ch06-bn-relu-grad-norms": [bn_relu_grad_norms]}


def test_learning_rate_cases_cover_the_tricky_situations():
    ex = get_exercise("ch06-largest-stable-lr")
    cases = ex.cases("all")
    answers = [ex.expected_output(c) for c in cases]
    assert any(np.isnan(a).any() for a in answers)                       # a seed never learns
    assert any(np.isnan(c.args["accuracies"]).any() for c in cases)      # diverged runs
    assert any(np.any(c.args["accuracies"] == c.args["target"]) for c in cases)   # the boundary
    assert any(np.any(np.diff(c.args["lrs"]) < 0) for c in cases)        # not ascending
    # Some seed's smallest learning rate misses the target while a larger one reaches it.
    assert any(not (c.args["accuracies"][np.argmin(c.args["lrs"]), s] >= c.args["target"])
               and np.isfinite(a[s]) for c, a in zip(cases, answers) for s in range(a.size))


def test_gradient_oracle_is_torch_and_agrees_with_the_reference_in_float64():
    ex = get_exercise("ch06-bn-relu-grad-norms")
    dtypes = set()
    for case in ex.cases("all"):
        dtypes.add(case.args["x"].dtype)
        want, ref = ex.expected_output(case), case.call(ex.reference)
        assert want.dtype == case.args["x"].dtype
        assert want.shape == (len(case.args["weights"]) + 1,)
        if case.args["x"].dtype == np.float64:
            np.testing.assert_allclose(ref, want, rtol=1e-11)
    assert dtypes == {np.dtype(np.float32), np.dtype(np.float64)}
