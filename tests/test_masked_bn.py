"""Tests for bncourse.masked_bn: torch's batch_norm on the real positions only is the oracle."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.batchnorm import batchnorm_forward
from bncourse.gradcheck import numerical_gradient
from bncourse.masked_bn import masked_batch_stats, masked_batchnorm_backward, masked_batchnorm_forward


def padded_batch(rng, n=4, c=3, length=7, lengths=None, dtype=np.float64):
    """(N, C, L) sequences with random lengths; padded positions hold large junk values."""
    lengths = rng.integers(1, length + 1, size=n) if lengths is None else np.asarray(lengths)
    n = len(lengths)
    mask = np.arange(length)[None, :] < lengths[:, None]
    x = rng.normal(2.0, 3.0, size=(n, c, length))
    x[np.broadcast_to(~mask[:, None, :], x.shape)] = 1e3          # junk at the padding
    return x.astype(dtype), mask


def torch_masked(x, mask, gamma, beta, dy, eps=1e-5):
    """Gather the real positions into (M, C), torch's batch_norm, scatter back; autograd grads."""
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta)]
    m = torch.from_numpy(mask)
    rows = torch.movedim(leaves[0], 1, -1)[m]
    y_rows = F.batch_norm(rows, None, None, leaves[1], leaves[2], training=True, eps=eps)
    full = torch.zeros(mask.shape + (x.shape[1],), dtype=torch.float64)
    full[m] = y_rows
    y = torch.movedim(full, -1, 1)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return [y.detach().numpy()] + [leaf.grad.numpy() for leaf in leaves]


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 7), (3, 2, 4, 5)], ids=["2d", "3d", "4d"])
def test_masked_bn_matches_torch_on_the_real_positions(rng, shape):
    x = rng.normal(2.0, 3.0, size=shape)
    mask = rng.random((shape[0],) + shape[2:]) < 0.6
    mask.flat[:2] = True
    gamma, beta, dy = rng.normal(size=shape[1]), rng.normal(size=shape[1]), rng.normal(size=shape)
    y, cache = masked_batchnorm_forward(x, mask, gamma, beta)
    dx, dgamma, dbeta = masked_batchnorm_backward(dy, cache)
    want = torch_masked(x, mask, gamma, beta, dy)
    for a, b in zip((y, dx, dgamma, dbeta), want):
        assert a.shape == b.shape and max_rel(a, b) < 1e-12


def test_padded_positions_are_zero_and_never_read(rng):
    x, mask = padded_batch(rng, lengths=[7, 3, 1, 5])
    gamma, beta, dy = np.ones(3), np.full(3, 0.5), rng.normal(size=x.shape)
    y, cache = masked_batchnorm_forward(x, mask, gamma, beta)
    junk = x.copy()
    junk[np.broadcast_to(~mask[:, None, :], x.shape)] = -7e5
    y2, cache2 = masked_batchnorm_forward(junk, mask, gamma, beta)
    np.testing.assert_array_equal(y, y2)
    pad = np.broadcast_to(~mask[:, None, :], x.shape)
    assert np.all(y[pad] == 0.0)
    dx, _, _ = masked_batchnorm_backward(dy, cache)
    assert np.all(dx[pad] == 0.0)
    dy2 = dy.copy()
    dy2[pad] = 1e6
    np.testing.assert_array_equal(masked_batchnorm_backward(dy2, cache2)[0], dx)


def test_masked_stats_count_only_real_positions(rng):
    x, mask = padded_batch(rng, lengths=[7, 2, 4])
    mean, var, count = masked_batch_stats(x, mask)
    real = np.concatenate([x[i, :, :n] for i, n in enumerate([7, 2, 4])], axis=1)   # (C, M)
    assert count == 13 == real.shape[1]
    np.testing.assert_allclose(mean, real.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(var, real.var(axis=1), rtol=1e-12)


def test_finite_differences(rng):
    x, mask = padded_batch(rng, n=3, c=2, length=5, lengths=[5, 2, 3])
    gamma, beta, dy = rng.normal(size=2), rng.normal(size=2), rng.normal(size=x.shape)
    _, cache = masked_batchnorm_forward(x, mask, gamma, beta)
    dx, _, _ = masked_batchnorm_backward(dy, cache)
    fd = numerical_gradient(lambda v: masked_batchnorm_forward(v, mask, gamma, beta)[0], x, dy)
    assert max_rel(dx, fd) < 1e-8


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=2, max_size=5), extra=st.integers(0, 9),
       seed=st.integers(0, 2**32 - 1))
