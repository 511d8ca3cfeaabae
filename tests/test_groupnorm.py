"""Tests for bncourse.groupnorm: torch.nn.functional.group_norm / layer_norm in float64 are the oracle."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.gradcheck import numerical_gradient
from bncourse.groupnorm import NormCache, groupnorm_backward, groupnorm_forward, layernorm_forward
from bncourse.layernorm import layernorm_forward as layernorm_forward_here

SHAPES = [(5, 6), (4, 6, 7), (3, 6, 4, 5), (2, 6, 3, 4, 3)]
SHAPE_IDS = ["2d", "3d", "4d", "5d"]
TOL = {np.float64: 1e-12, np.float32: 2e-6}


def make_x(rng, shape, dtype=np.float64):
    """Input whose samples and channels have different means and spreads."""
    view = (shape[0], shape[1]) + (1,) * (len(shape) - 2)
    loc = rng.normal(0.0, 3.0, size=view)
    scale = rng.uniform(0.5, 4.0, size=view)
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def t64(a):
    return None if a is None else torch.tensor(a, dtype=torch.float64)


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --- group norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("num_groups", [1, 2, 3, 6])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_groupnorm_matches_torch(rng, shape, num_groups, dtype):
    x = make_x(rng, shape, dtype)
    gamma = rng.normal(1.0, 0.5, size=shape[1]).astype(dtype)
    beta = rng.normal(size=shape[1]).astype(dtype)
    y, cache = groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5)
    want = F.group_norm(t64(x), num_groups, t64(gamma), t64(beta), eps=1e-5).numpy()
    assert y.dtype == dtype and y.shape == shape
    assert max_rel(y, want) < TOL[dtype]
    assert isinstance(cache, NormCache)
    assert cache.mean.shape == cache.var.shape == cache.inv_std.shape == (shape[0], num_groups)


@pytest.mark.parametrize("shape", SHAPES[1:], ids=SHAPE_IDS[1:])
def test_groupnorm_with_one_channel_per_group_is_instance_norm(rng, shape):
    x = make_x(rng, shape)
    gamma, beta = rng.normal(size=shape[1]), rng.normal(size=shape[1])
    y, _ = groupnorm_forward(x, shape[1], gamma, beta)
    want = F.instance_norm(t64(x), weight=t64(gamma), bias=t64(beta), eps=1e-5).numpy()
    assert max_rel(y, want) < 1e-12


@pytest.mark.parametrize("shape", SHAPES[1:], ids=SHAPE_IDS[1:])
def test_groupnorm_with_one_group_is_layer_norm_over_channels_and_space(rng, shape):
    x = make_x(rng, shape)
    y, _ = groupnorm_forward(x, 1, None, None)
    want = F.layer_norm(t64(x), shape[1:], eps=1e-5).numpy()
    assert max_rel(y, want) < 1e-12


def test_groupnorm_without_affine_and_stats_in_cache(rng):
    x = make_x(rng, (4, 6, 3, 3))
    y, cache = groupnorm_forward(x, 2, None, None, eps=1e-3)
    want = F.group_norm(t64(x), 2, eps=1e-3).numpy()
    assert max_rel(y, want) < 1e-12
    groups = x.reshape(4, 2, -1)
    np.testing.assert_allclose(cache.mean, groups.mean(axis=2), rtol=1e-13)
    np.testing.assert_allclose(cache.var, groups.var(axis=2), rtol=1e-12)
    np.testing.assert_allclose(cache.inv_std, 1 / np.sqrt(groups.var(axis=2) + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(cache.x_hat, y)


def test_groups_are_consecutive_channels(rng):
    """Group 0 is channels 0..C/G-1 (torch's layout), not every G-th channel."""
    x = make_x(rng, (3, 4, 5))
    x[:, :2] *= 100.0                         # group 0 of 2 is much wider than group 1
    _, cache = groupnorm_forward(x, 2, None, None)
    np.testing.assert_allclose(cache.var[:, 0], x[:, :2].reshape(3, -1).var(axis=1), rtol=1e-12)


def test_groupnorm_of_a_set_of_one_value_is_beta_as_in_torch(rng):
    x = make_x(rng, (3, 4))
    beta = rng.normal(size=4)
    y, _ = groupnorm_forward(x, 4, np.ones(4), beta)
    want = F.group_norm(t64(x), 4, t64(np.ones(4)), t64(beta)).numpy()
    np.testing.assert_array_equal(y, np.broadcast_to(beta, (3, 4)))
    assert max_rel(y, want) < 1e-12          # torch's variance is 0 only up to rounding


def test_empty_batch_gives_empty_output_as_in_torch():
    y, cache = groupnorm_forward(np.zeros((0, 4, 3)), 2, None, None)
    assert y.shape == (0, 4, 3) and cache.mean.shape == (0, 2)
    y, cache = layernorm_forward(np.zeros((0, 4)), np.ones(4), np.zeros(4))
    assert y.shape == (0, 4) and cache.mean.shape == (0,)


def test_groupnorm_large_offset_float32_keeps_digits(rng):
    """Mean 1e4, spread 0.1: E[x^2] - E[x]^2 would leave no correct digit in float32."""
    x = (1e4 + 0.1 * rng.standard_normal((4, 4, 8, 8))).astype(np.float32)
    y, _ = groupnorm_forward(x, 2, None, None)
    want = F.group_norm(t64(x), 2).numpy()
    assert max_rel(y, want) < 1e-3


def test_inputs_are_not_modified(rng):
    x = make_x(rng, (4, 6, 3))
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    copies = [a.copy() for a in (x, gamma, beta)]
    groupnorm_forward(x, 3, gamma, beta)
    layernorm_forward(x, np.ones((6, 3)), np.zeros((6, 3)))
    for a, b in zip((x, gamma, beta), copies):
        np.testing.assert_array_equal(a, b)


# --- the property that matters: no dependence on the rest of the batch --------------------------

@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 6), groups=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(1e-2, 1e2))
def test_each_sample_is_normalized_on_its_own(n, groups, seed, scale):
    """A sample's output is the same alone, in any batch, and whatever the other samples hold."""
    rng = np.random.default_rng(seed)
    x = scale * make_x(rng, (n, 4, 3, 3))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    y, _ = groupnorm_forward(x, groups, gamma, beta)
    others = x.copy()
    others[1:] = scale * rng.normal(5.0, 3.0, size=others[1:].shape)
    y_alone, _ = groupnorm_forward(x[:1], groups, gamma, beta)
    y_others, _ = groupnorm_forward(others, groups, gamma, beta)
    np.testing.assert_array_equal(y_alone[0], y[0])
    np.testing.assert_array_equal(y_others[0], y[0])
    # ... and each (sample, group) of x_hat has mean 0 and variance var / (var + eps)
    x_hat, cache = groupnorm_forward(x, groups, None, None)
    sets = x_hat.reshape(n, groups, -1)
    np.testing.assert_allclose(sets.mean(axis=2), 0.0, atol=1e-12)
    np.testing.assert_allclose(sets.var(axis=2), cache.var / (cache.var + 1e-5), rtol=1e-10)


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,exc,match", [
    (([1.0, 2.0], 1, None, None), TypeError, r"groupnorm_forward: x must be a numpy.ndarray, got list"),
    ((np.zeros((2, 4), dtype=np.int64), 1, None, None), TypeError, r"x must be an array of dtype"),
    ((np.zeros(4), 1, None, None), ValueError, r"groupnorm_forward: x must be 2-D to 5-D"),
    ((np.zeros((2, 4)), 3, None, None), ValueError,
     r"num_groups must be a positive divisor of the 4 channel\(s\) of x, got 3"),
    ((np.zeros((2, 4)), 0, None, None), ValueError, r"num_groups must be a positive divisor"),
    ((np.zeros((2, 4)), 2.0, None, None), TypeError, r"num_groups must be a positive int, got float"),
    ((np.zeros((2, 4)), True, None, None), TypeError, r"num_groups must be a positive int, got bool"),
    ((np.zeros((2, 4)), 2, np.ones(3), None), ValueError, r"gamma must be shape \(4,\)"),
    ((np.zeros((2, 4)), 2, None, np.ones((4, 1))), ValueError, r"beta must be shape \(4,\)"),
    ((np.full((2, 4), np.nan), 2, None, None), ValueError, r"x must be finite"),
])
def test_groupnorm_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        groupnorm_forward(*args)


