"""Tests for bncourse.precise_bn: recomputing BN population statistics.

The oracle is torch in float64: the inputs each BN layer sees are rebuilt by
running the layers before it batch by batch (training mode, as during the
pass), concatenated, and reduced with torch.mean / torch.var(correction=1).
"""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bncourse.precise_bn import (
    batch_moments,
    batchnorm_layers,
    population_stats,
    recompute_bn_stats,
    running_stats_from_history,
    running_stats_trajectory,
)


def make_mlp(seed=0, momenta=(0.1, 0.1)):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 7), nn.BatchNorm1d(7, momentum=momenta[0]), nn.ReLU(),
        nn.Linear(7, 4), nn.BatchNorm1d(4, momentum=momenta[1]), nn.Tanh(),
        nn.Linear(4, 3),
    ).double()


def make_batches(n_batches=6, batch_size=16, n_in=5, seed=1, shift=3.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, n_in, generator=g, dtype=torch.float64) * 2.0 + shift
            for _ in range(n_batches)]


def bn_inputs(model, batches, index):
    """Concatenated inputs of model[index] (a BN layer), prefix run per batch in train mode."""
    prefix = copy.deepcopy(model[:index]).train()
    with torch.no_grad():
        return torch.cat([prefix(x) for x in batches])


def test_exact_equals_pooled_population_statistics_of_bn_inputs():
    model, batches = make_mlp(), make_batches()
    expected = {i: bn_inputs(model, batches, i) for i in (1, 4)}  # before any update
    recompute_bn_stats(model, batches)
    for i, z in expected.items():
        torch.testing.assert_close(model[i].running_mean, z.mean(dim=0), rtol=0, atol=1e-12)
        torch.testing.assert_close(model[i].running_var, z.var(dim=0, correction=1),
                                   rtol=1e-12, atol=1e-12)


def test_exact_on_conv_uses_every_axis_but_the_channel_axis():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU()).double()
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(4, 2, 6, 5, generator=g, dtype=torch.float64) + 1.5 for _ in range(5)]
    z = bn_inputs(model, batches, 1)                                # (N, C, H, W)
    recompute_bn_stats(model, batches)
    flat = z.transpose(0, 1).reshape(3, -1)                         # (C, N*H*W)
    torch.testing.assert_close(model[1].running_mean, flat.mean(dim=1), rtol=0, atol=1e-12)
    torch.testing.assert_close(model[1].running_var, flat.var(dim=1, correction=1),
                               rtol=1e-12, atol=1e-12)


def test_cumulative_is_the_average_of_per_batch_mean_and_unbiased_var():
    model, batches = make_mlp(), make_batches()
    z = bn_inputs(model, batches, 4)
    per_batch = z.split(16)
    recompute_bn_stats(model, batches, method="cumulative")
    torch.testing.assert_close(model[4].running_mean,
                               torch.stack([b.mean(dim=0) for b in per_batch]).mean(dim=0),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(model[4].running_var,
                               torch.stack([b.var(dim=0, correction=1)
                                            for b in per_batch]).mean(dim=0),
                               rtol=1e-12, atol=1e-12)


def warm_up(model, n_batches=3):
    """Some training-mode passes, so the buffers hold old statistics."""
    model.train()
    with torch.no_grad():
        for x in make_batches(n_batches=n_batches, seed=9, shift=-2.0):
            model(x)
    return model


def test_cumulative_matches_torch_momentum_none_from_a_fresh_start():
    model, batches = warm_up(make_mlp()), make_batches()
    reference = copy.deepcopy(model)
    for layer in batchnorm_layers(reference):
        layer.reset_running_stats()
        layer.momentum = None
    reference.train()
    with torch.no_grad():
        for x in batches:
            reference(x)
    recompute_bn_stats(model, batches, method="cumulative")
    for ours, theirs in zip(batchnorm_layers(model), batchnorm_layers(reference)):
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=0, atol=0)


