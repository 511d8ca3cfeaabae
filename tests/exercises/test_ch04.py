"""Tests for bncourse.exercises.ch04: references and plain solutions pass, mistakes fail with hints."""

from pathlib import Path

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
    """Every node's gradient, written from the graph."""
    ax, m = _axes(x), x.size // x.shape[1]
    mean = x.mean(axis=ax, keepdims=True)
    xc = x - mean
    var = (xc**2).mean(axis=ax, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = xc / std
    dx_hat = dy * _view(gamma, x)
    dstd = -(dx_hat * xc).sum(axis=ax, keepdims=True) / std**2
    dvar = dstd / (2 * std)
    dxc = dx_hat / std + 2 * xc * dvar / m
    dmean = -dxc.sum(axis=ax, keepdims=True)
    dx = dxc + dmean / m
    return {"dx_hat": dx_hat, "dxc": dxc, "dx": dx, "dstd": dstd.ravel(), "dvar": dvar.ravel(),
            "dmean": dmean.ravel(), "dgamma": (dy * x_hat).sum(axis=ax), "dbeta": dy.sum(axis=ax)}


def bn_backward_graph_form(dy, x, gamma, eps):
    """The node-by-node chain rule, as a learner would write it from the graph."""
    grads = bn_backward_staged(dy, x, gamma, eps)
    return grads["dx"], grads["dgamma"], grads["dbeta"]


def numerical_gradient(f, x, dy, h):
    x = x.copy()
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.sum(f(x) * dy)
        x[i] = old - h
        minus = np.sum(f(x) * dy)
        x[i] = old
        g[i] = (plus - minus) / (2 * h)
    return g


class DigitsMLP:
    """The capstone as a learner writes it: plain NumPy, torch's conventions."""

    def __init__(self, w1, gamma, beta, w2, b2, momentum=0.1, eps=1e-5):
        self.w1, self.gamma, self.beta, self.w2, self.b2 = w1, gamma, beta, w2, b2
        self.momentum, self.eps = momentum, eps
        self.running_mean, self.running_var = np.zeros(len(gamma)), np.ones(len(gamma))
        self.training = True

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def forward(self, x):
        z = x @ self.w1
        if self.training:
            mean, var = z.mean(axis=0), z.var(axis=0)
            m = len(z)
            self.running_mean = 0.9 * self.running_mean + 0.1 * mean
            self.running_var = 0.9 * self.running_var + 0.1 * var * m / (m - 1)
        else:
            mean, var = self.running_mean, self.running_var
        self.x, self.inv_std = x, 1 / np.sqrt(var + self.eps)
        self.x_hat = (z - mean) * self.inv_std
        self.h = np.maximum(self.gamma * self.x_hat + self.beta, 0)
        return self.h @ self.w2 + self.b2

    def backward(self, dlogits):
        da = (dlogits @ self.w2.T) * (self.h > 0)
        dgamma, dbeta = (da * self.x_hat).sum(axis=0), da.sum(axis=0)
        m = len(da)
        dz = self.gamma * self.inv_std / m * (m * da - dbeta - self.x_hat * dgamma)
        return {"w1": self.x.T @ dz, "gamma": dgamma, "beta": dbeta,
                "w2": self.h.T @ dlogits, "b2": dlogits.sum(axis=0)}


SOLUTIONS = {"ch04-bn-backward": [bn_backward, bn_backward_graph_form],
             "ch04-bn-backward-staged": [bn_backward_staged],
             "ch04-numerical-gradients": [numerical_gradient],
             "ch04-capstone-digits-mlp": [DigitsMLP]}


@pytest.mark.parametrize("exercise_id", ["ch04-bn-backward", "ch04-bn-backward-staged"])
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


def closed_form_only(dy, x, gamma, eps):
    """The closed form, with the intermediate gradients left out (zeros)."""
    dx, dgamma, dbeta = bn_backward(dy, x, gamma, eps)
    c = x.shape[1]
    return {"dx_hat": np.zeros_like(x), "dxc": np.zeros_like(x), "dx": dx,
            "dstd": np.zeros(c), "dvar": np.zeros(c), "dmean": np.zeros(c),
            "dgamma": dgamma, "dbeta": dbeta}


def test_the_staged_backward_is_graded_on_the_intermediate_gradients():
    ex = get_exercise("ch04-bn-backward-staged")
    for case in ex.cases("all"):
        verdict = judge_output(ex, case, case.call(closed_form_only), ex.expected_output(case))
        assert not verdict.passed
        assert any(p.startswith("output['dx_hat']") or p.startswith("dx_hat")
                   for p in verdict.problems), verdict.problems
        assert not any(p.startswith("dx:") for p in verdict.problems)


def analytic_answer(*args):
    """The loophole: batch norm's exact gradient, whatever f is, without a finite difference.

    Written for either version of the exercise: (x, gamma, beta, dy, h) before it was
    closed, (f, x, dy, h) now; the point of the test is that it passes neither."""
    import torch

    if callable(args[0]):                       # (f, x, dy, h): assume f is batch norm
        f, x, dy, _ = args
        x_t = torch.tensor(x, requires_grad=True)
        torch.nn.functional.batch_norm(x_t, None, None, training=True).backward(
            torch.from_numpy(dy))
        return x_t.grad.numpy()
    x, gamma, beta, dy, _ = args
    xs = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    torch.nn.functional.batch_norm(xs[0], None, None, xs[1], xs[2], training=True).backward(
        torch.from_numpy(dy))
    return tuple(t.grad.numpy() for t in xs)


def test_an_analytic_gradient_does_not_pass_the_finite_difference_exercise():
    ex = get_exercise("ch04-numerical-gradients")
    verdicts = []
    for case in ex.cases("all"):
        try:
            got = case.call(analytic_answer)
        except Exception:           # batch norm's formula cannot even run on this f's input
            continue
        verdicts.append(judge_output(ex, case, got, ex.expected_output(case)))
    assert len(verdicts) >= len(ex.visible)
    assert not any(v.passed for v in verdicts), [v.case.describe() for v in verdicts if v.passed]


def test_numerical_oracle_is_the_exact_gradient_not_the_reference():
    # The reference (finite differences) differs from the exact gradient by its truncation
    # and rounding error: far inside the tolerance, but not zero.
    ex = get_exercise("ch04-numerical-gradients")
    for case in ex.cases("visible"):
        want, ref = ex.expected_output(case), case.call(ex.reference)
        err = relative_error(want["grad"], ref["grad"])
        assert 0.0 < err < ex.rtol / 10
        assert want["calls"] <= ref["calls"] <= want["calls"] + 1


def test_finite_differences_that_do_not_restore_x_fail_as_impure():
    ex = get_exercise("ch04-numerical-gradients")
    case = ex.cases("visible")[0]

    def sloppy(f, x, dy, h):
        grad = numerical_gradient(f, x, dy, h)
        x[-1, -1] -= h          # a perturbation left behind in the caller's array
        return grad

    args = [np.copy(a) if isinstance(a, np.ndarray) else a for a in case.args.values()]
    before = args[1].copy()
    got = case.run(sloppy, args)
    modified = [] if np.array_equal(args[1], before) else ["x"]
    verdict = judge_output(ex, case, got, ex.expected_output(case), modified)
    assert not verdict.passed
    assert any("modifies its input x" in p for p in verdict.problems), verdict.problems


# --------------------------------------------------------------------------- the capstone, graded

def _capstone_cells():
    """The plain solution's cell and two subtly wrong versions of it."""
    import inspect

    good = "import numpy as np\n\n\n" + inspect.getsource(DigitsMLP)
    train_stats = "mean, var = z.mean(axis=0), z.var(axis=0)\n"
    eval_branch = ("        else:\n"
                   "            mean, var = self.running_mean, self.running_var\n")
    assert train_stats in good and eval_branch in good
    unbiased = good.replace(train_stats, "mean, var = z.mean(axis=0), z.var(axis=0, ddof=1)\n")
    no_eval = good.replace(eval_branch, "").replace(
        "        if self.training:\n            mean, var",
        "        mean, var = z.mean(axis=0), z.var(axis=0)\n        if self.training:\n"
        "            mean, var")
    return {"correct": good, "unbiased_batch_variance": unbiased, "no_eval_path": no_eval}


def test_the_capstone_grades_right_full_and_subtly_wrong_zero_within_the_time_limit(tmp_path):
    import nbformat

    from bncourse.exercises.capstone import digits_test_accuracy
    from bncourse.exercises.sandbox import Limits, run_cell
    from bncourse.grade import grade

    ex = get_exercise("ch04-capstone-digits-mlp")
    limits = Limits()
    cells = _capstone_cells()
    for name, source in cells.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": [ex.tag]})]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    rows = {Path(r.submission).stem: r for r in grade([tmp_path], pattern=ex.id, jobs=1)}
    assert rows["correct"].points == ex.points == 5, rows["correct"].feedback
    for name in ("unbiased_batch_variance", "no_eval_path"):
        assert rows[name].points == 0, rows[name].feedback
        assert "probe" in rows[name].feedback
    # what training alone would say: the wrong versions reach the accuracy target too
    cases = ex.cases("all")
    for name, source in cells.items():
        outcome = run_cell(ex.graded_source(source), ex.entry, cases, limits=limits)
        assert outcome.status == "ok" and outcome.wall_s < limits.timeout, outcome.message
        for (kind, got, _), case in zip(outcome.cases, cases):
            assert kind == "out"
            accuracy = digits_test_accuracy(got["test_logits"], case.params.get("split", 0))
            print(f"{name} seed {case.params['seed']}: accuracy {accuracy:.3f}, "
                  f"{outcome.wall_s:.2f} s in the sandbox")
            assert accuracy >= 0.9


def test_the_capstone_target_holds_for_fresh_grading_seeds():
    """The target is met by a correct network on hidden cases drawn with other seeds."""
    from bncourse.exercises.capstone import TARGET_ACCURACY, digits_test_accuracy

    ex = get_exercise("ch04-capstone-digits-mlp")
    accuracies = [digits_test_accuracy(case.call(ex.reference)["test_logits"],
                                       case.params.get("split", 0))
                  for offset in (0, 1000, 2000) for case in ex.cases("hidden", seed_offset=offset)]
    assert min(accuracies) >= TARGET_ACCURACY + 0.01, accuracies
