"""Tests for bncourse.gradcheck: known derivatives and torch autograd as oracles."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.gradcheck import numerical_gradient, relative_error


# --- relative_error ----------------------------------------------------------------------------

def test_relative_error_definition(rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    expected = np.max(np.abs(a - b)) / np.max(np.abs(a) + np.abs(b))
    assert relative_error(a, b) == expected
    assert isinstance(relative_error(a, b), float)


def test_relative_error_special_cases(rng):
    a = rng.normal(size=5)
    assert relative_error(np.zeros(4), np.zeros(4)) == 0.0  # both zero: 0, not NaN
    assert relative_error(a, a) == 0.0
    assert relative_error(a, np.zeros(5)) == 1.0  # against zero: as large as it gets
    assert relative_error(a, -a) == 1.0
    assert relative_error(np.zeros(0), np.zeros(0)) == 0.0


def test_relative_error_accepts_tensors_and_numbers(rng):
    a = rng.normal(size=3)
    assert relative_error(torch.tensor(a), a) == 0.0
    assert relative_error(2.0, 2.0) == 0.0
    assert relative_error(np.arange(3), np.arange(3.0)) == 0.0


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-100, 1e100))
def test_property_relative_error_is_symmetric_and_scale_free(seed, scale):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=6), rng.normal(size=6)
    error = relative_error(a, b)
    assert 0.0 <= error <= 1.0
    assert relative_error(b, a) == error
    assert relative_error(scale * a, scale * b) == pytest.approx(error, rel=1e-12)


@pytest.mark.parametrize("a, b, exc, match", [
    (np.ones(3), np.ones(4), ValueError, r"relative_error: a and b must have the same shape, got "
                                         r"shapes \(3,\) and \(4,\)"),
    (np.ones((3, 1)), np.ones(3), ValueError, r"relative_error: a and b must have the same shape"),
    (np.array([1.0, np.nan]), np.ones(2), ValueError, r"relative_error: a must be finite"),
    (np.ones(2), np.array([np.inf, 1.0]), ValueError, r"relative_error: b must be finite"),
    (np.array(["x"]), np.ones(1), TypeError, r"relative_error: a must be an array of real"),
    (np.ones(1), np.array([1j]), TypeError, r"relative_error: b must be an array of real"),
])
def test_relative_error_rejects_bad_input(a, b, exc, match):
    with pytest.raises(exc, match=match):
        relative_error(a, b)


def test_relative_error_rejects_tensor_that_requires_grad():
    with pytest.raises(TypeError, match=r"relative_error: a must be an array of numbers"):
        relative_error(torch.ones(2, requires_grad=True), np.ones(2))


# --- numerical_gradient ------------------------------------------------------------------------

def test_numerical_gradient_of_known_derivative(rng):
    x = rng.normal(size=(3, 4))
    dy = rng.normal(size=(3, 4))
    grad = numerical_gradient(lambda a: np.sin(a) * a, x, dy)
    analytic = (np.cos(x) * x + np.sin(x)) * dy
    assert relative_error(grad, analytic) < 1e-9


def test_numerical_gradient_matches_torch_autograd(rng):
    weight = rng.normal(size=(5, 3))
    x = rng.normal(size=(4, 5))
    dy = rng.normal(size=(4, 3))

    def f(a):
        return np.tanh(a @ weight)

    xt = torch.tensor(x, requires_grad=True)
    torch.tanh(xt @ torch.tensor(weight)).backward(torch.tensor(dy))
    assert relative_error(numerical_gradient(f, x, dy), xt.grad) < 1e-8


def test_numerical_gradient_restores_x_bitwise(rng):
    x = rng.normal(size=40)
    h = 1e-5
    # Precondition: nudging by +h, -2h, +h does not return every entry to its value,
    # so a restore by arithmetic would fail this test.
    assert np.any(((x + h) - 2 * h) + h != x)
    before = x.tobytes()
    numerical_gradient(lambda a: a**3, x, np.ones(40), h=h)
    assert x.tobytes() == before


def test_numerical_gradient_restores_x_when_f_raises(rng):
    x = rng.normal(size=(2, 3))
    before = x.tobytes()
    calls = []

    def f(a):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return a * 2.0

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x, np.ones((2, 3)))
    assert x.tobytes() == before


def test_numerical_gradient_keeps_dtype_and_shape(rng):
    x = rng.normal(size=(2, 3, 2))
    grad = numerical_gradient(lambda a: a.sum(axis=2), x, np.ones((2, 3)))
    assert grad.shape == x.shape and grad.dtype == x.dtype
    np.testing.assert_allclose(grad, np.ones_like(x), rtol=1e-9)


def test_numerical_gradient_rejects_bad_input():
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"numerical_gradient: f must be callable"):
        numerical_gradient("f", x, np.ones(3))
    with pytest.raises(ValueError, match=r"numerical_gradient: f\(x\) must return the shape of dy "
                                         r"\(2,\), got shape \(3,\)"):
        numerical_gradient(lambda a: a * 2.0, x, np.ones(2))
    with pytest.raises(ValueError, match=r"numerical_gradient: h must be a positive float"):
        numerical_gradient(lambda a: a, x, np.ones(3), h=0.0)
    with pytest.raises(TypeError, match=r"numerical_gradient: x must be .*float32 or float64"):
        numerical_gradient(lambda a: a, np.arange(3), np.ones(3))
    with pytest.raises(TypeError, match=r"numerical_gradient: dy must be a numpy.ndarray"):
        numerical_gradient(lambda a: a, x, [1.0, 1.0, 1.0])
    read_only = np.ones(3)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"numerical_gradient: x must be a writeable array"):
        numerical_gradient(lambda a: a, read_only, np.ones(3))
    with pytest.raises(ValueError, match=r"numerical_gradient: x must be finite"):
        numerical_gradient(lambda a: a, np.array([1.0, np.nan]), np.ones(2))
