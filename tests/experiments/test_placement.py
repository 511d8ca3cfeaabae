"""Tests for bncourse.experiments.placement: layer lists, what the next Linear absorbs, the sweep helpers."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.experiments.placement import (
    absorb_affine_into_next,
    fold_into_next,
    layer_spec,
    model_spec,
    output_difference,
    run_placement_sweep,
    train_each,
)
from bncourse.lab.data import make_gaussian_mixture
from bncourse.lab.models import make_mlp
from bncourse.lab.training import train


def _trained_like(model, seed=0):
    """Give every BN layer random gamma, beta and running statistics (float64 model)."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                h = m.num_features
                m.weight.copy_((torch.rand(h, generator=gen, dtype=torch.float64) + 0.5)
                               * torch.where(torch.rand(h, generator=gen) < 0.3, -1.0, 1.0))
                m.bias.copy_(torch.randn(h, generator=gen, dtype=torch.float64))
                m.running_mean.copy_(torch.randn(h, generator=gen, dtype=torch.float64))
                m.running_var.copy_(torch.rand(h, generator=gen, dtype=torch.float64) * 3 + 0.1)
    return model


def _x(n=32, d=12, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------- specs

@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("bn", ["none", "before", "after"])
@pytest.mark.parametrize("hidden,dropout", [((), 0.0), ((7,), 0.5), ((5, 9, 3), 0.2)])
def test_layer_spec_matches_the_model_make_mlp_builds(activation, bn, hidden, dropout):
    spec = layer_spec(12, hidden, 4, activation=activation, bn=bn, dropout=dropout)
    assert spec == model_spec(make_mlp(12, hidden=hidden, out_features=4, activation=activation,
                                       bn=bn, dropout=dropout))
    assert spec[-1] == ("linear", (hidden or (12,))[-1], 4)
    assert sum(layer[0] == "bn" for layer in spec) == (0 if bn == "none" else len(hidden))


def test_layer_spec_accepts_an_int_hidden_and_orders_the_block():
    assert layer_spec(3, 2, 2, activation="tanh", bn="after", dropout=0.1) == [
        ("linear", 3, 2), ("tanh",), ("bn", 2), ("dropout", 0.1), ("linear", 2, 2)]


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(activation="gelu"), ValueError, "layer_spec: activation must be one of"),
    (dict(bn="middle"), ValueError, "layer_spec: bn must be one of"),
    (dict(dropout=1.0), ValueError, r"layer_spec: dropout must be a float in \[0, 1\)"),
    (dict(hidden=(4, 0)), ValueError, "layer_spec: hidden must be an int >= 1, got 0"),
    (dict(hidden=(4, 2.5)), TypeError, "layer_spec: hidden must be an int >= 1"),
    (dict(hidden=None), TypeError, "layer_spec: hidden must be a sequence"),
    (dict(in_features=0), ValueError, "layer_spec: in_features must be an int >= 1"),
])
def test_layer_spec_rejects_bad_arguments(kwargs, exc, match):
    args = dict(in_features=4, hidden=(3,), out_features=2, activation="relu", bn="before",
                dropout=0.0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        layer_spec(**args)


def test_model_spec_rejects_what_it_cannot_describe():
    with pytest.raises(TypeError, match="model_spec: model must be an nn.Sequential"):
        model_spec(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="model_spec: model must be .* got a Softmax at '1'"):
        model_spec(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1)))


# --------------------------------------------------------------------------- absorbing

@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("training", [True, False])
def test_after_placement_gamma_beta_move_into_the_next_linear_exactly(activation, training):
    model = _trained_like(make_mlp(12, hidden=(6, 5), out_features=3, activation=activation,
                                   bn="after", seed=2))
    before = copy.deepcopy(model.state_dict())
    for norm in ("norm1", "norm2"):
        new = absorb_affine_into_next(model, norm)
        assert not getattr(new, norm).affine
        diff, scale = output_difference(model, new, _x(), training=training)
        assert diff <= 1e-13 * scale
    for key, value in model.state_dict().items():          # the input is not modified
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_before_placement_gamma_beta_do_not_pass_the_activation(activation):
    model = _trained_like(make_mlp(12, hidden=(6, 5), out_features=3, activation=activation,
                                   bn="before", seed=2))
    for training in (True, False):
        diff, scale = output_difference(model, absorb_affine_into_next(model, "norm1"), _x(),
                                        training=training)
        assert diff > 1e-3 * scale


def test_absorbing_an_affine_free_bn_changes_nothing_and_keeps_the_mode():
    model = make_mlp(12, hidden=(6,), out_features=3, bn="after", seed=0,
                     bn_layer=lambda h: nn.BatchNorm1d(h, affine=False)).double().eval()
    new = absorb_affine_into_next(model, "norm1")
    assert not new.training
    assert torch.equal(new.out.weight, model.out.weight)
    assert torch.equal(new.out.bias, model.out.bias)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_fold_into_next_equals_the_model_in_eval_mode_for_bn_after(activation):
    model = _trained_like(make_mlp(12, hidden=(6, 5), out_features=3, activation=activation,
                                   bn="after", seed=3))
    for norm in ("norm1", "norm2"):
        folded = fold_into_next(model, norm)
        assert isinstance(getattr(folded, norm), nn.Identity) and not folded.training
        diff, scale = output_difference(model, folded, _x())
        assert diff <= 1e-13 * scale
    before = _trained_like(make_mlp(12, hidden=(6,), out_features=3, activation=activation,
                                    bn="before", seed=3))
    diff, scale = output_difference(before, fold_into_next(before, "norm1"), _x())
    assert diff > 1e-3 * scale


