"""Tests for bncourse.experiments.conditioning: least squares as a quadratic, gradient descent, step counts.

Oracles: torch (float64) autograd for the loss, gradient and Hessian;
numpy.linalg.cond / lstsq for the condition number and the minimizer; closed
forms of gradient descent on diagonal quadratics for the step counts.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.experiments.conditioning import (
    Quadratic,
    condition_number,
    extreme_eigenvalues,
    gradient_descent,
    least_squares_quadratic,
    loss_grid,
    predicted_steps,
    relative_gap,
    steps_to_tolerance,
    with_intercept,
)


def _problem(seed, n=50, p=3, scales=None, shift=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + shift
    if scales is not None:
        x = x * np.asarray(scales)
    y = x @ rng.normal(size=p) + 0.3 * rng.normal(size=n) + 1.0
    return x, y


def _spd(seed, d, log10_spread):
    """A random symmetric positive definite matrix with eigenvalues spread over 10**log10_spread."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eig = 10.0 ** rng.uniform(0.0, log10_spread, size=d)
    return (q * eig) @ q.T


# --------------------------------------------------------------------------- with_intercept

def test_with_intercept_prepends_ones_and_keeps_dtype():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = with_intercept(x)
    assert out.dtype == np.float32
    assert out.shape == (3, 3)
    np.testing.assert_array_equal(out[:, 0], 1.0)
    np.testing.assert_array_equal(out[:, 1:], x)


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones(3), ValueError, "with_intercept: x must be 2-D"),
    ([[1.0, 2.0]], TypeError, "with_intercept: x must be a numpy.ndarray"),
    (np.array([[1.0, np.nan]]), ValueError, "with_intercept: x must be finite"),
])
def test_with_intercept_rejects_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        with_intercept(bad)


# --------------------------------------------------------------------------- the quadratic

