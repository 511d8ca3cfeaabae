"""Tests for bncourse.torch_bn: torch's own BatchNorm (float64) is the oracle."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.torch_bn import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    BatchNormFunction,
    batch_moments,
    batch_norm,
)

SHAPES = [(6, 3), (4, 3, 5), (3, 2, 4, 5), (2, 3, 3, 2, 4)]
PAIRS = {  # ours, torch's, input shape
    "1d-2D": (BatchNorm1d, nn.BatchNorm1d, (8, 3)),
    "1d-3D": (BatchNorm1d, nn.BatchNorm1d, (4, 3, 5)),
    "2d": (BatchNorm2d, nn.BatchNorm2d, (3, 4, 5, 3)),
    "3d": (BatchNorm3d, nn.BatchNorm3d, (2, 3, 3, 2, 4)),
}
CONFIGS = {
    "default": {},
    "momentum-none": {"momentum": None},
    "momentum-0.3-eps-1e-3": {"momentum": 0.3, "eps": 1e-3},
    "affine-false": {"affine": False},
    "no-bias": {"bias": False},
    "no-running-stats": {"track_running_stats": False},
}
TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-12},
       torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


def random_input(shape, seed, dtype=torch.float64, requires_grad=True):
    """Input with a non-zero mean and a non-unit scale per channel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    shift = torch.randn(shape[1], generator=g, dtype=torch.float64)
    scale = torch.rand(shape[1], generator=g, dtype=torch.float64) * 3 + 0.5
    view = (1, -1) + (1,) * (len(shape) - 2)
    x = x * scale.reshape(view) + shift.reshape(view)
    return x.to(dtype).requires_grad_(requires_grad)


def random_vector(c, seed, dtype=torch.float64, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, generator=g, dtype=dtype).requires_grad_(requires_grad)


def reference_batch_norm(x, weight, bias, eps, mean=None, var=None):
    """Batch norm written with plain torch ops; autograd differentiates it."""
    dims = [0, *range(2, x.dim())]
    view = (1, -1) + (1,) * (x.dim() - 2)
    if mean is None:
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    else:
        mean, var = mean.reshape(view), var.reshape(view)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.reshape(view)
    if bias is not None:
        y = y + bias.reshape(view)
    return y


def running_stats(c, seed):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(c, generator=g, dtype=torch.float64)
    var = torch.rand(c, generator=g, dtype=torch.float64) * 2 + 0.1
    return mean, var


# --------------------------------------------------------------------------- #
# BatchNormFunction
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}D")
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("stats", ["batch", "fixed"])
def test_function_passes_gradcheck(shape, affine, stats):
    c = shape[1]
    x = random_input(shape, seed=1)
    weight = random_vector(c, seed=2) if affine else None
    bias = random_vector(c, seed=3) if affine else None
    fixed = running_stats(c, seed=4) if stats == "fixed" else ()
    assert torch.autograd.gradcheck(
        lambda x, w, b: BatchNormFunction.apply(x, w, b, 1e-5, *fixed), (x, weight, bias))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}D")
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("stats", ["batch", "fixed"])
def test_function_matches_autograd_through_plain_forward(shape, affine, stats):
    c = shape[1]
    x = random_input(shape, seed=5)
    weight = random_vector(c, seed=6) if affine else None
    bias = random_vector(c, seed=7) if affine else None
    fixed = running_stats(c, seed=8) if stats == "fixed" else ()
    dy = random_input(shape, seed=9, requires_grad=False)
    inputs = [t for t in (x, weight, bias) if t is not None]

    y = BatchNormFunction.apply(x, weight, bias, 1e-3, *fixed)
    grads = torch.autograd.grad(y, inputs, dy)
    y_ref = reference_batch_norm(x, weight, bias, 1e-3, *fixed)
    grads_ref = torch.autograd.grad(y_ref, inputs, dy)

    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **TOL[torch.float64])