def test_fold_into_next_is_bn_then_linear_of_torch_with_anything_affine_between():
    rng = np.random.default_rng(4)
    h, j = 5, 3
    bn = nn.BatchNorm1d(h, eps=1e-3, dtype=torch.float64).eval()
    linear = nn.Linear(h, j, dtype=torch.float64)
    with torch.no_grad():
        for p in (bn.weight, bn.bias, bn.running_mean, linear.weight, linear.bias):
            p.copy_(torch.from_numpy(rng.normal(size=p.shape)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.01, 4.0, size=h)))
    model = nn.Sequential(bn, nn.Identity(), linear)
    folded = fold_into_next(model, "0")
    assert isinstance(folded[0], nn.Identity) and isinstance(folded[2], nn.Linear)
    a = torch.from_numpy(rng.normal(size=(20, h)))
    with torch.no_grad():
        np.testing.assert_allclose(folded(a).numpy(), linear(bn(a)).numpy(), rtol=0, atol=1e-13)
    assert torch.equal(model[2].weight, linear.weight)          # the input is not modified


def test_absorb_and_fold_name_bad_layers():
    model = make_mlp(4, hidden=(3,), out_features=2, bn="after")
    with pytest.raises(ValueError, match="absorb_affine_into_next: norm must be the name of a "
                                         "child of model"):
        absorb_affine_into_next(model, "norm9")
    with pytest.raises(ValueError, match="fold_into_next: norm must be the name of a BatchNorm1d"):
        fold_into_next(model, "act1")
    tail = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match="followed .* by a Linear"):
        fold_into_next(tail, "1")
    untracked = nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="fold_into_next: norm must be a BN layer with running"):
        fold_into_next(untracked, "0")
    with pytest.raises(TypeError, match="absorb_affine_into_next: model must be an nn.Sequential"):
        absorb_affine_into_next(nn.Linear(2, 2), "0")


def test_output_difference_leaves_running_statistics_alone():
    model = make_mlp(4, hidden=(3,), out_features=2, bn="before", seed=0)
    state = copy.deepcopy(model.state_dict())
    diff, scale = output_difference(model, copy.deepcopy(model), torch.randn(8, 4), training=True)
    assert diff == 0.0 and scale > 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    with pytest.raises(ValueError, match="output_difference: model_b must be outputs of shape"):
        output_difference(model, nn.Linear(4, 3), torch.randn(8, 4))


# --------------------------------------------------------------------------- experiments

@pytest.fixture(scope="module")
def small_data():
    return make_gaussian_mixture(n_samples=200, n_features=6, num_classes=3, seed=0)


def test_placement_sweep_trains_each_member_as_train_would(small_data):
    sweep = run_placement_sweep(small_data, activations=("tanh",), placements=("before", "after"),
                            seeds=(0, 1), lrs=(0.1, 0.5), steps=8, hidden=(5,), batch_size=20)
    assert set(sweep.accuracy) == {("tanh", "before"), ("tanh", "after")}
    assert sweep.accuracy["tanh", "after"].shape == (2, 2)
    for (lr_i, lr), (s_i, seed) in [((1, 0.5), (0, 0)), ((0, 0.1), (1, 1))]:
        model = make_mlp(6, hidden=(5,), out_features=3, activation="tanh", bn="after",
                         seed=seed)
        hist = train(model, small_data, steps=8, batch_size=20, lr=lr, seed=seed,
                     eval_every=8, progress=False)
        got = sweep.histories["tanh", "after"][lr_i * 2 + s_i]
        np.testing.assert_allclose(got.loss, hist.loss, rtol=1e-5)
        assert sweep.accuracy["tanh", "after"][lr_i, s_i] == hist.final_test_accuracy
    with pytest.raises(ValueError, match="run_placement_sweep: placements must be values from"):
        run_placement_sweep(small_data, placements=("inside",), steps=2)


def test_train_each_is_deterministic_and_pairs_data_order_with_the_seed(small_data):
    built = []

    def build(seed):
        built.append(seed)
        return make_mlp(6, hidden=(4,), out_features=3, bn="before", seed=seed)

    first = train_each(build, small_data, seeds=[3, 5], steps=6, lr=0.2, batch_size=20)
    again = train_each(build, small_data, seeds=[3, 5], steps=6, lr=0.2, batch_size=20)
    assert built == [3, 5, 3, 5]
    assert all(a[1].equals(b[1]) for a, b in zip(first, again))
    assert first[0][1].config["seed"] == 3 and first[1][1].config["seed"] == 5
    with pytest.raises(TypeError, match="train_each: build must be a callable"):
        train_each(None, small_data, seeds=[0], steps=1, lr=0.1)


def test_claim13_is_depends_when_each_placement_wins_somewhere():
    from bncourse.experiments.placement import claim13_verdict

    wins = np.array([0.03, 0.04, 0.035, 0.03])
    v = claim13_verdict({"a": wins, "b": -wins, "c": np.array([0.01, -0.01, 0.0, 0.005])}, 0.01)
    assert v.verdict == "depends"
    assert (v.before_better, v.after_better, v.ties) == (["a"], ["b"], ["c"])
    assert [r[0] for r in v.rows] == ["a", "b", "c"]
    assert v.rows[1][2:] == ("not supported", "supported")


def test_claim13_combines_when_only_one_placement_wins():
    from bncourse.experiments.placement import claim13_verdict

    wins = np.array([0.03, 0.04, 0.035, 0.03])
    assert claim13_verdict({"a": wins, "b": wins}, 0.01).verdict == "supported"
    tie = np.array([0.01, -0.01, 0.0, 0.005])
    assert claim13_verdict({"a": tie, "b": tie}, 0.01).verdict == "not supported"
    with pytest.raises(ValueError, match="claim13_verdict: effects must be a non-empty dict"):
        claim13_verdict({}, 0.01)
