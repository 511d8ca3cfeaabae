"""Tests for bncourse.experiments.small_batch: the equal-examples protocol and the per-layer value counts."""

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.batch_renorm import batch_renorm_factory
from bncourse.experiments.small_batch import (
    first_n_train,
    run_batch_size,
    run_batch_size_sweep,
    scaled_lr,
    values_per_statistic,
)
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_cnn


@pytest.fixture(scope="module")
def tiny():
    return first_n_train(load_digits_split(seed=0, images=True), 64)


def test_scaled_lr_is_linear_in_the_batch_size():
    assert scaled_lr(64, 0.05, 64) == pytest.approx(0.05)
    assert scaled_lr(2, 0.05, 64) == pytest.approx(0.05 / 32)
    assert scaled_lr(128, 0.1, 32) == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"scaled_lr: batch_size must be an int >= 1, got 0"):
        scaled_lr(0, 0.1, 64)
    with pytest.raises(TypeError, match=r"scaled_lr: base_batch must be an int >= 1, got float"):
        scaled_lr(2, 0.1, 64.0)
    with pytest.raises(ValueError, match=r"scaled_lr: base_lr must be a positive float"):
        scaled_lr(2, -0.1, 64)


def test_first_n_train_keeps_the_test_set():
    data = load_digits_split(seed=0, images=True)
    sub = first_n_train(data, 100)
    assert sub.n_train == 100 and torch.equal(sub.x_train, data.x_train[:100])
    assert torch.equal(sub.y_train, data.y_train[:100])
    assert torch.equal(sub.x_test, data.x_test) and sub.n_test == data.n_test
    with pytest.raises(ValueError, match=r"first_n_train: n_train must be at most the 1347"):
        first_n_train(data, 5000)


@pytest.mark.parametrize("batch_size,epochs", [(8, 1), (16, 2), (48, 1)])
def test_run_makes_epochs_times_n_over_b_updates_with_the_scaled_lr(tiny, batch_size, epochs):
    history = run_batch_size({"norm": "bn"}, batch_size, 0, tiny, epochs=epochs, base_lr=0.05,
                             base_batch=64, channels=(4, 8))
    assert history.config["steps"] == epochs * (64 // batch_size) == len(history.loss)
    assert history.config["lr"] == pytest.approx(0.05 * batch_size / 64)
    assert history.config["batch_size"] == batch_size
    assert list(history.steps) == [0, history.config["steps"]]


def test_run_is_deterministic_and_the_variant_matters(tiny):
    a = run_batch_size({"norm": "gn"}, 8, 3, tiny, channels=(4, 8))
    b = run_batch_size({"norm": "gn"}, 8, 3, tiny, channels=(4, 8))
    c = run_batch_size({"norm": "bn"}, 8, 3, tiny, channels=(4, 8))
    assert a.equals(b)
    assert not np.array_equal(a.loss, c.loss)
    # The first loss differs only through the normalization: the weights are the same.
    assert a.loss[0] != c.loss[0]


def test_kernel_choice_changes_only_rounding_and_the_setting_is_restored(tiny):
    native = run_batch_size({"norm": "bn"}, 8, 0, tiny, channels=(4, 8), onednn_min_batch=1000)
    assert torch.backends.mkldnn.enabled
    onednn = run_batch_size({"norm": "bn"}, 8, 0, tiny, channels=(4, 8), onednn_min_batch=1)
    np.testing.assert_allclose(native.loss, onednn.loss, rtol=1e-4)
    torch.backends.mkldnn.enabled = False
    try:
        run_batch_size({"norm": "bn"}, 8, 0, tiny, channels=(4, 8), onednn_min_batch=1)
        assert not torch.backends.mkldnn.enabled      # an explicit "off" is respected
    finally:
        torch.backends.mkldnn.enabled = True


def test_run_bad_arguments(tiny):
    with pytest.raises(TypeError, match=r"run_batch_size: variant must be a dict"):
        run_batch_size("bn", 8, 0, tiny)
    with pytest.raises(ValueError, match=r"run_batch_size: batch_size must be at most the 64"):
        run_batch_size({"norm": "bn"}, 128, 0, tiny)
    with pytest.raises(ValueError, match=r"run_batch_size: epochs must be an int >= 1"):
        run_batch_size({"norm": "bn"}, 8, 0, tiny, epochs=0)


def test_sweep_fills_one_entry_per_seed_and_batch_size(tiny):
    variants = {"BN": {"norm": "bn"}, "BRN": {"norm": "bn", "norm_layer": batch_renorm_factory()}}
    result = run_batch_size_sweep(variants, [16, 32], [0, 1], tiny, progress=False, channels=(4, 8))
    assert list(result.batch_sizes) == [16, 32] and list(result.seeds) == [0, 1]
    for label in variants:
        acc = result.test_accuracy[label]
        assert acc.shape == (2, 2) and np.all((acc >= 0) & (acc <= 1))
        assert result.train_accuracy[label].shape == (2, 2)
        assert result.seconds[label] > 0
    again = run_batch_size(variants["BRN"], 32, 1, tiny, channels=(4, 8))
    assert result.test_accuracy["BRN"][1, 1] == again.final_test_accuracy
    with pytest.raises(ValueError, match=r"run_batch_size_sweep: variants must be a non-empty dict"):
        run_batch_size_sweep({}, [16], [0], tiny)


def test_values_per_statistic_for_each_normalization():
    x = torch.zeros(2, 1, 8, 8)
    bn = make_cnn(norm="bn", channels=(8, 16, 32, 32), seed=0)
    assert values_per_statistic(bn, x) == {"norm1": ("batch", 2 * 64), "norm2": ("batch", 2 * 16),
                                           "norm3": ("batch", 2 * 4), "norm4": ("batch", 2)}
    gn = make_cnn(norm="gn", groups=4, channels=(8, 16, 32, 32), seed=0)
    assert values_per_statistic(gn, x) == {"norm1": ("group", 2 * 64), "norm2": ("group", 4 * 16),
                                           "norm3": ("group", 8 * 4), "norm4": ("group", 8)}
    ln = make_cnn(norm="ln", channels=(8, 16), seed=0)
    assert values_per_statistic(ln, x) == {"norm1": ("group", 8 * 64), "norm2": ("group", 16 * 16)}
    brn = make_cnn(norm="bn", channels=(4,), norm_layer=batch_renorm_factory(), seed=0)
    assert values_per_statistic(brn, x) == {"norm1": ("batch", 2 * 64)}
    mlp = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.BatchNorm1d(5))
    assert values_per_statistic(mlp, torch.zeros(7, 3)) == {"1": ("layer", 5), "2": ("batch", 7)}


def test_values_per_statistic_restores_the_mode_and_changes_nothing():
    net = make_cnn(norm="bn", channels=(4, 8), seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    values_per_statistic(net, torch.randn(3, 1, 8, 8))
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    net.eval()
    values_per_statistic(net, torch.randn(3, 1, 8, 8))
    assert not net.training
    assert not any(m._forward_hooks for m in net.modules())