def test_function_backward_is_the_closed_form_and_differentiable_again():
    x = random_input((5, 3), seed=10)
    y = BatchNormFunction.apply(x, None, None, 1e-5)
    assert type(y.grad_fn).__name__ == "BatchNormFunctionBackward"
    # The backward is made of differentiable torch operations: a second derivative
    # exists and equals autograd's through the plain forward.
    (dx,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    (ddx,) = torch.autograd.grad(dx.pow(2).sum(), x)
    x_ref = x.detach().requires_grad_(True)
    (dx_ref,) = torch.autograd.grad((reference_batch_norm(x_ref, None, None, 1e-5) ** 3).sum(),
                                    x_ref, create_graph=True)
    (ddx_ref,) = torch.autograd.grad(dx_ref.pow(2).sum(), x_ref)
    torch.testing.assert_close(ddx, ddx_ref, **TOL[torch.float64])


@pytest.mark.parametrize("wanted", ["x", "weight", "bias"])
def test_function_computes_only_the_requested_gradient(wanted):
    x = random_input((6, 3), seed=11, requires_grad=wanted == "x")
    weight = random_vector(3, seed=12, requires_grad=wanted == "weight")
    bias = random_vector(3, seed=13, requires_grad=wanted == "bias")
    dy = random_input((6, 3), seed=14, requires_grad=False)
    target = {"x": x, "weight": weight, "bias": bias}[wanted]

    y = BatchNormFunction.apply(x, weight, bias, 1e-5)
    (grad,) = torch.autograd.grad(y, target, dy)
    x_ref, w_ref, b_ref = (t.detach().requires_grad_(t is target) for t in (x, weight, bias))
    y_ref = reference_batch_norm(x_ref, w_ref, b_ref, 1e-5)
    ref_target = {"x": x_ref, "weight": w_ref, "bias": b_ref}[wanted]
    (grad_ref,) = torch.autograd.grad(y_ref, ref_target, dy)
    torch.testing.assert_close(grad, grad_ref, **TOL[torch.float64])
    assert all(t.grad is None for t in (x, weight, bias))


def test_batch_dx_sums_to_zero_per_channel():
    # The mean is subtracted, so shifting x does not change y: dx sums to 0.
    x = random_input((7, 4, 3), seed=15)
    dy = random_input((7, 4, 3), seed=16, requires_grad=False)
    y = BatchNormFunction.apply(x, random_vector(4, seed=17), None, 1e-5)
    (dx,) = torch.autograd.grad(y, x, dy)
    torch.testing.assert_close(dx.sum(dim=(0, 2)), torch.zeros(4, dtype=torch.float64),
                               rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- #
# Functional batch_norm
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_functional_matches_torch(training):
    x = random_input((5, 3, 4), seed=20)
    weight, bias = random_vector(3, seed=21), random_vector(3, seed=22)
    mean, var = running_stats(3, seed=23)
    mean_ref, var_ref = mean.clone(), var.clone()
    y = batch_norm(x, mean, var, weight, bias, training, 0.2, 1e-4)
    y_ref = F.batch_norm(x, mean_ref, var_ref, weight, bias, training, 0.2, 1e-4)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    torch.testing.assert_close(mean, mean_ref, **TOL[torch.float64])
    torch.testing.assert_close(var, var_ref, **TOL[torch.float64])
    if training:
        assert not torch.equal(mean, running_stats(3, seed=23)[0])  # it was updated


@pytest.mark.parametrize("call, exc, match", [
    (lambda x, m, v: batch_norm(x.numpy(), m, v), TypeError, "batch_norm: x must be a torch"),
    (lambda x, m, v: batch_norm(x[0], m, v), ValueError,
     r"batch_norm: x must be 2-D to 5-D.*\(3,\)"),
    (lambda x, m, v: batch_norm(x, m[:2], v), ValueError, r"running_mean must be shape \(3,\)"),
    (lambda x, m, v: batch_norm(x, m, None, training=True), ValueError, "both tensors or both"),
    (lambda x, m, v: batch_norm(x, None, None), ValueError, "tensors when training=False"),
    (lambda x, m, v: batch_norm(x, m, v, eps=0.0), ValueError, "eps must be a positive"),
    (lambda x, m, v: batch_norm(x, m, v, training=True, momentum=1.5), ValueError, "momentum"),
    (lambda x, m, v: batch_norm(x[:1], m, v, training=True), ValueError,
     r"more than 1 value per channel.*\(1, 3\)"),
])
def test_functional_errors(call, exc, match):
    x = random_input((4, 3), seed=24, requires_grad=False)
    mean, var = running_stats(3, seed=25)
    with pytest.raises(exc, match=match):
        call(x, mean, var)


# --------------------------------------------------------------------------- #
# Modules against torch's modules
# --------------------------------------------------------------------------- #

def make_pair(ours_cls, torch_cls, dtype=torch.float64, **kwargs):
    """Our module and torch's, with the same random gamma and beta."""
    ours = ours_cls(3 if ours_cls is not BatchNorm2d else 4, dtype=dtype, **kwargs)
    theirs = torch_cls(ours.num_features, dtype=dtype, **kwargs)
    with torch.no_grad():
        for k, (p, q) in enumerate(zip(ours.parameters(), theirs.parameters())):
            value = random_vector(ours.num_features, seed=100 + k, dtype=dtype)
            p.copy_(value)
            q.copy_(value)
    return ours, theirs


def assert_same_state(ours, theirs, tol):
    ours_state, their_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(their_state)
    for key in their_state:
        assert ours_state[key].dtype == their_state[key].dtype, key
        torch.testing.assert_close(ours_state[key], their_state[key], **tol)


def step(module, x, dy):
    """Forward, backward with upstream gradient dy; returns y, dx and parameter grads."""
    x = x.detach().requires_grad_(True)
    y = module(x)
    params = [p for p in module.parameters()]
    grads = torch.autograd.grad(y, [x, *params], dy)
    return y.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_module_matches_torch_in_train_then_eval(pair, config, dtype):
    ours_cls, torch_cls, shape = pair
    shape = (shape[0], 4 if ours_cls is BatchNorm2d else 3, *shape[2:])
    ours, theirs = make_pair(ours_cls, torch_cls, dtype, **config)
    tol = TOL[dtype]
    for k in range(4):
        x = random_input(shape, seed=30 + k, dtype=dtype)
        dy = random_input(shape, seed=40 + k, dtype=dtype, requires_grad=False)
        y, grads = step(ours, x, dy)
        y_ref, grads_ref = step(theirs, x, dy)
        torch.testing.assert_close(y, y_ref, **tol)
        assert len(grads) == len(grads_ref)
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, **tol)
        assert_same_state(ours, theirs, tol)

    ours.eval()
    theirs.eval()
    x = random_input(shape, seed=50, dtype=dtype)
    dy = random_input(shape, seed=51, dtype=dtype, requires_grad=False)
    y, grads = step(ours, x, dy)
    y_ref, grads_ref = step(theirs, x, dy)
    torch.testing.assert_close(y, y_ref, **tol)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **tol)
    assert_same_state(ours, theirs, tol)  # evaluation leaves the buffers alone


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_parameters_buffers_and_repr_match_torch(config):
    ours = BatchNorm2d(5, dtype=torch.float64, **config)
    theirs = nn.BatchNorm2d(5, dtype=torch.float64, **config)
    assert repr(ours) == repr(theirs)
    for ours_named, their_named in ((ours.named_parameters(), theirs.named_parameters()),
                                    (ours.named_buffers(), theirs.named_buffers())):
        ours_list, their_list = list(ours_named), list(their_named)
        assert [n for n, _ in ours_list] == [n for n, _ in their_list]
        for (_, a), (_, b) in zip(ours_list, their_list):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b)  # same initial values
    # torch's state code, the package's forward and backward
    assert isinstance(ours, nn.modules.batchnorm._BatchNorm)
    assert type(ours).forward is not nn.modules.batchnorm._BatchNorm.forward


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("direction", ["torch-to-ours", "ours-to-torch"])
def test_state_dict_loads_both_ways(config, direction):
    ours, theirs = make_pair(BatchNorm1d, nn.BatchNorm1d, **config)
    source, target = (theirs, ours) if direction == "torch-to-ours" else (ours, theirs)
    fresh_target = type(target)(3, dtype=torch.float64, **config)
    for k in range(3):  # give the source non-trivial running statistics
        source(random_input((6, 3), seed=60 + k))
    fresh_target.load_state_dict(source.state_dict(), strict=True)
    assert_same_state(fresh_target, source, {"rtol": 0, "atol": 0})
    source.eval()
    fresh_target.eval()
    x = random_input((6, 3), seed=63, requires_grad=False)
    torch.testing.assert_close(fresh_target(x), source(x), **TOL[torch.float64])


