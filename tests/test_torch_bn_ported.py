"""PyTorch's own batch-norm tests, ported, run against torch.nn and bncourse.torch_bn alike.

Each test names the torch test it adapts (torch's ``test/test_nn.py``,
``test/nn/test_load_state_dict.py``, and the ``ModuleInfo`` entries for
``BatchNorm1d/2d/3d`` in ``torch/testing/_internal/common_modules.py`` that
``test/test_modules.py`` drives). Every test is parametrized over both
implementations: a case that fails for ``torch`` is a bad port, not a bug of
the package. CUDA-only tests are ported to the CPU where their point is not
the GPU (the ``*_mixed`` ones: float16/bfloat16 input into a float32 module);
sizes are cut down where torch's only serve to make a GPU kernel work.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from bncourse import sync_bn, torch_bn

IMPLS = {
    "torch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d,
              "functional": F.batch_norm, "sync": nn.SyncBatchNorm},
    "bncourse": {1: torch_bn.BatchNorm1d, 2: torch_bn.BatchNorm2d, 3: torch_bn.BatchNorm3d,
                 "functional": torch_bn.batch_norm, "sync": sync_bn.SyncBatchNorm},
}


@pytest.fixture(params=list(IMPLS), ids=list(IMPLS))
def impl(request):
    """The classes and the functional of one implementation; seeds torch's generator."""
    torch.manual_seed(0)
    return IMPLS[request.param]


# --------------------------------------------------------------------------- test_nn.py: TestNNDeviceType

def test_batchnorm_grad(impl):
    """Adapts ``TestNNDeviceType.test_batchnorm_grad`` (gradcheck and gradgradcheck, float64)."""
    bs, n_feat, size_feat = 4, 5, 6
    dtype = torch.double
    x = torch.arange(bs * n_feat * size_feat, dtype=dtype).view(bs, n_feat, size_feat)
    x.requires_grad_(True)
    weight = torch.arange(1, n_feat + 1, dtype=dtype, requires_grad=True)
    bias = torch.arange(n_feat, dtype=dtype, requires_grad=True)
    running_mean = 1 - torch.arange(n_feat, dtype=dtype)
    running_var = 2 * torch.arange(n_feat, dtype=dtype)
    for training in (False, True):
        def fn(x, w, b, training=training):
            return impl["functional"](x, running_mean, running_var, w, b, training, 0.1, 0.0001)
        # torch's common_utils.gradcheck defaults: fast mode, batched gradients checked
        assert gradcheck(fn, (x, weight, bias), fast_mode=True, check_batched_grad=True)
        assert gradgradcheck(fn, (x, weight, bias), fast_mode=True, check_batched_grad=True)


def _forward_backward(module, data, grad):
    """Output and input gradient of one forward and backward pass (gradient reset first)."""
    data.grad = None
    out = module(data)
    out.backward(grad)
    return out, data.grad.clone()


def _batchnorm_eval(impl, ndim, dtype, module_dtype=None):
    module_dtype = module_dtype or dtype
    module = impl[1](3).to(module_dtype).eval()
    data = torch.rand([3] * ndim, dtype=dtype, requires_grad=True)
    grad = torch.rand([3] * ndim, dtype=dtype)
    res1, grad1 = _forward_backward(module, data, grad)
    res2, grad2 = _forward_backward(module, data, grad)
    torch.testing.assert_close(res1, res2)
    torch.testing.assert_close(grad1, grad2)

    module = impl[1](3, track_running_stats=False).to(module_dtype)
    data = torch.rand(4, 3, dtype=dtype, requires_grad=True)
    grad = torch.rand(4, 3, dtype=dtype)
    res1, grad1 = _forward_backward(module, data, grad)
    res2, grad2 = _forward_backward(module.eval(), data, grad)
    torch.testing.assert_close(res1, res2)
    torch.testing.assert_close(grad1, grad2)


def test_batchnorm_eval(impl):
    """Adapts ``TestNNDeviceType.test_batchnorm_eval``."""
    _batchnorm_eval(impl, 2, torch.float)
    _batchnorm_eval(impl, 3, torch.float)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.half])