def test_least_squares_quadratic_matches_torch_loss_gradient_and_hessian():
    x, y = _problem(0, scales=[1.0, 10.0, 0.1], shift=2.0)
    xi = with_intercept(x)
    quad = least_squares_quadratic(xi, y)
    w = np.random.default_rng(1).normal(size=xi.shape[1])

    xt, yt = torch.from_numpy(xi), torch.from_numpy(y)
    wt = torch.from_numpy(w.copy()).requires_grad_(True)
    loss_t = 0.5 * torch.mean((xt @ wt - yt) ** 2)
    loss_t.backward()
    hess_t = torch.autograd.functional.hessian(lambda v: 0.5 * torch.mean((xt @ v - yt) ** 2),
                                               torch.from_numpy(w))

    np.testing.assert_allclose(quad.loss(w), loss_t.item(), rtol=1e-12)
    np.testing.assert_allclose(quad.gradient(w), wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(quad.hessian, hess_t.numpy(), rtol=1e-12, atol=1e-12)


def test_quadratic_loss_and_gradient_accept_a_batch_of_columns():
    x, y = _problem(2)
    quad = least_squares_quadratic(x, y)
    w = np.random.default_rng(3).normal(size=(3, 4))
    np.testing.assert_allclose(quad.loss(w), [quad.loss(w[:, j]) for j in range(4)], rtol=1e-13)
    np.testing.assert_allclose(quad.gradient(w),
                               np.stack([quad.gradient(w[:, j]) for j in range(4)], axis=1),
                               rtol=1e-13)


def test_minimizer_is_the_lstsq_solution():
    x, y = _problem(4, scales=[1.0, 5.0, 0.5])
    xi = with_intercept(x)
    expected = np.linalg.lstsq(xi, y, rcond=None)[0]
    np.testing.assert_allclose(least_squares_quadratic(xi, y).minimizer(), expected, rtol=1e-9)


def test_affine_rescaling_of_features_keeps_the_best_loss():
    # Standardizing is an affine change of the weights when an intercept is present,
    # so the minimum of the loss (and the fitted values) cannot change.
    x, y = _problem(5, scales=[100.0, 1.0, 0.01], shift=3.0)
    z = (x - x.mean(0)) / x.std(0)
    q_raw = least_squares_quadratic(with_intercept(x), y)
    q_std = least_squares_quadratic(with_intercept(z), y)
    np.testing.assert_allclose(q_raw.loss(q_raw.minimizer()), q_std.loss(q_std.minimizer()),
                               rtol=1e-9)


@pytest.mark.parametrize("x, y, exc, match", [
    (np.ones((3, 2)), np.ones(4), ValueError, r"least_squares_quadratic: y must be shape \(3,\)"),
    (np.ones(3), np.ones(3), ValueError, "least_squares_quadratic: x must be 2-D"),
    (np.ones((3, 2)), np.ones((3, 1)), ValueError, "least_squares_quadratic: y must be 1-D"),
    (np.ones((3, 2), dtype=int), np.ones(3), TypeError, "least_squares_quadratic: x must be"),
])
def test_least_squares_quadratic_rejects_bad_input(x, y, exc, match):
    with pytest.raises(exc, match=match):
        least_squares_quadratic(x, y)


# --------------------------------------------------------------------------- condition number

@pytest.mark.parametrize("seed, d, spread", [(0, 2, 1.0), (1, 5, 3.0), (2, 11, 6.0), (3, 30, 8.0)])
def test_condition_number_matches_numpy_cond(seed, d, spread):
    h = _spd(seed, d, spread)
    np.testing.assert_allclose(condition_number(h), np.linalg.cond(h), rtol=1e-6)


def test_condition_number_of_float32_input_and_identity():
    h = _spd(7, 4, 2.0)
    np.testing.assert_allclose(condition_number(h.astype(np.float32)), np.linalg.cond(h),
                               rtol=1e-4)
    assert condition_number(np.eye(3)) == 1.0


def test_condition_number_is_inf_for_a_constant_feature_next_to_an_intercept():
    x = np.column_stack([np.random.default_rng(0).normal(size=20), np.full(20, 3.0)])
    h = least_squares_quadratic(with_intercept(x), np.ones(20)).hessian
    assert condition_number(h) == math.inf


def test_extreme_eigenvalues_match_eigvalsh():
    h = _spd(8, 6, 4.0)
    eig = np.linalg.eigvalsh(h)
    assert extreme_eigenvalues(h) == pytest.approx((eig[0], eig[-1]), rel=1e-12)


@pytest.mark.parametrize("func", [condition_number, extreme_eigenvalues])
@pytest.mark.parametrize("bad, match", [
    (np.ones((2, 3)), "h must be a non-empty square matrix"),
    (np.array([[1.0, 2.0], [0.0, 1.0]]), "h must be symmetric"),
    (np.ones(3), "h must be 2-D"),
])
def test_hessian_checks(func, bad, match):
    with pytest.raises(ValueError, match=f"{func.__name__}: {match}"):
        func(bad)


def test_condition_number_rejects_an_indefinite_matrix():
    with pytest.raises(ValueError, match="condition_number: h must be positive semi-definite"):
        condition_number(np.diag([1.0, -1.0]))


# --------------------------------------------------------------------------- gradient descent

def test_gradient_descent_converges_to_the_lstsq_solution():
    x, y = _problem(9, scales=[1.0, 3.0, 0.5])
    xi = with_intercept(x)
    quad = least_squares_quadratic(xi, y)
    mu, big_l = extreme_eigenvalues(quad.hessian)
    path = gradient_descent(quad, lr=2.0 / (big_l + mu), n_steps=2000)
    np.testing.assert_allclose(path[-1], np.linalg.lstsq(xi, y, rcond=None)[0], rtol=1e-9)


def test_gradient_descent_path_starts_at_w0_and_takes_gradient_steps():
    x, y = _problem(10)
    quad = least_squares_quadratic(x, y)
    w0 = np.array([1.0, -2.0, 0.5])
    path = gradient_descent(quad, lr=0.1, n_steps=3, w0=w0)
    assert path.shape == (4, 3)
    np.testing.assert_array_equal(path[0], w0)
    # One step by hand from the data, not from the quadratic's own gradient.
    manual = w0 - 0.1 * (x.T @ (x @ w0 - y)) / x.shape[0]
    np.testing.assert_allclose(path[1], manual, rtol=1e-12)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lr=0.0, n_steps=3), ValueError, "gradient_descent: lr must be a positive float"),
    (dict(lr=0.1, n_steps=-1), ValueError, "gradient_descent: n_steps must be a non-negative int"),
    (dict(lr=0.1, n_steps=2.5), TypeError, "gradient_descent: n_steps must be a non-negative int"),
    (dict(lr=0.1, n_steps=3, w0=np.zeros(2)), ValueError, r"gradient_descent: w0 must be shape"),
])
def test_gradient_descent_rejects_bad_arguments(kwargs, exc, match):
    x, y = _problem(11)
    with pytest.raises(exc, match=match):
        gradient_descent(least_squares_quadratic(x, y), **kwargs)


