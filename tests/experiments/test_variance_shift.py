"""Tests for bncourse.experiments.variance_shift: the predicted shift, its measurement, and the fixes."""

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.experiments.variance_shift import (
    dropout_last_only,
    dropout_linear_variance,
    dropout_variance_shift,
    predict_variance_shift,
    predicted_linear_std_ratio,
    predicted_std_ratio,
    recalibrate_without_dropout,
    run_variance_shift,
    simulate_dropout_bn,
    without_dropout,
)
from bncourse.lab.models import make_mlp


def _data(seed=0, n=300, h=4, relu=False):
    """Gaussian features with their own means and scales, or ReLU outputs (about half zero)."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-0.5, 0.5, size=h) if relu else rng.uniform(-2, 2, size=h)
    x = loc + np.exp(rng.uniform(-1, 1, size=h)) * rng.standard_normal((n, h))
    return np.maximum(x, 0) if relu else x


def _mixture_variance(x, keep):
    """Exact training-time variance: sample i gives x_i / keep w.p. keep and 0 otherwise."""
    xt = torch.from_numpy(x)
    n = xt.shape[0]
    values = torch.cat([xt / keep, torch.zeros_like(xt)])
    weights = torch.cat([torch.full((n,), keep, dtype=torch.float64),
                         torch.full((n,), 1 - keep, dtype=torch.float64)])
    return torch.cov(values.T, aweights=weights, correction=0).diagonal().numpy()


# --------------------------------------------------------------------------- predictions

@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("relu", [False, True])
def test_dropout_variance_shift_matches_the_exact_mixture_variance(keep, relu):
    x = _data(relu=relu)
    var_train, var_test = dropout_variance_shift(x, keep)
    np.testing.assert_allclose(var_train, _mixture_variance(x, keep), rtol=1e-12)
    np.testing.assert_allclose(var_test, torch.from_numpy(x).var(0, correction=0).numpy(),
                               rtol=1e-13)
    np.testing.assert_allclose(predicted_std_ratio(x, keep), np.sqrt(var_test / var_train),
                               rtol=1e-14)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.75])
def test_zero_mean_input_gives_sqrt_keep_and_a_mean_makes_it_smaller(keep):
    x = _data(seed=3)
    centred = x - x.mean(axis=0)
    np.testing.assert_allclose(predicted_std_ratio(centred, keep), np.sqrt(keep), rtol=1e-12)
    assert np.all(predicted_std_ratio(centred + 1.0, keep) < np.sqrt(keep))


def test_prediction_keeps_float32_and_treats_a_zero_feature_as_unshifted():
    x = _data(seed=1).astype(np.float32)
    x[:, 0] = 0.0
    ratio = predicted_std_ratio(x, 0.5)
    assert ratio.dtype == np.float32 and ratio[0] == 1.0
    assert dropout_variance_shift(x, 0.5)[0].dtype == np.float32


def test_dropout_linear_variance_matches_an_enumeration_of_all_masks():
    rng = np.random.default_rng(2)
    a = np.maximum(rng.normal(0.3, 1.0, size=(40, 3)), 0)
    weight = rng.normal(size=(2, 3))
    keep = 0.6
    values, probs = [], []
    for mask in itertools.product([0, 1], repeat=3):
        m = np.array(mask, dtype=float)
        p = np.prod(np.where(m == 1, keep, 1 - keep))
        values.append((a * m / keep) @ weight.T)              # (40, 2) for this mask
        probs.append(np.full(40, p / 40))
    values, probs = np.concatenate(values), np.concatenate(probs)
    mean = probs @ values
    exact = probs @ (values - mean) ** 2
    var_train, var_test = dropout_linear_variance(a, weight, keep)
    np.testing.assert_allclose(var_train, exact, rtol=1e-12)
    np.testing.assert_allclose(var_test, (a @ weight.T).var(axis=0), rtol=1e-13)


def test_linear_std_ratio_keeps_the_dtype_and_leaves_a_dead_unit_unshifted():
    rng = np.random.default_rng(3)
    a = np.maximum(rng.normal(size=(50, 4)), 0).astype(np.float32)
    weight = rng.normal(size=(3, 4)).astype(np.float32)
    weight[1] = 0.0                                           # output unit 1 sees nothing
    ratio = predicted_linear_std_ratio(a, weight, 0.5)
    var_train, var_test = dropout_linear_variance(a, weight, 0.5)
    assert ratio.dtype == np.float32 and ratio[1] == 1.0
    live = [0, 2]
    np.testing.assert_allclose(ratio[live], np.sqrt(var_test[live] / var_train[live]), rtol=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda: dropout_variance_shift(np.ones((3, 2)), 0.0),
     r"dropout_variance_shift: keep must be a float in \(0, 1\]"),
    (lambda: dropout_variance_shift(np.ones(3), 0.5), "dropout_variance_shift: x must be 2-D"),
    (lambda: dropout_linear_variance(np.ones((3, 2)), np.ones((4, 3)), 0.5),
     r"dropout_linear_variance: weight must be shape \(J, 2\)"),
    (lambda: simulate_dropout_bn(np.ones((10, 2)), 0.5, batch_size=11),
     r"simulate_dropout_bn: batch_size must be an int in \[2, 10\]"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
    with pytest.raises(TypeError, match="predicted_std_ratio|dropout_variance_shift"):
        predicted_std_ratio(np.ones((3, 2), dtype=np.int64), 0.5)


# --------------------------------------------------------------------------- measurements

@pytest.mark.parametrize("keep", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("relu", [False, True])
def test_torch_dropout_then_batchnorm_shows_the_predicted_shift(keep, relu):
    x = _data(seed=5, n=4000, h=8, relu=relu)
    std_train, std_test = simulate_dropout_bn(x, keep, batch_size=100, epochs=5, seed=0)
    # 200 batches of 100: the running variance has a relative standard error below 1%,
    # so the mean over 8 features is within 2% of the prediction with a wide margin.
    np.testing.assert_allclose(std_train, 1.0, atol=0.01)
    assert abs(std_test.mean() - predicted_std_ratio(x, keep).mean()) < 0.02
    again = simulate_dropout_bn(x, keep, batch_size=100, epochs=5, seed=0)
    np.testing.assert_array_equal(again[1], std_test)


def test_measure_variance_shift_compares_test_statistics_with_running_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), nn.BatchNorm1d(4, eps=0.0,
                                                                               dtype=torch.float64))
    x = torch.randn(50, 3, dtype=torch.float64)
    with torch.no_grad():
        z = model[0](x)
        model[1].running_var.copy_(4 * z.var(0, unbiased=False))
        model[1].running_mean.copy_(z.mean(0) - 2 * z.std(0, unbiased=False))
    model.train()
    shift = run_variance_shift(model, x, "1")
    np.testing.assert_allclose(shift.std_ratio, 0.5, rtol=1e-12)
    np.testing.assert_allclose(shift.mean_shift, 1.0, rtol=1e-12)
    assert model.training                                   # mode restored


def test_predicted_shift_matches_a_measured_one_through_a_linear_layer():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 4),
                          nn.BatchNorm1d(4, momentum=None)).double()
    x = torch.randn(2000, 5, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        for _ in range(5):
            for i in range(0, 2000, 100):
                model(x[i:i + 100])
    measured = run_variance_shift(model, x, "4").std_ratio
    predicted = predict_variance_shift(model, x, "2", "4")
    assert np.all(predicted < 0.99)                         # there is a shift to find
    np.testing.assert_allclose(measured, predicted, atol=0.02)   # 100 batches of 100
    with pytest.raises(ValueError, match="a model with exactly one Linear between '2' and '5'"):
        predict_variance_shift(nn.Sequential(*model[:3], nn.ReLU(), *model[3:]), x, "2", "5")


# --------------------------------------------------------------------------- fixes

def test_without_dropout_shares_every_other_module():
    model = make_mlp(6, hidden=(5, 4), out_features=3, bn="before", dropout=0.3)
    view = without_dropout(model)
    assert [n for n, _ in view.named_children()] == [n for n, _ in model.named_children()]
    assert view.norm1 is model.norm1 and isinstance(view.drop1, nn.Identity)
    assert isinstance(model.drop1, nn.Dropout)


def test_recalibration_sets_population_statistics_of_the_inputs_without_dropout():
    torch.manual_seed(2)
    model = make_mlp(6, hidden=(5, 4), out_features=3, bn="before", dropout=0.5, seed=3).double()
    x = torch.randn(130, 6, dtype=torch.float64)
    model.eval()
    recalibrate_without_dropout(model, x, batch_size=20, seed=0)
    assert not model.training and all(not m.training for m in model.modules())
    with torch.no_grad():
        z1 = model.fc1(x)                   # norm1's input does not depend on any batch
    np.testing.assert_allclose(model.norm1.running_mean.numpy(), z1.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(model.norm1.running_var.numpy(), z1.var(0).numpy(), rtol=1e-12)
    # norm2 now sees the test-time (dropout-free) variance: no shift left on the same data.
    copy_with_dropout = copy.deepcopy(model)
    shift = run_variance_shift(model, x, "norm2")
    assert abs(np.median(shift.std_ratio) - 1.0) < 0.05
    assert torch.equal(copy_with_dropout.fc2.weight, model.fc2.weight)


def test_dropout_last_only_keeps_the_last_dropout_and_the_weights():
    model = make_mlp(6, hidden=(5, 4, 3), out_features=2, bn="before", dropout=0.4, seed=1)
    new = dropout_last_only(model)
    names = [n for n, _ in new.named_children()]
    assert "drop1" not in names and "drop2" not in names and names[-2:] == ["drop3", "out"]
    assert torch.equal(new.fc2.weight, model.fc2.weight) and new.fc2 is not model.fc2
    assert "drop1" in dict(model.named_children())
    with pytest.raises(ValueError, match="dropout_last_only: model must be a model with at least"):
        dropout_last_only(make_mlp(6, hidden=(5,)))
