"""Tests for bncourse.batch_renorm: torch's BatchNorm (float64) is the oracle where the two must agree."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.batch_renorm import (
    BatchRenorm1d,
    BatchRenorm2d,
    batch_renorm,
    batch_renorm_factory,
    renorm_factors,
)
from bncourse.lab.models import make_cnn

SHAPES = [(8, 3), (6, 3, 5), (4, 3, 5, 6), (3, 3, 2, 4, 3)]
SHAPE_IDS = ["2d", "3d", "4d", "5d"]


def make(shape, seed=0, loc=2.0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    view = (1, c) + (1,) * (len(shape) - 2)
    x = (loc * torch.randn(view, generator=gen, dtype=torch.float64)
         + scale * torch.rand(view, generator=gen, dtype=torch.float64)
         * torch.randn(shape, generator=gen, dtype=torch.float64))
    gamma = 1.0 + 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    beta = torch.randn(c, generator=gen, dtype=torch.float64)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, gamma, beta, dy


def grads(fn, x, gamma, beta, dy):
    """Output and (dx, dgamma, dbeta) of ``fn(x, gamma, beta)`` for upstream ``dy``."""
    x, gamma, beta = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    y = fn(x, gamma, beta)
    y.backward(dy)
    return y.detach(), x.grad, gamma.grad, beta.grad


def assert_close(a, b, rtol=1e-12):
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), 1e-300)
    assert float((a - b).abs().max()) <= rtol * scale, float((a - b).abs().max()) / scale


def batch_stats(x):
    dims = [0, *range(2, x.dim())]
    var, mean = torch.var_mean(x, dim=dims, correction=0)
    return mean, var


# --- r = 1 and d = 0 is BatchNorm --------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_rmax_1_dmax_0_is_batchnorm_outputs_gradients_buffers(shape):
    x, gamma, beta, dy = make(shape, seed=1)
    rm_a, rv_a = torch.full((3,), 0.7, dtype=torch.float64), torch.full((3,), 4.0, dtype=torch.float64)
    rm_b, rv_b = rm_a.clone(), rv_a.clone()
    ours = grads(lambda v, g, b: batch_renorm(v, rm_a, rv_a, g, b, training=True, momentum=0.2,
                                              rmax=1.0, dmax=0.0), x, gamma, beta, dy)
    want = grads(lambda v, g, b: F.batch_norm(v, rm_b, rv_b, g, b, training=True, momentum=0.2),
                 x, gamma, beta, dy)
    for a, b in zip(ours, want):
        assert_close(a, b)
    assert_close(rm_a, rm_b)
    assert_close(rv_a, rv_b)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_running_stats_equal_to_batch_stats_give_r_1_d_0_and_batchnorm(shape):
    """Unclipped limits, but the running statistics are this batch's: r = 1, d = 0 exactly."""
    x, gamma, beta, dy = make(shape, seed=2)
    mean, var = batch_stats(x)
    r, d = renorm_factors(mean, var, mean, var, rmax=3.0, dmax=5.0)
    assert torch.equal(r, torch.ones_like(r)) and torch.equal(d, torch.zeros_like(d))
    ours = grads(lambda v, g, b: batch_renorm(v, mean.clone(), var.clone(), g, b, training=True),
                 x, gamma, beta, dy)
    want = grads(lambda v, g, b: F.batch_norm(v, None, None, g, b, training=True), x, gamma, beta, dy)
    for a, b in zip(ours, want):
        assert_close(a, b)


# --- the correction: values and stop-gradient ----------------------------------------------------

def test_renorm_factors_follow_the_clipped_formula():
    mean_b = torch.tensor([0.0, 1.0, -4.0, 0.5, 0.0], dtype=torch.float64)
    var_b = torch.tensor([1.0, 100.0, 0.01, 4.0, 1.0], dtype=torch.float64)
    mu = torch.tensor([0.0, 0.0, 0.0, 0.3, 10.0], dtype=torch.float64)
    v = torch.tensor([1.0, 1.0, 1.0, 3.0, 1.0], dtype=torch.float64)
    eps = 1e-3
    r, d = renorm_factors(mean_b, var_b, mu, v, rmax=2.0, dmax=1.5, eps=eps)
    std_b, std = np.sqrt(var_b.numpy() + eps), np.sqrt(v.numpy() + eps)
    np.testing.assert_allclose(r.numpy(), np.clip(std_b / std, 0.5, 2.0), rtol=1e-15)
    np.testing.assert_allclose(d.numpy(), np.clip((mean_b - mu).numpy() / std, -1.5, 1.5),
                               rtol=1e-15)
    assert r[1] == 2.0 and r[2] == 0.5                 # clipped above and below
    assert d[2] == -1.5 and d[4] == -1.5               # clipped
    assert 0.5 < r[3] < 2.0 and -1.5 < d[3] < 1.5      # unclipped


