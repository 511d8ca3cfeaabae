"""Tests for bncourse.experiments.finetune."""

import copy

import pytest
import torch
from torch import nn

from bncourse.experiments.finetune import (FrozenBatchNorm, class_subset, freeze_batchnorm,
                                           run_finetune)


def test_frozen_bn_equals_eval_mode_bn_in_either_mode():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn(torch.randn(8, 3, 4, 4) * 2 + 1)
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
    frozen = FrozenBatchNorm(bn)
    x = torch.randn(5, 3, 4, 4)
    for mode in (True, False):
        frozen.train(mode)
        torch.testing.assert_close(frozen(x), bn.eval()(x))
    assert list(dict(frozen.named_parameters())) == []
    assert sorted(dict(FrozenBatchNorm(bn, affine_trainable=True).named_parameters())) == \
        ["bias", "weight"]
    with pytest.raises(TypeError, match="FrozenBatchNorm: bn must be a torch BatchNorm"):
        FrozenBatchNorm(nn.GroupNorm(1, 3))


def test_freeze_batchnorm_replaces_every_bn_of_a_copy(trained):
    net = trained[0]
    frozen = freeze_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(frozen.train()(x), net(x))


def test_class_subset_relabels_and_limits(digits):
    sub = class_subset(digits, [7, 3], per_class=5)
    assert sub.num_classes == 2 and sub.n_train == 10
    assert set(sub.y_train.tolist()) == {0, 1}
    assert torch.equal(sub.y_test == 0, digits.y_test[(digits.y_test == 7) | (digits.y_test == 3)] == 7)


def test_frozen_bn_beats_training_mode_bn_at_batch_two(trained, digits):
    net = copy.deepcopy(trained[0])
    target = class_subset(digits, range(5, 10), per_class=10)
    train_acc = [run_finetune(net, target, "train", 2, steps=60, seed=s) for s in (0, 1)]
    frozen_acc = [run_finetune(net, target, "frozen", 2, steps=60, seed=s) for s in (0, 1)]
    assert min(frozen_acc) > max(train_acc)
    with pytest.raises(ValueError, match="run_finetune: mode must be one of"):
        run_finetune(net, target, "eval", 2, steps=1)
