"""Tests for bncourse.exercises.ch06: references and plain solutions pass, mistakes get hints."""

import numpy as np

from bncourse.exercises import get_exercise
from bncourse.exercises.ch06 import EXERCISES

IDS = [ex.id for ex in EXERCISES]


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def linear_bn_weight_grad(x, w, gamma, dy, eps):
    z = x @ w.T
    m = len(z)
    inv_std = 1 / np.sqrt(z.var(axis=0) + eps)
    z_hat = (z - z.mean(axis=0)) * inv_std
    dz = gamma * inv_std / m * (m * dy - dy.sum(axis=0) - z_hat * (dy * z_hat).sum(axis=0))
    return dz.T @ x


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


SOLUTIONS = {"ch06-linear-bn-weight-grad": [linear_bn_weight_grad],
             "ch06-bn-relu-grad-norms": [bn_relu_grad_norms]}


def test_weight_gradient_is_orthogonal_to_the_rows_and_shrinks_as_they_grow():
    """Scale invariance, on the oracle: dW is orthogonal to each row of W, and the case whose
    W is 10 times larger (same seed otherwise) has a gradient about 10 times smaller."""
    ex = get_exercise("ch06-linear-bn-weight-grad")
    for case in ex.cases("all"):
        dw, w = ex.expected_output(case).astype(np.float64), case.args["w"].astype(np.float64)
        if w.shape[1] == 1 or case.args["eps"] > 1e-3:   # one input, or eps not small
            continue
        # exact but for eps, which breaks the invariance a little (most for small W)
        slack = 1e-2
        cos = np.sum(dw * w, axis=1) / (np.linalg.norm(dw, axis=1) * np.linalg.norm(w, axis=1))
        assert np.all(np.abs(cos) <= slack), (case.describe(), cos, slack)
    small = ex.expected(*ex.make_case(seed=2).values())
    large = ex.expected(*ex.make_case(seed=2, w_scale=10.0).values())
    np.testing.assert_allclose(np.linalg.norm(small) / np.linalg.norm(large), 10.0, rtol=1e-3)


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