def test_cumulative_variance_misses_the_spread_of_batch_means():
    # Batches with different means: the pooled variance includes their spread.
    model, batches = make_mlp(), [x + 4.0 * k for k, x in enumerate(make_batches())]
    exact = copy.deepcopy(model)
    recompute_bn_stats(exact, batches, method="exact")
    recompute_bn_stats(model, batches, method="cumulative")
    torch.testing.assert_close(exact[1].running_mean, model[1].running_mean,
                               rtol=1e-12, atol=1e-12)
    assert torch.all(exact[1].running_var > model[1].running_var)


def test_one_batch_gives_the_same_statistics_with_both_methods():
    model, batches = make_mlp(), make_batches(n_batches=1, batch_size=40)
    other = copy.deepcopy(model)
    recompute_bn_stats(model, batches, method="exact")
    recompute_bn_stats(other, batches, method="cumulative")
    for a, b in zip(batchnorm_layers(model), batchnorm_layers(other)):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(min_value=2, max_value=9), min_size=1, max_size=6))
def test_exact_first_layer_statistics_do_not_depend_on_the_batching(sizes):
    # The first BN input, Linear(x), is per sample, so any split of the same rows agrees.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(sum(sizes), 5, generator=g, dtype=torch.float64) * 3.0 - 1.0
    whole, split = make_mlp(), make_mlp()
    recompute_bn_stats(whole, [x])
    recompute_bn_stats(split, list(x.split(sizes)))
    torch.testing.assert_close(whole[1].running_mean, split[1].running_mean,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(whole[1].running_var, split[1].running_var,
                               rtol=1e-10, atol=1e-12)


def test_restores_modes_and_momenta_and_counts_batches():
    model, batches = warm_up(make_mlp(momenta=(0.3, 0.05))), make_batches(n_batches=5)
    model.eval()
    model[2].train()  # a mixed state must come back exactly
    modes = [m.training for m in model.modules()]
    result = recompute_bn_stats(model, batches)
    assert result is model
    assert [m.training for m in model.modules()] == modes
    assert [layer.momentum for layer in batchnorm_layers(model)] == [0.3, 0.05]
    assert [int(layer.num_batches_tracked) for layer in batchnorm_layers(model)] == [5, 5]


def test_weights_unchanged_and_no_gradient_recorded():
    model, batches = make_mlp(), make_batches()
    before = {k: v.clone() for k, v in model.named_parameters()}
    recompute_bn_stats(model, batches)
    for name, p in model.named_parameters():
        assert p.grad is None
        torch.testing.assert_close(p, before[name], rtol=0, atol=0)


def test_accepts_input_label_tuples_and_a_dataloader():
    model, batches = make_mlp(), make_batches()
    labels = [torch.zeros(len(x), dtype=torch.long) for x in batches]
    reference = copy.deepcopy(model)
    recompute_bn_stats(reference, batches)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.cat(batches), torch.cat(labels)), batch_size=16)
    recompute_bn_stats(model, loader)
    torch.testing.assert_close(model[4].running_var, reference[4].running_var,
                               rtol=1e-12, atol=1e-12)
    tuples = copy.deepcopy(model)
    recompute_bn_stats(tuples, list(zip(batches, labels)))
    torch.testing.assert_close(tuples[4].running_mean, reference[4].running_mean,
                               rtol=1e-12, atol=1e-12)


def test_fixes_stale_statistics_so_eval_normalizes_the_population():
    model, batches = make_mlp(), make_batches()
    with torch.no_grad():                       # deliberately wrong buffers
        model[1].running_mean.fill_(-50.0)
        model[1].running_var.fill_(1e-3)
    recompute_bn_stats(model, batches)
    model.eval()
    with torch.no_grad():
        z = model[:1](torch.cat(batches))
        bn = model[1]
        x_hat = (bn(z) - bn.bias) / bn.weight   # eval-mode normalized input
    m = z.shape[0]
    torch.testing.assert_close(x_hat.mean(dim=0), torch.zeros(7, dtype=torch.float64),
                               rtol=0, atol=1e-10)
    var = z.var(dim=0, correction=1)
    torch.testing.assert_close(x_hat.var(dim=0, correction=0),
                               (m - 1) / m * var / (var + bn.eps), rtol=1e-10, atol=1e-12)


