"""Tests for bncourse.experiments.batch_dependence: batch statistics change predictions, LN never does."""

import numpy as np
import pytest
import torch

from bncourse.experiments.batch_dependence import predict_in_chunks, run_batch_dependence
from bncourse.lab.transformer import make_transformer


@pytest.fixture(scope="module")
def result():
    return run_batch_dependence(chunk_sizes=(1, 16), n_predict=64, steps=30)


def test_layer_norm_predictions_never_depend_on_the_chunk(result):
    np.testing.assert_array_equal(result.changed["LN"], 0.0)
    np.testing.assert_array_equal(result.accuracy["LN"], result.eval_accuracy["LN"])


def test_batch_norm_with_batch_statistics_changes_predictions_alone(result):
    assert result.n_predict == 64
    assert result.changed["BN"][0] > 0.0                  # a chunk of one sequence
    assert result.changed["BN"][0] >= result.changed["BN"][1]


def test_predict_in_chunks_leaves_running_statistics_alone():
    net = make_transformer(8, 10, 8, norm="bn", seed=0)
    before = net.blocks[0].norm1.running_mean.clone()
    predict_in_chunks(net, torch.randn(6, 64), 2, training=True)
    assert torch.equal(net.blocks[0].norm1.running_mean, before)
    assert net.training
