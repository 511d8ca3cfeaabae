"""Tests for bncourse.exercises.ch06: references and plain solutions pass, mistakes get hints."""

import numpy as np
import pytest

from bncourse.exercises import check, get_exercise
from bncourse.exercises.ch06 import EXERCISES, NOTEBOOK
from bncourse.exercises.judge import judge_output

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


def test_two_exercises_registered_for_this_chapter():
    assert sorted(IDS) == sorted(SOLUTIONS)
    for ex in EXERCISES:
        assert get_exercise(ex.id) is ex
        assert ex.notebook == NOTEBOOK == "book/06_optimization.ipynb"
        assert ex.function == SOLUTIONS[ex.id][0].__name__


@pytest.mark.parametrize("exercise_id,solution", [
    (ex_id, fn) for ex_id, fns in SOLUTIONS.items() for fn in fns])
def test_plain_numpy_solutions_pass_every_case(exercise_id, solution):
    ex = get_exercise(exercise_id)
    for case in ex.cases("all"):
        verdict = judge_output(ex, case, case.call(solution), ex.expected_output(case))
        assert verdict.passed, (solution.__name__, case.describe(), verdict.problems)


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


@pytest.mark.parametrize("exercise_id", IDS)
def test_stub_is_not_attempted_and_solution_passes_the_check(exercise_id, capsys):
    ex = get_exercise(exercise_id)
    namespace = {}
    exec(ex.default_stub(), namespace)                       # noqa: S102 - our own stub
    assert check(exercise_id, namespace[ex.function]).status == "not attempted"
    assert check(exercise_id, SOLUTIONS[exercise_id][0]).status == "passed"
    assert "not attempted" in capsys.readouterr().out
