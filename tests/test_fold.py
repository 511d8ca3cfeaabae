"""Tests for bncourse.fold: folded layers against the unfolded pair and torch's fusion."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from bncourse import torch_bn
from bncourse.fold import fold_batchnorm, fold_batchnorm_into_next, fold_sequential

F64 = torch.float64
TOL64 = {"rtol": 1e-10, "atol": 1e-12}

# kind -> (layer factory(in, out, bias), torch BN class, our BN class, input shape(in))
KINDS = {
    "linear": (lambda i, o, bias: nn.Linear(i, o, bias=bias), nn.BatchNorm1d,
               torch_bn.BatchNorm1d, lambda i: (16, i)),
    "conv1d": (lambda i, o, bias: nn.Conv1d(i, o, 3, padding=1, bias=bias), nn.BatchNorm1d,
               torch_bn.BatchNorm1d, lambda i: (4, i, 9)),
    "conv2d": (lambda i, o, bias: nn.Conv2d(i, o, 3, stride=2, padding=1, bias=bias),
               nn.BatchNorm2d, torch_bn.BatchNorm2d, lambda i: (4, i, 7, 6)),
    "conv3d": (lambda i, o, bias: nn.Conv3d(i, o, 2, bias=bias), nn.BatchNorm3d,
               torch_bn.BatchNorm3d, lambda i: (3, i, 4, 3, 3)),
}


def make_pair(kind, bias=True, affine=True, ours=False, seed=0, channels=(3, 5),
              dtype=F64):
    """A layer and a BatchNorm with non-trivial running stats, gamma and beta, in eval mode."""
    make_layer, torch_bn_cls, our_bn_cls, input_shape = KINDS[kind]
    torch.manual_seed(seed)
    c_in, c_out = channels
    layer = make_layer(c_in, c_out, bias).to(dtype)
    bn = (our_bn_cls if ours else torch_bn_cls)(c_out, affine=affine, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.randn(c_out, generator=g, dtype=dtype))
            bn.bias.copy_(torch.randn(c_out, generator=g, dtype=dtype))
    # A few training steps on shifted, scaled inputs give running statistics
    # far from the initial (0, 1).
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(input_shape(c_in), generator=g, dtype=dtype) * 3 + 1
            bn(layer(x))
    layer.eval()
    bn.eval()
    return layer, bn, torch.randn(input_shape(c_in), generator=g, dtype=dtype) * 3 + 1


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_fold_agrees_with_torch_fusion(kind, bias):
    layer, bn, _ = make_pair(kind, bias=bias)
    folded = fold_batchnorm(layer, bn)
    fuse = fuse_linear_bn_eval if kind == "linear" else fuse_conv_bn_eval
    fused = fuse(layer, bn)
    torch.testing.assert_close(folded.weight, fused.weight, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(folded.bias, fused.bias, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ours", [False, True], ids=["torch-bn", "our-bn"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_folded_equals_unfolded_in_eval(kind, bias, affine, ours):
    layer, bn, x = make_pair(kind, bias=bias, affine=affine, ours=ours)
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    folded = fold_batchnorm(layer, bn)
    assert type(folded) is type(layer)
    assert folded.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(layer(x)), **TOL64)


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_fold_in_float32_keeps_dtype_and_agrees(kind):
    layer, bn, x = make_pair(kind, dtype=torch.float32)
    folded = fold_batchnorm(layer, bn)
    assert folded.weight.dtype == torch.float32 and folded.bias.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(layer(x)), rtol=1e-5, atol=1e-5)


def test_fold_keeps_layer_settings_and_does_not_modify_inputs():
    layer, bn, x = make_pair("conv2d", bias=False)
    layer.train()
    layer_state = copy.deepcopy(layer.state_dict())
    bn_state = copy.deepcopy(bn.state_dict())
    folded = fold_batchnorm(layer, bn)
    assert folded is not layer
    assert (folded.stride, folded.padding, folded.kernel_size) == (
        layer.stride, layer.padding, layer.kernel_size)
    assert layer.bias is None and layer.training and not bn.training
    for module, state in ((layer, layer_state), (bn, bn_state)):
        assert list(module.state_dict()) == list(state)
        for key, value in state.items():
            assert torch.equal(module.state_dict()[key], value)
    assert folded.weight.data_ptr() != layer.weight.data_ptr()


def test_fold_of_a_bn_in_training_mode_uses_its_running_statistics():
    layer, bn, x = make_pair("linear")
    bn.train()
    folded = fold_batchnorm(layer, bn)
    with torch.no_grad():
        expected = bn.eval()(layer(x))
        torch.testing.assert_close(folded(x), expected, **TOL64)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["linear", "conv2d"]),
    c_in=st.integers(1, 4),
    c_out=st.integers(1, 5),
    bias=st.booleans(),
    affine=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_folded_equals_unfolded(kind, c_in, c_out, bias, affine, eps, seed):
    g = torch.Generator().manual_seed(seed)
    make_layer, torch_bn_cls, _, input_shape = KINDS[kind]
    torch.manual_seed(seed)
    layer = make_layer(c_in, c_out, bias).double()
    bn = torch_bn_cls(c_out, eps=eps, affine=affine, dtype=F64).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c_out, generator=g, dtype=F64) * 5)
        # Variances over several orders of magnitude, all positive.
        bn.running_var.copy_(torch.exp(torch.randn(c_out, generator=g, dtype=F64) * 2))
        if affine:
            bn.weight.copy_(torch.randn(c_out, generator=g, dtype=F64) * 2)
            bn.bias.copy_(torch.randn(c_out, generator=g, dtype=F64))
    x = torch.randn(input_shape(c_in), generator=g, dtype=F64)
    folded = fold_batchnorm(layer, bn)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(layer(x)), **TOL64)


# --------------------------------------------------------------------------- #
# fold_sequential
# --------------------------------------------------------------------------- #

def nested_model():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Sequential(
            nn.Conv2d(4, 6, 3, padding=1, bias=False),
            torch_bn.BatchNorm2d(6),
            nn.ReLU(),
            nn.BatchNorm2d(6),  # not after a layer: stays
        ),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 8),
        nn.BatchNorm1d(8, affine=False),
        nn.ReLU(),
        nn.Linear(8, 8),
        nn.BatchNorm1d(8, track_running_stats=False),  # batch statistics: stays
        nn.Linear(8, 3, bias=False),
        torch_bn.BatchNorm1d(3),
    ).double()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "affine", False):
                module.weight.copy_(torch.randn(module.num_features, generator=g, dtype=F64))
                module.bias.copy_(torch.randn(module.num_features, generator=g, dtype=F64))
        for _ in range(3):
            model(torch.randn(8, 2, 5, 5, generator=g, dtype=F64) * 2 + 1)
    return model


def batchnorms(model):
    bn_types = (nn.modules.batchnorm._BatchNorm,)  # torch_bn's modules are instances too
    return [m for m in model.modules() if isinstance(m, bn_types)]


def test_fold_sequential_folds_every_foldable_pair_and_keeps_output():
    model = nested_model()
    model.train()
    original_state = copy.deepcopy(model.state_dict())
    folded = fold_sequential(model)

    assert isinstance(folded, nn.Sequential) and not folded.training
    remaining = batchnorms(folded)
    # Only the BatchNorm after a ReLU and the one without running stats remain.
    assert len(remaining) == 2
    children = dict(folded.named_children())
    assert list(children) == ["0", "2", "3", "4", "5", "7", "8", "9", "10"]
    assert [name for name, _ in children["3"].named_children()] == ["0", "2", "3"]
    assert isinstance(children["3"][2], nn.BatchNorm2d)
    assert not children["9"].track_running_stats
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq.children())
        for prev, bn in zip(children, children[1:]):
            if bn in remaining:
                with pytest.raises((TypeError, ValueError)):
                    fold_batchnorm(prev, bn)

    x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(x)
        torch.testing.assert_close(folded(x), expected, **TOL64)

    # The input model is untouched: same modules, mode and values.
    assert model.training and len(batchnorms(model)) == 6
    assert list(model.state_dict()) == list(original_state)
    for key, value in original_state.items():
        assert torch.equal(model.state_dict()[key], value)


def test_fold_sequential_keeps_names_of_remaining_modules():
    model = nn.Sequential()
    model.add_module("fc", nn.Linear(3, 4))
    model.add_module("norm", nn.BatchNorm1d(4))
    model.add_module("act", nn.ReLU())
    folded = fold_sequential(model)
    assert [name for name, _ in folded.named_children()] == ["fc", "act"]


def test_fold_sequential_without_batchnorm_is_an_equal_copy():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).double()
    folded = fold_sequential(model)
    assert folded[0] is not model[0]
    x = torch.randn(2, 3, dtype=F64)
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("layer, bn, exc, match", [
    (nn.ConvTranspose2d(3, 4, 3), nn.BatchNorm2d(4), TypeError,
     "fold_batchnorm: layer must be an nn.Linear, nn.Conv1d, nn.Conv2d or nn.Conv3d, "
     "got ConvTranspose2d"),
    (nn.Linear(3, 4), nn.LayerNorm(4), TypeError, "fold_batchnorm: bn must be a BatchNorm1d"),
    (nn.Linear(3, 4), nn.BatchNorm2d(4), ValueError,
     "fold_batchnorm: bn must be a BatchNorm1d to follow Linear, got BatchNorm2d"),
    (nn.Conv2d(3, 4, 3), torch_bn.BatchNorm1d(4), ValueError,
     "bn must be a BatchNorm2d to follow Conv2d, got BatchNorm1d"),
    (nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5), ValueError,
     "bn must be num_features=4 to match the output channels of layer, got num_features=5"),
    (nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), ValueError,
     r"bn must be a BatchNorm with running statistics .*got track_running_stats=False"),
    (nn.Linear(3, 4), torch_bn.BatchNorm1d(4, track_running_stats=False), ValueError,
     "running statistics"),
    (nn.LazyLinear(4), nn.BatchNorm1d(4), ValueError, "layer must be initialised"),
])
def test_fold_batchnorm_errors(layer, bn, exc, match):
    with pytest.raises(exc, match=match):
        fold_batchnorm(layer, bn)


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def test_fold_sequential_errors():
    with pytest.raises(TypeError, match="fold_sequential: model must be an nn.Sequential, "
                       "got Linear"):
        fold_sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="does not override forward, got _Residual"):
        fold_sequential(_Residual(nn.Linear(2, 2), nn.BatchNorm1d(2)))


def test_fold_sequential_leaves_nested_custom_sequential_alone():
    torch.manual_seed(6)
    model = nn.Sequential(_Residual(nn.Linear(2, 2), nn.BatchNorm1d(2)), nn.ReLU()).double()
    with torch.no_grad():
        model(torch.randn(8, 2, dtype=F64) + 2)
    folded = fold_sequential(model)
    assert type(folded[0]) is _Residual and len(batchnorms(folded)) == 1
    x = torch.randn(4, 2, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- #
# fold_batchnorm_into_next: BN after the activation, folded into the next Linear
# --------------------------------------------------------------------------- #

def make_bn_then_linear(c=5, out=3, bias=True, affine=True, ours=False, seed=0, dtype=F64):
    """An eval-mode BatchNorm1d with non-trivial statistics and the Linear after it."""
    g = torch.Generator().manual_seed(seed)
    bn = (torch_bn.BatchNorm1d if ours else nn.BatchNorm1d)(c, affine=affine, dtype=dtype)
    with torch.no_grad():
        if affine:
            bn.weight.copy_(torch.randn(c, generator=g, dtype=dtype))
            bn.bias.copy_(torch.randn(c, generator=g, dtype=dtype))
        bn.running_mean.copy_(torch.randn(c, generator=g, dtype=dtype) * 2)
        bn.running_var.copy_(torch.rand(c, generator=g, dtype=dtype) * 3 + 0.1)
    torch.manual_seed(seed)
    layer = nn.Linear(c, out, bias=bias).to(dtype)
    return bn.eval(), layer, torch.randn(8, c, generator=g, dtype=dtype) * 2 + 1


@pytest.mark.parametrize("ours", [False, True], ids=["torch-bn", "our-bn"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_fold_into_next_equals_linear_after_bn(bias, affine, ours):
    bn, layer, a = make_bn_then_linear(bias=bias, affine=affine, ours=ours)
    folded = fold_batchnorm_into_next(bn, layer)
    assert isinstance(folded, nn.Linear) and folded.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(a), layer(bn(a)), **TOL64)


def test_fold_into_next_matches_the_affine_map_probed_on_basis_vectors():
    # layer(bn(a)) is affine in a: its value at 0 is the bias, at e_j minus that is column j.
    bn, layer, _ = make_bn_then_linear(c=4, out=6, seed=3)
    folded = fold_batchnorm_into_next(bn, layer)
    with torch.no_grad():
        f0 = layer(bn(torch.zeros(1, 4, dtype=F64)))[0]
        columns = layer(bn(torch.eye(4, dtype=F64))) - f0
    torch.testing.assert_close(folded.bias, f0, **TOL64)
    torch.testing.assert_close(folded.weight, columns.T, **TOL64)


def test_fold_into_next_float32_keeps_dtype_and_does_not_modify_inputs():
    bn, layer, a = make_bn_then_linear(dtype=torch.float32, seed=1)
    before = (copy.deepcopy(bn.state_dict()), copy.deepcopy(layer.state_dict()))
    folded = fold_batchnorm_into_next(bn, layer)
    assert folded.weight.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(folded(a), layer(bn(a)), rtol=1e-5, atol=1e-5)
    for state, module in zip(before, (bn, layer)):
        for key, value in state.items():
            assert torch.equal(module.state_dict()[key], value)


@pytest.mark.parametrize("bn, layer, exc, match", [
    (nn.BatchNorm2d(4), nn.Linear(4, 2), TypeError,
     "fold_batchnorm_into_next: bn must be a BatchNorm1d .*got BatchNorm2d"),
    (nn.BatchNorm1d(4), nn.Conv1d(4, 2, 1), TypeError,
     "fold_batchnorm_into_next: layer must be an nn.Linear, got Conv1d"),
    (nn.BatchNorm1d(5), nn.Linear(4, 2), ValueError,
     "bn must be num_features=4 to match the input features of layer, got num_features=5"),
    (nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2), ValueError,
     "running statistics"),
])
def test_fold_into_next_errors(bn, layer, exc, match):
    with pytest.raises(exc, match=match):
        fold_batchnorm_into_next(bn, layer)