@pytest.mark.parametrize("limits", [(3.0, 5.0), (1.5, 0.2)], ids=["unclipped", "clipped"])
@pytest.mark.parametrize("shape", SHAPES[:3], ids=SHAPE_IDS[:3])
def test_gradient_is_batchnorm_with_gamma_times_r(shape, limits):
    """x_hat = r * BN(x) + d with r, d constants: BN's gradient with weight gamma * r."""
    rmax, dmax = limits
    x, gamma, beta, dy = make(shape, seed=3)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    var = torch.tensor([2.0, 0.5, 9.0], dtype=torch.float64)
    mean_b, var_b = batch_stats(x)
    r, d = renorm_factors(mean_b, var_b, mu, var, rmax, dmax)
    if limits == (1.5, 0.2):
        assert ((r == rmax) | (r == 1 / rmax)).any() and (d.abs() == dmax).any()
    ours = grads(lambda v, g, b: batch_renorm(v, mu.clone(), var.clone(), g, b, training=True,
                                              rmax=rmax, dmax=dmax), x, gamma, beta, dy)
    y, dx, _, _ = grads(lambda v, g, b: F.batch_norm(v, None, None, g * r, g * d + b, training=True),
                        x, gamma, beta, dy)
    assert_close(ours[0], y)
    assert_close(ours[1], dx)
    # dgamma and dbeta by the chain rule through y = gamma * (r * x_bn + d) + beta
    x_bn = F.batch_norm(x, None, None, training=True)
    dims = [0, *range(2, x.dim())]
    view = (3,) + (1,) * (x.dim() - 2)
    assert_close(ours[2], (dy * (x_bn * r.reshape(view) + d.reshape(view))).sum(dim=dims))
    assert_close(ours[3], dy.sum(dim=dims))


