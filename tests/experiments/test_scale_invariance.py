"""Tests for bncourse.experiments.scale_invariance: BN makes the layers in front of it scale invariant."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.experiments.scale_invariance import layers_before_bn, run_scale_check, scale_before_bn
from bncourse.lab.models import make_cnn, make_mlp


def _net(eps=1e-5, bn="before", activation="relu", seed=0):
    return make_mlp(10, hidden=(12, 12, 12), activation=activation, bn=bn, init_scale=0.3,
                    bn_layer=lambda n: nn.BatchNorm1d(n, eps=eps), seed=seed).double()


def _batch(n=16, d=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=torch.float64),
            torch.randint(0, 10, (n,), generator=gen))


def test_layers_before_bn_follow_the_placement():
    assert layers_before_bn(make_mlp(4, hidden=(3, 3), bn="before")) == ["fc1", "fc2"]
    assert layers_before_bn(make_mlp(4, hidden=(3, 3), bn="after")) == []
    assert layers_before_bn(make_mlp(4, hidden=(3, 3), bn="none")) == []
    assert layers_before_bn(make_cnn(norm="bn", channels=(4, 8))) == ["conv1", "conv2"]


@pytest.mark.parametrize("factor", [1e-3, 0.5, 7.0, 1e3])
def test_with_negligible_eps_the_output_is_invariant_and_the_gradient_scales_as_one_over_c(factor):
    net = _net(eps=1e-30, activation="tanh")
    x, y = _batch()
    check = run_scale_check(net, x, y, factor)
    assert check.layers == ["fc1", "fc2", "fc3"]
    assert check.output_change < 1e-12
    np.testing.assert_allclose(check.grad_ratio, 1.0, rtol=1e-10)
    np.testing.assert_allclose(check.cosine, 0.0, atol=1e-12)


def test_gradient_at_scaled_weights_is_the_gradient_divided_by_c_elementwise():
    # An independent computation with autograd: d/dW L(c W) seen from the scaled network.
    net, c = _net(eps=1e-30), 5.0
    x, y = _batch(seed=2)
    scaled = scale_before_bn(net, c)
    g = torch.autograd.grad(F.cross_entropy(net(x), y), net.fc2.weight)[0]
    gc = torch.autograd.grad(F.cross_entropy(scaled(x), y), scaled.fc2.weight)[0]
    torch.testing.assert_close(gc * c, g, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(scaled.fc2.weight, net.fc2.weight * c)
    torch.testing.assert_close(scaled.out.weight, net.out.weight)     # not before a BN


def test_eps_breaks_the_invariance_only_at_small_scales():
    # var(z) * c^2 against eps: at c = 1e-4 the batch variance is far below eps = 1e-5 and
    # BN no longer normalizes; at c = 10 only the eps / var(z) of the unscaled net remains.
    net = _net(eps=1e-5)
    x, y = _batch()
    assert run_scale_check(net, x, y, 1e-4).output_change > 0.1
    assert run_scale_check(net, x, y, 10.0).output_change < 1e-4


def test_an_sgd_step_grows_the_weight_norm_by_lr_squared_times_the_gradient_norm():
    # Orthogonality turns Pythagoras into the law of the effective learning rate:
    # ||W - lr g||^2 = ||W||^2 + lr^2 ||g||^2 when <W, g> = 0.
    net, lr = _net(eps=1e-30), 0.7
    x, y = _batch(seed=3)
    w = net.fc2.weight
    g = torch.autograd.grad(F.cross_entropy(net(x), y), w)[0]
    new = w.detach() - lr * g
    assert new.norm() ** 2 == pytest.approx(w.norm().item() ** 2 + lr**2 * g.norm().item() ** 2,
                                            rel=1e-12)


def test_scale_check_leaves_the_model_unchanged_and_validates():
    net = _net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = _batch()
    run_scale_check(net, x, y, 3.0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="scale_before_bn: model must be a model with a Linear"):
        scale_before_bn(_net(bn="none"), 2.0)
    with pytest.raises(ValueError, match="run_scale_check: factor must be a positive finite float"):
        run_scale_check(net, x, y, 0.0)
    with pytest.raises(TypeError, match="layers_before_bn: model must be a torch.nn.Module"):
        layers_before_bn("net")