def test_state_dict_before_version_2_loads_without_num_batches_tracked():
    source = nn.BatchNorm1d(3, dtype=torch.float64)
    source(random_input((6, 3), seed=64))
    state = source.state_dict()
    del state["num_batches_tracked"]
    state._metadata[""]["version"] = 1
    for target in (BatchNorm1d(3, dtype=torch.float64), nn.BatchNorm1d(3, dtype=torch.float64)):
        target.load_state_dict(copy.copy(state), strict=True)
        torch.testing.assert_close(target.running_mean, source.running_mean)
        assert int(target.num_batches_tracked) == 0


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_eval_under_no_grad_matches_torch(pair):
    ours_cls, torch_cls, shape = pair
    ours, theirs = make_pair(ours_cls, torch_cls)
    shape = (shape[0], ours.num_features, *shape[2:])
    for k in range(2):
        ours(random_input(shape, seed=70 + k))
        theirs(random_input(shape, seed=70 + k))
    ours.eval()
    theirs.eval()
    x = random_input(shape, seed=72)
    with torch.no_grad():
        y, y_ref = ours(x), theirs(x)
    assert y.grad_fn is None and not y.requires_grad
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])


def test_training_mode_under_no_grad_still_updates_buffers():
    # The mode comes from module.training, not from torch.is_grad_enabled().
    ours, theirs = make_pair(BatchNorm1d, nn.BatchNorm1d)
    x = random_input((8, 3), seed=73)
    with torch.no_grad():
        y, y_ref = ours(x), theirs(x)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    assert int(ours.num_batches_tracked) == 1
    assert not torch.equal(ours.running_mean, torch.zeros(3, dtype=torch.float64))
    assert_same_state(ours, theirs, TOL[torch.float64])


