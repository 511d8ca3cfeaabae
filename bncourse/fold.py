"""Folding an evaluation-mode BatchNorm into the Linear or convolution before it.

In evaluation mode a BatchNorm layer uses fixed statistics, so per output
channel ``c`` it is an affine map::

    bn(z)_c = gamma_c * (z_c - mean_c) / sqrt(var_c + eps) + beta_c
            = s_c * z_c + (beta_c - s_c * mean_c),   s_c = gamma_c / sqrt(var_c + eps)

(``mean``, ``var`` are the running statistics). The layer before it is affine
too, ``z_c = sum_j W_cj x_j + b_c`` (for a convolution, ``W_c`` is the kernel
of output channel ``c`` and the sum runs over its inputs and taps).
Substituting ``z`` gives one affine layer::

    bn(z)_c = sum_j (s_c * W_cj) x_j + s_c * (b_c - mean_c) + beta_c

so the folded layer has ``W' = W * s`` (row or kernel ``c`` scaled by ``s_c``)
and ``b' = (b - mean) * s + beta``. A missing bias counts as ``b = 0``,
``affine=False`` as ``gamma = 1``, ``beta = 0``. The fold is exact in exact
arithmetic and removes the BatchNorm's work at prediction time. It does not
describe training mode, where the statistics come from each batch.

A BatchNorm *after* the activation can still be folded at prediction time,
into the Linear layer that follows it (:func:`fold_batchnorm_into_next`):
``layer(bn(a)) = W (s * a + t) + b`` with ``t = beta - s * mean``, so
``W' = W * s`` (column ``j`` scaled by ``s_j``) and ``b' = b + W t``.

Supported pairs: ``nn.Linear`` + BatchNorm1d (on ``(N, C)`` outputs, where
the channel axis is the Linear's last axis), ``nn.Conv1d`` + BatchNorm1d,
``nn.Conv2d`` + BatchNorm2d, ``nn.Conv3d`` + BatchNorm3d, with either torch's
BatchNorm modules or those of :mod:`bncourse.torch_bn`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from bncourse import torch_bn
from bncourse._checks import fail

__all__ = ["fold_batchnorm", "fold_sequential", "fold_batchnorm_into_next"]

# Layer type -> the BatchNorm rank that matches its output (1, 2 or 3).
_LAYER_RANK = ((nn.Linear, 1), (nn.Conv1d, 1), (nn.Conv2d, 2), (nn.Conv3d, 3))
_BN_RANK = (
    ((nn.BatchNorm1d, torch_bn.BatchNorm1d), 1),
    ((nn.BatchNorm2d, torch_bn.BatchNorm2d), 2),
    ((nn.BatchNorm3d, torch_bn.BatchNorm3d), 3),
)


def _layer_rank(layer) -> int | None:
    for cls, rank in _LAYER_RANK:
        if isinstance(layer, cls):
            return rank
    return None


def _bn_rank(bn) -> int | None:
    for classes, rank in _BN_RANK:
        if isinstance(bn, classes):
            return rank
    return None


def _out_channels(layer) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _check_pair(func: str, layer, bn) -> None:
    """Raise unless ``bn(layer(x))`` can be written as one layer of ``layer``'s type."""
    layer_rank = _layer_rank(layer)
    if layer_rank is None:
        fail(func, "layer", "an nn.Linear, nn.Conv1d, nn.Conv2d or nn.Conv3d",
              type(layer).__name__, TypeError)
    bn_rank = _bn_rank(bn)
    if bn_rank is None:
        fail(func, "bn", "a BatchNorm1d, BatchNorm2d or BatchNorm3d (torch.nn or "
              "bncourse.torch_bn)", type(bn).__name__, TypeError)
    if bn_rank != layer_rank:
        fail(func, "bn", f"a BatchNorm{layer_rank}d to follow {type(layer).__name__}",
              type(bn).__name__)
    if isinstance(layer.weight, nn.parameter.UninitializedParameter):
        fail(func, "layer", "initialised (run a lazy module once first)",
              f"uninitialised {type(layer).__name__}")
    channels = _out_channels(layer)
    if bn.num_features != channels:
        fail(func, "bn", f"num_features={channels} to match the output channels of layer",
              f"num_features={bn.num_features}")
    if bn.running_mean is None or bn.running_var is None:
        fail(func, "bn", "a BatchNorm with running statistics (track_running_stats=True); "
              "without them evaluation uses batch statistics, which no fixed layer reproduces",
              "track_running_stats=False")


