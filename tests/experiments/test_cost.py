"""Tests for bncourse.experiments.cost: steps to a target, the BN/no-BN race, and the claim verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bncourse.experiments import cost
from bncourse.lab.data import make_gaussian_mixture

# --------------------------------------------------------------------------- steps_to_target

def test_steps_to_target_is_the_first_step_at_or_above_the_target():
    steps = [0, 7, 14, 21, 28]
    assert cost.steps_to_target(steps, [0.1, 0.5, 0.95, 0.9, 0.99], 0.95) == 14.0
    assert cost.steps_to_target(steps, [0.96, 0.5, 0.5, 0.5, 0.5], 0.95) == 0.0
    assert math.isnan(cost.steps_to_target(steps, [0.1, 0.2, 0.3, 0.4, 0.5], 0.95))
    # a NaN accuracy (a diverged run) never counts as reaching the target
    assert cost.steps_to_target(steps, [np.nan, np.nan, 0.97, 0.2, 0.2], 0.95) == 14.0


@pytest.mark.parametrize("args, match", [
    (([0, 1], [0.5], 0.9), "steps, accuracy must be two non-empty 1-D arrays"),
    (([], [], 0.9), "steps, accuracy must be"),
    (([0, 1], [0.5, 0.6], 1.5), r"target must be an accuracy in \(0, 1\]"),
    (([0, 1], [0.5, 0.6], 0.0), "target must be"),
])
def test_steps_to_target_errors(args, match):
    with pytest.raises(ValueError, match="steps_to_target: " + match):
        cost.steps_to_target(*args)


# --------------------------------------------------------------------------- race

@pytest.fixture(scope="module")
def tiny_data():
    return make_gaussian_mixture(n_samples=200, n_features=6, num_classes=3, separation=3.0,
                                 seed=1)


@pytest.fixture(scope="module")
def tiny_race(tiny_data):
    return cost.run_race_to_target(tiny_data, seeds=(0, 1), target=0.6, steps=12, lr=0.1,
                               batch_size=16, hidden=(8, 8), eval_every=4)


def test_race_shapes_and_steps_to_target_follow_the_curves(tiny_race):
    race = tiny_race
    assert race.steps.tolist() == [0, 4, 8, 12]
    assert race.seeds == (0, 1) and race.target == 0.6
    for label in cost.LABELS:
        assert race.accuracy[label].shape == (2, 4)
        assert race.steps_to_target[label].shape == (2,)
        for row, reached in zip(race.accuracy[label], race.steps_to_target[label]):
            hits = race.steps[row >= 0.6]
            assert (math.isnan(reached) and hits.size == 0) or reached == hits[0]
    assert set(race.models) == set(cost.LABELS)
    norms = [m for m in race.models["bn"].modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in race.models["no_bn"].modules())


def test_race_is_deterministic_and_starts_from_the_same_weights(tiny_data, tiny_race):
    again = cost.run_race_to_target(tiny_data, seeds=(0, 1), target=0.6, steps=12, lr=0.1,
                                batch_size=16, hidden=(8, 8), eval_every=4)
    for label in cost.LABELS:
        np.testing.assert_array_equal(again.accuracy[label], tiny_race.accuracy[label])
    # Before any step only BN differs; in evaluation mode a fresh BN (mean 0, var 1,
    # gamma 1, beta 0) is the identity up to eps, so the initial accuracies agree.
    np.testing.assert_allclose(tiny_race.accuracy["bn"][:, 0], tiny_race.accuracy["no_bn"][:, 0])


def test_race_errors(tiny_data):
    with pytest.raises(TypeError, match="run_race_to_target: data must be a bncourse.lab.data.Dataset"):
        cost.run_race_to_target("digits")
    with pytest.raises(ValueError, match="run_race_to_target: seeds must be a non-empty"):
        cost.run_race_to_target(tiny_data, seeds=())
    with pytest.raises(ValueError, match="run_race_to_target: target must be"):
        cost.run_race_to_target(tiny_data, target=2.0)


def test_time_to_target_multiplies_steps_by_the_cost_of_a_step(tiny_race):
    seconds = {"bn": 2e-3, "no_bn": 1e-3}
    out = cost.time_to_target(tiny_race, seconds)
    for label in cost.LABELS:
        np.testing.assert_array_equal(out[label], tiny_race.steps_to_target[label] * seconds[label])
    with pytest.raises(ValueError, match=r"time_to_target: seconds_per_step\['no_bn'\] must be"):
        cost.time_to_target(tiny_race, {"bn": 1e-3})
    with pytest.raises(ValueError, match="positive number of seconds"):
        cost.time_to_target(tiny_race, {"bn": 1e-3, "no_bn": 0.0})
    with pytest.raises(TypeError, match="time_to_target: race must be a Race"):
        cost.time_to_target({}, seconds)


# --------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("train, unfolded, folded, expected", [
    ("slower", "slower", "slower", "supported"),
    ("slower", "slower", "same", "partly supported"),
    ("slower", "same", "same", "partly supported"),
    ("same", "slower", "same", "partly supported"),
    ("same", "same", "same", "not supported"),
    ("unclear", "faster", "unclear", "not supported"),
])
def test_claim11_verdict(train, unfolded, folded, expected):
    assert cost.claim11_verdict(train, unfolded, folded) == expected


@pytest.mark.parametrize("per_step, bn, plain, expected", [
    ("slower", [2.0, 3.0], [1.0, 1.5], "supported"),
    ("slower", [1.0, 1.0], [3.0, np.nan], "partly supported"),
    ("slower", [np.nan, 1.0], [1.0, 3.0], "depends"),
    ("slower", [1.0, 2.0], [2.0, 1.0], "depends"),
    ("same", [1.0, 1.0], [3.0, 3.0], "not supported"),
    ("unclear", [3.0], [1.0], "not supported"),
])
def test_claim12_verdict(per_step, bn, plain, expected):
    assert cost.claim12_verdict(per_step, bn, plain) == expected


def test_verdict_errors():
    with pytest.raises(ValueError, match="claim11_verdict: train must be one of"):
        cost.claim11_verdict("slow", "same", "same")
    with pytest.raises(ValueError, match="claim12_verdict: per_step must be one of"):
        cost.claim12_verdict("quicker", [1.0], [1.0])
    with pytest.raises(ValueError, match="claim12_verdict: bn_seconds, plain_seconds must be"):
        cost.claim12_verdict("slower", [1.0, 2.0], [1.0])