def test_eval_mode_with_grad_enabled_uses_running_statistics():
    ours, theirs = make_pair(BatchNorm2d, nn.BatchNorm2d)
    ours(random_input((3, 4, 2, 2), seed=74))
    theirs(random_input((3, 4, 2, 2), seed=74))
    ours.eval()
    theirs.eval()
    x = random_input((3, 4, 2, 2), seed=75)
    before = copy.deepcopy(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), **TOL[torch.float64])
    for key, value in before.items():
        assert torch.equal(ours.state_dict()[key], value)


def test_running_buffers_carry_no_autograd_graph():
    ours = BatchNorm1d(3, dtype=torch.float64)
    for k in range(3):
        x = random_input((6, 3, 2), seed=76 + k)
        (ours(x) ** 2).sum().backward()
    for buffer in ours.buffers():
        assert buffer.grad_fn is None
        assert not buffer.requires_grad


@pytest.mark.parametrize("ours_cls, torch_cls, shape", [
    (BatchNorm1d, nn.BatchNorm1d, (1, 3)),
    (BatchNorm1d, nn.BatchNorm1d, (1, 3, 1)),
    (BatchNorm2d, nn.BatchNorm2d, (1, 3, 1, 1)),
    (BatchNorm3d, nn.BatchNorm3d, (1, 3, 1, 1, 1)),
])
def test_one_value_per_channel_in_training_raises_like_torch(ours_cls, torch_cls, shape):
    x = random_input(shape, seed=80, requires_grad=False)
    with pytest.raises(ValueError):
        torch_cls(3, dtype=torch.float64)(x)
    shape_text = str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"{ours_cls.__name__}: input must be more than 1 "
                       rf"value per channel.*{shape_text}"):
        ours_cls(3, dtype=torch.float64)(x)
    # Without running statistics the batch statistics are used in eval too.
    with pytest.raises(ValueError):
        torch_cls(3, track_running_stats=False, dtype=torch.float64).eval()(x)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ours_cls(3, track_running_stats=False, dtype=torch.float64).eval()(x)
    # With running statistics, eval mode accepts a single example, as torch does.
    ours, theirs = make_pair(ours_cls, torch_cls)
    if ours.num_features == 3:
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), **TOL[torch.float64])


