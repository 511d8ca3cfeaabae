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


def ics_from_gradients(g, g_after):
    a, b = g.ravel(), g_after.ravel()
    l2 = np.linalg.norm(a - b)
    return float(l2), float(l2 / np.linalg.norm(a)), float(a @ b / np.linalg.norm(a)
                                                           / np.linalg.norm(b))


def smoothness_along_gradient(h, w, step_sizes):
    f = lambda v: 0.5 * v @ h @ v                                   # noqa: E731
    g = h @ w
    losses = [f(w)] + [f(w - e * g) for e in step_sizes]
    changes = np.array([np.linalg.norm(h @ (w - e * g) - g) for e in step_sizes])
    return (float(max(losses) - min(losses)), float(changes.max()),
            float(np.max(changes / (step_sizes * np.linalg.norm(g)))))


SOLUTIONS = {"ch05-percentile-drift": track_percentiles,
             "ch05-ics-from-gradients": ics_from_gradients,
             "ch05-quadratic-smoothness": smoothness_along_gradient}


@pytest.mark.parametrize("exercise_id", IDS)
def test_oracle_is_independent_of_the_reference_but_agrees(exercise_id):
    ex = get_exercise(exercise_id)
    assert ex.expected is not None and ex.expected is not ex.reference
    for case in ex.cases("visible"):
        want, ref = ex.expected_output(case), case.call(ex.reference)
        for w, r in zip(want, ref):
            np.testing.assert_allclose(np.asarray(r), np.asarray(w), rtol=1e-10, atol=1e-13)


def test_hidden_cases_add_new_shapes():
    for ex in EXERCISES:
        first = next(iter(ex.cases("visible")[0].args))
        shape = {which: {np.shape(c.args[first]) for c in ex.cases(which)}
                 for which in ("visible", "hidden")}
        assert shape["hidden"] - shape["visible"], ex.id
