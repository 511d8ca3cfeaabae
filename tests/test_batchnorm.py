"""Tests for bncourse.batchnorm: PyTorch (float64, autograd) is the oracle."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse._kernels import MEAN_TOLERANCE_EPS, channel_op
from bncourse.batchnorm import (
    BatchNormCache,
    batch_norm,
    batchnorm_backward,
    batchnorm_backward_graph,
    batchnorm_forward,
)
from bncourse.gradcheck import numerical_gradient, relative_error

SHAPES = [(8, 3), (6, 4, 5), (4, 3, 5, 6), (3, 2, 4, 3, 5)]
SHAPE_IDS = ["2d", "3d", "4d", "5d"]
BACKWARDS = [batchnorm_backward, batchnorm_backward_graph]
# float64 agrees with torch to rounding; float32 to its own precision (unit roundoff 6e-8)
TOL = {np.float64: 1e-12, np.float32: 2e-6}


def make_inputs(rng, shape, dtype=np.float64):
    """x with a different mean and spread per channel, gamma, beta and dy."""
    channels = shape[1]
    loc = rng.normal(0.0, 3.0, size=channels)
    scale = rng.uniform(0.5, 4.0, size=channels)
    bshape = (1, channels) + (1,) * (len(shape) - 2)
    x = loc.reshape(bshape) + scale.reshape(bshape) * rng.standard_normal(shape)
    gamma = rng.normal(1.0, 0.5, size=channels)
    beta = rng.normal(0.0, 1.0, size=channels)
    dy = rng.standard_normal(shape)
    return tuple(a.astype(dtype) for a in (x, gamma, beta, dy))


def torch_train(x, gamma, beta, dy, eps=1e-5):
    """Oracle: torch's training-mode batch norm and autograd, in float64."""
    xt, gt, bt = (torch.tensor(a, dtype=torch.float64, requires_grad=True)
                  for a in (x, gamma, beta))
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    yt.backward(torch.tensor(dy, dtype=torch.float64))
    return yt.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def as_tensor(a):
    return None if a is None else torch.tensor(a, dtype=torch.float64)


# --- forward and backward against torch -------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_forward_matches_torch(rng, shape, dtype):
    x, gamma, beta, dy = make_inputs(rng, shape, dtype)
    y, cache = batchnorm_forward(x, gamma, beta)
    y_torch, *_ = torch_train(x, gamma, beta, dy)
    assert y.dtype == dtype and y.shape == shape
    assert isinstance(cache, BatchNormCache)
    assert cache.x_hat.dtype == dtype and cache.axes == (0, *range(2, len(shape)))
    assert relative_error(y, y_torch) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backward", BACKWARDS, ids=["closed", "graph"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_backward_matches_torch_autograd(rng, shape, backward, dtype):
    x, gamma, beta, dy = make_inputs(rng, shape, dtype)
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dy, cache)
    _, dx_torch, dgamma_torch, dbeta_torch = torch_train(x, gamma, beta, dy)
    assert dx.shape == shape and dgamma.shape == dbeta.shape == (shape[1],)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    assert relative_error(dx, dx_torch) < 10 * TOL[dtype]
    assert relative_error(dgamma, dgamma_torch) < 10 * TOL[dtype]
    assert relative_error(dbeta, dbeta_torch) < 10 * TOL[dtype]


def test_closed_form_and_graph_agree(rng):
    x, gamma, beta, dy = make_inputs(rng, (16, 5, 7))
    _, cache = batchnorm_forward(x, gamma, beta)
    for closed, graph in zip(batchnorm_backward(dy, cache), batchnorm_backward_graph(dy, cache)):
        assert relative_error(closed, graph) < 1e-13


