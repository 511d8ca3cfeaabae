"""Tests for bncourse.lab.models: one thing changed at a time, structure, initialization."""

import functools
import math

import pytest
import torch
from torch import nn

from bncourse.lab.models import init_weights_, make_cnn, make_mlp, weight_layers


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    la, lb = weight_layers(a), weight_layers(b)
    assert [n for n, _ in la] == [n for n, _ in lb]
    for (_, x), (_, y) in zip(la, lb):
        if not torch.equal(x.weight, y.weight):
            return False
        if x.bias is not None and y.bias is not None and not torch.equal(x.bias, y.bias):
            return False
    return True


def _torch_bn1d():
    torch_bn = pytest.importorskip("bncourse.torch_bn")
    return torch_bn.BatchNorm1d


@pytest.mark.parametrize("init_scale", [None, 0.1, "he"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_bn_and_no_bn_share_every_linear_weight(init_scale, activation):
    base = make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="none",
                    init_scale=init_scale, seed=5)
    variants = [
        make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="before",
                 init_scale=init_scale, seed=5),
        make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="after",
                 init_scale=init_scale, seed=5),
        make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="before", dropout=0.3,
                 init_scale=init_scale, seed=5),
        make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="before",
                 bias_before_bn=False, init_scale=init_scale, seed=5),
        make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="before",
                 bn_layer=nn.LayerNorm, init_scale=init_scale, seed=5),
        make_mlp(64, hidden=(20, 30, 20), activation=activation, bn="before",
                 bn_layer=functools.partial(nn.GroupNorm, 5), init_scale=init_scale, seed=5),
    ]
    for v in variants:
        assert _same_weights(base, v)
    other_seed = make_mlp(64, hidden=(20, 30, 20), activation=activation, init_scale=init_scale,
                          seed=6)
    assert not _same_weights(base, other_seed)


def test_bn_with_torch_bn_module_shares_weights():
    bn1d = _torch_bn1d()
    a = make_mlp(64, bn="none", init_scale=0.1, seed=0)
    b = make_mlp(64, bn="before", bn_layer=bn1d, init_scale=0.1, seed=0)
    assert _same_weights(a, b)
    assert all(isinstance(getattr(b, f"norm{i}"), bn1d) for i in (1, 2, 3))


def test_bn_and_no_bn_networks_compute_the_same_without_normalization():
    # With BN layers replaced by identities the two models are the same function.
    a = make_mlp(10, hidden=(8, 8), bn="none", seed=1)
    b = make_mlp(10, hidden=(8, 8), bn="before", bn_layer=lambda n: nn.Identity(), seed=1)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("bn, expected", [
    ("none", ["flatten", "fc1", "act1", "fc2", "act2", "out"]),
    ("before", ["flatten", "fc1", "norm1", "act1", "fc2", "norm2", "act2", "out"]),
    ("after", ["flatten", "fc1", "act1", "norm1", "fc2", "act2", "norm2", "out"]),
])
def test_mlp_layer_order(bn, expected):
    net = make_mlp(64, hidden=(8, 8), bn=bn)
    assert [n for n, _ in net.named_children()] == expected
    with_drop = make_mlp(64, hidden=(8, 8), bn=bn, dropout=0.5)
    names = [n for n, _ in with_drop.named_children()]
    assert names.index("drop1") == names.index("fc2") - 1
    assert isinstance(with_drop.drop1, nn.Dropout) and with_drop.drop1.p == 0.5


def test_mlp_modules_and_forward():
    net = make_mlp(64, hidden=(100, 100, 100), activation="tanh", bn="before", seed=0)
    assert all(isinstance(getattr(net, f"norm{i}"), nn.BatchNorm1d) for i in (1, 2, 3))
    assert all(isinstance(getattr(net, f"act{i}"), nn.Tanh) for i in (1, 2, 3))
    assert net.out.out_features == 10 and net.training
    x = torch.randn(6, 1, 8, 8)
    assert net(x).shape == (6, 10)
    assert torch.equal(net.eval()(x), net(x.reshape(6, 64)))
    no_bias = make_mlp(64, hidden=(8,), bn="before", bias_before_bn=False)
    assert no_bias.fc1.bias is None and no_bias.out.bias is not None
    assert make_mlp(64, hidden=(8,), bn="after", bias_before_bn=False).fc1.bias is not None


def test_global_rng_untouched():
    state = torch.get_rng_state()
    make_mlp(64, seed=3)
    make_cnn(seed=3)
    assert torch.equal(state, torch.get_rng_state())