def test_batchnorm_eval_mixed(impl, dtype):
    """Adapts ``TestNNDeviceType.test_batchnorm_eval_mixed`` (CUDA-only there) to the CPU."""
    _batchnorm_eval(impl, 2, dtype, torch.float)
    _batchnorm_eval(impl, 3, dtype, torch.float)


def _batchnorm_affine(impl, ndim, dtype, module_dtype=None):
    module_dtype = module_dtype or dtype
    module = impl[1](3, affine=False).to(module_dtype)
    module_affine = impl[1](3, affine=True).to(module_dtype)
    with torch.no_grad():
        module_affine.weight.fill_(1.0)
        module_affine.bias.zero_()
    data = torch.rand([3] * ndim, dtype=dtype, requires_grad=True)
    grad = torch.ones_like(data, requires_grad=False)
    res1, grad1 = _forward_backward(module_affine, data, grad)   # weights 1, bias 0
    res2, grad2 = _forward_backward(module, data, grad)          # no weight or bias
    torch.testing.assert_close(res1, res2)
    torch.testing.assert_close(grad1, grad2)


def test_batchnorm_affine(impl):
    """Adapts ``TestNNDeviceType.test_batchnorm_affine``."""
    _batchnorm_affine(impl, 2, torch.float)
    _batchnorm_affine(impl, 3, torch.float)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.half])
def test_batchnorm_affine_mixed(impl, dtype):
    """Adapts ``TestNNDeviceType.test_batchnorm_affine_mixed`` (CUDA-only there) to the CPU."""
    _batchnorm_affine(impl, 2, dtype, torch.float)
    _batchnorm_affine(impl, 3, dtype, torch.float)


def _batchnorm_simple_average(impl, dtype, module_dtype=None):
    module_dtype = module_dtype or dtype
    module = impl[1](3, momentum=None).to(dtype=module_dtype)
    zeros, ones = torch.zeros(3, dtype=module_dtype), torch.ones(3, dtype=module_dtype)
    data1, data2 = torch.rand(4, 3, dtype=dtype), torch.rand(4, 3, dtype=dtype)
    res1 = module(data1)
    running_mean1, running_var1 = module.running_mean.clone(), module.running_var.clone()
    assert not torch.equal(running_mean1, zeros) and not torch.equal(running_var1, ones)
    module.reset_running_stats()
    torch.testing.assert_close(module.running_mean, zeros)
    torch.testing.assert_close(module.running_var, ones)
    res2 = module(data2)
    running_mean2, running_var2 = module.running_mean.clone(), module.running_var.clone()
    module.reset_running_stats()
    res3, res4 = module(data1), module(data2)
    torch.testing.assert_close(res3, res1)
    torch.testing.assert_close(res4, res2)
    torch.testing.assert_close(module.running_mean, (running_mean1 + running_mean2) / 2)
    torch.testing.assert_close(module.running_var, (running_var1 + running_var2) / 2)


def test_batchnorm_simple_average(impl):
    """Adapts ``TestNNDeviceType.test_batchnorm_simple_average`` (momentum=None)."""
    _batchnorm_simple_average(impl, torch.float)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.half])
def test_batchnorm_simple_average_mixed(impl, dtype):
    """Adapts ``TestNNDeviceType.test_batchnorm_simple_average_mixed`` (CUDA-only there)."""
    _batchnorm_simple_average(impl, dtype, torch.float)


def test_batchnorm_update_stats(impl):
    """Adapts ``TestNNDeviceType.test_batchnorm_update_stats``: training updates, eval does not."""
    module = impl[1](3)
    data = torch.rand(4, 3)
    old = [t.clone() for t in (module.running_mean, module.running_var,
                               module.num_batches_tracked)]
    module(data)
    assert not torch.equal(old[0], module.running_mean)
    assert not torch.equal(old[1], module.running_var)
    assert int(module.num_batches_tracked) == int(old[2]) + 1
    module.eval()
    old = [t.clone() for t in (module.running_mean, module.running_var,
                               module.num_batches_tracked)]
    module(data)
    for before, after in zip(old, (module.running_mean, module.running_var,
                                   module.num_batches_tracked)):
        assert torch.equal(before, after)


def _module_empty_input(module, inp):
    """torch's ``common_nn._test_module_empty_input``."""
    inp.requires_grad_(True)
    out = module(inp)
    out.backward(torch.rand_like(out))
    assert out.size() == inp.size()
    for p in module.parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, torch.zeros_like(p.grad))
    torch.testing.assert_close(inp.grad, torch.zeros_like(inp))


