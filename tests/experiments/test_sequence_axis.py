"""Tests for bncourse.experiments.sequence_axis."""

import pytest
import torch

from bncourse.experiments.sequence_axis import per_feature_moments, run_sequence_axis, sequence_batch


def test_wrong_axis_raises_or_leaves_features_unnormalized_and_transpose_fixes_it():
    out = run_sequence_axis(n=32, length=10, channels=6, seed=0)
    assert "running_mean should contain 10 elements not 6" in out["error"]
    assert out["wrong_mean"] > 0.5 and out["wrong_std"][1] - out["wrong_std"][0] > 0.5
    assert out["right_mean"] < 1e-12
    assert out["right_std"][0] == pytest.approx(1.0, abs=1e-4)
    assert out["right_std"][1] == pytest.approx(1.0, abs=1e-4)
    assert out["rel_diff"] > 0.1


def test_sequence_batch_has_the_documented_feature_moments():
    mean, std = per_feature_moments(sequence_batch(400, 50, 3, seed=1))
    torch.testing.assert_close(mean, torch.tensor([-3.0, -1.0, 1.0], dtype=torch.float64),
                               atol=0.05, rtol=0)
    torch.testing.assert_close(std, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
                               atol=0.05, rtol=0)


def test_equal_length_and_channels_is_refused():
    with pytest.raises(ValueError, match="run_sequence_axis: length must differ from channels"):
        run_sequence_axis(length=6, channels=6)