@pytest.mark.parametrize("backward", BACKWARDS, ids=["closed", "graph"])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 2, 2)], ids=["N4D5", "4d"])
def test_backward_matches_numerical_gradient(rng, shape, backward):
    x, gamma, beta, dy = make_inputs(rng, shape)
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dy, cache)
    dx_num = numerical_gradient(lambda a: batchnorm_forward(a, gamma, beta)[0], x, dy)
    dgamma_num = numerical_gradient(lambda g: batchnorm_forward(x, g, beta)[0], gamma, dy)
    dbeta_num = numerical_gradient(lambda b: batchnorm_forward(x, gamma, b)[0], beta, dy)
    assert relative_error(dx, dx_num) < 1e-8
    assert relative_error(dgamma, dgamma_num) < 1e-8
    assert relative_error(dbeta, dbeta_num) < 1e-8


def test_float32_large_mean_small_spread():
    # mean 1e4, std 0.1: float32 keeps ~3 significant digits of the spread per value, and a
    # one-pass E[x^2] - E[x]^2 (or a float32 mean) would lose them all.
    rng = np.random.default_rng(7)
    channels = 16
    x = (1e4 + 0.1 * rng.standard_normal((512, channels))).astype(np.float32)
    eps = 1e-8  # negligible against var = 1e-2, so the output variance should be 1
    y, _ = batchnorm_forward(x, np.ones(channels, np.float32), np.zeros(channels, np.float32),
                             eps=eps)
    y64 = y.astype(np.float64)
    assert np.max(np.abs(y64.mean(axis=0))) < 1e-5
    assert np.max(np.abs(y64.var(axis=0) - 1.0)) < 1e-4
    y_torch = F.batch_norm(torch.tensor(x, dtype=torch.float64), None, None, training=True,
                           eps=eps).numpy()
    assert relative_error(y, y_torch) < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mean_over_std", [0.0, 3.0, 1e2, 1e5])
def test_x_hat_has_zero_batch_mean_whether_or_not_the_mean_is_corrected(dtype, mean_over_std):
    # The forward skips the pass that removes the float rounding of the first mean when that
    # rounding is below MEAN_TOLERANCE_EPS float spacings of the spread: the batch mean of
    # x_hat must then stay within that tolerance, and far below it when the mean is large.
    rng = np.random.default_rng(11)
    channels, std = 64, 0.1
    loc = mean_over_std * std * rng.uniform(0.5, 1.0, size=channels)
    x = (loc + std * rng.standard_normal((512, channels))).astype(dtype)
    eps = 1e-10  # negligible against var = 1e-2
    _, cache = batchnorm_forward(x, np.ones(channels, dtype), np.zeros(channels, dtype), eps=eps)
    x_hat = cache.x_hat.astype(np.float64)
    # one more eps for the rounding of the correction itself
    tolerance = (MEAN_TOLERANCE_EPS + 1) * np.finfo(dtype).eps
    assert np.max(np.abs(x_hat.mean(axis=0))) < tolerance
    # the reference in extended precision: at mean/std = 1e5 float64 itself loses 5 digits
    xl = x.astype(np.longdouble)
    x_hat_exact = (xl - xl.mean(axis=0)) / np.sqrt(xl.var(axis=0) + eps)
    assert relative_error(x_hat, x_hat_exact.astype(np.float64)) < 2 * tolerance


@pytest.mark.parametrize("shape", [(64, 512), (4, 64, 16, 16), (32, 3, 700), (48, 1000)],
                         ids=["2d-blocks", "4d-one-sample", "3d-blocks", "2d-no-whole-block"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_channel_op_gives_the_values_of_plain_broadcasting(rng, shape, order):
    # channel_op views the data as blocks of whole samples (when they divide N) for speed;
    # the values must be exactly those of broadcasting, whatever the path and memory order.
    a = np.asarray(rng.standard_normal(shape).astype(np.float32), order=order)
    v = rng.standard_normal((1, shape[1]) + (1,) * (len(shape) - 2)).astype(np.float32)
    for ufunc in (np.subtract, np.multiply, np.add):
        expected = ufunc(a, v)
        assert np.array_equal(channel_op(ufunc, a, v), expected)
        out = a.copy(order=order)
        assert channel_op(ufunc, out, v, out=out) is out
        assert np.array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(64, 512), (2, 32, 16, 32)], ids=["2d", "4d"])
