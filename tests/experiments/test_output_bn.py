"""Tests for bncourse.experiments.output_bn: the output BN, calibration metrics, batch dependence."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.experiments.output_bn import (
    batch_dependence,
    calibration,
    reliability,
    with_output_bn,
)
from bncourse.lab.models import make_mlp


def test_with_output_bn_appends_one_layer_and_copies_the_rest():
    model = make_mlp(6, hidden=(5,), out_features=4, bn="before", seed=0).eval()
    new = with_output_bn(model, affine=False)
    assert [n for n, _ in new.named_children()][-2:] == ["out", "norm_out"]
    assert new.norm_out.num_features == 4 and not new.norm_out.affine
    assert not new.training and new.norm_out.training is False
    assert torch.equal(new.out.weight, model.out.weight) and new.out is not model.out
    assert len(list(model.children())) == len(list(new.children())) - 1
    with pytest.raises(ValueError, match="with_output_bn: model must be an nn.Sequential ending"):
        with_output_bn(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    with pytest.raises(TypeError, match="with_output_bn: model must be an nn.Sequential"):
        with_output_bn(nn.Linear(2, 2))


def _ece_loop(logits, y, bins):
    """Expected calibration error, written out with a Python loop over the predictions."""
    prob = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), 1).numpy()
    total, gaps = len(y), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i in range(total)
                   if (lo < prob[i].max() <= hi) or (b == 0 and prob[i].max() == 0)]
        if members:
            conf = np.mean([prob[i].max() for i in members])
            acc = np.mean([prob[i].argmax() == y[i] for i in members])
            gaps += len(members) / total * abs(acc - conf)
    return gaps


@pytest.mark.parametrize("bins", [1, 5, 10])
def test_calibration_matches_torch_and_a_loop(bins):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(200, 5))
    y = rng.integers(0, 5, size=200)
    cal = calibration(logits, y, bins=bins)
    lt, yt = torch.from_numpy(logits), torch.from_numpy(y)
    assert cal.nll == pytest.approx(F.cross_entropy(lt, yt).item(), rel=1e-12)
    assert cal.accuracy == pytest.approx(float((lt.argmax(1) == yt).double().mean()), abs=0)
    assert cal.ece == pytest.approx(_ece_loop(logits, y, bins), rel=1e-12, abs=1e-15)
    assert cal.confidence == pytest.approx(torch.softmax(lt, 1).max(1).values.mean().item(),
                                           rel=1e-12)
    assert cal.logit_std == pytest.approx(float(logits.std()), rel=1e-12)


def test_ece_is_zero_when_confidence_equals_accuracy_and_the_gap_otherwise():
    # Two classes, logit gap log(0.7 / 0.3): every prediction has confidence 0.7.
    logits = np.tile([np.log(0.7), np.log(0.3)], (10, 1))
    y = np.array([0] * 7 + [1] * 3)
    assert calibration(logits, y).ece == pytest.approx(0.0, abs=1e-12)
    assert calibration(logits, np.array([0] * 5 + [1] * 5)).ece == pytest.approx(0.2, rel=1e-12)
    conf, acc, count = reliability(logits, y, bins=2)
    assert count.tolist() == [0, 10] and np.isnan(conf[0]) and acc[1] == pytest.approx(0.7)


def test_calibration_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"calibration: y must be labels in 0..2"):
        calibration(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"calibration: y must be integer labels of shape \(2,\)"):
        calibration(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reliability: bins must be a positive int"):
        reliability(np.zeros((2, 3)), np.array([0, 1]), bins=0)


def test_batch_dependence_is_zero_without_bn_and_positive_with_it():
    torch.manual_seed(0)
    x, y = torch.randn(70, 6, dtype=torch.float64), torch.randint(0, 3, (70,))
    plain = make_mlp(6, hidden=(8,), out_features=3, bn="none", seed=0).double()
    dep = batch_dependence(plain, x, y, batch_size=20, draws=4)
    # Without BN a row's output does not depend on the other rows; only the round-off of
    # the matrix product can differ with the row's position in the batch.
    assert np.all(dep.prob_std < 1e-14) and dep.changed == 0.0
    assert np.all(dep.accuracy == dep.accuracy[0])
    with_bn = with_output_bn(plain)
    state = copy.deepcopy(with_bn.state_dict())
    dep = batch_dependence(with_bn.eval(), x, y, batch_size=20, draws=4)
    assert dep.prob_std.shape == (70,) and dep.prob_std.mean() > 1e-3
    assert not with_bn.training
    for key, value in with_bn.state_dict().items():          # running statistics untouched
        assert torch.equal(value, state[key])
    with pytest.raises(ValueError, match=r"batch_dependence: batch_size must be an int in \[2, 70"):
        batch_dependence(with_bn, x, y, batch_size=71)
