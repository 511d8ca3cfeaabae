"""Tests for bncourse.experiments.shift_experiment: the three variants and what one run records."""

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.experiments.drift import unit_percentiles
from bncourse.experiments.shift_experiment import VARIANTS, build_model, run_shift_experiment
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import weight_layers
from bncourse.lab.training import train
from bncourse.noisy_bn import NoisyBatchNorm1d


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


def test_variants_differ_only_in_the_normalization_layer():
    models = {v: build_model(v, seed=4) for v in VARIANTS}
    names = {v: [n for n, _ in m.named_children()] for v, m in models.items()}
    assert names["no BN"] == ["flatten", "fc1", "act1", "fc2", "act2", "fc3", "act3", "out"]
    assert names["BN"] == names["noisy BN"]
    assert [n for n in names["BN"] if n not in names["no BN"]] == ["norm1", "norm2", "norm3"]
    assert type(models["BN"].norm1) is nn.BatchNorm1d
    assert isinstance(models["noisy BN"].norm2, NoisyBatchNorm1d)
    assert models["noisy BN"].norm2.shift == 1.0
    for v in VARIANTS:
        assert isinstance(models[v].act3, nn.Sigmoid)
        for (_, a), (_, b) in zip(weight_layers(models["no BN"]), weight_layers(models[v])):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert models["BN"].fc2.weight.detach().std().item() == pytest.approx(0.1, rel=0.05)


def test_one_run_records_percentiles_ics_and_smoothness_without_changing_training(data):
    h = run_shift_experiment("BN", seed=1, data=data, steps=24, record_every=4, heavy_every=3,
                             eval_every=12, reference_size=50)
    plain = train(build_model("BN", seed=1), data, steps=24, batch_size=60, lr=0.5, seed=1,
                  eval_every=12, progress=False)
    np.testing.assert_array_equal(h.loss, plain.loss)
    np.testing.assert_array_equal(h.test_accuracy, plain.test_accuracy)
    assert h.record_steps.tolist() == [0, 4, 8, 12, 16, 20]
    assert h.records["percentiles"].shape == (6, 3, 100)
    heavy = ~np.isnan(h.records["ics"][:, 0, 0])
    assert heavy.tolist() == [True, False, False, True, False, False]
    assert h.records["ics"].shape == (6, 3, 3) and h.records["smoothness"].shape == (6, 4)
    assert np.array_equal(~np.isnan(h.records["smoothness"][:, 0]), heavy)
    assert h.config["variant"] == "BN" and h.config["reference_size"] == 50
    # the first record is the fresh model's act3 input on the reference batch
    fresh = build_model("BN", seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            z = fresh.norm3(fresh.fc3(fresh.act2(fresh.norm2(fresh.fc2(fresh.act1(
                fresh.norm1(fresh.fc1(data.x_train[:50]))))))))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(h.records["percentiles"][0], unit_percentiles(z.double().numpy()))


def test_noisy_runs_are_reproducible_and_noisier_than_bn(data):
    kw = dict(seed=0, data=data, steps=30, record_every=5, heavy_every=10, eval_every=15,
              reference_size=100)
    a, b = run_shift_experiment("noisy BN", **kw), run_shift_experiment("noisy BN", **kw)
    assert a.equals(b)
    bn = run_shift_experiment("BN", **kw)
    jump = lambda h: np.abs(np.diff(h.records["percentiles"], axis=0)).mean()   # noqa: E731
    assert jump(a) > 3 * jump(bn)


@pytest.mark.parametrize("call,exc,match", [
    (lambda d: build_model("batchnorm", seed=0), ValueError, "variant must be one of"),
    (lambda d: build_model("noisy BN", seed=0, shift=-1.0), ValueError, "shift must be"),
    (lambda d: run_shift_experiment("BN", 0, d, reference_size=5000), ValueError,
     "reference_size must be at most the 1347 training samples"),
    (lambda d: run_shift_experiment("BN", 0, d, heavy_every=0), ValueError,
     "heavy_every must be an int >= 1"),
    (lambda d: run_shift_experiment("BN", 0, d, record_every=2.5), TypeError, "record_every"),
])
def test_bad_input_raises_with_a_message(data, call, exc, match):
    with pytest.raises(exc, match=match):
        call(data)