def test_more_padding_changes_nothing(lengths, extra, seed):
    """Padding every sequence further leaves the real outputs bit-identical (plain BN moves)."""
    rng = np.random.default_rng(seed)
    x, mask = padded_batch(rng, n=len(lengths), c=3, length=max(lengths), lengths=lengths)
    wider = np.concatenate([x, np.zeros(x.shape[:2] + (extra,))], axis=2)
    wider_mask = np.concatenate([mask, np.zeros((len(lengths), extra), dtype=bool)], axis=1)
    gamma, beta = np.ones(3), np.zeros(3)
    y, _ = masked_batchnorm_forward(x, mask, gamma, beta)
    y_wide, _ = masked_batchnorm_forward(wider, wider_mask, gamma, beta)
    np.testing.assert_array_equal(y_wide[:, :, :x.shape[2]], y)
    if sum(lengths) >= 2:
        full = masked_batchnorm_forward(x, np.ones_like(mask), gamma, beta)[0]
        np.testing.assert_allclose(full, batchnorm_forward(x, gamma, beta)[0], rtol=1e-12,
                                   atol=1e-12)


def test_float32_keeps_dtype(rng):
    x, mask = padded_batch(rng, dtype=np.float32, lengths=[7, 4, 2, 6])
    y, cache = masked_batchnorm_forward(x, mask, np.ones(3, np.float32), np.zeros(3, np.float32))
    dx, dgamma, _ = masked_batchnorm_backward(np.ones_like(x), cache)
    assert y.dtype == dx.dtype == dgamma.dtype == np.float32
    mean, _, _ = masked_batch_stats(x, mask)
    assert mean.dtype == np.float32


def test_bad_input(rng):
    x, mask = padded_batch(rng, lengths=[7, 3, 1, 5])
    g, b = np.ones(3), np.zeros(3)
    with pytest.raises(TypeError, match=r"masked_batch_stats: mask must be a numpy.ndarray of "
                                        r"dtype bool .*got dtype int64"):
        masked_batch_stats(x, mask.astype(np.int64))
    with pytest.raises(ValueError, match=r"masked_batchnorm_forward: mask must be shape \(4, 7\) "
                                         r"\(x.shape without the channel axis 1\), got shape \(4, 6\)"):
        masked_batchnorm_forward(x, mask[:, :6], g, b)
    with pytest.raises(ValueError, match=r"masked_batch_stats: mask must be True at one position"):
        masked_batch_stats(x, np.zeros_like(mask))
    one = np.zeros_like(mask)
    one[0, 0] = True
    with pytest.raises(ValueError, match=r"masked_batchnorm_forward: mask must be True at 2 "
                                         r"positions at least .*got 1 real position"):
        masked_batchnorm_forward(x, one, g, b)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"masked_batchnorm_forward: x must be finite at the real"):
        masked_batchnorm_forward(bad, mask, g, b)
    bad[0, 0, 0] = 1.0
    bad[2, 0, 6] = np.nan                                       # at a padded position: ignored
    masked_batchnorm_forward(bad, mask, g, b)
    with pytest.raises(ValueError, match=r"masked_batchnorm_forward: gamma must be shape \(3,\)"):
        masked_batchnorm_forward(x, mask, np.ones(2), b)
    _, cache = masked_batchnorm_forward(x, mask, g, b)
    with pytest.raises(TypeError, match=r"masked_batchnorm_backward: cache must be the "
                                        r"MaskedBatchNormCache"):
        masked_batchnorm_backward(x, object())
    with pytest.raises(ValueError, match=r"masked_batchnorm_backward: dy must be shape \(4, 3, 7\)"):
        masked_batchnorm_backward(x[:, :, :5], cache)
    dy = np.ones_like(x)
    dy[0, 1, 0] = np.inf
    with pytest.raises(ValueError, match=r"masked_batchnorm_backward: dy must be finite"):
        masked_batchnorm_backward(dy, cache)
