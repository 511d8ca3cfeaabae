"""Mixed precision and channels-last on the CPU: what dtype BN computes in, and its error.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` convolutions and
Linear layers run in bfloat16 (8 significant bits), and BN is *not* cast back
to float32: it receives and returns bfloat16. Its statistics are accumulated
in float32 inside the kernel, and its parameters and running buffers stay
float32, so the error BN adds is the rounding of its bfloat16 output, not a
catastrophic variance. Channels-last (``torch.channels_last``, the NHWC
layout) changes the order of the values in memory, not their values.

Errors are norm-wise, ``max|y - y_64| / max|y_64|``, against the same
computation in float64.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bncourse.gradcheck import relative_error

__all__ = ["layer_dtypes", "run_precision"]


def layer_dtypes(model: nn.Module, x: torch.Tensor, autocast: bool = True) -> dict:
    """``name -> (input dtype, output dtype)`` of every child of ``model`` on ``x`` (no grad)."""
    seen, handles = {}, []
    for name, child in model.named_children():
        def hook(module, inp, out, name=name):
            seen[name] = (inp[0].dtype, out.dtype)
        handles.append(child.register_forward_hook(hook))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return relative_error(a.double().numpy(), b.double().numpy())


@torch.no_grad()
def run_precision(model: nn.Module, x: torch.Tensor, offset: float = 100.0, seed: int = 0) -> dict:
    """BN and a whole model under bfloat16 autocast and channels-last, against float64.

    Args:
        model: an evaluation-mode CNN with BatchNorm2d (a copy is used).
        x: a batch of its inputs ``(N, C, H, W)``, float32.
        offset: the mean of the input of the stand-alone BN test (large
            against its unit spread, the hard case for a variance).
        seed: seeds that input.

    Returns:
        dict with ``dtypes`` (``layer_dtypes`` under autocast), ``bn_bf16``
        (training-mode BatchNorm2d on bfloat16 input with mean ``offset``,
        against float64 BN of the same rounded values), ``two_pass_bf16`` and
        ``one_pass_bf16`` (the same standardization written as bfloat16 tensor
        arithmetic, with the variance as the mean squared deviation, or as
        ``mean(x^2) - mean(x)^2`` clipped at 0),
        ``buffer_dtype`` (the running mean's dtype after that call),
        ``logits_bf16`` (the model's logits under autocast against float64),
        ``agree_bf16`` (fraction of equal predicted classes), ``logits_cl``
        (channels-last float32 against contiguous float32) and ``out_cl``
        (whether BN's output stays channels-last).
    """
    gen = torch.Generator().manual_seed(seed)
    z = (offset + torch.randn(32, 4, 6, 6, generator=gen)).bfloat16()
    bn = nn.BatchNorm2d(4)
    y = bn(z)
    y64 = nn.BatchNorm2d(4).double()(z.double())
    dims = (0, 2, 3)
    mean = z.mean(dim=dims, keepdim=True)
    two_pass = (z - mean) / ((z - mean) ** 2).mean(dim=dims, keepdim=True).add(1e-5).sqrt()
    var_one = ((z * z).mean(dim=dims, keepdim=True) - mean * mean).clamp_min(0)
    one_pass = (z - mean) / var_one.add(1e-5).sqrt()
    out = dict(dtypes=layer_dtypes(model, x), bn_bf16=_rel(y, y64),
               two_pass_bf16=_rel(two_pass, y64), one_pass_bf16=_rel(one_pass, y64),
               bn_out_dtype=y.dtype, buffer_dtype=bn.running_mean.dtype)
    model = copy.deepcopy(model).eval()
    ref = copy.deepcopy(model).double()(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    out["logits_bf16"] = _rel(low, ref)
    out["agree_bf16"] = float((low.argmax(1) == ref.argmax(1)).double().mean())
    plain = model(x)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out["logits_cl"] = _rel(cl_model(x_cl), plain)
    out["logits_fp32"] = _rel(plain, ref)
    first_bn = next(m for m in cl_model.modules() if isinstance(m, nn.BatchNorm2d))
    first_conv = next(m for m in cl_model.modules() if isinstance(m, nn.Conv2d))
    out["out_cl"] = bool(first_bn(first_conv(x_cl)).is_contiguous(
        memory_format=torch.channels_last))
    return out