def test_forward_backward_match_torch_on_batches_large_enough_for_blocks(rng, shape, dtype):
    x, gamma, beta, dy = make_inputs(rng, shape, dtype)
    y, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    y_t, dx_t, dgamma_t, dbeta_t = torch_train(x, gamma, beta, dy)
    assert y.dtype == dx.dtype == dtype
    assert relative_error(y, y_t) < TOL[dtype]
    assert relative_error(dx, dx_t) < 10 * TOL[dtype]
    assert relative_error(dgamma, dgamma_t) < 10 * TOL[dtype]
    assert relative_error(dbeta, dbeta_t) < 10 * TOL[dtype]


def test_eps_sits_inside_the_root(rng):
    # A constant channel has var 0: the output is 0 (finite), not NaN.
    x = np.full((5, 2), 3.0)
    x[:, 1] = rng.standard_normal(5)
    y, cache = batchnorm_forward(x, np.ones(2), np.zeros(2))
    assert np.all(np.isfinite(y)) and np.all(y[:, 0] == 0.0)
    dx, _, _ = batchnorm_backward(rng.standard_normal((5, 2)), cache)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("backward", BACKWARDS, ids=["closed", "graph"])
def test_backward_with_running_statistics_matches_torch_eval(rng, backward):
    # In evaluation mode mean and var are constants: no gradient flows through them.
    from bncourse.batchnorm import _batch_norm  # the only way to a cache with frozen statistics

    x, gamma, beta, dy = make_inputs(rng, (6, 3, 4))
    running_mean, running_var = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    y, cache = _batch_norm("test", x, running_mean, running_var, gamma, beta, False, 0.1, 1e-5)
    assert cache.batch_stats is False
    dx, dgamma, dbeta = backward(dy, cache)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    yt = F.batch_norm(xt, as_tensor(running_mean), as_tensor(running_var), gt, bt, training=False)
    yt.backward(torch.tensor(dy))
    assert relative_error(y, yt.detach()) < 1e-12
    assert relative_error(dx, xt.grad) < 1e-12
    assert relative_error(dgamma, gt.grad) < 1e-12
    assert relative_error(dbeta, bt.grad) < 1e-12


def test_mixed_dtypes_keep_the_dtype_of_x(rng):
    x, gamma, beta, dy = make_inputs(rng, (6, 3, 4))
    x32 = x.astype(np.float32)
    y, cache = batchnorm_forward(x32, gamma, beta)  # float64 parameters
    assert y.dtype == np.float32
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)  # float64 dy
    assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float32
    running_mean, running_var = np.zeros(3), np.ones(3)
    y_functional = batch_norm(x32, running_mean, running_var, gamma, beta, training=True)
    assert y_functional.dtype == np.float32
    assert running_mean.dtype == np.float64
    y_torch, *_ = torch_train(x32, gamma, beta, dy)
    assert relative_error(y, y_torch) < TOL[np.float32]


# --- purity ------------------------------------------------------------------------------------

def test_pure_functions_do_not_modify_inputs(rng):
    x, gamma, beta, dy = make_inputs(rng, (6, 3, 4))
    copies = [a.copy() for a in (x, gamma, beta, dy)]
    _, cache = batchnorm_forward(x, gamma, beta)
    x_hat = cache.x_hat.copy()
    for backward in BACKWARDS:
        backward(dy, cache)
        backward(dy, cache)  # a second call gives the same result: the cache is intact
    batch_norm(x, None, None, gamma, beta, training=True)
    for original, copy in zip((x, gamma, beta, dy), copies):
        np.testing.assert_array_equal(original, copy)
    np.testing.assert_array_equal(cache.x_hat, x_hat)


