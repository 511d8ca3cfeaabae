"""Tests for bncourse.experiments.optim_experiments: grid training and the summaries behind the verdicts."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bncourse.experiments.optim_experiments import (
    best_lr_index,
    fraction_reaching,
    largest_stable_lr,
    run_grid,
)
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_mlp
from bncourse.lab.training import train


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


def _brute_force_largest(lrs, acc, target):
    out = []
    for s in range(acc.shape[1]):
        passing = [lr for lr, a in zip(lrs, acc[:, s]) if not np.isnan(a) and a >= target]
        out.append(max(passing) if passing else np.nan)
    return np.array(out)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)),
              elements=st.one_of(st.floats(0, 1), st.just(np.nan))),
       st.floats(0.05, 0.95))
def test_largest_stable_lr_matches_a_loop(acc, target):
    lrs = np.geomspace(0.01, 10, acc.shape[0])[::-1]      # any order works
    np.testing.assert_array_equal(largest_stable_lr(lrs, acc, target),
                                  _brute_force_largest(lrs, acc, target))


def test_largest_stable_lr_counts_the_boundary_and_skips_slow_small_rates():
    lrs = [0.1, 1.0, 10.0]
    acc = np.array([[0.2, 0.2], [0.9, 0.89], [np.nan, 0.95]])
    np.testing.assert_array_equal(largest_stable_lr(lrs, acc, 0.9), [1.0, 10.0])
    assert np.isnan(largest_stable_lr(lrs, acc, 0.99)).all()
    with pytest.raises(ValueError, match=r"largest_stable_lr: accuracies must be shape \(3, S\)"):
        largest_stable_lr(lrs, acc[:2], 0.9)
    with pytest.raises(ValueError, match="lrs must be a 1-D array of positive"):
        largest_stable_lr([0.1, -1.0, 1.0], acc, 0.9)


def test_fraction_reaching_and_best_lr_index():
    acc = np.array([[0.95, np.nan, 0.9], [0.5, 0.91, 0.1]])
    assert fraction_reaching(acc, 0.9) == pytest.approx(3 / 6)
    np.testing.assert_array_equal(fraction_reaching(acc, 0.9, axis=1), [2 / 3, 1 / 3])
    # (A=3, I=2, S=2): NaN (diverged) is worse than any finite loss.
    loss = np.array([[[0.3, 0.3], [1.0, 1.2]],
                     [[0.1, np.nan], [0.9, 0.9]],
                     [[0.2, 0.2], [2.0, 2.0]]])
    np.testing.assert_array_equal(best_lr_index(loss), [2, 1])
    with pytest.raises(ValueError, match="best_lr_index: train_loss must be an array"):
        best_lr_index([0.1, 0.2])


def test_grid_members_are_trained_as_train_would_and_pairs_share_their_start(data):
    kw = dict(hidden=(10, 10), activation="tanh", lrs=[0.05, 0.5], init_scales=[None, 0.3],
              seeds=[0, 2], steps=12, batch_size=20)
    plain = run_grid(data, bn="none", **kw)
    with_bn = run_grid(data, bn="before", **kw)
    assert plain.shape == (2, 2, 2) and plain.records("weight_norms").shape == (2, 2, 2, 1, 3)
    # BN and no-BN members of one (init, seed) start from the same Linear weights.
    np.testing.assert_array_equal(plain.records("weight_norms"), with_bn.records("weight_norms"))
    for a, i, s in [(0, 0, 0), (1, 1, 1), (1, 0, 1)]:
        model = make_mlp(64, hidden=(10, 10), activation="tanh", bn="before",
                         init_scale=kw["init_scales"][i], seed=kw["seeds"][s])
        alone = train(copy.deepcopy(model), data, steps=12, batch_size=20, lr=kw["lrs"][a],
                      seed=kw["seeds"][s], eval_every=None, progress=False)
        got = with_bn.history(a, i, s)
        np.testing.assert_allclose(got.loss, alone.loss, rtol=1e-4)
        assert with_bn.test_accuracy[a, i, s] == pytest.approx(alone.final_test_accuracy,
                                                               abs=2 / data.n_test)
        assert got.config["lr"] == kw["lrs"][a] and got.config["seed"] == kw["seeds"][s]


def test_grid_marks_diverged_runs_and_validates(data):
    grid = run_grid(data, hidden=(8,), activation="relu", bn="none", lrs=[0.1, 1e4],
                      init_scales=[1.0], seeds=[0], steps=20, batch_size=16, max_loss=50.0)
    assert grid.diverged.tolist() == [[[False]], [[True]]]
    assert np.isnan(grid.test_accuracy[1, 0, 0]) and np.isnan(grid.train_loss[1, 0, 0])
    with pytest.raises(ValueError, match="run_grid: lrs must be positive finite numbers"):
        run_grid(data, hidden=(8,), activation="relu", bn="none", lrs=[0.0],
                   init_scales=[1.0], seeds=[0], steps=2, batch_size=8)
    with pytest.raises(ValueError, match="run_grid: seeds must be a non-empty sequence"):
        run_grid(data, hidden=(8,), activation="relu", bn="none", lrs=[0.1],
                   init_scales=[1.0], seeds=[], steps=2, batch_size=8)