def test_gradient_descent_rejects_something_that_is_not_a_quadratic():
    with pytest.raises(TypeError, match="gradient_descent: quad must be a bncourse"):
        gradient_descent((np.eye(2), np.zeros(2), 0.0), lr=0.1, n_steps=1)


# --------------------------------------------------------------------------- step counting

@pytest.mark.parametrize("lam, lr, tol", [(2.0, 0.1, 1e-6), (0.5, 1.3, 1e-4), (3.0, 0.6, 1e-8)])
def test_steps_to_tolerance_in_one_dimension_matches_the_closed_form(lam, lr, tol):
    # f(w) = lam/2 (w - 1)^2 from w0 = 0: the gap after t steps is (1 - lr*lam)^(2t).
    quad = Quadratic(hessian=np.array([[lam]]), linear=np.array([lam]), constant=lam / 2)
    expected = math.ceil(math.log(tol) / (2 * math.log(abs(1 - lr * lam))))
    res = steps_to_tolerance(quad, [lr], tol=tol, max_steps=10_000)
    assert res.steps[0] == expected
    assert not res.diverged[0]
    assert res.gap[0] <= tol


def test_steps_to_tolerance_on_a_diagonal_quadratic_matches_the_eigen_formula():
    lam = np.array([5.0, 1.0, 0.02])
    w_star = np.array([1.0, -2.0, 3.0])
    quad = Quadratic(hessian=np.diag(lam), linear=lam * w_star,
                     constant=0.5 * float(np.sum(lam * w_star ** 2)))
    lrs = np.array([0.05, 0.2, 0.39])
    res = steps_to_tolerance(quad, lrs, tol=1e-5, max_steps=20_000)
    t = np.arange(1, 20_001)[:, None]
    for j, lr in enumerate(lrs):
        # gap_t = sum_i lam_i (1 - lr lam_i)^(2t) w*_i^2 / sum_i lam_i w*_i^2
        gaps = (lam * (1 - lr * lam) ** (2 * t) * w_star ** 2).sum(1) / (lam * w_star ** 2).sum()
        assert res.steps[j] == int(np.argmax(gaps <= 1e-5)) + 1


def test_steps_to_tolerance_flags_divergence_and_budget_exhaustion():
    quad = Quadratic(hessian=np.diag([4.0, 0.01]), linear=np.array([4.0, 0.01]), constant=2.005)
    # 2 / L = 0.5: 0.6 diverges; 0.25 is stable but needs ~2700 steps along the flat direction.
    res = steps_to_tolerance(quad, [0.6, 0.25], tol=1e-6, max_steps=100)
    assert res.diverged.tolist() == [True, False]
    assert res.steps.tolist() == [-1, -1]
    assert 1e-6 < res.gap[1] < 1.0
    assert res.best() is None


