"""Tests for bncourse.experiments.weight_decay."""

import math

import numpy as np
import pytest
from torch import nn

from bncourse.experiments.weight_decay import (angular_updates, param_groups, run_bn_param_decay,
                                               run_weight_decay)
from bncourse.lab.data import load_digits_split


def test_angular_updates_on_known_rotations():
    t = np.array([0.0, 0.1, 0.3, 0.3])
    w = np.stack([np.cos(t), np.sin(t), np.zeros(4)], axis=1) * np.array([[1], [2], [5], [3]])
    np.testing.assert_allclose(angular_updates(w), [0.1, 0.2, 0.0], atol=1e-12)


def test_param_groups_split_bn_parameters():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4))
    groups = param_groups(model, 0.1, decay_bn=False)
    assert [len(g["params"]) for g in groups] == [1, 2]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert param_groups(model, 0.1, decay_bn=True)[1]["weight_decay"] == 0.1


@pytest.fixture(scope="module")
def vectors():
    return load_digits_split(seed=0)


def test_same_product_same_angle_different_norms(vectors):
    settings = [(0.1, 0.0), (0.05, 0.04), (0.2, 0.01)]
    out = run_weight_decay(vectors, settings, steps=400, init_scale=0.01, seed=0)
    tail = {k: v["angle"][-100:].mean() for k, v in out.items()}
    assert tail[(0.05, 0.04)] == pytest.approx(tail[(0.2, 0.01)], rel=0.25)
    assert tail[(0.1, 0.0)] < 0.7 * tail[(0.05, 0.04)]
    ratio = out[(0.2, 0.01)]["norm"][-1] / out[(0.05, 0.04)]["norm"][-1]
    assert ratio == pytest.approx((0.2 / 0.01 / (0.05 / 0.04)) ** 0.25, rel=0.3)
    assert out[(0.05, 0.04)]["predicted"] == pytest.approx(math.sqrt(2 * 0.05 * 0.04))


def test_decay_on_gamma_shrinks_it(vectors):
    out = run_bn_param_decay(vectors, steps=150, seeds=(0,))
    assert out[True]["gamma"][0] < 0.8 * out[False]["gamma"][0]