@pytest.mark.parametrize("ours_cls, torch_cls, shape, expected", [
    (BatchNorm1d, nn.BatchNorm1d, (2, 3, 4, 5), r"2-D \(N, C\) or 3-D \(N, C, L\)"),
    (BatchNorm1d, nn.BatchNorm1d, (3,), r"2-D \(N, C\) or 3-D \(N, C, L\)"),
    (BatchNorm2d, nn.BatchNorm2d, (2, 3, 4), r"4-D \(N, C, H, W\)"),
    (BatchNorm2d, nn.BatchNorm2d, (2, 3, 4, 5, 6), r"4-D \(N, C, H, W\)"),
    (BatchNorm3d, nn.BatchNorm3d, (2, 3, 4, 5), r"5-D \(N, C, D, H, W\)"),
])
def test_wrong_input_rank_raises_value_error_naming_class_and_shape(
        ours_cls, torch_cls, shape, expected):
    x = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError):
        torch_cls(3, dtype=torch.float64)(x)
    shape_text = str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^{ours_cls.__name__}: input must be {expected}, "
                       rf"got shape {shape_text} \({len(shape)}-D\)$"):
        ours_cls(3, dtype=torch.float64)(x)


def test_channel_mismatch_raises_value_error():
    with pytest.raises(ValueError, match=r"BatchNorm2d: input must be 3 channels.*\(2, 5, 4, 4\)"):
        BatchNorm2d(3)(torch.zeros(2, 5, 4, 4))


def test_non_tensor_and_integer_inputs_raise_type_error():
    with pytest.raises(TypeError, match="BatchNorm1d: input must be a torch.Tensor, got list"):
        BatchNorm1d(2)([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="BatchNorm1d: input must be a floating-point tensor"):
        BatchNorm1d(2)(torch.ones(3, 2, dtype=torch.long))


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"num_features": 0}, ValueError, "BatchNorm2d: num_features must be a positive int, got 0"),
    ({"num_features": 2.5}, TypeError, "BatchNorm2d: num_features must be a positive int"),
    ({"num_features": 3, "eps": 0.0}, ValueError, "BatchNorm2d: eps must be a positive float"),
    ({"num_features": 3, "momentum": 1.5}, ValueError, "BatchNorm2d: momentum must be a float"),
    ({"num_features": 3, "momentum": "0.1"}, TypeError, "BatchNorm2d: momentum must be a float"),
])
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BatchNorm2d(**kwargs)


def test_reset_running_stats_and_parameters():
    ours = BatchNorm1d(3, dtype=torch.float64)
    with torch.no_grad():
        ours.weight.mul_(3.0)
    ours(random_input((6, 3), seed=81))
    ours.reset_running_stats()
    fresh = nn.BatchNorm1d(3, dtype=torch.float64)
    assert torch.equal(ours.running_mean, fresh.running_mean)
    assert torch.equal(ours.running_var, fresh.running_var)
    assert int(ours.num_batches_tracked) == 0
    assert torch.equal(ours.weight, 3 * fresh.weight)
    ours.reset_parameters()
    assert_same_state(ours, fresh, {"rtol": 0, "atol": 0})


# --------------------------------------------------------------------------- #
# A small network trains identically
# --------------------------------------------------------------------------- #