def test_output_does_not_alias_cache(rng):
    x, *_ = make_inputs(rng, (6, 3))
    y, cache = batchnorm_forward(x, np.ones(3), np.zeros(3))
    assert not np.shares_memory(y, cache.x_hat) and not np.shares_memory(y, x)
    y_plain = batch_norm(x, None, None, training=True)  # no weight, no bias
    assert not np.shares_memory(y_plain, x)


# --- the functional against torch.nn.functional.batch_norm -------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("momentum", [0.1, 0.5, 0.0, 1.0])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_batch_norm_training_updates_buffers_in_place_like_torch(rng, shape, momentum, dtype):
    channels = shape[1]
    running_mean = rng.normal(size=channels).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, size=channels).astype(dtype)
    mean_torch, var_torch = as_tensor(running_mean), as_tensor(running_var)
    ids = (id(running_mean), id(running_var))
    for _ in range(3):
        x, gamma, beta, _ = make_inputs(rng, shape, dtype)
        y = batch_norm(x, running_mean, running_var, gamma, beta, training=True,
                       momentum=momentum)
        y_torch = F.batch_norm(as_tensor(x), mean_torch, var_torch, as_tensor(gamma),
                               as_tensor(beta), training=True, momentum=momentum)
        assert y.dtype == dtype
        assert relative_error(y, y_torch) < TOL[dtype]
        assert relative_error(running_mean, mean_torch) < TOL[dtype]
        assert relative_error(running_var, var_torch) < TOL[dtype]
    assert (id(running_mean), id(running_var)) == ids  # same objects, updated in place
    assert running_mean.dtype == running_var.dtype == dtype


