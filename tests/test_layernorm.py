"""Tests for bncourse.layernorm: torch's layer_norm / rms_norm in float64 are the oracle, finite differences second."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.gradcheck import numerical_gradient
from bncourse.layernorm import (
    NormCache,
    RMSNormCache,
    layernorm_backward,
    layernorm_backward_graph,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_backward_graph,
    rmsnorm_forward,
)

SHAPES = [(5, 6), (4, 6, 7), (3, 6, 4, 5), (2, 6, 3, 4, 3)]
SHAPE_IDS = ["2d", "3d", "4d", "5d"]
TOL = {np.float64: 1e-12, np.float32: 2e-6}


def make_x(rng, shape, dtype=np.float64):
    """Input whose rows have different means and spreads (the last axis varies fastest)."""
    lead = shape[:-1] + (1,)
    loc = rng.normal(0.0, 3.0, size=lead)
    scale = rng.uniform(0.5, 4.0, size=lead)
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def t64(a):
    return None if a is None else torch.tensor(a, dtype=torch.float64)


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def normalized_shapes(shape):
    return [shape[len(shape) - k:] for k in range(1, len(shape))]


def torch_grads(fn, x, params, dy):
    """Gradients of sum(fn(x, *params) * dy) by torch's autograd in float64."""
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, *params)]
    fn(*leaves).backward(t64(dy))
    return [leaf.grad.numpy() for leaf in leaves]


# --- layer norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_layernorm_matches_torch_for_every_normalized_rank(rng, shape, dtype):
    x = make_x(rng, shape, dtype)
    for k in range(1, len(shape)):
        normalized = shape[len(shape) - k:]
        gamma = rng.normal(1.0, 0.5, size=normalized).astype(dtype)
        beta = rng.normal(size=normalized).astype(dtype)
        y, cache = layernorm_forward(x, gamma, beta, eps=1e-5)
        want = F.layer_norm(t64(x), normalized, t64(gamma), t64(beta), eps=1e-5).numpy()
        assert y.dtype == dtype and y.shape == shape
        assert max_rel(y, want) < TOL[dtype], k
        assert cache.mean.shape == shape[:len(shape) - k]


def test_layernorm_of_a_matrix_normalizes_each_row(rng):
    x = make_x(rng, (6, 10))
    y, cache = layernorm_forward(x, np.ones(10), np.zeros(10))
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(cache.var, x.var(axis=1), rtol=1e-12)



@pytest.mark.parametrize("args,exc,match", [
    ((np.zeros((2, 3)), [1.0] * 3, np.zeros(3)), TypeError, r"layernorm_forward: gamma must be a numpy"),
    ((np.zeros(3), np.ones(3), np.zeros(3)), ValueError, r"layernorm_forward: x must be 2-D to 5-D"),
    ((np.zeros((2, 3)), np.ones(4), np.zeros(4)), ValueError,
     r"gamma must be of shape x.shape\[-k:\] for some k in 1..1 .*got shape \(4,\)"),
    ((np.zeros((2, 3)), np.ones((2, 3)), np.zeros((2, 3))), ValueError,
     r"gamma must be of shape x.shape\[-k:\]"),
    ((np.zeros((2, 3, 4)), np.ones(3), np.zeros(3)), ValueError, r"gamma must be of shape"),
    ((np.zeros((2, 3)), np.ones(3), np.zeros(2)), ValueError,
     r"beta must be of shape \(3,\) \(the shape of gamma\), got shape \(2,\)"),
    ((np.zeros((2, 3)), np.ones(3, dtype=np.int32), np.zeros(3)), TypeError, r"gamma must be an array"),
])
def test_layernorm_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        layernorm_forward(*args)


# --- layer norm backward ------------------------------------------------------------------------

BACKWARDS = {"closed": layernorm_backward, "graph": layernorm_backward_graph}
RMS_BACKWARDS = {"closed": rmsnorm_backward, "graph": rmsnorm_backward_graph}


