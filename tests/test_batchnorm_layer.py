"""Tests for bncourse.batchnorm.BatchNorm against torch.nn.BatchNorm1d/2d/3d (float64 oracle)."""

import numpy as np
import pytest
import torch

import bncourse.batchnorm
from bncourse.batchnorm import BatchNorm
from bncourse.gradcheck import relative_error

TORCH_CLASS = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
               5: torch.nn.BatchNorm3d}
SHAPES = [(8, 3), (6, 4, 5), (4, 3, 5, 6), (3, 2, 4, 3, 5)]
SHAPE_IDS = ["2d", "3d", "4d", "5d"]


def make_pair(shape, dtype=np.float64, **kwargs):
    """A NumPy layer and the matching torch module, same dtype, same random affine parameters."""
    channels = shape[1]
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    ours = BatchNorm(channels, dtype=dtype, **kwargs)
    theirs = TORCH_CLASS[len(shape)](channels, dtype=torch_dtype, **kwargs)
    if ours.affine:
        rng = np.random.default_rng(1)
        ours.weight[...] = rng.normal(1.0, 0.5, channels)
        ours.bias[...] = rng.normal(0.0, 1.0, channels)
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight))
            theirs.bias.copy_(torch.from_numpy(ours.bias))
    return ours, theirs


def batch(rng, shape, dtype=np.float64):
    channels = shape[1]
    bshape = (1, channels) + (1,) * (len(shape) - 2)
    loc = rng.normal(0.0, 3.0, channels).reshape(bshape)
    return (loc + rng.uniform(0.5, 3.0, channels).reshape(bshape)
            * rng.standard_normal(shape)).astype(dtype)


def step(ours, theirs, x, dy):
    """Forward and backward through both; return the relative errors of everything exposed."""
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    y = ours(x)
    dx = ours.backward(dy)
    errors = {"y": relative_error(y, yt.detach()), "dx": relative_error(dx, xt.grad)}
    assert y.dtype == dx.dtype == x.dtype
    if ours.affine:
        errors["dweight"] = relative_error(ours.dweight, theirs.weight.grad)
        errors["dbias"] = relative_error(ours.dbias, theirs.bias.grad)
        theirs.weight.grad = theirs.bias.grad = None
    else:
        assert ours.dweight is None and ours.dbias is None
    if ours.track_running_stats:
        errors["running_mean"] = relative_error(ours.running_mean, theirs.running_mean)
        errors["running_var"] = relative_error(ours.running_var, theirs.running_var)
        assert ours.num_batches_tracked == int(theirs.num_batches_tracked)
    else:
        assert ours.running_mean is None and theirs.running_mean is None
        assert ours.num_batches_tracked is None
    return errors


def assert_all_below(errors, tol):
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"relative errors above {tol}: {bad}"