def test_batch_norm_stores_the_unbiased_variance(rng):
    x = rng.standard_normal((5, 3, 2))
    running_mean, running_var = np.zeros(3), np.zeros(3)
    batch_norm(x, running_mean, running_var, training=True, momentum=1.0)
    np.testing.assert_allclose(running_mean, x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(running_var, x.var(axis=(0, 2), ddof=1), rtol=1e-12)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_batch_norm_eval_uses_running_stats_like_torch(rng, shape, affine):
    x, gamma, beta, _ = make_inputs(rng, shape)
    if not affine:
        gamma = beta = None
    running_mean = rng.normal(size=shape[1])
    running_var = rng.uniform(0.5, 2.0, size=shape[1])
    before = running_mean.copy(), running_var.copy()
    y = batch_norm(x, running_mean, running_var, gamma, beta, training=False)
    y_torch = F.batch_norm(as_tensor(x), as_tensor(running_mean), as_tensor(running_var),
                           as_tensor(gamma), as_tensor(beta), training=False)
    assert relative_error(y, y_torch) < 1e-12
    np.testing.assert_array_equal(running_mean, before[0])
    np.testing.assert_array_equal(running_var, before[1])


def test_batch_norm_eval_accepts_one_value_per_channel(rng):
    # Running statistics need no batch: a single sample is fine in evaluation mode, as in torch.
    x = rng.standard_normal((1, 4))
    y = batch_norm(x, np.zeros(4), np.ones(4), training=False, eps=1e-5)
    np.testing.assert_allclose(y, x / np.sqrt(1.0 + 1e-5), rtol=1e-15)


def test_batch_norm_without_buffers_uses_batch_stats(rng):
    x, gamma, beta, dy = make_inputs(rng, (7, 3, 4))
    y = batch_norm(x, None, None, gamma, beta, training=True)
    y_torch, *_ = torch_train(x, gamma, beta, dy)
    assert relative_error(y, y_torch) < 1e-12
    y_forward, _ = batchnorm_forward(x, gamma, beta)
    assert relative_error(y, y_forward) == 0.0


# --- properties (hypothesis) -------------------------------------------------------------------

shapes = st.tuples(st.integers(2, 6), st.integers(1, 4),
                   st.lists(st.integers(1, 3), max_size=3)).map(lambda t: (t[0], t[1], *t[2]))
seeds = st.integers(0, 2**32 - 1)


def draw_x(seed, shape):
    """Per-channel mean in [-50, 50] and spread in [0.1, 10]."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    bshape = (1, channels) + (1,) * (len(shape) - 2)
    loc = rng.uniform(-50, 50, size=channels).reshape(bshape)
    scale = rng.uniform(0.1, 10, size=channels).reshape(bshape)
    return rng, loc + scale * rng.standard_normal(shape)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes)
def test_property_zero_mean_unit_variance(seed, shape):
    rng, x = draw_x(seed, shape)
    axes = (0, *range(2, len(shape)))
    eps = 1e-5
    y, _ = batchnorm_forward(x, np.ones(shape[1]), np.zeros(shape[1]), eps=eps)
    var_x = x.var(axis=axes)
    assert np.all(np.abs(y.mean(axis=axes)) < 1e-12)
    # the variance is 1 up to the eps in the root: var / (var + eps)
    np.testing.assert_allclose(y.var(axis=axes), var_x / (var_x + eps), rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes)
def test_property_dx_sums_to_zero_and_is_orthogonal_to_x_hat(seed, shape):
    rng, x = draw_x(seed, shape)
    axes = (0, *range(2, len(shape)))
    gamma = rng.normal(1, 0.5, shape[1])
    _, cache = batchnorm_forward(x, gamma, np.zeros(shape[1]), eps=1e-12)
    dy = rng.standard_normal(shape)
    # the size of the terms that cancel in dx (m = 2 leaves dx = 0 up to rounding)
    scale = np.abs(gamma) * cache.inv_std.reshape(-1) * np.sum(np.abs(dy), axis=axes)
    # sum(dx * x_hat) = gamma * inv_std * sum(dy * x_hat) * eps / (var + eps) exactly, where
    # 1 - mean(x_hat**2) = eps / (var + eps): zero only in the limit eps -> 0, and not
    # negligible when a channel's variance is tiny (m = 2 with two close values).
    eps_share = 1 - np.mean(cache.x_hat ** 2, axis=axes)
    expected = (gamma * cache.inv_std.reshape(-1) * np.sum(dy * cache.x_hat, axis=axes)
                * eps_share)
    for backward in BACKWARDS:
        dx, _, _ = backward(dy, cache)
        assert np.all(np.abs(np.sum(dx, axis=axes)) <= 1e-9 * scale)
        assert np.all(np.abs(np.sum(dx * cache.x_hat, axis=axes) - expected) <= 1e-9 * scale)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, data=st.data())
def test_property_invariant_to_channel_shift_and_positive_scale(seed, shape, data):
    rng, x = draw_x(seed, shape)
    channels = shape[1]
    bshape = (1, channels) + (1,) * (len(shape) - 2)
    shift = np.array(data.draw(st.lists(st.floats(-100, 100), min_size=channels,
                                        max_size=channels)))
    factor = np.array(data.draw(st.lists(st.floats(0.1, 10), min_size=channels,
                                         max_size=channels)))
    gamma, beta = rng.normal(1, 0.5, channels), rng.normal(0, 1, channels)
    # With eps = 0 the invariance is exact; eps moves x_hat by about eps / (factor^2 var),
    # which is not negligible for a tiny variance (m = 2 with close values, factor 0.1), so the
    # property is checked with an eps far below any variance drawn here.
    eps = 1e-100
    y, _ = batchnorm_forward(x, gamma, beta, eps=eps)
    y_moved, _ = batchnorm_forward(factor.reshape(bshape) * x + shift.reshape(bshape),
                                   gamma, beta, eps=eps)
    assert relative_error(y, y_moved) < 1e-7


# --- bad input ---------------------------------------------------------------------------------

def good(dtype=np.float64):
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(dtype)
    return x, np.ones(3, dtype), np.zeros(3, dtype)


@pytest.mark.parametrize("x, exc, match", [
    (np.zeros(5), ValueError, r"batchnorm_forward: x must be 2-D to 5-D.*\(1-D\)"),
    (np.zeros((2, 3, 1, 1, 1, 1)), ValueError, r"batchnorm_forward: x must be 2-D to 5-D.*6-D"),
    (np.zeros((2, 0)), ValueError, r"batchnorm_forward: x must .*at least one channel"),
    (np.ones((1, 3)), ValueError, r"batchnorm_forward: x must .*more than 1 value per channel"),
    (np.ones((1, 3, 1)), ValueError, r"batchnorm_forward: x must .*more than 1 value per channel"),
    (np.array([[1.0, np.nan, 0.0]] * 2), ValueError, r"batchnorm_forward: x must be finite"),
    (np.array([[1.0, np.inf, 0.0]] * 2), ValueError, r"batchnorm_forward: x must be finite"),
    (np.full((2, 3), 3e38, np.float32) * np.array([1, -1], np.float32)[:, None], ValueError,
     r"batchnorm_forward: x must be small enough .*overflow"),
    (np.ones((2, 3), dtype=np.int64), TypeError,
     r"batchnorm_forward: x must be .*float32 or float64"),
    ([[1.0, 2.0, 3.0]] * 2, TypeError, r"batchnorm_forward: x must be a numpy.ndarray"),
])
def test_forward_rejects_bad_x(x, exc, match):
    with pytest.raises(exc, match=match):
        batchnorm_forward(x, np.ones(3), np.zeros(3))


@pytest.mark.parametrize("arg", ["gamma", "beta"])
def test_forward_rejects_bad_gamma_beta(arg):
    x, gamma, beta = good()
    params = {"gamma": gamma, "beta": beta}
    with pytest.raises(ValueError, match=rf"batchnorm_forward: {arg} must be shape \(3,\).*"
                                         rf"got shape \(4,\)"):
        batchnorm_forward(x, **{**params, arg: np.ones(4)})
    with pytest.raises(ValueError, match=rf"batchnorm_forward: {arg} must be shape \(3,\)"):
        batchnorm_forward(x, **{**params, arg: np.ones((1, 3))})
    with pytest.raises(TypeError, match=rf"batchnorm_forward: {arg} must be an array of shape "
                                        rf"\(3,\), got None"):
        batchnorm_forward(x, **{**params, arg: None})


@pytest.mark.parametrize("eps, exc", [(0.0, ValueError), (-1e-5, ValueError),
                                      (float("nan"), ValueError), ("1e-5", TypeError)])
def test_forward_rejects_bad_eps(eps, exc):
    with pytest.raises(exc, match="batchnorm_forward: eps must be a positive float"):
        batchnorm_forward(*good(), eps=eps)


@pytest.mark.parametrize("backward", BACKWARDS, ids=["closed", "graph"])
def test_backward_rejects_bad_dy_and_cache(backward):
    name = backward.__name__
    x, gamma, beta = good()
    _, cache = batchnorm_forward(x, gamma, beta)
    with pytest.raises(ValueError,
                       match=rf"{name}: dy must be shape \(4, 3\) .*got shape \(3, 4\)"):
        backward(np.ones((3, 4)), cache)
    with pytest.raises(ValueError, match=rf"{name}: dy must be shape"):
        backward(np.ones(12), cache)
    with pytest.raises(ValueError, match=rf"{name}: dy must be finite"):
        backward(np.full((4, 3), np.nan), cache)
    with pytest.raises(TypeError, match=rf"{name}: dy must be .*float32 or float64"):
        backward(np.ones((4, 3), dtype=int), cache)
    with pytest.raises(TypeError, match=rf"{name}: cache must be the BatchNormCache"):
        backward(np.ones((4, 3)), (x, gamma, beta))


def test_batch_norm_rejects_bad_input():
    x, gamma, beta = good()
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm: x must be 2-D to 5-D"):
        batch_norm(np.zeros(3), rm, rv)
    with pytest.raises(ValueError, match=r"batch_norm: x must .*more than 1 value per channel"):
        batch_norm(np.ones((1, 3)), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean and running_var must both"):
        batch_norm(x, rm, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean and running_var must be "
                                         r"arrays .*training=False"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must be shape \(3,\)"):
        batch_norm(x, np.zeros(2), rv)
    with pytest.raises(ValueError, match=r"batch_norm: running_var must be shape \(3,\)"):
        batch_norm(x, rm, np.ones(4), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_var must be non-negative"):
        batch_norm(x, rm, -np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm: weight must be shape \(3,\)"):
        batch_norm(x, rm, rv, weight=np.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm: bias must be shape \(3,\)"):
        batch_norm(x, rm, rv, bias=np.ones(5))
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be a float in \[0, 1\]"):
        batch_norm(x, rm, rv, training=True, momentum=1.5)
    with pytest.raises(TypeError, match=r"batch_norm: momentum must be a float in \[0, 1\].*None"):
        batch_norm(x, rm, rv, training=True, momentum=None)
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a positive float"):
        batch_norm(x, rm, rv, eps=0.0)
    with pytest.raises(TypeError, match=r"batch_norm: training must be a bool"):
        batch_norm(x, rm, rv, training="yes")
    with pytest.raises(ValueError, match=r"batch_norm: x must be finite"):
        batch_norm(np.full((4, 3), np.inf), rm, rv, training=False)
    with pytest.raises(ValueError, match=r"batch_norm: x must be finite"):
        batch_norm(np.full((4, 3), np.inf), rm, rv, training=True)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must be a writeable array"):
        batch_norm(x, rm, rv, training=True)


# --------------------------------------------------------------------------- empty batches, caches

@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (5, 3, 0), (0, 2, 3, 3)])
def test_empty_batch_like_torch(shape):
    # torch: an empty output, zero parameter gradients, running statistics unchanged
    x = np.zeros(shape)
    running_mean, running_var = np.arange(shape[1], dtype=float), np.ones(shape[1]) * 2
    y = batch_norm(x, running_mean, running_var, training=True)
    assert y.shape == shape
    np.testing.assert_array_equal(running_mean, np.arange(shape[1]))
    np.testing.assert_array_equal(running_var, 2.0)
    y_ref = torch.nn.functional.batch_norm(torch.from_numpy(x), None, None, training=True)
    assert tuple(y_ref.shape) == y.shape
    y, cache = batchnorm_forward(x, np.ones(shape[1]), np.zeros(shape[1]))
    for backward in (batchnorm_backward, batchnorm_backward_graph):
        dx, dgamma, dbeta = backward(np.ones(shape), cache)
        assert dx.shape == shape
        np.testing.assert_array_equal(dgamma, 0.0)
        np.testing.assert_array_equal(dbeta, 0.0)


def _tampered(cache, **changes):
    return dataclasses.replace(cache, **changes)


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_graph],
                         ids=["closed", "graph"])
@pytest.mark.parametrize("change, match", [
    (lambda c: {"inv_std": c.inv_std.reshape(-1)}, r"cache.inv_std must be an ndarray of shape "
                                                   r"\(1, 3, 1\).*got ndarray of shape \(3,\)"),
    (lambda c: {"inv_std": np.ones((1, 4, 1))}, r"cache.inv_std must be .*\(1, 4, 1\)"),
    (lambda c: {"gamma": np.ones((1, 2, 1))}, r"cache.gamma must be an ndarray of shape \(1, 3, 1\)"),
    (lambda c: {"gamma": None}, r"cache.gamma must be .*got NoneType"),
    (lambda c: {"axes": (0,)}, r"cache.axes must be \(0, 2\) \(every axis of x_hat but 1\), "
                               r"got \(0,\)"),
    (lambda c: {"axes": (0, 1)}, r"cache.axes must be \(0, 2\)"),
])
def test_backward_rejects_a_tampered_cache_by_name(backward, change, match):
    x = np.random.default_rng(0).normal(size=(5, 3, 2))
    _, cache = batchnorm_forward(x, np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=rf"^{backward.__name__}: {match}"):
        backward(np.ones_like(x), _tampered(cache, **change(cache)))