def _can_fold(layer, bn) -> bool:
    try:
        _check_pair("fold_batchnorm", layer, bn)
    except (TypeError, ValueError):
        return False
    return True


def _layer_f64(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` of a Linear or convolution in float64; a missing bias is ``b = 0``."""
    weight = layer.weight.to(torch.float64)
    b = layer.bias.to(torch.float64) if layer.bias is not None else torch.zeros(
        weight.shape[0], dtype=torch.float64, device=weight.device)
    return weight, b


def _bn_f64(bn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(running_mean, s, beta)`` in float64, ``s = gamma / sqrt(running_var + eps)``.

    ``affine=False`` counts as ``gamma = 1``, ``beta = 0``.
    """
    mean = bn.running_mean.to(torch.float64)
    var = bn.running_var.to(torch.float64)
    gamma = bn.weight.to(torch.float64) if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.to(torch.float64) if bn.bias is not None else torch.zeros_like(mean)
    # eps sits inside the root exactly as in the BatchNorm's forward.
    s = gamma / torch.sqrt(var + bn.eps)
    return mean, s, beta


def _with_parameters(folded: nn.Module, layer: nn.Module, weight: torch.Tensor,
                     bias: torch.Tensor) -> nn.Module:
    """Give ``folded`` the new weight and bias, cast to ``layer``'s dtype and trainability."""
    requires_grad = layer.weight.requires_grad
    folded.weight = nn.Parameter(weight.to(layer.weight.dtype), requires_grad)
    folded.bias = nn.Parameter(bias.to(layer.weight.dtype), requires_grad)
    return folded


def fold_batchnorm(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A layer equal to eval-mode ``bn(layer(x))``: ``W' = W * s``, ``b' = (b - mean) * s + beta``.

    ``s = gamma / sqrt(running_var + eps)`` per output channel (see the module
    docstring for the derivation). The computation runs in float64 and the
    result is cast back to the layer's dtype; the new layer keeps every other
    setting of ``layer`` (stride, padding, groups, ...) and always has a bias.

    Args:
        layer: ``nn.Linear`` (weight ``(C, in)``) or ``nn.Conv1d/2d/3d`` (weight
            ``(C, in / groups, *kernel)``), with or without bias.
        bn: BatchNorm of the matching rank with ``num_features == C`` and
            running statistics, from ``torch.nn`` or ``bncourse.torch_bn``;
            ``affine=False`` is allowed.

    Returns:
        A new module of ``layer``'s type; ``layer`` and ``bn`` are not modified.

    Raises:
        TypeError: ``layer`` or ``bn`` is of an unsupported type.
        ValueError: mismatched ranks (e.g. Conv2d with BatchNorm1d), ``C`` not
            equal to ``bn.num_features``, ``bn`` without running statistics, or
            an uninitialised lazy layer.
    """
    _check_pair("fold_batchnorm", layer, bn)
    with torch.no_grad():
        weight, b = _layer_f64(layer)
        mean, s, beta = _bn_f64(bn)
        folded_weight = weight * s.reshape((-1,) + (1,) * (weight.dim() - 1))
        folded_bias = (b - mean) * s + beta
    return _with_parameters(copy.deepcopy(layer), layer, folded_weight, folded_bias)


def _is_plain_sequential(module) -> bool:
    """An nn.Sequential whose forward is the standard one (children in order)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _fold_children(seq: nn.Sequential) -> nn.Sequential:
    """Fold the pairs of an already copied Sequential (its modules are reused)."""
    children = list(seq.named_children())
    folded = OrderedDict()
    i = 0
    while i < len(children):
        name, module = children[i]
        if _is_plain_sequential(module):
            folded[name] = _fold_children(module)
            i += 1
        elif i + 1 < len(children) and _can_fold(module, children[i + 1][1]):
            folded[name] = fold_batchnorm(module, children[i + 1][1])
            i += 2  # the BatchNorm is absorbed
        else:
            folded[name] = module
            i += 1
    return nn.Sequential(folded)


def fold_sequential(model: nn.Sequential) -> nn.Sequential:
    """Return a copy of ``model`` with every foldable (layer, BatchNorm) pair folded.

    Every ``Linear``/``Conv1d``/``Conv2d``/``Conv3d`` immediately followed, in
    the same Sequential, by a matching BatchNorm with running statistics is
    replaced by ``fold_batchnorm(layer, bn)`` and the BatchNorm is removed.
    Nested ``nn.Sequential`` containers are folded recursively; other modules
    are copied unchanged, and so is a BatchNorm that cannot be folded (one
    without running statistics, or one not directly after a matching layer).
    Module names are kept, so the remaining entries of the state dict match.

    Args:
        model: an ``nn.Sequential`` (one that does not override ``forward``).

    Returns:
        A new ``nn.Sequential`` in eval mode whose output equals
        ``model.eval()(x)``; ``model`` is not modified (its mode included).

    Raises:
        TypeError: ``model`` is not an ``nn.Sequential``, or overrides
            ``forward`` (the result would not compute the same function).
    """
    func = "fold_sequential"
    if not isinstance(model, nn.Sequential):
        fail(func, "model", "an nn.Sequential", type(model).__name__, TypeError)
    if not _is_plain_sequential(model):
        fail(func, "model", "an nn.Sequential that does not override forward",
              type(model).__name__, TypeError)
    # Copy once, so modules shared inside the model stay shared in the copy.
    return _fold_children(copy.deepcopy(model)).eval()


def fold_batchnorm_into_next(bn: nn.Module, layer: nn.Module) -> nn.Linear:
    """An ``nn.Linear`` equal to eval-mode ``layer(bn(a))``: ``W' = W * s``, ``b' = b + W t``.

    For a BatchNorm placed after an activation, whose output feeds a Linear
    layer. Per input feature ``j``, ``bn(a)_j = s_j * a_j + t_j`` with
    ``s = gamma / sqrt(running_var + eps)`` and ``t = beta - s * running_mean``,
    so ``W bn(a) + b = (W * s) a + (b + W t)``: column ``j`` of the weight is
    scaled by ``s_j`` and the bias absorbs ``W t``. Computed in float64 and
    cast back to the layer's dtype.

    Args:
        bn: a BatchNorm1d (``torch.nn`` or ``bncourse.torch_bn``) with running
            statistics, ``num_features == layer.in_features``; ``affine=False``
            is allowed.
        layer: an ``nn.Linear`` (weight ``(out, C)``), with or without bias.

    Returns:
        A new ``nn.Linear`` with a bias; ``bn`` and ``layer`` are not modified.

    Raises:
        TypeError: ``bn`` is not a BatchNorm1d or ``layer`` not an ``nn.Linear``.
        ValueError: ``bn.num_features`` differs from ``layer.in_features``, or
            ``bn`` has no running statistics.
    """
    func = "fold_batchnorm_into_next"
    if _bn_rank(bn) != 1:
        fail(func, "bn", "a BatchNorm1d (torch.nn or bncourse.torch_bn)", type(bn).__name__,
              TypeError)
    if not isinstance(layer, nn.Linear):
        fail(func, "layer", "an nn.Linear", type(layer).__name__, TypeError)
    if bn.num_features != layer.in_features:
        fail(func, "bn", f"num_features={layer.in_features} to match the input features of "
              "layer", f"num_features={bn.num_features}")
    if bn.running_mean is None or bn.running_var is None:
        fail(func, "bn", "a BatchNorm with running statistics (track_running_stats=True)",
              "track_running_stats=False")
    with torch.no_grad():
        weight, b = _layer_f64(layer)
        mean, s, beta = _bn_f64(bn)
        t = beta - s * mean
        folded_weight = weight * s  # broadcasts along the rows: column j times s_j
        folded_bias = b + weight @ t
    folded = nn.Linear(layer.in_features, layer.out_features, bias=True,
                       device=layer.weight.device, dtype=layer.weight.dtype)
    return _with_parameters(folded, layer, folded_weight, folded_bias)
