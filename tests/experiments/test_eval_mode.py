"""Tests for bncourse.experiments.eval_mode and pretrained."""

import copy

import pytest
import torch

from bncourse.experiments.eval_mode import batched_accuracy, run_eval_mode
from bncourse.lab.training import evaluate


def test_reference_network_learns_and_is_returned_in_eval_mode(trained, source):
    net, history = trained
    assert not net.training and history.final_test_accuracy > 0.9


def test_eval_mode_is_independent_of_batching_and_train_mode_is_not(trained, source):
    net, _ = trained
    before = copy.deepcopy(net.state_dict())
    out = run_eval_mode(net, source, batch_sizes=(2, None), sorted_batch=32)
    acc = out["accuracy"]
    n = source.n_test
    assert acc[("eval", "shuffled", n)] == pytest.approx(out["clean"])
    assert abs(acc[("eval", "shuffled", 2)] - out["clean"]) <= 1 / n
    assert acc[("eval", "sorted", 32)] == pytest.approx(out["clean"], abs=1 / n)
    assert acc[("train", "shuffled", 2)] < out["clean"] - 0.05
    assert acc[("train", "sorted", 32)] < out["clean"] - 0.3
    assert "more than 1 value per channel" in out["batch1_error"]
    # a training-mode pass under no_grad moved the running variance of the copies
    assert abs(out["var_ratio"][("shuffled", 2)] - 1) > 0.05
    for key, value in net.state_dict().items():          # the model itself is untouched
        assert torch.equal(value, before[key]), key


def test_batched_accuracy_updates_buffers_only_in_training_mode(trained, source):
    net = copy.deepcopy(trained[0])
    mean = net.norm1.running_mean.clone()
    batched_accuracy(net, source.x_test, source.y_test, 16, training=False)
    assert torch.equal(net.norm1.running_mean, mean)
    batched_accuracy(net, source.x_test, source.y_test, 16, training=True)
    assert not torch.equal(net.norm1.running_mean, mean)
    assert evaluate(net, source.x_test, source.y_test)[1] > 0.5
    with pytest.raises(ValueError, match="batched_accuracy: batch_size must be at most"):
        batched_accuracy(net, source.x_test[:3], source.y_test[:3], 4, training=False)
