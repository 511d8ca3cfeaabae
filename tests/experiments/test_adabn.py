"""Tests for bncourse.experiments.adabn."""

import torch

from bncourse.experiments.adabn import run_adabn, shift_domain


def test_shift_is_seeded_and_keeps_labels(source):
    a, b = shift_domain(source, seed=3), shift_domain(source, seed=3)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, source.y_test)
    assert abs(float(a.x_train.mean() - (0.5 * source.x_train.mean() + 1.0))) < 0.01


def test_source_statistics_fail_on_the_shift_and_adabn_recovers(trained, source):
    net = trained[0]
    mean = net.norm1.running_mean.clone()
    out = run_adabn(net, source, shift_domain(source), sizes=(8, None))
    assert out["target"] < out["source"] - 0.2
    assert out["adabn"][source.n_train] > out["target"] + 0.2
    assert torch.equal(net.norm1.running_mean, mean)