@pytest.mark.parametrize("options", [
    {},
    {"momentum": None},
    {"momentum": 0.3, "eps": 1e-3},
    {"affine": False},
    {"track_running_stats": False},
    {"affine": False, "track_running_stats": False, "momentum": None},
], ids=["default", "cumulative", "momentum0.3", "no-affine", "untracked", "bare"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_layer_matches_torch_train_then_eval(rng, shape, options):
    ours, theirs = make_pair(shape, **options)
    for _ in range(4):  # several training steps: running buffers and the counter accumulate
        assert_all_below(step(ours, theirs, batch(rng, shape), rng.standard_normal(shape)), 1e-12)
    assert ours.eval() is ours and theirs.eval() is theirs
    assert ours.training is False
    for _ in range(2):  # evaluation: running statistics, buffers frozen
        assert_all_below(step(ours, theirs, batch(rng, shape), rng.standard_normal(shape)), 1e-12)
    assert ours.train() is ours and theirs.train() is theirs
    assert ours.training is True
    assert_all_below(step(ours, theirs, batch(rng, shape), rng.standard_normal(shape)), 1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_layer_float32_matches_torch_float32(rng, shape):
    ours, theirs = make_pair(shape, dtype=np.float32)
    for mode in (True, True, False):
        ours.train(mode)
        theirs.train(mode)
        x = batch(rng, shape, np.float32)
        errors = step(ours, theirs, x, rng.standard_normal(shape).astype(np.float32))
        assert_all_below(errors, 2e-5)
        assert ours.running_mean.dtype == ours.weight.dtype == np.float32


def test_float64_layer_keeps_float32_input_dtype(rng):
    ours, theirs = make_pair((6, 3, 4))  # float64 parameters and buffers (the default)
    theirs.float()
    x = batch(rng, (6, 3, 4), np.float32)
    y = ours(x)
    assert y.dtype == np.float32 and ours.running_mean.dtype == np.float64
    assert ours.backward(np.ones_like(x)).dtype == np.float32
    assert relative_error(y, theirs(torch.tensor(x)).detach()) < 2e-6


def test_cumulative_average_is_the_mean_of_batch_statistics(rng):
    shape = (5, 3, 4)
    ours = BatchNorm(3, momentum=None)
    batches = [batch(rng, shape) for _ in range(5)]
    for x in batches:
        ours(x)
    means = [x.mean(axis=(0, 2)) for x in batches]
    variances = [x.var(axis=(0, 2), ddof=1) for x in batches]
    np.testing.assert_allclose(ours.running_mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, np.mean(variances, axis=0), rtol=1e-12)
    assert ours.num_batches_tracked == 5


def test_eval_leaves_state_untouched_and_uses_running_stats(rng):
    ours = BatchNorm(3)
    ours(batch(rng, (6, 3)))
    state = (ours.running_mean.copy(), ours.running_var.copy(), ours.num_batches_tracked)
    ours.eval()
    x = batch(rng, (6, 3))
    y = ours(x)
    np.testing.assert_array_equal(ours.running_mean, state[0])
    np.testing.assert_array_equal(ours.running_var, state[1])
    assert ours.num_batches_tracked == state[2]
    expected = (x - state[0]) / np.sqrt(state[1] + ours.eps) * ours.weight + ours.bias
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)
    y1 = ours(x[:1])  # one sample is fine in evaluation mode
    np.testing.assert_allclose(y1, y[:1], rtol=1e-13, atol=1e-13)


def test_layer_is_reexported_from_batchnorm():
    assert bncourse.batchnorm.BatchNorm is BatchNorm
    from bncourse.batchnorm import BatchNorm as reexported

    assert reexported is BatchNorm


def test_constructor_state_like_torch():
    ours = BatchNorm(4)
    theirs = torch.nn.BatchNorm1d(4)
    np.testing.assert_array_equal(ours.weight, theirs.weight.detach().numpy())
    np.testing.assert_array_equal(ours.bias, theirs.bias.detach().numpy())
    np.testing.assert_array_equal(ours.running_mean, theirs.running_mean.numpy())
    np.testing.assert_array_equal(ours.running_var, theirs.running_var.numpy())
    assert ours.num_batches_tracked == 0 and ours.training
    assert ours.dweight is None and ours.dbias is None
    bare = BatchNorm(4, affine=False, track_running_stats=False)
    assert bare.weight is None and bare.bias is None
    assert bare.running_mean is None and bare.running_var is None
    assert bare.num_batches_tracked is None
    assert repr(ours) == ("BatchNorm(4, eps=1e-05, momentum=0.1, affine=True, "
                          "track_running_stats=True)")


def test_forward_does_not_modify_x(rng):
    ours = BatchNorm(3)
    x = batch(rng, (5, 3, 2))
    copy = x.copy()
    ours(x)
    ours.backward(np.ones_like(x))
    np.testing.assert_array_equal(x, copy)


def test_reset_running_stats(rng):
    ours = BatchNorm(3)
    ours(batch(rng, (6, 3)))
    ours.reset_running_stats()
    np.testing.assert_array_equal(ours.running_mean, np.zeros(3))
    np.testing.assert_array_equal(ours.running_var, np.ones(3))
    assert ours.num_batches_tracked == 0


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    ({"num_features": 0}, ValueError, r"BatchNorm: num_features must be a positive int, got 0"),
    ({"num_features": 2.0}, TypeError, r"BatchNorm: num_features must be a positive int"),
    ({"num_features": 2, "eps": 0.0}, ValueError, r"BatchNorm: eps must be a positive float"),
    ({"num_features": 2, "momentum": -0.1}, ValueError, r"BatchNorm: momentum must be a float"),
    ({"num_features": 2, "momentum": "0.1"}, TypeError, r"BatchNorm: momentum must be a float"),
    ({"num_features": 2, "dtype": np.int32}, TypeError, r"BatchNorm: dtype must be float32"),
])
def test_constructor_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BatchNorm(**kwargs)