@pytest.mark.parametrize("limits", [(10.0, 10.0), (1.2, 0.1)], ids=["unclipped", "clipped"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_the_formula_written_out_with_detached_r_and_d(shape, limits):
    """Oracle: Ioffe's formula op by op, autograd through it, r and d detached."""
    rmax, dmax = limits
    x, gamma, beta, dy = make(shape, seed=4)
    mu = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64)
    var = torch.tensor([1.5, 4.0, 0.7], dtype=torch.float64)
    view = (1, 3) + (1,) * (len(shape) - 2)
    eps = 1e-5

    def written_out(v, g, b, detach=True):
        mean_b, var_b = (s.reshape(view) for s in batch_stats(v))
        std_b = torch.sqrt(var_b + eps)
        std = torch.sqrt(var.reshape(view) + eps)
        r = torch.clamp(std_b / std, 1 / rmax, rmax)
        d = torch.clamp((mean_b - mu.reshape(view)) / std, -dmax, dmax)
        if detach:
            r, d = r.detach(), d.detach()
        return g.reshape(view) * ((v - mean_b) / std_b * r + d) + b.reshape(view)

    ours = grads(lambda v, g, b: batch_renorm(v, mu.clone(), var.clone(), g, b, training=True,
                                              rmax=rmax, dmax=dmax, eps=eps), x, gamma, beta, dy)
    want = grads(written_out, x, gamma, beta, dy)
    for a, b in zip(ours, want):
        assert_close(a, b)
    if limits == (10.0, 10.0):
        # Differentiating through r and d as well would give another dx: the test can fail.
        # (Where both are clipped their derivative is 0 anyway.)
        wrong = grads(lambda v, g, b: written_out(v, g, b, detach=False), x, gamma, beta, dy)
        assert float((ours[1] - wrong[1]).abs().max()) > 1e-3


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_unclipped_training_output_equals_output_with_running_stats(shape):
    """The point of the method: inside the limits, training already uses the running statistics."""
    x, gamma, beta, _ = make(shape, seed=5)
    mu = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    var = torch.tensor([5.0, 3.0, 8.0], dtype=torch.float64)
    y_train = batch_renorm(x, mu.clone(), var.clone(), gamma, beta, training=True,
                           rmax=100.0, dmax=100.0)
    y_eval = F.batch_norm(x, mu, var, gamma, beta, training=False)
    assert_close(y_train, y_eval)


# --- evaluation and modules --------------------------------------------------------------------

@pytest.mark.parametrize("cls,bn_cls,shape", [(BatchRenorm1d, nn.BatchNorm1d, (8, 3)),
                                              (BatchRenorm1d, nn.BatchNorm1d, (6, 3, 5)),
                                              (BatchRenorm2d, nn.BatchNorm2d, (4, 3, 5, 6))])
def test_module_eval_uses_running_stats_like_batchnorm(cls, bn_cls, shape):
    brn, bn = cls(3).double(), bn_cls(3).double()
    with torch.no_grad():
        for mod in (brn, bn):
            mod.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
            mod.running_var.copy_(torch.tensor([4.0, 0.25, 2.0]))
            mod.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
            mod.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    brn.eval(), bn.eval()
    x, *_ = make(shape, seed=6)
    x.requires_grad_(True)
    y = brn(x)
    assert_close(y, bn(x))
    (dx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    (dx_bn,) = torch.autograd.grad(bn(x), x, torch.ones_like(y))
    assert_close(dx, dx_bn)
    assert int(brn.num_batches_tracked) == 0     # evaluation changes nothing


def test_module_with_rmax_1_dmax_0_trains_like_batchnorm2d_and_state_dicts_swap():
    brn, bn = BatchRenorm2d(3, rmax=1.0, dmax=0.0).double(), nn.BatchNorm2d(3).double()
    for seed in range(3):
        x, *_ = make((4, 3, 5, 5), seed=seed)
        assert_close(brn(x), bn(x))
    for name in ("running_mean", "running_var"):
        assert_close(getattr(brn, name), getattr(bn, name))
    assert int(brn.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    assert set(brn.state_dict()) == set(bn.state_dict())
    nn.BatchNorm2d(3).double().load_state_dict(brn.state_dict())


def test_schedule_warmup_then_linear_ramp():
    brn = BatchRenorm1d(2, rmax=3.0, dmax=5.0, warmup_steps=2, ramp_steps=4)
    seen = []
    for _ in range(8):
        seen.append(brn.current_limits())
        brn(torch.randn(4, 2))
    assert seen[:2] == [(1.0, 0.0), (1.0, 0.0)]
    np.testing.assert_allclose([s[0] for s in seen[2:]], [1.5, 2.0, 2.5, 3.0, 3.0, 3.0])
    np.testing.assert_allclose([s[1] for s in seen[2:]], [1.25, 2.5, 3.75, 5.0, 5.0, 5.0])
    assert BatchRenorm1d(2).current_limits() == (3.0, 5.0)


def test_warmup_is_batchnorm_then_the_correction_starts():
    brn = BatchRenorm1d(3, warmup_steps=1).double()
    bn = nn.BatchNorm1d(3).double()
    x, *_ = make((8, 3), seed=7, loc=5.0)
    assert_close(brn(x), bn(x))                  # step 0: plain BN
    x2, *_ = make((8, 3), seed=8, loc=5.0)
    assert float((brn(x2) - bn(x2)).detach().abs().max()) > 1e-3   # step 1: corrected


def test_factory_builds_a_cnn_that_trains_a_step():
    net = make_cnn(norm="bn", channels=(4, 8), norm_layer=batch_renorm_factory(rmax=2.0), seed=0)
    assert isinstance(net.norm1, BatchRenorm2d) and net.norm1.rmax == 2.0
    loss = net(torch.randn(4, 1, 8, 8)).sum()
    loss.backward()
    assert net.conv1.weight.grad is not None and int(net.norm2.num_batches_tracked) == 1


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(rmax=0.5), ValueError, r"batch_renorm: rmax must be a finite float >= 1, got 0.5"),
    (dict(dmax=-1.0), ValueError, r"batch_renorm: dmax must be a finite float >= 0, got -1.0"),
    (dict(rmax="3"), TypeError, r"rmax must be a float >= 1, got str"),
    (dict(eps=0.0), ValueError, r"eps must be a positive float"),
    (dict(momentum=1.5), ValueError, r"momentum must be a float in \[0, 1\]"),
    (dict(running_mean=None), TypeError, r"running_mean must be a tensor of shape \(3,\), got None"),
    (dict(running_var=torch.ones(2)), ValueError, r"running_var must be shape \(3,\)"),
    (dict(x=torch.ones(1, 3)), ValueError, r"more than 1 value per channel"),
    (dict(x=torch.ones(4)), ValueError, r"x must be 2-D to 5-D"),
    (dict(x=np.ones((4, 3))), TypeError, r"x must be a torch.Tensor, got ndarray"),
    (dict(x=torch.ones(4, 3, dtype=torch.int64)), TypeError, r"x must be a floating-point tensor"),
])
def test_functional_bad_input(kwargs, exc, match):
    args = dict(x=torch.randn(4, 3), running_mean=torch.zeros(3), running_var=torch.ones(3),
                training=True)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        batch_renorm(args.pop("x"), args.pop("running_mean"), args.pop("running_var"), **args)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_features=0), r"BatchRenorm2d: num_features must be a positive int"),
    (dict(rmax=0.9), r"BatchRenorm2d: rmax must be a finite float >= 1"),
    (dict(warmup_steps=-1), r"BatchRenorm2d: warmup_steps must be an int >= 0, got -1"),
    (dict(momentum=None), r"BatchRenorm2d: momentum must be a float in \[0, 1\], got None"),
])
def test_module_bad_arguments(kwargs, match):
    args = dict(num_features=3)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        BatchRenorm2d(**args)


def test_module_bad_input_shape():
    with pytest.raises(ValueError, match=r"BatchRenorm2d: input must be 4-D \(N, C, H, W\), got shape \(4, 3\)"):
        BatchRenorm2d(3)(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"BatchRenorm1d: input must be 3 channels on axis 1"):
        BatchRenorm1d(3)(torch.randn(4, 2))