def test_BatchNorm_empty(impl):
    """Adapts ``TestNNDeviceType.test_BatchNorm_empty``: empty batch, zero grads, stats unchanged."""
    mod = impl[2](3)
    _module_empty_input(mod, torch.randn(0, 3, 2, 2))
    torch.testing.assert_close(mod.running_mean, torch.tensor([0., 0, 0]))
    torch.testing.assert_close(mod.running_var, torch.tensor([1., 1, 1]))
    torch.testing.assert_close(mod.weight.grad, torch.tensor([0., 0, 0]))
    torch.testing.assert_close(mod.bias.grad, torch.tensor([0., 0, 0]))


# --------------------------------------------------------------------------- test_nn.py: TestNN

@pytest.mark.parametrize("dim, shape, fmt", [
    (2, (4, 8, 10, 10), torch.channels_last), (2, (4, 1, 9, 9), torch.channels_last),
    (2, (4, 9, 1, 1), torch.channels_last), (3, (4, 8, 2, 5, 5), torch.channels_last_3d),
    (3, (4, 1, 2, 9, 9), torch.channels_last_3d), (3, (4, 9, 1, 1, 1), torch.channels_last_3d),
])
@pytest.mark.parametrize("dtype, mixed", [(torch.float, False), (torch.bfloat16, False),
                                          (torch.bfloat16, True), (torch.float16, False),
                                          (torch.float16, True)])
def test_batchnorm_nhwc_cpu(impl, dim, shape, fmt, dtype, mixed):
    """Adapts ``TestNN.test_batchnorm_nhwc_cpu`` (3-D spatial size cut from 10x10 to 5x5).

    Channels-last input against the same module on contiguous input: the output
    keeps the layout, outputs and gradients agree; half input in float32
    (``mixed``) or same-dtype modules.
    """
    mod = impl[dim]
    channels = shape[1]
    inp = torch.randn(shape, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
    grad = torch.randn(shape, dtype=dtype).contiguous(memory_format=fmt)
    bn = mod(channels).to(dtype)
    bn.weight.data.uniform_()
    bn.bias.data.uniform_()
    ref_inp = inp.detach().clone().contiguous().requires_grad_(True)
    ref_grad = grad.detach().clone().contiguous()
    ref_bn = mod(channels).to(dtype)
    ref_bn.load_state_dict(bn.state_dict())
    if mixed:
        bn.float()
        ref_bn.float()
    out = bn(inp)
    out.backward(grad)
    ref_out = ref_bn(ref_inp)
    ref_out.backward(ref_grad)
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=fmt)
    assert ref_out.is_contiguous()
    torch.testing.assert_close(out, ref_out)
    precision = {torch.float: 1e-4, torch.bfloat16: 1e-4, torch.float16: None}[dtype] \
        if dim == 3 else None
    torch.testing.assert_close(bn.weight.grad, ref_bn.weight.grad, atol=precision,
                               rtol=precision)
    torch.testing.assert_close(bn.bias.grad, ref_bn.bias.grad)
    torch.testing.assert_close(inp.grad, ref_inp.grad)


@pytest.mark.parametrize("param_dtype, dim, shape", [
    (torch.half, 2, (4, 3, 130, 130)), (torch.float, 2, (4, 3, 130, 130)),
    (torch.float, 3, (4, 3, 17, 31, 31)),
])
def test_batchnorm_half_overflow(impl, param_dtype, dim, shape):
    """Adapts ``TestNN.test_batchnorm_half_overflow`` with fewer values per channel.

    67,600 values per channel (torch: a million) still overflow float16 sums
    (largest float16: 65,504), so a half accumulation would give inf/NaN.
    """
    mod = impl[dim]
    channels = shape[1]
    fmt = torch.channels_last if dim == 2 else torch.channels_last_3d
    for fwd_format in (torch.contiguous_format, fmt):
        inp = torch.randn(shape, dtype=torch.half).contiguous(memory_format=fwd_format)
        inp.requires_grad_(True)
        bn = mod(channels).to(param_dtype)
        out = bn(inp)
        ref_inp = inp.detach().clone().requires_grad_(True)
        ref_bn = mod(channels).float()
        ref_bn.load_state_dict(bn.float().state_dict())
        ref_out = ref_bn(ref_inp)
        assert not out.isinf().any() and not out.isnan().any()
        torch.testing.assert_close(out, ref_out, check_dtype=False)
        if param_dtype != torch.half:
            grad_inp = torch.empty(size=ref_out.shape).uniform_(0, 1).to(dtype=torch.half)
            grad_inp = grad_inp.contiguous(memory_format=fwd_format)
            out.backward(grad_inp)
            ref_out.backward(grad_inp.clone())
            assert not inp.grad.isinf().any() and not inp.grad.isnan().any()
            torch.testing.assert_close(inp.grad, ref_inp.grad)