def test_population_stats_returns_pooled_pairs_in_layer_order():
    model, batches = make_mlp(), make_batches()
    z1, z4 = bn_inputs(model, batches, 1), bn_inputs(model, batches, 4)
    stats = population_stats(model, batches)
    assert len(stats) == 2
    for (mean, var), z in zip(stats, (z1, z4)):
        assert mean.dtype == torch.float64 and mean.shape == (z.shape[1],)
        torch.testing.assert_close(mean, z.mean(dim=0), rtol=0, atol=1e-12)
        torch.testing.assert_close(var, z.var(dim=0, correction=1), rtol=1e-12, atol=1e-12)


def test_skips_layers_without_running_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3, track_running_stats=False),
                          nn.Linear(3, 3), nn.BatchNorm1d(3)).double()
    assert batchnorm_layers(model) == [model[3]]
    recompute_bn_stats(model, make_batches())
    assert model[1].running_mean is None and int(model[3].num_batches_tracked) == 6


def test_float32_model_keeps_float32_buffers():
    model = make_mlp().float()
    recompute_bn_stats(model, [x.float() for x in make_batches()])
    assert model[1].running_var.dtype == torch.float32


def test_error_no_batchnorm_layer():
    with pytest.raises(ValueError, match=r"recompute_bn_stats: model must contain at least one "
                                         r"batch-norm layer .*got none"):
        recompute_bn_stats(nn.Sequential(nn.Linear(5, 3)), make_batches())


def test_error_empty_batches_and_state_still_restored():
    model = make_mlp(momenta=(0.2, 0.2)).eval()
    with pytest.raises(ValueError, match=r"recompute_bn_stats: batches must contain at least "
                                         r"one batch, got none"):
        recompute_bn_stats(model, [])
    assert not model.training and model[1].momentum == 0.2


def test_error_unknown_method():
    with pytest.raises(ValueError, match=r"recompute_bn_stats: method must be one of "
                                         r"\('exact', 'cumulative'\), got 'ema'"):
        recompute_bn_stats(make_mlp(), make_batches(), method="ema")


def test_error_model_is_not_a_module():
    with pytest.raises(TypeError, match=r"recompute_bn_stats: model must be a "
                                        r"torch.nn.Module, got list"):
        recompute_bn_stats([1, 2], make_batches())


def test_error_bad_batch_type_restores_momentum():
    model = make_mlp(momenta=(0.1, 0.4))
    with pytest.raises(TypeError, match=r"recompute_bn_stats: each batch must be a "
                                        r"torch.Tensor .*got ndarray"):
        recompute_bn_stats(model, [make_batches()[0].numpy()])
    assert [layer.momentum for layer in batchnorm_layers(model)] == [0.1, 0.4]
    assert model.training


class HandBatchNorm(nn.Module):
    """A BN layer that is not a torch subclass but has torch's buffers (duck-typed)."""

    def __init__(self, num_features):
        super().__init__()
        self.momentum, self.eps = 0.1, 1e-5
        self.register_buffer("running_mean", torch.zeros(num_features, dtype=torch.float64))
        self.register_buffer("running_var", torch.ones(num_features, dtype=torch.float64))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x):
        if self.training:
            self.num_batches_tracked += 1
        momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum)
        return nn.functional.batch_norm(x, self.running_mean, self.running_var,
                                        training=self.training, momentum=momentum, eps=self.eps)


def test_duck_typed_batchnorm_layer_is_recomputed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), HandBatchNorm(3)).double()
    batches = make_batches()
    z = bn_inputs(model, batches, 1)
    assert batchnorm_layers(model) == [model[1]]
    recompute_bn_stats(model, batches)
    torch.testing.assert_close(model[1].running_var, z.var(dim=0, correction=1),
                               rtol=1e-12, atol=1e-12)
    assert int(model[1].num_batches_tracked) == len(batches) and model[1].momentum == 0.1


# ---------------------------------------------------------------- replaying the running update

def feed_bn(momentum, batches):
    """A float64 BatchNorm1d fed ``batches`` in training mode; also the batch moments it saw."""
    bn = nn.BatchNorm1d(batches[0].shape[1], momentum=momentum).double()
    moments = []
    with torch.no_grad():
        for x in batches:
            moments.append(batch_moments(x))
            bn(x)
    moments = np.stack(moments)                                   # (T, 2, C)
    return bn, moments[:, 0], moments[:, 1]


