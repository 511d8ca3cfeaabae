"""Tests for bncourse.experiments.regularization: the split, the tuning protocol and the claim verdict."""

import math

import numpy as np
import pytest
import torch

from bncourse.experiments.regularization import (
    TuningSplit,
    conjunction_verdict,
    run_once,
    run_tuned,
    tuning_split,
)
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_mlp


@pytest.fixture(scope="module")
def split():
    return tuning_split(seed=0)


def _tiny(seed):
    return make_mlp(64, hidden=(8,), activation="relu", seed=seed)


# ----------------------------------------------------------------------------- split

def test_split_partitions_the_training_set_and_keeps_the_test_set(split):
    raw = load_digits_split(seed=0, standardize=False)
    assert split.n_fit + split.n_val == raw.n_train and split.n_test == raw.n_test
    assert torch.equal(split.y_test, raw.y_test)
    # Labels of fit + validation are the training labels, class by class (stratified split).
    counts = np.bincount(raw.y_train.numpy(), minlength=10)
    fit_counts = np.bincount(split.tune.y_train.numpy(), minlength=10)
    val_counts = np.bincount(split.tune.y_test.numpy(), minlength=10)
    np.testing.assert_array_equal(fit_counts + val_counts, counts)
    np.testing.assert_array_equal(val_counts, np.round(0.2 * counts).astype(int))


def test_inputs_are_standardized_with_fit_statistics_only(split):
    x_fit = split.tune.x_train.double().numpy()
    std = x_fit.std(axis=0)
    varying = std > 0
    assert np.abs(x_fit.mean(axis=0)).max() < 1e-6
    np.testing.assert_allclose(std[varying], 1.0, rtol=1e-5)
    # The validation and test sets are transformed with the same numbers, not their own.
    assert np.abs(split.tune.x_test.double().numpy().mean(axis=0)).max() > 1e-3
    assert np.abs(split.x_test.double().numpy().mean(axis=0)).max() > 1e-3
    # scikit-learn's scaler, fitted on the raw fit rows, is the oracle for all three sets.
    from sklearn.preprocessing import StandardScaler

    from bncourse.lab.data import stratified_split
    raw = load_digits_split(seed=0, standardize=False)
    x_raw = raw.x_train.double().numpy()
    fit, val = stratified_split(raw.y_train.numpy(), 0.2, 0)
    scaler = StandardScaler().fit(x_raw[fit])
    for got, want in [(split.tune.x_train, x_raw[fit]), (split.tune.x_test, x_raw[val]),
                      (split.x_test, raw.x_test.double().numpy())]:
        np.testing.assert_allclose(got.double().numpy(), scaler.transform(want), rtol=1e-6,
                                   atol=1e-6)


def test_split_is_deterministic_and_seeded():
    a, b, c = tuning_split(seed=1), tuning_split(seed=1), tuning_split(seed=2)
    assert torch.equal(a.tune.x_train, b.tune.x_train)
    assert not torch.equal(a.tune.y_test, c.tune.y_test)


# ----------------------------------------------------------------------------- runs

def test_run_once_is_reproducible_and_reports_fit_validation_test(split):
    r1 = run_once(_tiny, split, batch_size=64, lr=0.3, steps=20, seed=3)
    r2 = run_once(_tiny, split, batch_size=64, lr=0.3, steps=20, seed=3)
    assert r1 == r2 and not r1.diverged and r1.steps == 20
    for acc in (r1.train_accuracy, r1.val_accuracy, r1.test_accuracy):
        assert 0.0 <= acc <= 1.0
    # The reported test accuracy is that of the trained model on the test set.
    model = _tiny(3)
    from bncourse.lab.training import evaluate, train
    train(model, split.tune, steps=20, batch_size=64, lr=0.3, seed=3, eval_every=None,
          progress=False)
    assert evaluate(model, split.x_test, split.y_test)[1] == r1.test_accuracy


def test_diverged_run_gives_nan(split):
    r = run_once(lambda s: make_mlp(64, hidden=(8,), activation="relu", init_scale=10.0,
                                    seed=s), split, batch_size=32, lr=1e4, steps=30, seed=0)
    assert r.diverged and math.isnan(r.test_accuracy) and math.isnan(r.train_accuracy)


def test_tune_and_run_picks_the_best_validation_lr_and_reuses_its_runs(split):
    lrs = [0.01, 0.3, 1e4]
    runs = run_tuned(_tiny, split, batch_size=128, lrs=lrs, epochs=2, seeds=[0, 1, 2])
    assert runs.steps == 2 * (split.n_fit // 128)
    # The grid values are the validation accuracies of seed 0, recomputed independently.
    for lr, val in zip(lrs, runs.lr_val_accuracy):
        r = run_once(_tiny, split, 128, lr, runs.steps, seed=0)
        assert (math.isnan(val) and r.diverged) or val == r.val_accuracy
    assert math.isnan(runs.lr_val_accuracy[2])             # diverged, never chosen
    assert runs.best_lr == lrs[int(np.nanargmax(runs.lr_val_accuracy))]
    for i, seed in enumerate(runs.seeds):
        r = run_once(_tiny, split, 128, runs.best_lr, runs.steps, seed=int(seed))
        assert (runs.train_accuracy[i], runs.val_accuracy[i], runs.test_accuracy[i]) == \
            (r.train_accuracy, r.val_accuracy, r.test_accuracy)
    np.testing.assert_array_equal(runs.gap, runs.train_accuracy - runs.test_accuracy)
    assert runs.best_at_edge == (runs.best_lr in (0.01, 1e4))


def test_tune_and_run_rejects_bad_arguments(split):
    with pytest.raises(ValueError, match=r"run_tuned: lrs must be a non-empty sequence of "
                                         r"positive floats"):
        run_tuned(_tiny, split, 64, [], 1, [0])
    with pytest.raises(ValueError, match=r"run_tuned: tune_seeds must be at most the 1 seeds"):
        run_tuned(_tiny, split, 64, [0.1], 1, [0], tune_seeds=2)
    with pytest.raises(ValueError, match=r"run_tuned: batch_size must be at most the"):
        run_tuned(_tiny, split, 5000, [0.1], 1, [0])
    with pytest.raises(TypeError, match=r"run_tuned: split must be a TuningSplit"):
        run_tuned(_tiny, "digits", 64, [0.1], 1, [0])
    with pytest.raises(ValueError, match=r"tuning_split: val_fraction must be a float in"):
        tuning_split(val_fraction=1.0)
    assert isinstance(split, TuningSplit)


# ----------------------------------------------------------------------------- verdict

@pytest.mark.parametrize("parts,expected", [
    (["supported", "supported"], "supported"),
    (["supported", "partly supported"], "partly supported"),
    (["supported", "not supported"], "partly supported"),
    (["not supported", "depends"], "partly supported"),
    (["not supported", "not supported"], "not supported"),
])
def test_conjunction_verdict(parts, expected):
    assert conjunction_verdict(parts) == expected


def test_conjunction_verdict_rejects_unknown_labels():
    with pytest.raises(ValueError, match=r"conjunction_verdict: verdicts must be labels"):
        conjunction_verdict(["true"])
    with pytest.raises(ValueError, match=r"conjunction_verdict: verdicts must be a non-empty"):
        conjunction_verdict([])
