"""Tests for bncourse.exercises.ch05: references and solutions pass, mistakes get their hints."""

import numpy as np
import pytest

from bncourse.exercises import get_exercise
from bncourse.exercises.ch05 import EXERCISES

IDS = [ex.id for ex in EXERCISES]


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def track_percentiles(z, q):
    t, m, c = z.shape
    p = np.empty((t, len(q), c))
    for i in range(t):
        for j in range(c):
            p[i, :, j] = np.percentile(z[i, :, j], q)
    drift = np.abs(p[1:] - p[:-1]).mean()
    return p, float(drift)


def bn_jacobian(x, gamma, eps):
    n = x.shape[0]
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    std = np.sqrt(x.var(axis=0) + eps)
    return np.stack([gamma[c] / std[c] * (np.eye(n) - 1 / n - np.outer(x_hat[:, c], x_hat[:, c]) / n)
                     for c in range(x.shape[1])]).astype(x.dtype)


def smoothness_along_gradient(h, w, step_sizes):
    f = lambda v: 0.5 * v @ h @ v                                   # noqa: E731
    g = h @ w
    losses = [f(w)] + [f(w - e * g) for e in step_sizes]
    changes = np.array([np.linalg.norm(h @ (w - e * g) - g) for e in step_sizes])
    return (float(max(losses) - min(losses)), float(changes.max()),
            float(np.max(changes / (step_sizes * np.linalg.norm(g)))))


SOLUTIONS = {"ch05-percentile-drift": track_percentiles,
             "ch05-bn-jacobian": bn_jacobian,
             "ch05-quadratic-smoothness": smoothness_along_gradient}


@pytest.mark.parametrize("exercise_id", IDS)
def test_oracle_is_independent_of_the_reference_but_agrees(exercise_id):
    ex = get_exercise(exercise_id)
    assert ex.expected is not None and ex.expected is not ex.reference
    for case in ex.cases("visible"):
        want, ref = ex.expected_output(case), case.call(ex.reference)
        if isinstance(want, np.ndarray):            # one array: compare it whole
            want, ref = [want], [ref]
        for w, r in zip(want, ref):
            single = np.asarray(w).dtype == np.float32
            np.testing.assert_allclose(np.asarray(r), np.asarray(w), rtol=1e-5 if single else 1e-10,
                                       atol=1e-6 if single else 1e-13)


def test_hidden_cases_add_new_shapes():
    for ex in EXERCISES:
        first = next(iter(ex.cases("visible")[0].args))
        shape = {which: {np.shape(c.args[first]) for c in ex.cases(which)}
                 for which in ("visible", "hidden")}
        assert shape["hidden"] - shape["visible"], ex.id


def test_the_jacobian_projects_out_shifts_and_scalings():
    """Each feature's Jacobian annihilates the constant vector (a shift of the input) and,
    up to eps, x_hat (a rescaling): the property chapter 5's gradient analysis uses."""
    ex = get_exercise("ch05-bn-jacobian")
    case = ex.cases("visible")[0]
    x, eps = case.args["x"], case.args["eps"]
    jac = ex.expected_output(case)
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    for c in range(x.shape[1]):
        np.testing.assert_allclose(jac[c] @ np.ones(len(x)), 0.0, atol=1e-12)
        assert np.linalg.norm(jac[c] @ x_hat[:, c]) < 1e-4 * np.linalg.norm(jac[c])