@pytest.mark.parametrize("momentum", [0.5, 0.1, 0.01, 1.0, None])
def test_replay_equals_torch_buffers(momentum):
    batches = make_batches(n_batches=30, batch_size=8)
    bn, means, variances = feed_bn(momentum, batches)
    running_mean, running_var = running_stats_from_history(means, variances, momentum)
    np.testing.assert_allclose(running_mean, bn.running_mean.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(running_var, bn.running_var.numpy(), rtol=1e-12, atol=1e-14)


def test_batch_moments_are_mean_and_unbiased_var_per_channel():
    x = make_batches(n_batches=1, batch_size=6)[0].reshape(3, 2, 5)   # (N, C, L)
    got = batch_moments(x)
    flat = x.transpose(0, 1).reshape(2, -1)
    assert got.shape == (2, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got[0], flat.mean(dim=1).numpy(), rtol=1e-14)
    np.testing.assert_allclose(got[1], flat.var(dim=1, correction=1).numpy(), rtol=1e-14)


def test_bias_correction_recovers_a_constant_series_and_drops_the_initial_values():
    means = np.full((7, 3), 2.5)
    variances = np.full((7, 3), 4.0)
    plain_mean, plain_var = running_stats_from_history(means, variances, 0.05)
    mean, var = running_stats_from_history(means, variances, 0.05, bias_correction=True)
    np.testing.assert_allclose(mean, 2.5, rtol=1e-13)
    np.testing.assert_allclose(var, 4.0, rtol=1e-13)
    # Without correction: pulled toward the start values 0 and 1 by beta**T.
    np.testing.assert_allclose(plain_mean, 2.5 * (1 - 0.95 ** 7), rtol=1e-13)
    np.testing.assert_allclose(plain_var, 4.0 * (1 - 0.95 ** 7) + 0.95 ** 7, rtol=1e-13)


def test_replay_errors():
    with pytest.raises(ValueError, match=r"running_stats_trajectory: batch_var must have "
                                         r"the shape of batch_mean"):
        running_stats_from_history(np.zeros((3, 2)), np.zeros((3, 1)), 0.1)
    with pytest.raises(ValueError, match=r"running_stats_trajectory: momentum must be a "
                                         r"float in \[0, 1\]"):
        running_stats_from_history(np.zeros((3, 2)), np.zeros((3, 2)), 1.5)
    with pytest.raises(ValueError, match=r"running_stats_trajectory: momentum must be in "
                                         r"\(0, 1\] or None, got 0.0"):
        running_stats_from_history(np.zeros((3, 2)), np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match=r"batch_moments: x must be \(N, C, ...\) with more "
                                         r"than 1 value per channel, got shape \(1, 4\)"):
        batch_moments(torch.zeros(1, 4))


@pytest.mark.parametrize("momentum", [0.2, None])
def test_trajectory_rows_equal_torch_buffers_after_each_step(momentum):
    batches = make_batches(n_batches=12, batch_size=5)
    means, variances = running_stats_trajectory(
        *np.stack([batch_moments(x) for x in batches]).transpose(1, 0, 2), momentum)
    bn = nn.BatchNorm1d(5, momentum=momentum).double()
    with torch.no_grad():
        for t, x in enumerate(batches):
            bn(x)
            np.testing.assert_allclose(means[t], bn.running_mean.numpy(), rtol=1e-12,
                                       atol=1e-14)
            np.testing.assert_allclose(variances[t], bn.running_var.numpy(), rtol=1e-12,
                                       atol=1e-14)


def test_population_stats_errors_name_the_function():
    with pytest.raises(ValueError, match=r"population_stats: model must contain at least one "
                                         r"batch-norm layer"):
        population_stats(nn.Sequential(nn.Linear(5, 3)), make_batches())
    with pytest.raises(TypeError, match=r"population_stats: model must be a torch.nn.Module, "
                                        r"got str"):
        population_stats("model", make_batches())
