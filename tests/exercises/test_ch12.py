"""Tests for bncourse.exercises.ch12: the hints name the common mistakes, the oracle ignores padding."""

import numpy as np

from bncourse.exercises import get_exercise
from bncourse.exercises.ch12 import EXERCISES



# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def layer_norm_backward(dy, x, gamma, eps):
    mean = x.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    g = dy * gamma
    dx = inv_std * (g - g.mean(axis=-1, keepdims=True)
                    - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx, (dy * x_hat).sum(axis=lead), dy.sum(axis=lead)


def rms_norm(x, gamma, eps, dy):
    inv_rms = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    x_hat = x * inv_rms
    g = dy * gamma
    dx = inv_rms * (g - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))
    return gamma * x_hat, dx, (dy * x_hat).sum(axis=tuple(range(x.ndim - 1)))


def masked_batch_stats(x, mask):
    real = x.transpose(0, 2, 1)[mask]             # (M, C)
    return real.mean(axis=0), real.var(axis=0)


SOLUTIONS = {"ch12-layer-norm-backward": layer_norm_backward, "ch12-rms-norm": rms_norm,
             "ch12-masked-batch-stats": masked_batch_stats}


def test_the_three_named_mistakes_have_their_hints():
    """The brief's common mistakes: the batch axis, the mask in the count, eps outside the root."""
    hints = {ex.id: " ".join(m.hint for m in ex.mistakes) for ex in EXERCISES}
    assert "batch axis 0" in hints["ch12-layer-norm-backward"]
    assert "batch axis 0" in hints["ch12-rms-norm"]
    assert "inside the square root" in hints["ch12-rms-norm"]
    assert "mask.sum()" in hints["ch12-masked-batch-stats"]


def test_masked_cases_have_padding_and_the_oracle_ignores_it():
    ex = get_exercise("ch12-masked-batch-stats")
    cases = ex.cases("all")
    assert any(not c.args["mask"].all() for c in cases)
    case = cases[0]
    x, mask = case.args["x"].copy(), case.args["mask"]
    mean, var = ex.expected(x, mask)
    x[np.broadcast_to(~mask[:, None, :], x.shape)] = 99.0        # junk at the padding
    mean2, var2 = ex.expected(x, mask)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(var, var2)