def mlp(bn_cls):
    return nn.Sequential(nn.Linear(8, 16), bn_cls(16), nn.ReLU(), nn.Linear(16, 3)).double()


def test_mlp_training_curve_matches_torch():
    torch.manual_seed(0)
    theirs = mlp(nn.BatchNorm1d)
    ours = mlp(BatchNorm1d)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g, dtype=torch.float64) * 2 + 1
    target = torch.randint(0, 3, (64,), generator=g)

    curves = []
    for model in (ours, theirs):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
        losses = []
        for k in range(20):
            batch = slice(16 * (k % 4), 16 * (k % 4 + 1))
            loss = F.cross_entropy(model(x[batch]), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        curves.append(torch.tensor(losses, dtype=torch.float64))

    assert curves[1][-1] < curves[1][0]  # it learned something
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-10, atol=0)
    ours.eval()
    theirs.eval()
    assert_same_state(ours, theirs, TOL[torch.float64])
    torch.testing.assert_close(ours(x), theirs(x), **TOL[torch.float64])


def test_turning_off_tracking_after_construction_behaves_like_torch():
    # Buffers that exist but are no longer tracked: training leaves them
    # alone and uses batch statistics; evaluation still uses them.
    ours, theirs = make_pair(BatchNorm1d, nn.BatchNorm1d)
    for module in (ours, theirs):
        module(random_input((6, 3), seed=90))
        module.track_running_stats = False
    frozen = copy.deepcopy(ours.state_dict())
    x = random_input((6, 3), seed=91)
    torch.testing.assert_close(ours(x), theirs(x), **TOL[torch.float64])
    for key, value in frozen.items():
        assert torch.equal(ours.state_dict()[key], value)
    assert_same_state(ours, theirs, TOL[torch.float64])
    ours.eval()
    theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), **TOL[torch.float64])


@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 6), (3, 2, 4, 5), (2, 3, 2, 3, 4)])
def test_batch_moments_match_torch_var_mean(shape):
    # The two-pass statistics that replace torch.var_mean (slow on CPU over the batch axis).
    x = random_input(shape, seed=90, requires_grad=False) * 3 + 5
    dims = [0, *range(2, len(shape))]
    var_ref, mean_ref = torch.var_mean(x, dim=dims, correction=0)
    mean, var = batch_moments(x)
    assert mean.shape == var.shape == (shape[1],)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(var, var_ref, rtol=1e-12, atol=1e-13)
    half_mean, half_var = batch_moments(x.to(torch.bfloat16))   # accumulated in float32
    assert half_mean.dtype == half_var.dtype == torch.float32


# --------------------------------------------------------------------------- #
# Drop-in behaviour (issue 13): torch's tools, torch.func, compilers, dtypes, empty batches
# --------------------------------------------------------------------------- #

def test_modules_are_torch_batch_norms_for_torch_tools():
    model = nn.Sequential(nn.Linear(4, 3), BatchNorm1d(3), nn.Conv2d(1, 2, 1), BatchNorm2d(2))
    assert all(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in (model[1], model[3]))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    assert isinstance(converted[1], nn.SyncBatchNorm) and isinstance(converted[3], nn.SyncBatchNorm)
    torch.func.replace_all_batch_norm_modules_(model)
    assert model[1].running_mean is None and not model[1].track_running_stats