def test_groupnorm_bad_eps():
    with pytest.raises(ValueError, match=r"groupnorm_forward: eps must be a positive float, got 0"):
        groupnorm_forward(np.zeros((2, 4)), 2, None, None, eps=0.0)


def test_layernorm_forward_is_reexported_from_its_module():
    assert layernorm_forward is layernorm_forward_here


# --- group norm backward ------------------------------------------------------------------------

def torch_group_norm_grads(x, num_groups, gamma, beta, dy, eps=1e-5):
    x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    params = [None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=True)
              for a in (gamma, beta)]
    F.group_norm(x_t, num_groups, *params, eps=eps).backward(t64(dy))
    return [x_t.grad.numpy()] + [None if p is None else p.grad.numpy() for p in params]


@pytest.mark.parametrize("num_groups", [1, 2, 3, 6])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_groupnorm_backward_matches_torch_autograd(rng, shape, num_groups):
    x = make_x(rng, shape)
    gamma, beta = rng.normal(1.0, 0.5, size=shape[1]), rng.normal(size=shape[1])
    dy = rng.normal(size=shape)
    _, cache = groupnorm_forward(x, num_groups, gamma, beta)
    ours = groupnorm_backward(dy, cache)
    # Errors relative to the size dx would have without cancellation, |dy| |gamma| inv_std:
    # with 2 values per group x_hat = +-1 and dx cancels to ~1e-6 of that, with 1 value
    # dx is exactly 0 (torch returns rounding noise), so max(|dx|) is no yardstick there.
    # dgamma and dbeta: sums of |dy| per channel (x_hat of a lone value is exactly 0 here).
    param_scale = np.abs(dy).reshape(shape[0], shape[1], -1).sum(axis=(0, 2)).max()
    scales = [np.abs(dy).max() * np.abs(gamma).max() * cache.inv_std.max(), param_scale,
              param_scale]
    for a, b, scale in zip(ours, torch_group_norm_grads(x, num_groups, gamma, beta, dy), scales):
        assert a.shape == b.shape
        assert np.abs(a - b).max() / max(np.abs(b).max(), scale) < 1e-12


