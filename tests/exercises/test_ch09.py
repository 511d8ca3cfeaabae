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


def fold_conv_bn(conv, bn):
    w = conv["weight"]
    scale = bn["weight"] / np.sqrt(bn["running_var"] + bn["eps"])
    b = conv["bias"] if conv["bias"] is not None else np.zeros(w.shape[0], w.dtype)
    return dict(conv, weight=(w * scale[:, None, None, None]).astype(w.dtype),
                bias=((b - bn["running_mean"]) * scale + bn["bias"]).astype(w.dtype))


SOLUTIONS = {"ch09-fold-linear-bn": [fold_linear_bn, fold_linear_bn_by_evaluation],
             "ch09-fold-bn-into-next": [fold_bn_into_next],
             "ch09-fold-conv-bn": [fold_conv_bn]}
LINEAR = ["ch09-fold-linear-bn", "ch09-fold-bn-into-next"]


@pytest.mark.parametrize("exercise_id", LINEAR)
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


@pytest.mark.parametrize("exercise_id", LINEAR)
def test_cases_include_a_square_weight_and_hidden_shapes_are_new(exercise_id):
    ex = get_exercise(exercise_id)
    shapes = {which: {c.args["W"].shape for c in ex.cases(which)}
              for which in ("visible", "hidden")}
    assert shapes["hidden"] - shapes["visible"]
    assert any(s[0] == s[1] for s in shapes["visible"])   # a transposed scale shows up only there


def test_folded_convolution_computes_conv_then_bn_with_groups_stride_and_padding():
    """The oracle (torch's fuse_conv_bn_eval) checked by running both on an image."""
    import torch
    import torch.nn.functional as F

    ex = get_exercise("ch09-fold-conv-bn")
    cases = ex.cases("all")
    assert {c.args["conv"]["groups"] for c in cases} >= {1, 2, 4, 8}
    assert any(c.args["conv"]["bias"] is None for c in cases)
    for case in cases:
        conv, bn = case.args["conv"], case.args["bn"]
        if conv["weight"].dtype != np.float64:
            continue
        folded = ex.expected_output(case)
        c_in = conv["weight"].shape[1] * conv["groups"]
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, c_in, 7, 7)))
        kw = dict(stride=conv["stride"], padding=conv["padding"], groups=conv["groups"])
        bias = None if conv["bias"] is None else torch.from_numpy(conv["bias"])
        y = F.batch_norm(F.conv2d(x, torch.from_numpy(conv["weight"]), bias, **kw),
                         torch.from_numpy(bn["running_mean"]), torch.from_numpy(bn["running_var"]),
                         torch.from_numpy(bn["weight"]), torch.from_numpy(bn["bias"]),
                         training=False, eps=bn["eps"])
        y_folded = F.conv2d(x, torch.from_numpy(folded["weight"]),
                            torch.from_numpy(folded["bias"]), **kw)
        torch.testing.assert_close(y_folded, y, rtol=1e-12, atol=1e-12)
