"""Tests for bncourse.ghost_bn: torch's BatchNorm1d, per ghost batch, is the oracle."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bncourse.ghost_bn import (
    GhostBatchNorm1d,
    ghost_batch_norm,
    ghost_bn_factory,
    per_ghost_momentum,
    running_weights,
)
from bncourse.lab.models import make_mlp, weight_layers

DT = torch.float64


def _pair(num_features, ghost_size, momentum=0.1, affine=True, seed=0):
    """A GhostBatchNorm1d and a torch BatchNorm1d with identical (random) state, in float64."""
    gen = torch.Generator().manual_seed(seed)
    ghost = GhostBatchNorm1d(num_features, ghost_size, momentum=momentum, affine=affine).to(DT)
    bn = nn.BatchNorm1d(num_features, momentum=momentum, affine=affine).to(DT)
    with torch.no_grad():
        if affine:
            ghost.weight.copy_(torch.rand(num_features, generator=gen, dtype=DT) * 2 - 0.5)
            ghost.bias.copy_(torch.randn(num_features, generator=gen, dtype=DT))
        ghost.running_mean.copy_(torch.randn(num_features, generator=gen, dtype=DT))
        ghost.running_var.copy_(torch.rand(num_features, generator=gen, dtype=DT) + 0.5)
    bn.load_state_dict(ghost.state_dict())
    return ghost, bn


def _input(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    loc = torch.randn((1,) + shape[1:], generator=gen, dtype=DT) * 3
    return loc + torch.exp(torch.randn(shape, generator=gen, dtype=DT)) * \
        torch.randn(shape, generator=gen, dtype=DT)


def _run_both(ghost, bn, x, dy):
    """Forward + backward through the ghost module and through bn on each ghost batch in turn."""
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1 = ghost(x1)
    y2 = torch.cat([bn(c) for c in x2.split(ghost.ghost_size)])
    y1.backward(dy)
    y2.backward(dy)
    return (y1, x1.grad), (y2, x2.grad)


def _assert_same_state(ghost, bn, tol):
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(ghost, name), getattr(bn, name), rtol=tol, atol=tol)
    assert int(ghost.num_batches_tracked) == int(bn.num_batches_tracked)


# ----------------------------------------------------------------------------- equal to torch

@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize("shape,ghost_size", [((24, 5), 4), ((24, 5), 8), ((12, 3, 4), 3),
                                              ((16, 2, 1), 2)])
def test_equals_batchnorm1d_applied_to_each_ghost_batch(momentum, shape, ghost_size):
    ghost, bn = _pair(shape[1], ghost_size, momentum=momentum, seed=1)
    for step in range(3):                       # several steps: the running buffers accumulate
        x = _input(shape, seed=10 + step)
        dy = _input(shape, seed=20 + step)
        (y1, dx1), (y2, dx2) = _run_both(ghost, bn, x, dy)
        torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(dx1, dx2, rtol=1e-11, atol=1e-11)
        _assert_same_state(ghost, bn, 1e-12)
    torch.testing.assert_close(ghost.weight.grad, bn.weight.grad, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(ghost.bias.grad, bn.bias.grad, rtol=1e-11, atol=1e-11)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 5), g=st.integers(2, 6), c=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_property_matches_torch_for_any_split(k, g, c, seed):
    ghost, bn = _pair(c, g, seed=seed)
    x, dy = _input((k * g, c), seed), _input((k * g, c), seed + 1)
    (y1, dx1), (y2, dx2) = _run_both(ghost, bn, x, dy)
    torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dx1, dx2, rtol=1e-9, atol=1e-9)
    _assert_same_state(ghost, bn, 1e-12)


@pytest.mark.parametrize("n,ghost_size", [(16, 16), (10, 16)])
def test_ghost_size_at_least_the_batch_is_batchnorm1d_exactly(n, ghost_size):
    ghost, bn = _pair(4, ghost_size, seed=3)
    for step in range(2):
        x = _input((n, 4), seed=step)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ghost(x1), bn(x2)
        assert torch.equal(y1, y2)
        y1.sum().backward()
        y2.sum().backward()
        assert torch.equal(x1.grad, x2.grad)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(ghost, name), getattr(bn, name))


def test_vectorized_path_with_one_ghost_batch_matches_batch_norm():
    # The reshaped multi-ghost code path itself (not the delegation) agrees with torch for k = 1.
    x = _input((9, 3), seed=4)
    weight, bias = torch.rand(3, dtype=DT), torch.randn(3, dtype=DT)
    rm1, rv1 = torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT)
    rm2, rv2 = rm1.clone(), rv1.clone()
    y1 = ghost_batch_norm(x, 9, rm1, rv1, weight, bias, training=True, momentum=0.3)
    y2 = torch.nn.functional.batch_norm(x, rm2, rv2, weight, bias, True, 0.3, 1e-5)
    torch.testing.assert_close(y1, y2, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(rm1, rm2, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(rv1, rv2, rtol=1e-14, atol=1e-14)


# ----------------------------------------------------------------------------- ghost batches

def test_each_ghost_batch_is_normalized_on_its_own():
    ghost = GhostBatchNorm1d(3, ghost_size=5, affine=False).to(DT)
    x = _input((20, 3), seed=5) + torch.arange(20, dtype=DT)[:, None]   # ghost batches differ
    y = ghost(x).reshape(4, 5, 3)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(4, 3, dtype=DT), rtol=0, atol=1e-12)
    var = y.var(dim=1, unbiased=False)
    x_var = x.reshape(4, 5, 3).var(dim=1, unbiased=False)
    torch.testing.assert_close(var, x_var / (x_var + 1e-5), rtol=1e-12, atol=1e-12)
    # ... which the whole-batch normalization does not do.
    y_bn = nn.BatchNorm1d(3, affine=False).to(DT)(x).reshape(4, 5, 3)
    assert y_bn.mean(dim=1).abs().max() > 0.5


def test_changing_one_ghost_batch_leaves_the_others_unchanged():
    ghost = GhostBatchNorm1d(2, ghost_size=4).to(DT)
    x = _input((12, 2), seed=6)
    x2 = x.clone()
    x2[4:8] = x2[4:8] * 7 + 3                   # only the second ghost batch changes
    y, y2 = ghost(x), ghost(x2)
    assert torch.equal(y[:4], y2[:4]) and torch.equal(y[8:], y2[8:])
    assert not torch.allclose(y[4:8], y2[4:8])


def test_gradient_flows_only_within_a_ghost_batch():
    ghost = GhostBatchNorm1d(2, ghost_size=3).to(DT)
    x = _input((9, 2), seed=7).requires_grad_()
    ghost(x)[0, 0].backward()                   # an output of ghost batch 1
    assert x.grad[3:].abs().max() == 0
    assert x.grad[:3].abs().max() > 0


# ----------------------------------------------------------------------------- running statistics

def test_running_statistics_follow_the_documented_closed_form():
    eta, k, g, c = 0.2, 4, 5, 3
    ghost = GhostBatchNorm1d(c, ghost_size=g, momentum=eta).to(DT)
    r_mean0, r_var0 = ghost.running_mean.clone(), ghost.running_var.clone()
    x = _input((k * g, c), seed=8)
    ghost(x)
    blocks = x.reshape(k, g, c)
    means, uvars = blocks.mean(dim=1), blocks.var(dim=1, unbiased=True)   # unbiased is stored
    weights = torch.tensor([eta * (1 - eta) ** (k - l) for l in range(1, k + 1)], dtype=DT)
    torch.testing.assert_close(ghost.running_mean, (1 - eta) ** k * r_mean0 + weights @ means,
                               rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(ghost.running_var, (1 - eta) ** k * r_var0 + weights @ uvars,
                               rtol=1e-13, atol=1e-13)
    assert int(ghost.num_batches_tracked) == k


def test_cumulative_average_with_momentum_none_averages_every_ghost_batch():
    ghost = GhostBatchNorm1d(2, ghost_size=4, momentum=None).to(DT)
    xs = [_input((12, 2), seed=s) for s in range(3)]
    for x in xs:
        ghost(x)
    blocks = torch.cat(xs).reshape(9, 4, 2)
    torch.testing.assert_close(ghost.running_mean, blocks.mean(dim=1).mean(dim=0),
                               rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(ghost.running_var, blocks.var(dim=1).mean(dim=0),
                               rtol=1e-13, atol=1e-13)
    assert int(ghost.num_batches_tracked) == 9


def test_running_weights_fold_sequential_updates():
    rng = np.random.default_rng(0)
    factors = rng.uniform(0, 1, size=6)
    r0, stats = rng.normal(), rng.normal(size=6)
    r = r0
    for f, s in zip(factors, stats):
        r = (1 - f) * r + f * s
    w0, w = running_weights(factors)
    assert abs(w0 * r0 + np.dot(w, stats) - r) < 1e-14


@pytest.mark.parametrize("k", [1, 2, 8, 64])
def test_per_ghost_momentum_keeps_the_per_step_horizon(k):
    eta = per_ghost_momentum(0.1, k)
    ghost = GhostBatchNorm1d(2, ghost_size=4, momentum=eta).to(DT)
    ghost.running_mean.fill_(1.0)
    ghost(torch.zeros(4 * k, 2, dtype=DT))      # every ghost mean is 0: only the decay is left
    torch.testing.assert_close(ghost.running_mean, torch.full((2,), 0.9, dtype=DT), rtol=1e-13,
                               atol=1e-13)
    assert (eta == 0.1) == (k == 1)
    with pytest.raises(ValueError, match=r"per_ghost_momentum: num_ghosts must be a positive"):
        per_ghost_momentum(0.1, 0)


def test_running_buffers_do_not_keep_the_graph():
    ghost = GhostBatchNorm1d(3, ghost_size=2)
    ghost(torch.randn(8, 3, requires_grad=True))
    assert not ghost.running_mean.requires_grad and ghost.running_mean.grad_fn is None
    assert ghost.running_var.grad_fn is None


# ----------------------------------------------------------------------------- evaluation mode

def test_eval_mode_uses_running_statistics_per_sample():
    ghost, bn = _pair(4, ghost_size=4, seed=9)
    for s in range(3):
        ghost(_input((16, 4), seed=s))
    ghost.eval()
    bn.load_state_dict(ghost.state_dict())
    bn.eval()
    x = _input((10, 4), seed=11)                # not a multiple of ghost_size: fine in eval
    y = ghost(x)
    expected = (x - ghost.running_mean) / torch.sqrt(ghost.running_var + ghost.eps) \
        * ghost.weight + ghost.bias
    torch.testing.assert_close(y, expected, rtol=1e-13, atol=1e-13)
    assert torch.equal(y, bn(x))
    assert torch.equal(ghost(x[3:4]), y[3:4])   # a sample alone gets the same output
    before = ghost.running_mean.clone()
    ghost(x)
    assert torch.equal(ghost.running_mean, before)


def test_without_running_statistics_eval_mode_also_uses_ghost_batches():
    ghost = GhostBatchNorm1d(3, ghost_size=4, track_running_stats=False, affine=False).to(DT)
    ghost.eval()
    x = _input((8, 3), seed=12)
    y = ghost(x)
    expected = torch.cat([torch.nn.functional.batch_norm(c, None, None, training=True)
                          for c in x.split(4)])
    torch.testing.assert_close(y, expected, rtol=1e-13, atol=1e-13)
    assert ghost.running_mean is None


def test_functional_form_matches_the_module():
    ghost = GhostBatchNorm1d(3, ghost_size=4, momentum=0.3).to(DT)
    rm, rv = ghost.running_mean.clone(), ghost.running_var.clone()
    x = _input((12, 3), seed=13)
    y_module = ghost(x)
    y_func = ghost_batch_norm(x, 4, rm, rv, ghost.weight, ghost.bias, training=True,
                              momentum=0.3)
    torch.testing.assert_close(y_func, y_module, rtol=0, atol=0)
    torch.testing.assert_close(rm, ghost.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(rv, ghost.running_var, rtol=0, atol=0)
    y_eval = ghost_batch_norm(x, 4, rm, rv, training=False)
    torch.testing.assert_close(y_eval, torch.nn.functional.batch_norm(x, rm, rv),
                               rtol=0, atol=0)


def test_float32_input_matches_float64_closely():
    ghost = GhostBatchNorm1d(3, ghost_size=4)
    x = _input((12, 3), seed=14)
    y32 = ghost(x.float())
    y64 = ghost_batch_norm(x, 4, training=True, weight=ghost.weight.double(),
                           bias=ghost.bias.double())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- state and models

def test_state_dict_loads_both_ways_with_batchnorm1d():
    ghost, bn = _pair(5, ghost_size=2, seed=15)
    assert set(ghost.state_dict()) == set(bn.state_dict())
    fresh = GhostBatchNorm1d(5, ghost_size=2).to(DT)
    fresh.load_state_dict(bn.state_dict())
    for name, value in bn.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value)
    assert "ghost_size=2" in repr(fresh)


def test_factory_builds_mlps_with_the_same_weights_and_ghost_layers():
    plain = make_mlp(64, hidden=(8, 8), bn="before", seed=3)
    ghosted = make_mlp(64, hidden=(8, 8), bn="before", bn_layer=ghost_bn_factory(4), seed=3)
    assert all(torch.equal(a.weight, b.weight) for (_, a), (_, b)
               in zip(weight_layers(plain), weight_layers(ghosted)))
    assert isinstance(ghosted.norm1, GhostBatchNorm1d) and ghosted.norm2.ghost_size == 4
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain(x), ghosted(x))     # four ghost batches: different output
    ghosted_full = make_mlp(64, hidden=(8, 8), bn="before", bn_layer=ghost_bn_factory(16),
                            seed=3)
    assert torch.equal(plain(x), ghosted_full(x))


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("ghost_size,exc", [(0, ValueError), (-2, ValueError), (2.5, TypeError),
                                            (True, TypeError)])
def test_bad_ghost_size_is_rejected(ghost_size, exc):
    with pytest.raises(exc, match=r"GhostBatchNorm1d: ghost_size must be a positive int, got"):
        GhostBatchNorm1d(3, ghost_size)
    with pytest.raises(exc, match=r"ghost_bn_factory: ghost_size must be"):
        ghost_bn_factory(ghost_size)


def test_batch_that_does_not_split_is_rejected_in_training():
    ghost = GhostBatchNorm1d(3, ghost_size=4)
    with pytest.raises(ValueError, match=r"GhostBatchNorm1d.forward: x must be a batch whose "
                                         r"size is a multiple of ghost_size=4.*got batch size 10"):
        ghost(torch.randn(10, 3))


def test_bad_rank_and_single_value_per_channel_are_rejected():
    with pytest.raises(ValueError, match=r"GhostBatchNorm1d.forward: x must be 2-D \(N, C\) or "
                                         r"3-D \(N, C, L\), got shape \(2, 3, 4, 4\)"):
        GhostBatchNorm1d(3, ghost_size=2)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"more than 1 value per channel in each ghost batch"):
        GhostBatchNorm1d(3, ghost_size=1)(torch.randn(4, 3))
    with pytest.raises(TypeError, match=r"ghost_batch_norm: x must be a torch.Tensor, got ndarray"):
        ghost_batch_norm(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match=r"ghost_batch_norm: momentum must be"):
        ghost_batch_norm(torch.zeros(4, 2), 2, momentum=1.5)
