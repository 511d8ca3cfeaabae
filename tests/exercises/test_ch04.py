"""Tests for bncourse.exercises.ch04: references and plain solutions pass, mistakes fail with hints."""

import numpy as np
import pytest

from bncourse.exercises import get_exercise
from bncourse.exercises.ch04 import EXERCISES
from bncourse.exercises.judge import judge_output
from bncourse.gradcheck import relative_error

IDS = [ex.id for ex in EXERCISES]


def _axes(x):
    return (0, *range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def bn_backward(dy, x, gamma, eps):
    ax, m = _axes(x), x.size // x.shape[1]
    mean = x.mean(axis=ax, keepdims=True)
    inv_std = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=ax, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    dbeta, dgamma = dy.sum(axis=ax), (dy * x_hat).sum(axis=ax)
    dx = _view(gamma, x) * inv_std / m * (m * dy - _view(dbeta, x) - x_hat * _view(dgamma, x))
    return dx, dgamma, dbeta


def bn_backward_staged(dy, x, gamma, eps):
    """The node-by-node chain rule, as a learner would write it from the graph."""
    ax, m = _axes(x), x.size // x.shape[1]
    mean = x.mean(axis=ax, keepdims=True)
    xc = x - mean
    var = (xc**2).mean(axis=ax, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = xc / std
    dbeta, dgamma = dy.sum(axis=ax), (dy * x_hat).sum(axis=ax)
    dx_hat = dy * _view(gamma, x)
    dstd = -(dx_hat * xc).sum(axis=ax, keepdims=True) / std**2
    dvar = dstd / (2 * std)
    dxc = dx_hat / std + 2 * xc * dvar / m
    dx = dxc - dxc.sum(axis=ax, keepdims=True) / m
    return dx, dgamma, dbeta


def bn_numerical_gradients(x, gamma, beta, dy, h):
    def forward(a, g, b):
        ax = _axes(a)
        x_hat = (a - a.mean(axis=ax, keepdims=True)) / np.sqrt(a.var(axis=ax, keepdims=True) + 1e-5)
        return _view(g, a) * x_hat + _view(b, a)

    args = [x.copy(), gamma.copy(), beta.copy()]
    grads = []
    for a in args:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            plus = np.sum(forward(*args) * dy)
            a[i] = old - h
            minus = np.sum(forward(*args) * dy)
            a[i] = old
            g[i] = (plus - minus) / (2 * h)
        grads.append(g)
    return tuple(grads)


SOLUTIONS = {"ch04-bn-backward": [bn_backward, bn_backward_staged],
             "ch04-numerical-gradients": [bn_numerical_gradients]}


@pytest.mark.parametrize("exercise_id", IDS)
def test_cases_cover_every_rank_and_hidden_shapes_are_new(exercise_id):
    ex = get_exercise(exercise_id)
    shapes = {which: {c.args["x"].shape for c in ex.cases(which)} for which in ("visible", "hidden")}
    assert shapes["hidden"] - shapes["visible"]
    assert {len(s) for s in shapes["visible"] | shapes["hidden"]} == {2, 3, 4, 5}


def test_backward_oracle_is_torch_and_agrees_with_the_reference_in_float64():
    ex = get_exercise("ch04-bn-backward")
    dtypes = set()
    for case in ex.cases("all"):
        dtypes.add(case.args["x"].dtype)
        want, ref = ex.expected_output(case), case.call(ex.reference)
        assert all(w.dtype == case.args["x"].dtype for w in want)
        if case.args["x"].dtype == np.float64:
            # With m = 2 values per channel, x_hat is +-1 up to eps and dx is tiny (it scales
            # with eps / (var + eps)): its few significant digits leave a larger relative error.
            m = case.args["x"].size // case.args["x"].shape[1]
            bound = 1e-13 if m > 2 else 1e-10
            assert max(relative_error(w, r) for w, r in zip(want, ref)) < bound
    assert dtypes == {np.dtype(np.float32), np.dtype(np.float64)}


def test_numerical_oracle_is_the_exact_gradient_not_the_reference():
    # The reference (finite differences) differs from the exact gradient by its truncation
    # and rounding error: far inside the tolerance, but not zero.
    ex = get_exercise("ch04-numerical-gradients")
    for case in ex.cases("visible"):
        want, ref = ex.expected_output(case), case.call(ex.reference)
        err = max(relative_error(w, r) for w, r in zip(want, ref))
        assert 0.0 < err < ex.rtol / 10


def test_finite_differences_that_do_not_restore_x_fail_as_impure():
    ex = get_exercise("ch04-numerical-gradients")
    case = ex.cases("visible")[0]

    def sloppy(x, gamma, beta, dy, h):
        grads = bn_numerical_gradients(x, gamma, beta, dy, h)
        x[-1, -1] -= h          # a perturbation left behind in the caller's array
        return grads

    args = [np.copy(a) if isinstance(a, np.ndarray) else a for a in case.args.values()]
    before = args[0].copy()
    got = sloppy(*args)
    modified = [] if np.array_equal(args[0], before) else ["x"]
    verdict = judge_output(ex, case, got, ex.expected_output(case), modified)
    assert not verdict.passed
    assert any("modifies its input x" in p for p in verdict.problems), verdict.problems