def test_gaussian_init_scale():
    net = make_mlp(200, hidden=(300,), init_scale=0.05, seed=0)
    w = net.fc1.weight.detach().double()
    # 60000 draws: the sample std is within 1% of 0.05 with overwhelming probability.
    assert abs(w.std().item() - 0.05) < 0.05 * 0.01
    assert abs(w.mean().item()) < 0.05 * 0.02
    assert torch.count_nonzero(net.fc1.bias) == 0


def test_he_init_scale():
    net = make_mlp(200, hidden=(300,), init_scale="he", seed=0)
    w = net.fc1.weight.detach().double()
    assert abs(w.std().item() - math.sqrt(2 / 200)) < math.sqrt(2 / 200) * 0.01


def test_default_init_is_torch_default_distribution():
    net = make_mlp(200, hidden=(300,), init_scale=None, seed=0)
    bound = 1 / math.sqrt(200)
    w, b = net.fc1.weight.detach().double(), net.fc1.bias.detach().double()
    assert w.abs().max() <= bound and b.abs().max() <= bound
    # Uniform(-a, a) has std a / sqrt(3); torch's own default draws the same law.
    torch_default = nn.Linear(200, 300).weight.detach().double()
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.01 * bound
    assert abs(torch_default.std().item() - bound / math.sqrt(3)) < 0.01 * bound


def test_init_weights_is_reproducible_and_in_place():
    net = make_mlp(10, hidden=(5,), seed=0)
    before = net.fc1.weight.detach().clone()
    out = init_weights_(net, init_scale=0.3, seed=9)
    assert out is net and not torch.equal(before, net.fc1.weight)
    again = init_weights_(make_mlp(10, hidden=(5,), bn="before"), init_scale=0.3, seed=9)
    assert _same_weights(net, again)


@pytest.mark.parametrize("init_scale", [None, 0.2])
def test_cnn_norms_share_conv_weights_and_structure(init_scale):
    nets = {norm: make_cnn(channels=(8, 16), norm=norm, init_scale=init_scale, seed=4)
            for norm in ("none", "bn", "gn", "ln")}
    for norm, net in nets.items():
        assert _same_weights(nets["none"], net)
        others = [(n, type(m)) for n, m in net.named_children() if not n.startswith("norm")]
        assert others == [(n, type(m)) for n, m in nets["none"].named_children()]
        assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert isinstance(nets["bn"].norm1, nn.BatchNorm2d)
    assert isinstance(nets["gn"].norm2, nn.GroupNorm) and nets["gn"].norm2.num_groups == 4
    assert isinstance(nets["ln"].norm2, nn.GroupNorm) and nets["ln"].norm2.num_groups == 1
    assert nets["none"].out.in_features == 16 * 2 * 2


def test_cnn_ln_normalizes_each_sample_over_chw():
    net = make_cnn(channels=(8,), norm="ln", seed=0)
    x = torch.randn(3, 8, 8, 8, dtype=torch.float64)
    y = net.norm1.double()(x)
    ref = nn.functional.layer_norm(x, (8, 8, 8), eps=net.norm1.eps)
    torch.testing.assert_close(y, ref)


def test_cnn_custom_norm_layer_and_bias():
    net = make_cnn(channels=(4,), norm="bn", norm_layer=lambda c: nn.InstanceNorm2d(c),
                   bias_before_norm=False)
    assert isinstance(net.norm1, nn.InstanceNorm2d) and net.conv1.bias is None
    assert make_cnn(channels=(4,), norm="none", bias_before_norm=False).conv1.bias is not None


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(activation="gelu"), ValueError, "make_mlp: activation must be one of"),
    (dict(bn="middle"), ValueError, "make_mlp: bn must be one of 'none', 'before', 'after'"),
    (dict(init_scale=-0.1), ValueError, "make_mlp: init_scale must be"),
    (dict(init_scale="small"), TypeError, "make_mlp: init_scale"),
    (dict(hidden=(10, 0)), ValueError, "make_mlp: hidden must be"),
    (dict(dropout=1.0), ValueError, "make_mlp: dropout must be a float in \\[0, 1\\)"),
    (dict(bn_layer=3), TypeError, "make_mlp: bn_layer must be a callable"),
    (dict(seed=1.0), TypeError, "make_mlp: seed must be an int"),
])
def test_mlp_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_mlp(64, **kwargs)


def test_cnn_bad_input():
    with pytest.raises(ValueError, match="make_cnn: norm must be one of"):
        make_cnn(norm="batch")
    with pytest.raises(ValueError, match="make_cnn: groups must be a divisor"):
        make_cnn(channels=(6,), norm="gn", groups=4)