def test_groupnorm_backward_without_affine_and_finite_differences(rng):
    x = make_x(rng, (3, 4, 5))
    dy = rng.normal(size=x.shape)
    _, cache = groupnorm_forward(x, 2, None, None)
    dx, dgamma, dbeta = groupnorm_backward(dy, cache)
    want = torch_group_norm_grads(x, 2, None, None, dy)[0]
    assert max_rel(dx, want) < 1e-12
    fd = numerical_gradient(lambda v: groupnorm_forward(v, 2, None, None)[0], x, dy)
    assert max_rel(dx, fd) < 1e-8
    np.testing.assert_allclose(dbeta, dy.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(dgamma, (dy * cache.x_hat).sum(axis=(0, 2)), rtol=1e-12)


def test_groupnorm_backward_float32_and_empty_batch(rng):
    x = make_x(rng, (4, 6, 3), np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    _, cache = groupnorm_forward(x, 3, np.ones(6, np.float32), np.zeros(6, np.float32))
    dx, dgamma, _ = groupnorm_backward(dy, cache)
    assert dx.dtype == dgamma.dtype == np.float32
    want = torch_group_norm_grads(x.astype(np.float64), 3, np.ones(6), np.zeros(6),
                                  dy.astype(np.float64))[0]
    assert max_rel(dx, want) < 1e-4
    _, cache = groupnorm_forward(np.zeros((0, 4, 3)), 2, None, None)
    dx, dgamma, dbeta = groupnorm_backward(np.zeros((0, 4, 3)), cache)
    assert dx.shape == (0, 4, 3) and dgamma.shape == dbeta.shape == (4,)


def test_groupnorm_backward_bad_input(rng):
    x = make_x(rng, (3, 4, 5))
    _, cache = groupnorm_forward(x, 2, None, None)
    _, ln_cache = layernorm_forward(x, np.ones(5), np.zeros(5))
    with pytest.raises(TypeError, match=r"groupnorm_backward: cache must be the NormCache returned "
                                        r"by groupnorm_forward, got NormCache of kind 'layer'"):
        groupnorm_backward(np.ones_like(x), ln_cache)
    with pytest.raises(ValueError, match=r"groupnorm_backward: dy must be an ndarray of shape "
                                         r"\(3, 4, 5\).*got shape \(3, 4\)"):
        groupnorm_backward(np.ones((3, 4)), cache)
    with pytest.raises(TypeError, match=r"groupnorm_backward: dy must be an ndarray"):
        groupnorm_backward([[1.0]], cache)
    bad = np.ones_like(x)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"groupnorm_backward: dy must be finite"):
        groupnorm_backward(bad, cache)