@pytest.mark.parametrize("which", list(BACKWARDS))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_layernorm_backward_matches_torch_for_every_normalized_rank(rng, shape, which):
    x = make_x(rng, shape)
    dy = rng.normal(size=shape)
    for normalized in normalized_shapes(shape):
        gamma, beta = rng.normal(1.0, 0.5, size=normalized), rng.normal(size=normalized)
        _, cache = layernorm_forward(x, gamma, beta)
        ours = BACKWARDS[which](dy, cache)
        want = torch_grads(lambda a, g, b: F.layer_norm(a, normalized, g, b, eps=1e-5),
                           x, (gamma, beta), dy)
        for a, b in zip(ours, want):
            assert a.shape == b.shape and max_rel(a, b) < 1e-12, normalized


@pytest.mark.parametrize("which", list(BACKWARDS))
def test_layernorm_backward_matches_finite_differences(rng, which):
    x = make_x(rng, (4, 3, 5))
    gamma, beta, dy = rng.normal(size=5), rng.normal(size=5), rng.normal(size=x.shape)
    _, cache = layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = BACKWARDS[which](dy, cache)
    assert max_rel(dx, numerical_gradient(lambda v: layernorm_forward(v, gamma, beta)[0], x, dy)) < 1e-8
    assert max_rel(dgamma, numerical_gradient(lambda v: layernorm_forward(x, v, beta)[0], gamma, dy)) < 1e-8
    assert max_rel(dbeta, numerical_gradient(lambda v: layernorm_forward(x, gamma, v)[0], beta, dy)) < 1e-8


def test_layernorm_backward_float32_keeps_dtype(rng):
    x = make_x(rng, (6, 8), np.float32)
    gamma, beta = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    _, cache = layernorm_forward(x, gamma, beta)
    for backward in BACKWARDS.values():
        grads = backward(dy, cache)
        assert all(g.dtype == np.float32 for g in grads)
        want = torch_grads(lambda a, g, b: F.layer_norm(a, (8,), g, b), x.astype(np.float64),
                           (gamma.astype(np.float64), beta.astype(np.float64)),
                           dy.astype(np.float64))
        assert max(max_rel(a, b) for a, b in zip(grads, want)) < 1e-5


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), m=st.integers(2, 9), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(1e-2, 1e2), eps=st.sampled_from([1e-5, 1e-2, 1.0]))
def test_layernorm_backward_properties(rows, m, seed, scale, eps):
    """Per row, dx sums to 0; its component along x_hat is exactly S * eps * inv_std**3."""
    rng = np.random.default_rng(seed)
    x = scale * make_x(rng, (rows, m))
    gamma, beta, dy = rng.normal(size=m), rng.normal(size=m), rng.normal(size=(rows, m))
    _, cache = layernorm_forward(x, gamma, beta, eps=eps)
    dx, _, _ = layernorm_backward(dy, cache)
    dx_graph, _, _ = layernorm_backward_graph(dy, cache)
    size = np.abs(dy * gamma).max() * cache.inv_std.max()          # what |dx| could be
    np.testing.assert_allclose(dx.sum(axis=1), 0.0, atol=1e-12 * m * size)
    s = ((dy * gamma) * cache.x_hat).sum(axis=1)
    np.testing.assert_allclose((dx * cache.x_hat).sum(axis=1), s * eps * cache.inv_std**3,
                               atol=1e-11 * m * size)
    assert np.abs(dx - dx_graph).max() <= 1e-11 * size
    # shift invariance: adding a constant to a row changes nothing (up to rounding)
    y, _ = layernorm_forward(x, gamma, beta, eps=eps)
    y_shifted, _ = layernorm_forward(x + 7.0 * scale, gamma, beta, eps=eps)
    np.testing.assert_allclose(y_shifted, y, atol=1e-9 * np.abs(gamma).max())


