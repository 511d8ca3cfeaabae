"""Biases that batch normalization cancels: find them in a model and count them.

In training mode BN subtracts the batch mean of every channel. A bias ``b_c``
added to every value of channel ``c`` just before BN moves that mean by
``b_c`` too, so it cancels::

    BN(z + b)_c = gamma_c * (z_c + b_c - (mean_c + b_c)) / sqrt(var_c + eps) + beta_c
                = BN(z)_c                        (var_c does not change either)

The output does not depend on ``b``, so its gradient is zero and training
never moves it; BN's own shift ``beta`` does the job. Such a bias is dead
weight: it costs memory, optimizer state and (with weight decay) a little
work, and does nothing.

Public API
----------
``redundant_biases(model) -> list[(name, count)]``
    Every ``nn.Linear`` / ``nn.Conv1d/2d/3d`` with a bias whose output feeds
    *only* a BatchNorm over the same channels, found by tracing the model with
    ``torch.fx``, with the number of bias parameters it holds.
``vgg16_bn(num_classes=1000, conv_bias=True) -> nn.Sequential``
    VGG-16 with batch normalization after each of its 13 convolutions, laid out
    like torchvision's ``vgg16_bn`` (whose convolutions keep their biases), so
    the count can be made on a real architecture without downloading anything.
    Build it under ``torch.device("meta")`` to count parameters without
    allocating memory.

Example
-------
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
>>> redundant_biases(model)
[('0', 3)]
"""

from __future__ import annotations

from collections import OrderedDict

import torch.fx
from torch import nn

from bncourse import torch_bn
from bncourse._checks import fail

__all__ = ["redundant_biases", "vgg16_bn", "VGG16_CONFIG"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
               torch_bn.BatchNorm1d, torch_bn.BatchNorm2d, torch_bn.BatchNorm3d)

#: Output channels of VGG-16's 13 convolutions; "M" is a 2x2 max pooling.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


def _channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, also keeping the course's BatchNorm modules as single nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _BATCHNORMS) or super().is_leaf_module(m, module_qualified_name)


def redundant_biases(model: nn.Module) -> list[tuple[str, int]]:
    """List the biases that a following BatchNorm cancels, with their parameter counts.

    A Linear/Conv layer counts when it has a bias, its output is used by
    exactly one operation, and that operation is a BatchNorm module
    (``nn.BatchNorm1d/2d/3d`` or those of :mod:`bncourse.torch_bn`) over as
    many channels as the layer produces. A
    layer whose output also feeds something else (a skip connection, a
    second head) is not counted: there the bias still matters. The model is
    traced symbolically (``torch.fx.symbolic_trace``), nothing is computed,
    so a model on the ``meta`` device works.

    Assumes a Linear layer's output is ``(N, features)`` when it reaches the
    BatchNorm (features on axis 1), as in an MLP.

    Args:
        model: an ``nn.Module`` that ``torch.fx`` can trace (no data-dependent
            Python control flow in ``forward``).

    Returns:
        ``[(qualified layer name, number of bias parameters), ...]`` in graph
        order. ``sum(count for _, count in result)`` parameters can be removed
        (``bias=False``) without changing what the model computes in training.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``torch.fx`` cannot trace it (the tracer's message is included).
    """
    func = "redundant_biases"
    if not isinstance(model, nn.Module):
        fail(func, "model", "a torch.nn.Module", type(model).__name__, TypeError)
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # noqa: BLE001 - the tracer raises many types; report any
        fail(func, "model", "a module torch.fx can trace",
              f"{type(model).__name__} ({type(err).__name__}: {err})")
    found = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        layer = model.get_submodule(node.target)
        if not isinstance(layer, _LAYERS) or layer.bias is None or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op != "call_module":
            continue
        bn = model.get_submodule(user.target)
        if isinstance(bn, _BATCHNORMS) and bn.num_features == _channels(layer) \
                and user.args and user.args[0] is node:
            found.append((node.target, layer.bias.numel()))
    return found


def vgg16_bn(num_classes: int = 1000, conv_bias: bool = True) -> nn.Sequential:
    """VGG-16 with batch normalization, laid out like torchvision's ``vgg16_bn``.

    ``features``: for each entry of :data:`VGG16_CONFIG`, a 3x3 convolution
    (padding 1) ``-> BatchNorm2d -> ReLU``, or a 2x2 max pooling for ``"M"``;
    then ``avgpool`` (adaptive average pooling to 7x7), ``flatten`` and
    ``classifier``: ``Linear(512*7*7, 4096) -> ReLU -> Dropout -> Linear(4096,
    4096) -> ReLU -> Dropout -> Linear(4096, num_classes)``. Input
    ``(N, 3, H, W)`` with ``H, W >= 32``, output ``(N, num_classes)``.

    Args:
        num_classes: size of the output layer (positive int).
        conv_bias: whether the convolutions have biases (torchvision: True;
            each one is cancelled by the BatchNorm after it).

    Returns:
        ``nn.Sequential`` with children ``features``, ``avgpool``, ``flatten``,
        ``classifier``. Weights have torch's default initialization; build it
        under ``torch.device("meta")`` to count parameters for free.

    Raises:
        TypeError, ValueError: ``num_classes`` is not a positive int.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        fail("vgg16_bn", "num_classes", "a positive int",
              f"{type(num_classes).__name__} {num_classes!r}", TypeError)
    if num_classes <= 0:
        fail("vgg16_bn", "num_classes", "a positive int", repr(num_classes))
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG16_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1, bias=conv_bias),
                       nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            channels = v
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, num_classes))
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(*layers)), ("avgpool", nn.AdaptiveAvgPool2d((7, 7))),
        ("flatten", nn.Flatten()), ("classifier", classifier)]))