@pytest.mark.parametrize("which", ["bn2d", "sync"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_batchnorm_non_contig_cpu(impl, which, dtype):
    """Adapts ``TestNN.test_batchnorm_non_contig_cpu`` (BatchNorm2d and SyncBatchNorm, eval)."""
    mod = impl[2] if which == "bn2d" else impl["sync"]
    inp = torch.arange(6, dtype=torch.float).reshape(1, 3, 2, 1).permute(0, 2, 1, 3)
    bn = mod(2).float().eval()
    bn.weight.data.uniform_()
    bn.bias.data.uniform_()
    ref_inp = inp.detach().clone().contiguous()
    ref_bn = nn.BatchNorm2d(2).float().eval()
    ref_bn.load_state_dict(bn.state_dict())
    out = bn(inp)
    ref_out = ref_bn(ref_inp)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert ref_out.is_contiguous()
    torch.testing.assert_close(out, ref_out)

    input_bf = torch.arange(24, dtype=dtype).reshape(1, 3, 2, 4).permute(0, 2, 1, 3)
    bn_mix = mod(2).float().eval()
    ref_bn_f = copy.deepcopy(bn_mix)
    out_bf = bn_mix(input_bf)
    torch.testing.assert_close(ref_bn_f(input_bf.float()), out_bf.float(), atol=0.05, rtol=0.05)


def test_batchnorm_raises_error_if_less_than_one_value_per_channel(impl):
    """Adapts ``TestNN.test_batchnorm_raises_error_if_less_than_one_value_per_channel``."""
    x = torch.rand(10)[None, :, None]
    with pytest.raises(ValueError):
        impl[1](10)(x)


@pytest.mark.parametrize("arg", ["running_mean", "running_var", "weight", "bias"])
def test_batchnorm_raises_error_if_arg_is_not_same_size_as_input(impl, arg):
    """Adapts ``TestNN.test_batchnorm_raises_error_if_{running_mean,running_var,weight,bias}_is_
    not_same_size_as_input`` (torch raises RuntimeError, bncourse a ValueError naming it)."""
    inp = torch.rand(2, 10)
    for size in (9, 11):
        args = {"running_mean": torch.rand(10), "running_var": torch.rand(10)}
        args[arg] = torch.rand(size) if arg.startswith("running") else nn.Parameter(
            torch.rand(size))
        with pytest.raises((RuntimeError, ValueError)):
            impl["functional"](inp, args.pop("running_mean"), args.pop("running_var"), **args)


def test_batchnorm_buffer_update_when_stats_are_not_tracked(impl):
    """Adapts ``TestNN.test_batchnorm_buffer_update_when_stats_are_not_tracked``."""
    bn = impl[1](4, track_running_stats=True)
    bn.track_running_stats = False
    before = [t.clone() for t in (bn.num_batches_tracked, bn.running_mean, bn.running_var)]
    bn(torch.rand(32, 4))
    for b, a in zip(before, (bn.num_batches_tracked, bn.running_mean, bn.running_var)):
        assert torch.equal(b, a)


def test_batchnorm_load_state_dict(impl):
    """Adapts ``TestNN.test_batchnorm_load_state_dict`` (meta device, ``assign=True``)."""
    bn = impl[2](3)
    assert int(bn.state_dict()["num_batches_tracked"]) == 0
    bn.num_batches_tracked = torch.tensor(10)
    assert int(bn.state_dict()["num_batches_tracked"]) == 10
    empty_dict = OrderedDict()
    bn.load_state_dict(empty_dict, strict=False)
    assert int(bn.state_dict()["num_batches_tracked"]) == 10
    with torch.device("meta"):
        meta_bn = impl[2](3)
    assert meta_bn.num_batches_tracked.device == torch.device("meta")
    meta_bn.load_state_dict(empty_dict, assign=True, strict=False)
    assert meta_bn.state_dict()["num_batches_tracked"].device == torch.device("cpu")
    assert int(meta_bn.state_dict()["num_batches_tracked"]) == 0


# --------------------------------------------------------------------------- test/nn/test_load_state_dict.py

def test_load_state_dict_BC(impl):
    """Adapts ``TestLoadStateDict.test_load_state_dict_BC`` (no ``num_batches_tracked``)."""
    bn = impl[2](3)
    state_dict = bn.state_dict()
    del state_dict["num_batches_tracked"]
    state_dict._metadata[""]["version"] = 1
    bn.load_state_dict(state_dict)
    assert bn.num_batches_tracked.dtype == torch.long and int(bn.num_batches_tracked) == 0
    del state_dict._metadata[""]["version"]
    bn.load_state_dict(state_dict)
    assert bn.num_batches_tracked.dtype == torch.long and int(bn.num_batches_tracked) == 0


def _fc_bn(impl, with_x=False):
    class MyModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(3, 5)
            self.bn = impl[1](5)
            if with_x:
                self.x = nn.Parameter(torch.rand(5), requires_grad=False)

        def forward(self, inp):
            out = self.bn(self.fc1(inp))
            return self.x + out if with_x else out

    return MyModule


@pytest.mark.parametrize("keep_vars", [True, False])
def test_load_state_dict_assign_meta(impl, keep_vars):
    """Adapts ``TestLoadStateDict.test_load_state_dict_assign_meta`` (swap=False)."""
    module_cls = _fc_bn(impl, with_x=True)
    net = module_cls()
    state_dict = net.state_dict(keep_vars=keep_vars)
    for v in state_dict.values():
        v.requires_grad_(False)
    with torch.device("meta"):
        net_meta = module_cls()
    old = net_meta.state_dict(keep_vars=True)
    net_meta.load_state_dict(state_dict, assign=True)
    new = net_meta.state_dict(keep_vars=True)
    for key in state_dict:
        if key in net_meta._parameters:
            assert (state_dict[key] is new[key]) if keep_vars else (new[key] is not old[key])
            assert old[key].requires_grad == new[key].requires_grad
        torch.testing.assert_close(state_dict[key], new[key])
    assert [n for n, _ in net.named_buffers()] == [n for n, _ in net_meta.named_buffers()]
    t = torch.randn(4, 3)
    torch.testing.assert_close(net(t), net_meta(t.clone()))


def test_load_state_dict_assign_with_optimizer(impl):
    """Adapts ``TestLoadStateDict.test_load_state_dict_assign_with_optimizer``."""
    module_cls = _fc_bn(impl)
    net = module_cls()
    opt = torch.optim.Adam(net.parameters(), lr=1000)
    x = torch.randn(4, 3)
    for _ in range(3):
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    opt_state_dict = copy.deepcopy(opt.state_dict())
    net_state_dict = copy.deepcopy(net.state_dict())
    with torch.device("meta"):
        net_meta = module_cls()
    net_meta.load_state_dict(net_state_dict, assign=True)
    opt2 = torch.optim.Adam(net_meta.parameters(), lr=1000)
    opt2.load_state_dict(opt_state_dict)
    y = x.clone()
    for _ in range(3):
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
        opt2.zero_grad()
        net_meta(y).sum().backward()
        opt2.step()
    torch.testing.assert_close(opt.state_dict(), opt2.state_dict())
    torch.testing.assert_close(net.state_dict(), net_meta.state_dict())


# --------------------------------------------------------------------------- ModuleInfo + test_modules.py

# The BatchNorm1d/2d/3d entries of common_modules.py: (constructor args, kwargs, input shape, desc).
MODULE_INPUTS = {
    1: [((10,), {}, (4, 10), "affine"), ((5,), {}, (4, 5, 3), "3d_input"),
        ((10, 1e-3, None), {}, (4, 10), "affine_simple_average"),
        ((10, 1e-3, 0.3, False), {}, (4, 10), "not_affine"),
        ((10, 1e-3, 0.3, True, False), {}, (4, 10), "not_tracking_stats"),
        ((5, 1e-3, 0.3, False), {}, (4, 5, 3), "3d_input_not_affine"),
        ((5, 1e-3, 0.3, False), {}, (0, 5, 9), "zero_batch"),
        ((10,), {"bias": False}, (4, 10), "affine_not_bias")],
    2: [((3,), {}, (2, 3, 6, 6), ""), ((3, 1e-3, None), {}, (2, 3, 6, 6), "2d_simple_average"),
        ((3, 1e-3, 0.8), {}, (2, 3, 6, 6), "momentum"),
        ((3, 1e-3, 0.8, False), {}, (2, 3, 6, 6), "not_affine"),
        ((3, 1e-3, 0.8, True, False), {}, (2, 3, 6, 6), "not_tracking_stats"),
        ((5, 1e-3, 0.3, False), {}, (0, 5, 2, 2), "zero_batch"),
        ((3,), {"bias": False}, (2, 3, 6, 6), "affine_not_bias")],
    3: [((3,), {}, (2, 3, 4, 4, 4), ""), ((3, 1e-3, None), {}, (2, 3, 4, 4, 4), "3d_simple_average"),
        ((3, 1e-3, 0.7), {}, (2, 3, 4, 4, 4), "momentum"),
        ((3, 1e-3, 0.7, False), {}, (2, 3, 4, 4, 4), "not_affine"),
        ((3, 1e-3, 0.7, True, False), {}, (2, 3, 4, 4, 4), "not_tracking_stats"),
        ((5, 1e-3, 0.3, False), {}, (0, 5, 2, 2, 2), "zero_batch"),
        ((3,), {"bias": False}, (2, 3, 4, 4, 4), "affine_not_bias")],
}
CASES = [(dim, *case) for dim, cases in MODULE_INPUTS.items() for case in cases]
CASE_IDS = [f"BatchNorm{dim}d-{desc or 'default'}" for dim, _, _, _, desc in CASES]
MODES = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


def _make(impl, dim, args, kwargs, training, dtype=torch.double, **factory):
    m = impl[dim](*args, **kwargs, **factory)
    return m.to(dtype).train(training)


@MODES
@pytest.mark.parametrize("dim, args, kwargs, shape, desc", CASES, ids=CASE_IDS)
def test_modules_forward_matches_torch(impl, dim, args, kwargs, shape, desc, training):
    """Adapts ``TestModule.test_forward`` with torch's module as the reference function.

    Outputs and running buffers after three calls, and ``num_batches_tracked``.
    """
    m = _make(impl, dim, args, kwargs, training)
    ref = _make(IMPLS["torch"], dim, args, kwargs, training)
    for k in range(3):
        x = torch.randn(shape, dtype=torch.double) * (k + 1) + k
        torch.testing.assert_close(m(x), ref(x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.state_dict(), ref.state_dict(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim, args, kwargs, shape, desc", CASES, ids=CASE_IDS)
def test_modules_repr_and_factory_kwargs(impl, dim, args, kwargs, shape, desc):
    """Adapts ``TestModule.test_repr`` and ``TestModule.test_factory_kwargs``."""
    m = impl[dim](*args, **kwargs, device="cpu", dtype=torch.float64)
    assert repr(m) == repr(nn.modules.batchnorm.__dict__[f"BatchNorm{dim}d"](*args, **kwargs))
    for name, t in [*m.named_parameters(), *m.named_buffers()]:
        assert t.device == torch.device("cpu"), name
        assert t.dtype == (torch.float64 if t.is_floating_point() else torch.long), name


@MODES
@pytest.mark.parametrize("dim, args, kwargs, shape, desc", CASES, ids=CASE_IDS)
def test_modules_grad_and_gradgrad(impl, dim, args, kwargs, shape, desc, training):
    """Adapts ``TestModule.test_grad`` / ``test_gradgrad`` (float64; forward AD checked too)."""
    m = _make(impl, dim, args, kwargs, training)
    x = torch.randn(shape, dtype=torch.double, requires_grad=True)
    params = tuple(m.parameters())

    def fn(x, *p):
        return torch.func.functional_call(m, dict(zip([n for n, _ in m.named_parameters()], p)),
                                          (x,))

    # torch's common_utils.gradcheck defaults: fast mode, batched gradients checked
    assert gradcheck(fn, (x, *params), check_forward_ad=True, fast_mode=True,
                     check_batched_grad=True)
    assert gradgradcheck(fn, (x, *params), fast_mode=True, check_batched_grad=True)


@MODES
@pytest.mark.parametrize("dim, args, kwargs, shape, desc", CASES, ids=CASE_IDS)
def test_modules_non_contiguous_tensors(impl, dim, args, kwargs, shape, desc, training):
    """Adapts ``TestModule.test_non_contiguous_tensors``: strided input and upstream gradient."""
    m = _make(impl, dim, args, kwargs, training)
    m2 = copy.deepcopy(m)
    x = torch.randn(shape, dtype=torch.double)
    dy = torch.randn(shape, dtype=torch.double)
    # every other element of a twice-as-long last axis: same values, not contiguous
    x_nc = torch.stack([x, torch.zeros_like(x)], dim=-1)[..., 0].requires_grad_(True)
    dy_nc = torch.stack([dy, torch.zeros_like(dy)], dim=-1)[..., 0]
    assert x.numel() == 0 or not x_nc.is_contiguous()
    x = x.requires_grad_(True)
    y, y_nc = m(x), m2(x_nc)
    y.backward(dy)
    y_nc.backward(dy_nc)
    torch.testing.assert_close(y, y_nc)
    torch.testing.assert_close(x.grad, x_nc.grad)
    for p, q in zip(m.parameters(), m2.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


@MODES
@pytest.mark.parametrize("dim, args, kwargs, shape, desc",
                         [c for c in CASES if c[0] > 1], ids=[i for c, i in zip(CASES, CASE_IDS)
                                                             if c[0] > 1])
def test_modules_memory_format(impl, dim, args, kwargs, shape, desc, training):
    """Adapts ``TestModule.test_memory_format``: channels-last in, channels-last out and dx."""
    fmt = torch.channels_last if dim == 2 else torch.channels_last_3d
    m = _make(impl, dim, args, kwargs, training, dtype=torch.float)
    ref = copy.deepcopy(m)
    x = torch.randn(shape)
    x_cl = x.contiguous(memory_format=fmt).requires_grad_(True)
    x = x.requires_grad_(True)
    y, y_cl = ref(x), m(x_cl)
    if x.numel():
        assert y_cl.is_contiguous(memory_format=fmt)
    dy = torch.randn_like(y)
    y.backward(dy)
    y_cl.backward(dy.contiguous(memory_format=fmt))
    if x.numel():
        assert x_cl.grad.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(y_cl, y)
    torch.testing.assert_close(x_cl.grad, x.grad)


@pytest.mark.parametrize("dim, args, kwargs, shape, desc", CASES, ids=CASE_IDS)
def test_modules_save_load_and_train_eval_differ(impl, dim, args, kwargs, shape, desc):
    """Adapts ``TestModule.test_save_load`` (torch.save / pickle) and
    ``test_if_train_and_eval_modes_differ`` (``train_and_eval_differ=True``)."""
    m = _make(impl, dim, args, kwargs, True)
    x = torch.randn(shape, dtype=torch.double) + 1
    m(x)
    buffer = io.BytesIO()
    torch.save(m, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    unpickled = pickle.loads(pickle.dumps(m))
    for other in (loaded, unpickled):
        assert type(other) is type(m)
        torch.testing.assert_close(other.state_dict(), m.state_dict())
        torch.testing.assert_close(other.eval()(x), copy.deepcopy(m).eval()(x))
    if x.numel() and m.running_mean is not None:
        assert not torch.allclose(m.train()(x), copy.deepcopy(m).eval()(x))


@pytest.mark.parametrize("dim, shape", [(1, (2, 10)), (2, (2, 10, 5, 5)), (3, (2, 10, 4, 4, 4))])
def test_modules_errors(impl, dim, shape):
    """Adapts ``TestModule.test_errors`` for ``module_error_inputs_torch_nn_BatchNorm1d_2d_3d``.

    torch raises at the forward call; bncourse already in the constructor.
    """
    with pytest.raises(ValueError, match="eps must be (a )?positive"):
        impl[dim](10, eps=-1.0)(torch.randn(shape))