def test_forward_and_backward_reject_bad_input(rng):
    ours = BatchNorm(3)
    with pytest.raises(ValueError, match=r"BatchNorm.backward: forward must be called before"):
        ours.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm.forward: x must have num_features=3 channels"
                                         r" on axis 1, got shape \(4, 2\)"):
        ours(np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"BatchNorm.forward: x must be 2-D to 5-D.*1-D"):
        ours(np.ones(3))
    with pytest.raises(ValueError, match=r"BatchNorm.forward: x must be 2-D to 5-D.*6-D"):
        ours(np.ones((2, 3, 1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"BatchNorm.forward: x must be more than 1 value per "
                                         r"channel in training mode"):
        ours(np.ones((1, 3)))
    assert ours.num_batches_tracked == 0  # a rejected batch is not counted
    with pytest.raises(ValueError, match=r"BatchNorm.forward: x must be finite"):
        ours(np.full((4, 3), np.nan))
    with pytest.raises(TypeError, match=r"BatchNorm.forward: x must be .*float32 or float64"):
        ours(np.ones((4, 3), dtype=np.int64))
    ours(batch(rng, (4, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm.backward: dy must be shape \(4, 3\)"):
        ours.backward(np.ones((5, 3)))
    with pytest.raises(TypeError, match=r"BatchNorm.train: mode must be a bool"):
        ours.train("eval")
    ours.weight = np.ones(4)
    with pytest.raises(ValueError, match=r"BatchNorm.forward: weight must be shape \(3,\)"):
        ours(batch(rng, (4, 3)))
    untracked = BatchNorm(3, track_running_stats=False).eval()
    with pytest.raises(ValueError, match=r"BatchNorm.forward: x must be more than 1 value"):
        untracked(np.ones((1, 3)))  # batch statistics even in eval mode, as in torch


# --------------------------------------------------------------------------- torch's mode rule, empty batches

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_tracking_switched_off_after_construction_behaves_like_torch(training):
    # torch: buffers present are used in evaluation (and left alone in training) even when
    # track_running_stats was switched off after construction
    rng = np.random.default_rng(3)
    ours, theirs = BatchNorm(3), torch.nn.BatchNorm1d(3, dtype=torch.float64)
    for _ in range(2):
        x = rng.normal(2.0, 3.0, size=(8, 3))
        ours(x)
        theirs(torch.from_numpy(x))
    ours.track_running_stats = theirs.track_running_stats = False
    ours.train(training), theirs.train(training)
    x = rng.normal(-1.0, 0.5, size=(4, 3))
    before = ours.running_mean.copy(), ours.running_var.copy(), ours.num_batches_tracked
    y, y_ref = ours(x), theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ours.running_mean, before[0])
    np.testing.assert_array_equal(ours.running_var, before[1])
    assert ours.num_batches_tracked == before[2] == int(theirs.num_batches_tracked)


def test_empty_batch_in_the_layer_like_torch():
    ours, theirs = BatchNorm(3), torch.nn.BatchNorm1d(3, dtype=torch.float64)
    x = np.zeros((0, 3, 4))
    y = ours(x)
    dx = ours.backward(np.ones_like(x))
    x_t = torch.from_numpy(x).requires_grad_(True)
    theirs(x_t).sum().backward()
    assert y.shape == dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(ours.dweight, theirs.weight.grad.numpy())   # zeros
    np.testing.assert_array_equal(ours.dbias, theirs.bias.grad.numpy())
    np.testing.assert_array_equal(ours.running_mean, theirs.running_mean.numpy())
    np.testing.assert_array_equal(ours.running_var, theirs.running_var.numpy())
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 1
