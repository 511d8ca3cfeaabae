"""Tests for bncourse.ewa: torch's running_mean update is the oracle for the recurrence."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.ewa import ewa
from bncourse.gradcheck import relative_error


def test_matches_torch_running_mean(rng):
    # BatchNorm's running_mean starts at 0 and is an EWA of the batch means with beta = 1 - momentum
    momentum = 0.2
    module = torch.nn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64)
    batches = [rng.normal(loc=[1.0, -2.0, 5.0], size=(8, 3)) for _ in range(6)]
    history = []
    for x in batches:
        module(torch.tensor(x))
        history.append(module.running_mean.clone().numpy())
    batch_means = np.array([x.mean(axis=0) for x in batches])
    assert relative_error(ewa(batch_means, 1.0 - momentum), np.array(history)) < 1e-14


def test_matches_unrolled_weighted_sum(rng):
    # v_t = (1 - beta) * sum_k beta**(t - k) * theta_k, written out without the recurrence
    theta = rng.normal(size=12)
    beta = 0.7
    t = np.arange(1, 13)
    weights = (1 - beta) * beta ** (t[:, None] - t[None, :]) * (t[None, :] <= t[:, None])
    assert relative_error(ewa(theta, beta), weights @ theta) < 1e-14
    # bias correction divides by the sum of the weights
    corrected = (weights @ theta) / weights.sum(axis=1)
    assert relative_error(ewa(theta, beta, bias_correction=True), corrected) < 1e-14


def test_beta_zero_returns_the_values(rng):
    theta = rng.normal(size=(5, 2))
    np.testing.assert_array_equal(ewa(theta, 0.0), theta)


def test_columns_are_independent_and_input_untouched(rng):
    theta = rng.normal(size=(10, 3, 2))
    copy = theta.copy()
    together = ewa(theta, 0.9, bias_correction=True)
    np.testing.assert_array_equal(theta, copy)
    for c in range(3):
        for k in range(2):
            np.testing.assert_array_equal(together[:, c, k],
                                          ewa(theta[:, c, k], 0.9, bias_correction=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_dtype_and_shape(dtype):
    theta = np.linspace(0, 1, 7, dtype=dtype)
    out = ewa(theta, 0.5)
    assert out.dtype == dtype and out.shape == theta.shape
    assert ewa(np.zeros(0, dtype), 0.5).shape == (0,)


def test_without_correction_starts_biased_toward_zero():
    theta = np.full(5, 10.0)
    v = ewa(theta, 0.9)
    assert v[0] < 1.5 and np.all(np.diff(v) > 0) and v[-1] < 10.0


@settings(max_examples=50, deadline=None)
@given(c=st.floats(-1e6, 1e6), beta=st.floats(0.0, 0.999), length=st.integers(1, 200))
def test_property_bias_corrected_constant_is_the_constant(c, beta, length):
    out = ewa(np.full(length, c), beta, bias_correction=True)
    np.testing.assert_allclose(out, c, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"values": np.ones(3), "beta": 1.0}, ValueError, r"ewa: beta must be a float in \[0, 1\)"),
    ({"values": np.ones(3), "beta": -0.1}, ValueError, r"ewa: beta must be a float in \[0, 1\)"),
    ({"values": np.ones(3), "beta": "0.9"}, TypeError, r"ewa: beta must be a float in \[0, 1\)"),
    ({"values": np.float64(1.0), "beta": 0.9}, TypeError, r"ewa: values must be a numpy.ndarray"),
    ({"values": np.ones(()), "beta": 0.9}, ValueError, r"ewa: values must be at least 1-D"),
    ({"values": [1.0, 2.0], "beta": 0.9}, TypeError, r"ewa: values must be a numpy.ndarray"),
    ({"values": np.arange(3), "beta": 0.9}, TypeError, r"ewa: values must be .*float32 or float64"),
    ({"values": np.array([1.0, np.nan]), "beta": 0.9}, ValueError, r"ewa: values must be finite"),
    ({"values": np.ones(3), "beta": 0.9, "bias_correction": 1}, TypeError,
     r"ewa: bias_correction must be a bool"),
])
def test_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ewa(**kwargs)
