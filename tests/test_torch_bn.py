"""Tests for bncourse.torch_bn: torch's own BatchNorm (float64) is the oracle."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bncourse.torch_bn import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    BatchNormFunction,
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


def test_function_backward_is_the_closed_form_not_autograd():
    x = random_input((5, 3), seed=10)
    y = BatchNormFunction.apply(x, None, None, 1e-5)
    assert type(y.grad_fn).__name__ == "BatchNormFunctionBackward"
    # The backward saves no graph, so it cannot be differentiated again.
    (dx,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        dx.sum().backward()


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
    assert not isinstance(ours, nn.modules.batchnorm._NormBase)  # a reimplementation


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


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 6), (3, 2, 4, 5), (2, 3, 2, 3, 4)])
def test_mean_var_matches_torch_var_mean(shape, correction):
    # The two-pass statistics that replace torch.var_mean (slow on CPU over the batch axis).
    from bncourse.torch_bn import _mean_var

    x = random_input(shape, seed=90, requires_grad=False) * 3 + 5
    dims = [0, *range(2, len(shape))]
    var_ref, mean_ref = torch.var_mean(x, dim=dims, correction=correction, keepdim=True)
    mean, var = _mean_var(x, correction=correction, keepdim=True)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(var, var_ref, rtol=1e-12, atol=1e-13)
    mean_flat, var_flat = _mean_var(x, correction=correction, keepdim=False)
    assert mean_flat.shape == var_flat.shape == (shape[1],)
    torch.testing.assert_close(var_flat, var_ref.reshape(-1), rtol=1e-12, atol=1e-13)
