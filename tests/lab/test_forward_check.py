"""Tests for bncourse.lab.forward_check: the reference passes, typical mistakes are caught."""

import numpy as np
import pytest

from bncourse.batchnorm import BatchNorm, batchnorm_forward
from bncourse.lab.forward_check import SHAPES, bn_case, forward_errors, layer_errors


def _reference(x, gamma, beta, eps):
    return batchnorm_forward(x, gamma, beta, eps)[0]


def _axes(x):
    return (0, *range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _notes_formula(x, gamma, beta, eps):
    # x - mu / sqrt(var + eps): the parentheses the study notes leave out
    mean = x.mean(axis=_axes(x), keepdims=True)
    var = x.var(axis=_axes(x), keepdims=True)
    return _view(gamma, x) * (x - mean / np.sqrt(var + eps)) + _view(beta, x)


def _unbiased(x, gamma, beta, eps):
    mean = x.mean(axis=_axes(x), keepdims=True)
    var = x.var(axis=_axes(x), ddof=1, keepdims=True)
    return _view(gamma, x) * (x - mean) / np.sqrt(var + eps) + _view(beta, x)


def _eps_outside(x, gamma, beta, eps):
    mean = x.mean(axis=_axes(x), keepdims=True)
    std = x.std(axis=_axes(x), keepdims=True)
    return _view(gamma, x) * (x - mean) / (std + eps) + _view(beta, x)


def _axis0_only(x, gamma, beta, eps):
    # per-position statistics: right for (N, C), wrong for conv input
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    return _view(gamma, x) * x_hat + _view(beta, x)


def test_reference_agrees_to_round_off_on_every_rank():
    errors = forward_errors(_reference)
    assert sorted(errors) == sorted(SHAPES)
    assert {len(s) for s in errors} == {2, 3, 4, 5}
    assert max(errors.values()) < 1e-14


@pytest.mark.parametrize("mistake,smallest", [(_notes_formula, 0.1), (_unbiased, 1e-3)])
def test_mistakes_are_caught_on_every_rank(mistake, smallest):
    errors = forward_errors(mistake)
    assert min(errors.values()) > smallest, errors


def test_eps_outside_is_caught_when_eps_is_not_tiny():
    # with eps = 0.1 the two denominators differ visibly for unit-scale channels
    assert min(forward_errors(_eps_outside, eps=0.1).values()) > 1e-3


def test_wrong_axes_pass_for_matrices_and_fail_for_conv_input():
    errors = forward_errors(_axis0_only)
    assert errors[(32, 4)] < 1e-14
    assert all(errors[s] > 0.1 for s in SHAPES if len(s) > 2), errors


@pytest.mark.parametrize("bad", [
    lambda x, g, b, eps: 1 / 0,                             # raises
    lambda x, g, b, eps: _reference(x, g, b, eps)[:1],      # wrong shape
    lambda x, g, b, eps: _reference(x, g, b, eps) * np.nan,  # not finite
])
def test_broken_forwards_score_inf(bad):
    assert set(forward_errors(bad).values()) == {float("inf")}


def test_forward_that_overwrites_its_input_cannot_fool_the_check():
    def destructive(x, gamma, beta, eps):
        y = _reference(x, gamma, beta, eps)
        x[...] = 0.0
        gamma[...] = 0.0
        return y

    assert max(forward_errors(destructive).values()) < 1e-14


def test_bn_case_has_distinct_channel_statistics():
    x, gamma, beta = bn_case((4000, 5), seed=3)
    np.testing.assert_allclose(x.mean(axis=0), np.linspace(-4, 4, 5), atol=0.15)
    np.testing.assert_allclose(x.std(axis=0), np.linspace(0.5, 3, 5), rtol=0.05)
    assert gamma.shape == beta.shape == (5,) and np.all((gamma >= 0.5) & (gamma <= 2))
    x32, g32, b32 = bn_case((3, 2, 4), seed=0, dtype=np.float32)
    assert x32.dtype == g32.dtype == b32.dtype == np.float32
    np.testing.assert_array_equal(bn_case((3, 2, 4), seed=0)[0], bn_case((3, 2, 4), seed=0)[0])


def test_layer_errors_reference_layer_matches_torch():
    result = layer_errors(BatchNorm)
    assert sorted(result) == sorted(SHAPES)
    for errors in result.values():
        assert set(errors) == {"train output", "running mean", "running var", "eval output"}
        assert max(errors.values()) < 1e-14, errors


def test_layer_errors_catch_a_flipped_momentum():
    # momentum in the decay convention (weight of the old average) instead of torch's
    def flipped(num_features, eps, momentum):
        return BatchNorm(num_features, eps=eps, momentum=1.0 - momentum)

    for errors in layer_errors(flipped, shapes=((16, 3), (4, 3, 5, 5))).values():
        assert errors["train output"] < 1e-14            # training output does not use them
        assert errors["running mean"] > 0.1 and errors["running var"] > 0.1
        assert errors["eval output"] > 0.01


@pytest.mark.parametrize("call,exc,match", [
    (lambda: forward_errors("f"), TypeError, "forward_errors: forward must be a callable"),
    (lambda: forward_errors(_reference, eps=0.0), ValueError, "forward_errors: eps must be"),
    (lambda: forward_errors(_reference, shapes=[(4,)]), ValueError, "bn_case: shape must be"),
    (lambda: bn_case((1, 3)), ValueError, "more than 1 value per channel"),
    (lambda: bn_case((2, 3), seed=-1), ValueError, "bn_case: seed must be an int >= 0"),
    (lambda: bn_case((2, 3), dtype=np.int64), ValueError, "bn_case: dtype must be float32"),
    (lambda: layer_errors(3), TypeError, "layer_errors: make_layer must be a callable"),
    (lambda: layer_errors(BatchNorm, steps=0), ValueError, "layer_errors: steps must be"),
    (lambda: layer_errors(BatchNorm, momentum=1.5), ValueError, "layer_errors: momentum must"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