def test_best_picks_the_fastest_converged_rate():
    quad = Quadratic(hessian=np.diag([1.0, 0.5]), linear=np.array([1.0, 0.5]), constant=0.75)
    res = steps_to_tolerance(quad, [0.1, 1.0 / 0.75, 2.5], tol=1e-6, max_steps=5000)
    lr, steps = res.best()
    assert lr == pytest.approx(1.0 / 0.75)     # 2 / (L + mu), the optimal constant step
    assert steps == res.steps[1] and steps < res.steps[0]
    assert res.diverged[2]


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lrs=[]), ValueError, "steps_to_tolerance: lrs must be a non-empty"),
    (dict(lrs=[0.1, -1.0]), ValueError, "steps_to_tolerance: lrs must be"),
    (dict(lrs=[0.1], tol=1.5), ValueError, r"steps_to_tolerance: tol must be a float in \(0, 1\)"),
    (dict(lrs=[0.1], max_steps=-2), ValueError, "steps_to_tolerance: max_steps must be"),
    (dict(lrs=[0.1], w0=np.array([1.0, 1.0])), ValueError,
     "steps_to_tolerance: w0 must be a point that does not already minimize f"),
])
def test_steps_to_tolerance_rejects_bad_arguments(kwargs, exc, match):
    quad = Quadratic(hessian=np.eye(2), linear=np.ones(2), constant=1.0)
    with pytest.raises(exc, match=match):
        steps_to_tolerance(quad, **kwargs)


# --------------------------------------------------------------------------- the bound

def steps_upper_bound(kappa: float, tol: float) -> float:
    """At most this many steps at ``lr = 2 / (L + mu)``: every error component shrinks by
    ``rho = (kappa - 1) / (kappa + 1)`` per step, the gap by ``rho ** 2``."""
    return float(math.ceil(math.log(1.0 / tol) / (2.0 * math.log1p(2.0 / (kappa - 1.0)))))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.floats(0.1, 2.5))
def test_measured_steps_at_the_optimal_rate_never_exceed_the_bound(seed, spread):
    h = _spd(seed, 4, spread)
    w_star = np.random.default_rng(seed + 1).normal(size=4)
    quad = Quadratic(hessian=h, linear=h @ w_star, constant=0.5 * float(w_star @ h @ w_star))
    mu, big_l = extreme_eigenvalues(h)
    res = steps_to_tolerance(quad, [2.0 / (big_l + mu)], tol=1e-6, max_steps=200_000)
    assert 0 < res.steps[0] <= steps_upper_bound(big_l / mu, tol=1e-6)


def test_the_bound_is_attained_when_the_error_lies_on_the_extreme_eigenvectors():
    # Equal weight on the two extreme curvatures: both shrink by exactly rho per step.
    lam = np.array([10.0, 0.1])
    quad = Quadratic(hessian=np.diag(lam), linear=lam, constant=0.5 * lam.sum())
    res = steps_to_tolerance(quad, [2.0 / lam.sum()], tol=1e-6, max_steps=10_000)
    assert res.steps[0] == steps_upper_bound(100.0, tol=1e-6)


# --------------------------------------------------------------------------- exact predictions

def test_relative_gap_matches_a_simulated_run():
    x, y = _problem(13, scales=[1.0, 20.0, 0.2], shift=1.5)
    quad = least_squares_quadratic(with_intercept(x), y)
    mu, big_l = extreme_eigenvalues(quad.hessian)
    lr = 1.0 / big_l
    path = gradient_descent(quad, lr=lr, n_steps=300)
    f_star = quad.loss(quad.minimizer())
    simulated = (quad.loss(path.T) - f_star) / (quad.loss(path[0]) - f_star)
    predicted = relative_gap(quad, lr, np.arange(301))
    assert predicted[0] == pytest.approx(1.0)
    np.testing.assert_allclose(predicted, simulated, rtol=1e-6, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.floats(0.1, 2.0), frac=st.floats(0.05, 1.9))