def _func_case():
    return (random_input((6, 3, 4), seed=120, requires_grad=False),
            *(random_vector(3, seed=s, requires_grad=False) for s in (121, 122)))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_torch_func_grad_vmap_and_jvp_match_torch(training):
    x, w, b = _func_case()
    mean, var = running_stats(3, seed=123)

    def ours(x, w, b):
        return batch_norm(x, mean, var, w, b, training) if not training else \
            batch_norm(x, None, None, w, b, True)

    def theirs(x, w, b):
        return F.batch_norm(x, mean, var, w, b, training) if not training else \
            F.batch_norm(x, None, None, w, b, True)

    def loss(f):
        return lambda x, w, b: (f(x, w, b) ** 3).sum()

    for got, want in zip(torch.func.grad(loss(ours), argnums=(0, 1, 2))(x, w, b),
                         torch.func.grad(loss(theirs), argnums=(0, 1, 2))(x, w, b)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])
    xs = torch.stack([x, 2 * x + 1])
    torch.testing.assert_close(torch.func.vmap(ours, in_dims=(0, None, None))(xs, w, b),
                               torch.func.vmap(theirs, in_dims=(0, None, None))(xs, w, b),
                               **TOL[torch.float64])
    per_sample = torch.func.vmap(torch.func.grad(loss(ours)), in_dims=(0, None, None))(xs, w, b)
    per_sample_ref = torch.func.vmap(torch.func.grad(loss(theirs)), in_dims=(0, None, None))(
        xs, w, b)
    torch.testing.assert_close(per_sample, per_sample_ref, **TOL[torch.float64])
    tangents = (torch.ones_like(x), torch.ones_like(w), torch.ones_like(b))
    torch.testing.assert_close(torch.func.jvp(ours, (x, w, b), tangents)[1],
                               torch.func.jvp(theirs, (x, w, b), tangents)[1],
                               **TOL[torch.float64])


def test_jvp_counts_tangents_of_fixed_running_statistics():
    # torch refuses them ("not differentiable wrt running_mean"); the formula is simple, and
    # here it is checked against finite differences.
    x, w, b = _func_case()
    mean, var = running_stats(3, seed=124)
    t_mean, t_var = random_vector(3, seed=125, requires_grad=False), torch.rand(
        3, dtype=torch.float64)
    _, tangent = torch.func.jvp(lambda m, v: batch_norm(x, m, v, w, b), (mean, var),
                                (t_mean, t_var))
    h = 1e-6
    numeric = (batch_norm(x, mean + h * t_mean, var + h * t_var, w, b)
               - batch_norm(x, mean - h * t_mean, var - h * t_var, w, b)) / (2 * h)
    torch.testing.assert_close(tangent, numeric, rtol=1e-7, atol=1e-8)


def _train_twice(module, x):
    ys = [module(x * (k + 1)) for k in range(2)]
    return ys, module.state_dict()


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")
def test_jit_script_runs_and_matches_eager_but_cannot_be_saved():
    x = random_input((6, 3), seed=126, requires_grad=False)
    eager = nn.Sequential(nn.Linear(3, 3), BatchNorm1d(3)).double()
    scripted = torch.jit.script(copy.deepcopy(eager))
    (ys, state), (ys_ref, state_ref) = _train_twice(scripted, x), _train_twice(eager, x)
    for y, y_ref in zip(ys, ys_ref):
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(state, state_ref, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="Could not export Python function call"):
        torch.jit.save(scripted, io.BytesIO())   # the input check and the Function are Python


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")   # torch's modules warn alike
@pytest.mark.filterwarnings("ignore:`torch.jit.trace(_method)?` is deprecated:DeprecationWarning")
def test_jit_trace_matches_eager_outputs_and_gradients():
    x = random_input((5, 4, 3, 2), seed=127)
    ours, theirs = make_pair(BatchNorm2d, nn.BatchNorm2d)
    traced = torch.jit.trace(ours, (x.detach(),))
    y, grads = step(traced, x, x.detach())
    y_ref, grads_ref = step(theirs, x, x.detach())
    torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **TOL[torch.float64])