# --- RMS norm -----------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [None, 1e-6, 0.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_rmsnorm_matches_torch_for_every_normalized_rank(rng, shape, dtype, eps):
    x = make_x(rng, shape, dtype)
    for normalized in normalized_shapes(shape):
        gamma = rng.normal(1.0, 0.5, size=normalized).astype(dtype)
        y, cache = rmsnorm_forward(x, gamma, eps=eps)
        want = F.rms_norm(torch.from_numpy(x), normalized, torch.from_numpy(gamma), eps=eps)
        want64 = F.rms_norm(t64(x), normalized, t64(gamma),
                            eps=float(np.finfo(dtype).eps) if eps is None else eps).numpy()
        assert y.dtype == dtype and y.shape == shape and isinstance(cache, RMSNormCache)
        assert max_rel(y, want64) < TOL[dtype]
        assert max_rel(y, want.numpy()) < TOL[dtype]       # torch in x's own dtype
        assert cache.inv_rms.shape == shape[:len(shape) - len(normalized)]


def test_rmsnorm_module_default_eps_is_the_dtype_epsilon(rng):
    x = make_x(rng, (3, 4, 5))
    layer = torch.nn.RMSNorm(5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.normal(size=5)))
    y, _ = rmsnorm_forward(x, layer.weight.detach().numpy())
    assert max_rel(y, layer(t64(x)).detach().numpy()) < 1e-13


@pytest.mark.parametrize("which", list(RMS_BACKWARDS))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_rmsnorm_backward_matches_torch_and_finite_differences(rng, shape, which):
    x = make_x(rng, shape)
    dy = rng.normal(size=shape)
    for normalized in normalized_shapes(shape):
        gamma = rng.normal(1.0, 0.5, size=normalized)
        _, cache = rmsnorm_forward(x, gamma, eps=1e-6)
        dx, dgamma = RMS_BACKWARDS[which](dy, cache)
        want = torch_grads(lambda a, g: F.rms_norm(a, normalized, g, eps=1e-6), x, (gamma,), dy)
        assert max_rel(dx, want[0]) < 1e-12 and max_rel(dgamma, want[1]) < 1e-12
    fd = numerical_gradient(lambda v: rmsnorm_forward(v, gamma, eps=1e-6)[0], x, dy)
    assert max_rel(dx, fd) < 1e-8


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), m=st.integers(1, 9), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(1e-2, 1e2), eps=st.sampled_from([1e-6, 1e-2, 1.0]))
def test_rmsnorm_properties(rows, m, seed, scale, eps):
    """dx . x_hat per row is S * eps * inv_rms**3; graph = closed form; y = gamma * x / rms (no centring)."""
    rng = np.random.default_rng(seed)
    x = scale * make_x(rng, (rows, m))
    gamma, dy = rng.normal(size=m), rng.normal(size=(rows, m))
    y, cache = rmsnorm_forward(x, gamma, eps=eps)
    dx, _ = rmsnorm_backward(dy, cache)
    size = np.abs(dy * gamma).max() * cache.inv_rms.max()
    s = ((dy * gamma) * cache.x_hat).sum(axis=1)
    np.testing.assert_allclose((dx * cache.x_hat).sum(axis=1), s * eps * cache.inv_rms**3,
                               atol=1e-11 * m * size)
    assert np.abs(dx - rmsnorm_backward_graph(dy, cache)[0]).max() <= 1e-11 * size
    ms = (x**2).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(y, gamma * x / np.sqrt(ms + eps), rtol=1e-12, atol=1e-300)


def test_rmsnorm_of_zero_rows_is_zero_and_eps_sits_inside_the_root():
    y, cache = rmsnorm_forward(np.zeros((2, 3)), np.ones(3))
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_allclose(cache.inv_rms, 1 / np.sqrt(np.finfo(np.float64).eps))
    x = np.array([[3.0, 4.0]])                                  # mean square 12.5
    y, _ = rmsnorm_forward(x, np.ones(2), eps=1.0)
    np.testing.assert_allclose(y, x / np.sqrt(13.5), rtol=1e-15)


