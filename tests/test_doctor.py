"""Tests for bncourse.doctor: every problem found in a model built to have it, none on clean ones."""

import copy

import pytest
import torch
from torch import nn

from bncourse.doctor import CODES, FEW_VALUES, Finding, diagnose, report
from bncourse.lab.models import make_cnn, make_mlp


# --------------------------------------------------------------------------- reference layouts

class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out: conv-bn-relu-conv-bn, shortcut, add, relu."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1, 3x3, 1x1 convolutions without bias, each followed by BN."""

    expansion = 4

    def __init__(self, inplanes, planes):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, bias=False),
                                        nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class TinyResNet(nn.Module):
    """The layout of torchvision.models.resnet18 in small: stem, stages, global pool, fc."""

    def __init__(self, block="basic", num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        if block == "basic":
            self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
            self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
            width = 16
        else:
            self.layer1 = nn.Sequential(Bottleneck(8, 4), Bottleneck(16, 4))
            self.layer2 = nn.Sequential(Bottleneck(16, 8))
            width = 32
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn_act(cin, cout, stride=1):
    """torchvision.ops.Conv2dNormActivation's layout: conv without bias, BN, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def mobilenet_like():
    return nn.Sequential(conv_bn_act(1, 8), conv_bn_act(8, 16, 2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10))


def trained(model, x, steps=3):
    """A few training-mode forwards (running statistics updated), then evaluation mode."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def decay_groups(model, weight_decay=1e-4):
    """The usual recipe: weight decay on weights of Linear/Conv, none on BN and biases."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
            (no_decay if is_norm or name == "bias" else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=0.1)


IMAGES = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
VECTORS = IMAGES.reshape(16, 64)

CLEAN = {
    "resnet-basic": (lambda: TinyResNet("basic"), IMAGES),
    "resnet-bottleneck": (lambda: TinyResNet("bottleneck"), IMAGES),
    "mobilenet-like": (mobilenet_like, IMAGES),
    "mlp-bn-before-no-bias": (lambda: make_mlp(64, bn="before", bias_before_bn=False), VECTORS),
    "mlp-bn-after": (lambda: make_mlp(64, bn="after", activation="relu", dropout=0.1), VECTORS),
    "mlp-no-bn": (lambda: make_mlp(64, bn="none"), VECTORS),
    "cnn-bn-no-bias": (lambda: make_cnn(norm="bn", channels=(8, 16), bias_before_norm=False),
                       IMAGES),
    "cnn-gn": (lambda: make_cnn(norm="gn", channels=(8, 16)), IMAGES),
    "conv1d-bn": (lambda: nn.Sequential(nn.Conv1d(4, 6, 3, bias=False), nn.BatchNorm1d(6),
                                        nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8, 2)),
                  torch.randn(8, 4, 10)),
}


@pytest.mark.parametrize("name", list(CLEAN))
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("with_example", [False, True])
def test_no_false_alarm_on_clean_models(name, mode, with_example):
    build, x = CLEAN[name]
    model = build()
    if mode == "eval":
        trained(model, x)
    before = copy.deepcopy(model.state_dict())
    found = diagnose(model, optimizer=decay_groups(model), example=x if with_example else None)
    assert found == [], report(found)
    assert model.training == (mode == "train")
    for key, value in model.state_dict().items():       # the doctor changed nothing
        assert torch.equal(value, before[key]), key


def codes(findings):
    return [f.code for f in findings]


def test_bias_before_bn_found_in_sequential_resnet_and_package_models():
    net = nn.Sequential(nn.Linear(8, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    for example in (None, torch.randn(16, 8)):
        found = diagnose(net, example=example)
        assert codes(found) == ["bias-before-bn"]
        assert found[0].module == "0" and "'1'" in found[0].message
    block = BasicBlock(4, 4)
    block.conv2 = nn.Conv2d(4, 4, 3, 1, 1, bias=True)
    for example in (None, torch.randn(2, 4, 5, 5)):
        assert [(f.code, f.module) for f in diagnose(block, example=example)] == \
            [("bias-before-bn", "conv2")]
    mlp = make_mlp(64, hidden=(10, 10), bn="before")               # bias_before_bn=True default
    assert [f.module for f in diagnose(mlp)] == ["fc1", "fc2"]
    cnn = make_cnn(norm="bn", channels=(4, 8))
    assert [f.module for f in diagnose(cnn, example=IMAGES)] == ["conv1", "conv2"]


def test_bias_through_an_activation_or_shared_with_a_skip_is_not_reported():
    net = nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.BatchNorm1d(5), nn.Linear(5, 2))
    assert diagnose(net) == [] and diagnose(net, example=torch.randn(16, 8)) == []

    class Gated(nn.Module):             # the Linear output also gates BN's: its bias matters
        def __init__(self):
            super().__init__()
            self.fc, self.bn = nn.Linear(4, 4), nn.BatchNorm1d(4)

        def forward(self, x):
            z = self.fc(x)
            return torch.sigmoid(z) * self.bn(z)

    assert diagnose(Gated()) == [] and diagnose(Gated(), example=torch.randn(16, 4)) == []


def test_course_batchnorm_layers_are_recognised():
    from bncourse import torch_bn

    net = nn.Sequential(nn.Linear(8, 5), torch_bn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    assert [(f.code, f.module) for f in diagnose(net, example=torch.randn(16, 8))] == \
        [("bias-before-bn", "0")]


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, the example pass can."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 5)
        self.bn = nn.BatchNorm1d(5)

    def forward(self, x):
        if x.sum() > 1e9:
            x = x * 0
        return self.bn(self.fc(x))


def test_untraceable_model_uses_the_example_or_the_sequential_order():
    found = diagnose(Untraceable(), example=torch.randn(16, 8))
    assert codes(found) == ["bias-before-bn", "bn-after-last-layer"]
    assert diagnose(Untraceable()) == []     # no example, no Sequential: nothing to read


def test_bn_left_in_train_mode_inside_an_evaluated_model():
    model = trained(make_cnn(norm="bn", channels=(4, 8), bias_before_norm=False), IMAGES)
    model.norm2.train()
    found = diagnose(model)
    assert [(f.code, f.module) for f in found] == [("train-mode-in-eval", "norm2")]


def test_train_mode_under_no_grad():
    model = make_mlp(64, bn="before", bias_before_bn=False)
    assert diagnose(model) == []                     # training, gradients on: fine
    with torch.no_grad():
        found = diagnose(model)
    assert codes(found) == ["train-mode-no-grad"] and "3 BN layer" in found[0].message


def test_statistics_never_updated():
    model = make_mlp(64, hidden=(6,), bn="before", bias_before_bn=False).eval()
    assert [(f.code, f.module) for f in diagnose(model)] == [("stats-never-updated", "norm1")]
    frozen = make_mlp(64, hidden=(6,), bn_layer=lambda n: nn.BatchNorm1d(n, momentum=0.0),
                      bn="before", bias_before_bn=False)
    found = diagnose(frozen)
    assert codes(found) == ["stats-never-updated"] and "momentum 0" in found[0].message
    # statistics loaded from a checkpoint without num_batches_tracked are not "never updated"
    loaded = make_mlp(64, hidden=(6,), bn="before", bias_before_bn=False).eval()
    with torch.no_grad():
        loaded.norm1.running_mean.fill_(0.3)
    assert diagnose(loaded) == []


def test_one_and_few_values_per_channel():
    mlp = make_mlp(64, hidden=(6,), bn="before", bias_before_bn=False)
    found = diagnose(mlp, example=VECTORS[:1])
    assert [(f.code, f.module) for f in found] == [("one-value-per-channel", "norm1")]
    cnn = make_cnn(norm="bn", channels=(4, 8, 8, 8), bias_before_norm=False)   # maps 8, 4, 2, 1
    found = diagnose(cnn, example=IMAGES[:2])
    # norm3 sees 2 x 2 x 2 = 8 values (enough), norm4 sees 2 x 1 x 1 = 2
    assert [(f.code, f.module) for f in found] == [("few-values-per-channel", "norm4")]
    assert FEW_VALUES == 8 and "2 values per channel" in found[0].message
    assert [(f.code, f.module) for f in diagnose(cnn, example=IMAGES[:1])] == \
        [("few-values-per-channel", "norm3"), ("one-value-per-channel", "norm4")]


class SequenceModel(nn.Module):
    """Tokens (N, L, C) through Linear and BatchNorm1d without the transpose."""

    def __init__(self, channels, transpose=False):
        super().__init__()
        self.proj = nn.Linear(channels, channels, bias=False)
        self.norm = nn.BatchNorm1d(channels)
        self.transpose = transpose

    def forward(self, x):
        z = self.proj(x)
        if self.transpose:
            return self.norm(z.transpose(1, 2)).transpose(1, 2).mean(dim=1)
        return self.norm(z).mean(dim=1)


def test_batchnorm1d_on_a_sequence_laid_out_n_l_c():
    wrong = diagnose(SequenceModel(6), example=torch.randn(4, 10, 6))
    assert codes(wrong) == ["bn1d-sequence-axis", "forward-failed"]
    assert "(N, L, C)" in wrong[0].message and "RuntimeError" in wrong[1].message
    silent = diagnose(SequenceModel(6), example=torch.randn(4, 6, 6))
    assert codes(silent) == ["bn1d-sequence-axis"] and "silently" in silent[0].message
    assert diagnose(SequenceModel(6, transpose=True), example=torch.randn(4, 10, 6)) == []


def test_weight_decay_on_bn_parameters():
    model = make_cnn(norm="bn", channels=(4, 8), bias_before_norm=False)
    plain = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4)
    found = diagnose(model, optimizer=plain)
    assert [(f.code, f.module) for f in found] == [("weight-decay-on-bn", "norm1"),
                                                   ("weight-decay-on-bn", "norm2")]
    assert "weight_decay=0.0005" in found[0].message
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-3)        # AdamW decays by default
    assert codes(diagnose(model, optimizer=adamw)) == ["weight-decay-on-bn"] * 2
    assert diagnose(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)) == []


def test_bn_after_the_last_layer():
    net = nn.Sequential(nn.Linear(8, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(),
                        nn.Linear(5, 3, bias=False), nn.BatchNorm1d(3))
    for example in (None, torch.randn(16, 8)):
        assert [(f.code, f.module) for f in diagnose(net, example=example)] == \
            [("bn-after-last-layer", "4")]


def test_every_code_is_found_by_a_test_model_and_has_a_title():
    found = set()
    found |= set(codes(diagnose(make_mlp(64, hidden=(6,), bn="before").eval(), example=VECTORS[:1])))
    found |= set(codes(diagnose(SequenceModel(6), example=torch.randn(4, 10, 6))))
    m = make_cnn(norm="bn", channels=(4, 8, 8, 8))
    found |= set(codes(diagnose(m, optimizer=torch.optim.AdamW(m.parameters()), example=IMAGES[:2])))
    with torch.no_grad():
        found |= set(codes(diagnose(m)))
    trained(m, IMAGES).norm1.train()
    found |= set(codes(diagnose(m)))
    found |= set(codes(diagnose(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))))
    assert found == set(CODES)


def test_report_formats_findings_and_arguments_are_checked():
    assert report([]) == "BN doctor: no problem found."
    text = report(diagnose(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))))
    assert text.splitlines()[0] == "BN doctor: 2 findings"
    assert "  [bias-before-bn] 0: Linear '0' has a bias" in text
    assert str(Finding("x", "", "m.")) == "[x] (model): m."
    with pytest.raises(TypeError, match="diagnose: model must be a torch.nn.Module, got str"):
        diagnose("net")
    with pytest.raises(TypeError, match="diagnose: optimizer must be a torch.optim.Optimizer"):
        diagnose(nn.Linear(2, 2), optimizer=[1])
    with pytest.raises(TypeError, match="diagnose: example must be a torch.Tensor"):
        diagnose(nn.Linear(2, 2), example=[1.0])
    with pytest.raises(TypeError, match="report: findings must be a list of Finding"):
        report(["oops"])
