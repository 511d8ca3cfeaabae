"""Tests for bncourse.experiments.warmup_trainability: warmup schedule, gradient profile, the grid."""

import numpy as np
import pytest
import torch

from bncourse.lab.data import load_digits_split
from bncourse.experiments.warmup_trainability import (
    WarmupAdam,
    run_prepost_gradients,
    run_warmup_trainability,
    seed_verdict,
    warmup_effects,
)


def test_warmup_adam_raises_the_learning_rate_linearly():
    w = torch.nn.Parameter(torch.ones(3))
    opt = WarmupAdam([w], lr=0.1, warmup_steps=4)
    lrs = []
    for _ in range(6):
        w.grad = torch.ones(3)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, [0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    plain = WarmupAdam([torch.nn.Parameter(torch.ones(1))], lr=0.1, warmup_steps=0)
    plain.param_groups[0]["params"][0].grad = torch.ones(1)
    plain.step()
    assert plain.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match=r"WarmupAdam: warmup_steps must be an int >= 0"):
        WarmupAdam([w], lr=0.1, warmup_steps=-1)


def test_pre_ln_last_layer_gradient_shrinks_with_depth_and_post_ln_does_not():
    r = run_prepost_gradients(depths=(2, 8), seeds=(0, 1), batch_size=32)
    assert r.norms["pre"][8].shape == (2, 8) and r.last_layer("post").shape == (2, 2)
    assert r.depth_exponent("pre") < -0.2
    assert abs(r.depth_exponent("post")) < 0.2


def test_grid_shapes_pairing_and_diverged_runs_count_as_chance():
    data = load_digits_split(seed=0)
    r = run_warmup_trainability(depths=(1,), seeds=(0, 1), warmups=(0, 5), steps=10,
                                placements=("post",), data=data, progress=False)
    assert set(r.accuracy) == {("post", 0), ("post", 5)}
    assert r.accuracy["post", 0].shape == (1, 2)
    huge = run_warmup_trainability(depths=(1,), seeds=(0,), warmups=(0,), steps=5, lr=1e6,
                                   placements=("post",), data=data, progress=False)
    acc, div = huge.accuracy["post", 0], huge.diverged["post", 0]
    assert np.all(acc[div] == 0.1) and np.all((acc >= 0) & (acc <= 1))


def test_seed_verdict_is_the_ledger_verdict():
    assert seed_verdict([0.5, 0.6, 0.55], threshold=0.1) == "supported"
    assert seed_verdict([0.05, -0.05, 0.01], threshold=0.1) == "not supported"


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"run_warmup_trainability: placements must be"):
        run_warmup_trainability(placements=("side",), progress=False)
    with pytest.raises(ValueError, match=r"run_prepost_gradients: seeds must be a non-empty"):
        run_prepost_gradients(seeds=())


def test_warmup_effects_pair_the_arms_by_seed():
    data = load_digits_split(seed=0)
    kw = dict(seeds=(0, 1), warmups=(0, 5), steps=6, data=data, progress=False)
    deep = run_warmup_trainability(depths=(2,), **kw)
    shallow = run_warmup_trainability(depths=(1,), placements=("post",), **kw)
    out = warmup_effects(deep, shallow)
    assert set(out) == {"post_warmup", "pre_warmup", "pre_vs_post", "shallow_post_warmup"}
    effects, verdict = out["pre_vs_post"]
    np.testing.assert_array_equal(effects, deep.accuracy["pre", 0][0] - deep.accuracy["post", 0][0])
    assert verdict == seed_verdict(effects, 0.1)
    with pytest.raises(ValueError, match=r"warmup_effects: deep must be both placements"):
        warmup_effects(shallow, shallow)