# --- the properties that matter for sequences ---------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 4), t=st.integers(2, 7), cut=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_a_position_never_sees_other_positions_or_samples(b, t, cut, seed):
    """(B, T, D) input: changing later positions or other samples leaves a position's output bit-identical."""
    rng = np.random.default_rng(seed)
    cut = min(cut, t - 1)
    x = make_x(rng, (b, t, 4))
    changed = x.copy()
    changed[:, cut:] = rng.normal(5.0, 3.0, size=changed[:, cut:].shape)
    changed[1:] = rng.normal(size=changed[1:].shape)
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    for forward in (lambda a: layernorm_forward(a, gamma, beta)[0],
                    lambda a: rmsnorm_forward(a, gamma)[0]):
        np.testing.assert_array_equal(forward(changed)[0, :cut], forward(x)[0, :cut])


def test_inputs_are_not_modified_by_forward_or_backward(rng):
    x = make_x(rng, (4, 6, 3))
    gamma, beta, dy = rng.normal(size=3), rng.normal(size=3), rng.normal(size=(4, 6, 3))
    copies = [a.copy() for a in (x, gamma, beta, dy)]
    _, cache = layernorm_forward(x, gamma, beta)
    layernorm_backward(dy, cache)
    layernorm_backward_graph(dy, cache)
    _, rcache = rmsnorm_forward(x, gamma)
    rmsnorm_backward(dy, rcache)
    rmsnorm_backward_graph(dy, rcache)
    for a, b in zip((x, gamma, beta, dy), copies):
        np.testing.assert_array_equal(a, b)


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args,kwargs,exc,match", [
    ((np.zeros(3), np.ones(3)), {}, ValueError, r"rmsnorm_forward: x must be 2-D to 5-D"),
    ((np.zeros((2, 3)), np.ones(4)), {}, ValueError,
     r"rmsnorm_forward: gamma must be of shape x.shape\[-k:\] .*got shape \(4,\)"),
    ((np.zeros((2, 3)), [1.0] * 3), {}, TypeError, r"rmsnorm_forward: gamma must be a numpy"),
    ((np.zeros((2, 3), dtype=np.int64), np.ones(3)), {}, TypeError, r"x must be an array of dtype"),
    ((np.full((2, 3), np.inf), np.ones(3)), {}, ValueError, r"rmsnorm_forward: x must be finite"),
    ((np.zeros((2, 3)), np.ones(3)), {"eps": 0.0}, ValueError,
     r"rmsnorm_forward: eps must be a positive float, got 0.0"),
    ((np.zeros((2, 3)), np.ones(3)), {"eps": "1e-5"}, TypeError, r"eps must be a positive float"),
])
def test_rmsnorm_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rmsnorm_forward(*args, **kwargs)


def test_backward_bad_input(rng):
    x = make_x(rng, (3, 4))
    _, ln_cache = layernorm_forward(x, np.ones(4), np.zeros(4))
    _, rms_cache = rmsnorm_forward(x, np.ones(4))
    group_cache = NormCache(x, x[:, :1], x[:, :1], x[:, :1], kind="group")
    for backward in BACKWARDS.values():
        name = backward.__name__
        with pytest.raises(TypeError, match=rf"{name}: cache must be the NormCache returned by "
                                            r"layernorm_forward, got RMSNormCache"):
            backward(np.ones_like(x), rms_cache)
        with pytest.raises(TypeError, match=r"got NormCache of kind 'group'"):
            backward(np.ones_like(x), group_cache)
        with pytest.raises(ValueError, match=rf"{name}: dy must be shape \(3, 4\) \(the shape of x"):
            backward(np.ones((3, 5)), ln_cache)
        with pytest.raises(ValueError, match=rf"{name}: dy must be finite"):
            backward(np.full((3, 4), np.nan), ln_cache)
    for backward in RMS_BACKWARDS.values():
        name = backward.__name__
        with pytest.raises(TypeError, match=rf"{name}: cache must be the RMSNormCache returned "
                                            r"by rmsnorm_forward, got NormCache"):
            backward(np.ones_like(x), ln_cache)
        with pytest.raises(TypeError, match=rf"{name}: dy must be a numpy.ndarray"):
            backward([1.0], rms_cache)
        with pytest.raises(ValueError, match=rf"{name}: dy must be finite"):
            backward(np.full((3, 4), np.inf), rms_cache)