def test_predicted_steps_equal_the_counted_steps(seed, spread, frac):
    h = _spd(seed, 3, spread)
    w_star = np.random.default_rng(seed + 1).normal(size=3)
    quad = Quadratic(hessian=h, linear=h @ w_star, constant=0.5 * float(w_star @ h @ w_star))
    _, big_l = extreme_eigenvalues(h)
    lr = frac / big_l
    counted = steps_to_tolerance(quad, [lr], tol=1e-6, max_steps=100_000).steps[0]
    predicted = predicted_steps(quad, lr, tol=1e-6)
    if counted < 0:
        assert predicted > 100_000
    else:
        # Off by one at most, where round-off puts the gap exactly at the tolerance.
        assert abs(predicted - counted) <= 1


def test_predicted_steps_is_inf_beyond_the_stability_limit():
    quad = Quadratic(hessian=np.diag([4.0, 1.0]), linear=np.array([4.0, 1.0]), constant=2.5)
    assert predicted_steps(quad, 0.49) < math.inf
    assert predicted_steps(quad, 0.5) == math.inf          # |1 - lr L| = 1: never converges
    assert predicted_steps(quad, 0.7) == math.inf
    # lr = 1 / L solves the stiff direction in one step; the other shrinks by 0.75 per step
    # and holds 1 / 5 of the starting gap: gap_t = 0.2 * 0.75^(2t) for t >= 1.
    expected = math.ceil(math.log(1e-6 / 0.2) / (2 * math.log(0.75)))
    assert predicted_steps(quad, 0.25, tol=1e-6) == expected


def test_predicted_steps_handles_runs_too_long_to_simulate():
    lam = np.array([1.0, 1e-7])
    quad = Quadratic(hessian=np.diag(lam), linear=lam, constant=0.5 * lam.sum())
    # Along the flat direction the share is 1e-7 / (1 + 1e-7); the stiff one is solved at once.
    share = 1e-7 / (1.0 + 1e-7)
    expected = math.ceil(math.log(1e-9 / share) / (2 * math.log1p(-1e-7)))
    assert predicted_steps(quad, 1.0, tol=1e-9) == expected


@pytest.mark.parametrize("call, exc, match", [
    (lambda q: relative_gap(q, 0.1, -1), ValueError, "relative_gap: t must be non-negative"),
    (lambda q: relative_gap(q, 0.1, 1.5), ValueError, "relative_gap: t must be non-negative"),
    (lambda q: relative_gap(q, -0.1, 1), ValueError, "relative_gap: lr must be a positive"),
    (lambda q: predicted_steps(q, 0.1, tol=0.0), ValueError, "predicted_steps: tol must be"),
    (lambda q: predicted_steps(q, 0.1, w0=np.ones(2)), ValueError,
     "predicted_steps: w0 must be a point that does not already minimize f"),
])
def test_prediction_functions_reject_bad_arguments(call, exc, match):
    quad = Quadratic(hessian=np.eye(2), linear=np.ones(2), constant=1.0)
    with pytest.raises(exc, match=match):
        call(quad)


# --------------------------------------------------------------------------- loss grid

def test_loss_grid_layout_matches_pointwise_losses():
    x, y = _problem(12, p=1, shift=4.0)
    quad = least_squares_quadratic(with_intercept(x), y)
    w1 = np.linspace(-1.0, 1.0, 5)
    w2 = np.linspace(0.0, 3.0, 4)
    grid = loss_grid(quad, w1, w2)
    assert grid.shape == (4, 5)
    for i, b in enumerate(w2):
        for j, a in enumerate(w1):
            direct = 0.5 * np.mean((a + b * x[:, 0] - y) ** 2)
            assert grid[i, j] == pytest.approx(direct, rel=1e-12)


def test_loss_grid_rejects_a_quadratic_in_three_weights():
    quad = Quadratic(hessian=np.eye(3), linear=np.zeros(3), constant=0.0)
    with pytest.raises(ValueError, match="loss_grid: quad must be a quadratic in 2 weights"):
        loss_grid(quad, np.zeros(2), np.zeros(2))