# Dynamo itself instantiates every autograd.Function it traces, and torch warns about that.
@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")
def test_torch_compile_captures_one_graph_and_matches_torch():
    x = random_input((8, 3, 5), seed=128)
    ours, theirs = make_pair(BatchNorm1d, nn.BatchNorm1d)
    compiled = torch.compile(ours, backend="eager", fullgraph=True)   # no graph break
    for k in range(2):
        y, grads = step(compiled, x * (k + 1), x.detach())
        y_ref, grads_ref = step(theirs, x * (k + 1), x.detach())
        torch.testing.assert_close(y, y_ref, **TOL[torch.float64])
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, **TOL[torch.float64])
    assert_same_state(ours, theirs, TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mixed", [True, False], ids=["float32-module", "half-module"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_half_precision_is_computed_like_torch(dtype, mixed, training):
    # torch on the CPU accumulates in float32 and rounds once; the output has the input's
    # dtype, the parameters and buffers keep theirs.
    x = (random_input((4, 4, 6, 6), seed=129, requires_grad=False) * 3 + 2).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    module_dtype = torch.float32 if mixed else dtype
    ours, theirs = make_pair(BatchNorm2d, nn.BatchNorm2d, dtype=torch.float32)
    ours, theirs = ours.to(module_dtype).train(training), theirs.to(module_dtype).train(training)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = ours(x), theirs(x_ref)
    assert y.dtype == y_ref.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    ulp = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}[dtype]
    # at most one rounding step of the output apart
    y32, y_ref32 = y.detach().float(), y_ref.detach().float()
    assert float(((y32 - y_ref32).abs() / y_ref32.abs().clamp(min=1)).max()) <= 2 * ulp
    dy = torch.randn_like(y)
    y.backward(dy)
    y_ref.backward(dy)
    assert x.grad.dtype == dtype and ours.weight.grad.dtype == module_dtype
    scale = float(x_ref.grad.float().abs().max())
    assert float((x.grad.float() - x_ref.grad.float()).abs().max()) <= 4 * ulp * scale
    torch.testing.assert_close(ours.running_var.float(), theirs.running_var.float(),
                               rtol=2 * ulp, atol=0)


@pytest.mark.parametrize("x_dtype, module_dtype", [
    (torch.float32, torch.float64), (torch.float64, torch.float32),
    (torch.float32, torch.bfloat16)])
def test_dtype_combinations_torch_rejects_raise_type_error(x_dtype, module_dtype):
    x = torch.randn(4, 3, dtype=x_dtype)
    with pytest.raises(RuntimeError, match="mixed dtype"):
        nn.BatchNorm1d(3, dtype=module_dtype)(x)
    with pytest.raises(TypeError, match=rf"BatchNorm1d: weight must be dtype .*{x_dtype}"):
        BatchNorm1d(3, dtype=module_dtype)(x)


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (5, 3, 0)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_empty_batches_like_torch(shape, training):
    ours, theirs = make_pair(BatchNorm1d, nn.BatchNorm1d)
    ours.train(training), theirs.train(training)
    x = torch.zeros(shape, dtype=torch.float64)
    y, grads = step(ours, x, torch.ones(shape, dtype=torch.float64))
    y_ref, grads_ref = step(theirs, x, torch.ones(shape, dtype=torch.float64))
    assert y.shape == y_ref.shape == shape
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=0, atol=0)   # zeros, with torch's shapes
    assert_same_state(ours, theirs, {"rtol": 0, "atol": 0})
    assert int(ours.num_batches_tracked) == int(training)


def test_functional_empty_batch_leaves_buffers_alone():
    mean, var = running_stats(3, seed=130)
    before = (mean.clone(), var.clone())
    y = batch_norm(torch.zeros(0, 3, dtype=torch.float64), mean, var, training=True)
    assert y.shape == (0, 3)
    assert torch.equal(mean, before[0]) and torch.equal(var, before[1])


def test_module_double_backward_matches_torch():
    # a gradient penalty through BN: d/dparams of |dL/dx|^2
    x = random_input((6, 3, 2), seed=131)
    ours, theirs = make_pair(BatchNorm1d, nn.BatchNorm1d)
    results = []
    for module in (ours, theirs):
        xx = x.detach().requires_grad_(True)
        (dx,) = torch.autograd.grad((module(xx) ** 3).sum(), xx, create_graph=True)
        results.append(torch.autograd.grad(dx.pow(2).sum(), [xx, *module.parameters()]))
    for g, g_ref in zip(*results):
        torch.testing.assert_close(g, g_ref, **TOL[torch.float64])
