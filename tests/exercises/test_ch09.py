"""Tests for bncourse.exercises.ch09: references and solutions pass, mistakes fail with hints."""

import numpy as np
import pytest

from bncourse.exercises import get_exercise
from bncourse.exercises.ch09 import EXERCISES
from bncourse.gradcheck import relative_error

IDS = [ex.id for ex in EXERCISES]


# Independent learner-style solutions, written the plain NumPy way.
def fold_linear_bn(W, b, gamma, beta, running_mean, running_var, eps):
    scale = gamma / np.sqrt(running_var + eps)
    return W * scale[:, None], (b - running_mean) * scale + beta


def fold_linear_bn_by_evaluation(W, b, gamma, beta, running_mean, running_var, eps):
    """Read the affine map off the composed function, as the oracle does, in NumPy."""
    def f(x):
        z = x @ W.T + b
        return gamma * (z - running_mean) / np.sqrt(running_var + eps) + beta
    f0 = f(np.zeros((1, W.shape[1]), dtype=W.dtype))[0]
    return (f(np.eye(W.shape[1], dtype=W.dtype)) - f0).T, f0


def fold_bn_into_next(gamma, beta, running_mean, running_var, eps, W, b):
    scale = gamma / np.sqrt(running_var + eps)
    shift = beta - scale * running_mean
    return W * scale[None, :], b + W @ shift


SOLUTIONS = {"ch09-fold-linear-bn": [fold_linear_bn, fold_linear_bn_by_evaluation],
             "ch09-fold-bn-into-next": [fold_bn_into_next]}


@pytest.mark.parametrize("exercise_id", IDS)
def test_oracle_agrees_with_the_reference_and_keeps_the_dtype(exercise_id):
    ex = get_exercise(exercise_id)
    dtypes = set()
    for case in ex.cases("all"):
        dtype = case.args["W"].dtype
        dtypes.add(dtype)
        want, ref = ex.expected_output(case), case.call(ex.reference)
        assert [w.dtype for w in want] == [dtype, dtype]
        assert want[0].shape == case.args["W"].shape and want[1].shape == case.args["b"].shape
        bound = 1e-12 if dtype == np.float64 else 1e-6
        assert max(relative_error(w, r) for w, r in zip(want, ref)) < bound
    assert dtypes == {np.dtype(np.float32), np.dtype(np.float64)}


@pytest.mark.parametrize("exercise_id", IDS)
def test_cases_include_a_square_weight_and_hidden_shapes_are_new(exercise_id):
    ex = get_exercise(exercise_id)
    shapes = {which: {c.args["W"].shape for c in ex.cases(which)}
              for which in ("visible", "hidden")}
    assert shapes["hidden"] - shapes["visible"]
    assert any(s[0] == s[1] for s in shapes["visible"])   # a transposed scale shows up only there
