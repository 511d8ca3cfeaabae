"""Tests for bncourse.experiments.redundant_bias: the listed biases really cancel, the others do not."""

import pytest
import torch
from torch import nn

from bncourse import torch_bn
from bncourse.experiments.redundant_bias import VGG16_CONFIG, redundant_biases, vgg16_bn
from bncourse.lab.models import make_cnn, make_mlp


def _train_output(model, x):
    model.train()
    with torch.no_grad():
        return model(x).clone()


def _perturbed(model, name, seed):
    bias = model.get_submodule(name).bias
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bias.add_(torch.randn(bias.shape, generator=gen, dtype=bias.dtype) * 5)


def _check_listed_biases_cancel_and_others_do_not(model, x):
    listed = dict(redundant_biases(model))
    before = _train_output(model, x)
    with_bias = [n for n, m in model.named_modules()
                 if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None]
    assert listed, "the model should contain at least one cancelled bias"
    for i, name in enumerate(with_bias):
        _perturbed(model, name, seed=i)
        after = _train_output(model, x)
        change = float((after - before).abs().max())
        if name in listed:
            assert listed[name] == model.get_submodule(name).bias.numel()
            assert change < 1e-12, (name, change)
        else:
            assert change > 1e-3, (name, change)
        before = after


def test_mlp_biases_before_bn_cancel_in_training_mode():
    model = make_mlp(6, hidden=(5, 4), activation="tanh", bn="before", seed=0).double()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert [n for n, _ in redundant_biases(model)] == ["fc1", "fc2"]
    _check_listed_biases_cancel_and_others_do_not(model, x)


def test_cnn_biases_before_bn_cancel_in_training_mode():
    model = make_cnn(1, num_classes=3, channels=(4, 5), norm="bn", seed=0).double()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert [n for n, _ in redundant_biases(model)] == ["conv1", "conv2"]
    _check_listed_biases_cancel_and_others_do_not(model, x)


def test_the_course_batchnorm_modules_count_too():
    model = make_mlp(6, hidden=(5, 4), bn="before", bn_layer=torch_bn.BatchNorm1d, seed=0).double()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert [n for n, _ in redundant_biases(model)] == ["fc1", "fc2"]
    _check_listed_biases_cancel_and_others_do_not(model, x)


@pytest.mark.parametrize("model", [
    make_mlp(6, hidden=(5,), bn="after", seed=0),          # BN after the activation
    make_mlp(6, hidden=(5,), bn="before", bias_before_bn=False, seed=0),   # already removed
    make_mlp(6, hidden=(5,), bn="none", seed=0),
])
def test_no_cancelled_bias(model):
    assert redundant_biases(model) == []


class _Residual(nn.Module):
    """conv -> BN, with the conv output also added back: the bias matters there."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        z = self.conv(x)
        return self.bn(z) + z


def test_a_layer_whose_output_is_also_used_elsewhere_is_not_listed():
    model = _Residual().double()
    assert redundant_biases(model) == []
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    before = _train_output(model, x)
    _perturbed(model, "conv", seed=0)
    assert float((_train_output(model, x) - before).abs().max()) > 1e-3


def test_vgg16_bn_layout_and_count():
    with torch.device("meta"):
        model = vgg16_bn()
        plain = vgg16_bn(conv_bias=False)
        out = model(torch.empty(2, 3, 224, 224))
    assert out.shape == (2, 1000)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    widths = [v for v in VGG16_CONFIG if v != "M"]
    assert [m.out_channels for m in convs] == widths == [m.num_features for m in bns]
    found = redundant_biases(model)
    assert len(found) == 13 and sum(c for _, c in found) == sum(widths)
    assert redundant_biases(plain) == []
    total = sum(p.numel() for p in model.parameters())
    assert total - sum(p.numel() for p in plain.parameters()) == sum(widths)


def test_vgg16_bn_num_classes():
    with torch.device("meta"):
        assert vgg16_bn(num_classes=7)(torch.empty(1, 3, 32, 32)).shape == (1, 7)


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        if x.sum() > 0:          # data-dependent control flow defeats symbolic tracing
            return self.fc(x)
        return x


def test_errors():
    with pytest.raises(TypeError, match="redundant_biases: model must be a torch.nn.Module"):
        redundant_biases("vgg")
    with pytest.raises(ValueError, match="redundant_biases: model must be a module torch.fx can"):
        redundant_biases(_Untraceable())
    with pytest.raises(ValueError, match="vgg16_bn: num_classes must be a positive int, got 0"):
        vgg16_bn(num_classes=0)
    with pytest.raises(TypeError, match="vgg16_bn: num_classes must be a positive int"):
        vgg16_bn(num_classes=2.0)
