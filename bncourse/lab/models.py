"""Model builders for the experiments: an MLP and a small CNN, with or without normalization.

The rule these builders enforce is *one thing changed at a time*. Two models
built with the same ``seed`` and the same layer sizes have identical
Linear/Conv weights and biases whatever their normalization, placement,
dropout or bias-before-BN choice: the weights are drawn from a private
``torch.Generator(seed)`` in a fixed order (first layer to output layer,
weight then bias), and normalization layers draw nothing from it. A BN vs
no-BN comparison therefore differs only in the BN layers (contrast d2l's demo,
where a changed pooling layer confounded the comparison).

Layers are named, so probes and readers can refer to them:
``fc1, norm1, act1, drop1, fc2, ..., out`` for the MLP and
``conv1, norm1, act1, pool1, ..., flatten, out`` for the CNN
(``model.act3`` is the third hidden activation; its *input* is the
pre-activation that Ioffe & Szegedy's Figure 1 tracks).

Public API
----------
``make_mlp(in_features, hidden=(100, 100, 100), out_features=10, activation="sigmoid", bn="none", init_scale=None, bias_before_bn=True, dropout=0.0, bn_layer=None, seed=0) -> nn.Sequential``
    Hidden block ``i``: ``bn="none"``: ``fc_i -> act_i``; ``bn="before"``:
    ``fc_i -> norm_i -> act_i``; ``bn="after"``: ``fc_i -> act_i -> norm_i``;
    then ``drop_i`` when ``dropout > 0``. The output layer ``out`` is a plain
    Linear (logits). A leading ``flatten`` lets the MLP take ``(N, 1, 8, 8)``
    images as well as ``(N, 64)`` vectors.
``make_cnn(in_channels=1, num_classes=10, channels=(16, 32), norm="none", activation="relu", init_scale=None, groups=4, norm_layer=None, bias_before_norm=True, image_size=8, seed=0) -> nn.Sequential``
    Block ``i``: ``conv_i`` (3x3, padding 1) ``-> norm_i -> act_i -> pool_i``
    (2x2 max pooling while the map is at least 2x2; the same pooling for every
    ``norm``), then ``flatten -> out``. ``norm`` is ``"none"``, ``"bn"``
    (BatchNorm2d), ``"gn"`` (GroupNorm with ``groups`` groups) or ``"ln"``
    (GroupNorm with one group: LayerNorm over (C, H, W) with a per-channel
    affine).
``init_weights_(model, init_scale=None, seed=0) -> model``
    Redraw every Linear/Conv layer of ``model`` in module order (used by both
    builders).
``weight_layers(model) -> list[(name, module)]``
    The Linear/Conv layers of ``model`` in module order.

Initialization (``init_scale``)
-------------------------------
``None``: torch's default distribution, weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
(drawn from the seeded generator, not the global one).
float ``s``: weight ``N(0, s^2)``, bias 0 (Ioffe & Szegedy's "small random Gaussian values";
CS231n's ``weight_scale``). ``"he"``: weight ``N(0, 2 / fan_in)``, bias 0.

Normalization layers (``bn_layer`` / ``norm_layer``)
---------------------------------------------------
Any callable ``factory(num_features) -> nn.Module``. The default is
``nn.BatchNorm1d`` (MLP) or ``nn.BatchNorm2d`` (CNN). Examples:
``bncourse.torch_bn.BatchNorm1d``, ``nn.LayerNorm``,
``functools.partial(nn.GroupNorm, 4)`` (GroupNorm takes ``num_groups`` first),
``lambda n: nn.BatchNorm1d(n, momentum=0.01)``, or a noisy/ghost BN module
of your own.

Examples
--------
>>> from bncourse.lab.models import make_mlp, weight_layers
>>> plain = make_mlp(64, bn="none", init_scale=0.1, seed=0)
>>> with_bn = make_mlp(64, bn="before", init_scale=0.1, seed=0)
>>> [name for name, _ in plain.named_children()][:4]
['flatten', 'fc1', 'act1', 'fc2']
>>> [name for name, _ in with_bn.named_children()][:5]
['flatten', 'fc1', 'norm1', 'act1', 'fc2']
>>> all(torch.equal(a.weight, b.weight)
...     for (_, a), (_, b) in zip(weight_layers(plain), weight_layers(with_bn)))
True
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from bncourse._checks import check_int, fail

__all__ = ["make_mlp", "make_cnn", "init_weights_", "weight_layers", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}

_WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear/Conv layers of ``model`` in module (definition) order, with their names.

    >>> from bncourse.lab.models import make_mlp
    >>> [name for name, _ in weight_layers(make_mlp(64, hidden=(8, 8)))]
    ['fc1', 'fc2', 'out']
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHT_TYPES)]


def _check_init_scale(func: str, init_scale):
    if init_scale is None or (isinstance(init_scale, str) and init_scale == "he"):
        return init_scale
    if isinstance(init_scale, bool) or not isinstance(init_scale, numbers.Real):
        fail(func, "init_scale", 'None, "he" or a positive float (Gaussian std)',
              f"{type(init_scale).__name__} {init_scale!r}", TypeError)
    if not math.isfinite(init_scale) or init_scale <= 0:
        fail(func, "init_scale", 'None, "he" or a positive float (Gaussian std)',
              repr(init_scale))
    return float(init_scale)



@torch.no_grad()
def init_weights_(model: nn.Module, init_scale=None, seed: int = 0) -> nn.Module:
    """Redraw every Linear/Conv weight and bias of ``model`` in place from a seeded generator.

    Layers are visited in module order and each draws its weight, then its
    bias, so the draws do not depend on which other layers (normalization,
    dropout) sit between them. With ``init_scale=None`` a bias is drawn even
    for a layer without bias and then discarded, so dropping the bias before
    BN does not shift the later layers' draws.

    Parameters
    ----------
    model : nn.Module
    init_scale : None, "he" or float
        See the module docstring.
    seed : int

    Returns
    -------
    model (modified in place).
    """
    func = "init_weights_"
    init_scale = _check_init_scale(func, init_scale)
    seed = check_int(func, "seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    for _, layer in weight_layers(model):
        w = layer.weight
        fan_in = w[0].numel()
        if init_scale is None:
            bound = 1.0 / math.sqrt(fan_in)
            w.copy_(torch.rand(w.shape, generator=gen) * (2 * bound) - bound)
            b = torch.rand(w.shape[0], generator=gen) * (2 * bound) - bound
            if layer.bias is not None:
                layer.bias.copy_(b)
        else:
            std = math.sqrt(2.0 / fan_in) if init_scale == "he" else init_scale
            w.copy_(torch.randn(w.shape, generator=gen) * std)
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def _check_choice(func: str, arg: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        fail(func, arg, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value


def _check_sizes(func: str, arg: str, value, allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        sizes = tuple(value)
    except TypeError:
        fail(func, arg, "a sequence of positive ints", f"{type(value).__name__} {value!r}",
              TypeError)
    if (not sizes and not allow_empty) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        fail(func, arg, "a non-empty sequence of positive ints", repr(value))
    return tuple(int(s) for s in sizes)



def _check_dropout(func: str, dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
            or not 0.0 <= dropout < 1.0:
        fail(func, "dropout", "a float in [0, 1)", repr(dropout))
    return float(dropout)


def make_mlp(in_features: int, hidden=(100, 100, 100), out_features: int = 10,
             activation: str = "sigmoid", bn: str = "none", init_scale=None,
             bias_before_bn: bool = True, dropout: float = 0.0, bn_layer=None,
             seed: int = 0) -> nn.Sequential:
    """A fully connected classifier with optional normalization before or after each activation.

    Hidden block ``i`` (1-based) computes ``z_i = W_i a_{i-1} + b_i`` in
    ``fc_i`` and then, depending on ``bn``:

    - ``"none"``:   ``a_i = act(z_i)``
    - ``"before"``: ``a_i = act(BN(z_i))`` (the placement of Ioffe & Szegedy)
    - ``"after"``:  ``a_i = BN(act(z_i))``

    followed by ``drop_i`` (``nn.Dropout(dropout)``) when ``dropout > 0``.

    Parameters
    ----------
    in_features : int
        D, the input size (64 for digits). Input may be ``(N, D)`` or any
        ``(N, ...)`` with D values per sample (it is flattened first).
    hidden : sequence of int
        Widths of the hidden layers; its length is the depth.
    out_features : int
        Number of classes (the output layer gives logits, no activation).
    activation : {"sigmoid", "tanh", "relu", "identity"}
    bn : {"none", "before", "after"}
    init_scale : None, "he" or float
        None: torch's default uniform; float: Gaussian std with zero biases;
        "he": Gaussian with std ``sqrt(2 / fan_in)``.
    bias_before_bn : bool
        With ``bn="before"``, whether ``fc_i`` keeps its bias (redundant with
        BN's beta). Default True, so that a BN/no-BN pair has exactly the same
        Linear layers. Ignored for ``bn="none"``/``"after"``.
    dropout : float in [0, 1)
    bn_layer : callable(num_features) -> nn.Module, optional
        The normalization layer; default ``nn.BatchNorm1d``.
    seed : int
        Seeds the weight draws (see ``init_weights_``); the global torch RNG
        state is left as it was (the module constructors run inside
        ``torch.random.fork_rng``).

    Returns
    -------
    nn.Sequential with named children (``fc1``, ``norm1``, ``act1``, ..., ``out``),
    in training mode.

    Raises
    ------
    ValueError / TypeError for an unknown ``activation`` or ``bn``, non-positive
    sizes, a bad ``init_scale`` or ``dropout``.

    Examples
    --------
    >>> net = make_mlp(64, hidden=(100, 100, 100), activation="sigmoid", bn="before",
    ...                init_scale=0.1, seed=0)
    >>> net(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    >>> type(net.norm3).__name__, type(net.act3).__name__
    ('BatchNorm1d', 'Sigmoid')
    """
    func = "make_mlp"
    in_features = check_int(func, "in_features", in_features)
    hidden = _check_sizes(func, "hidden", hidden, allow_empty=True)
    out_features = check_int(func, "out_features", out_features)
    _check_choice(func, "activation", activation, tuple(ACTIVATIONS))
    _check_choice(func, "bn", bn, ("none", "before", "after"))
    init_scale = _check_init_scale(func, init_scale)
    dropout = _check_dropout(func, dropout)
    seed = check_int(func, "seed", seed, minimum=0)
    if bn_layer is None:
        bn_layer = nn.BatchNorm1d
    elif not callable(bn_layer):
        fail(func, "bn_layer", "a callable num_features -> nn.Module",
              f"{type(bn_layer).__name__}", TypeError)

    # torch's constructors draw their default init from the global generator;
    # fork it so building a model leaves the caller's random state untouched.
    with torch.random.fork_rng(devices=[]):
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width = in_features
        for i, h in enumerate(hidden, start=1):
            bias = bias_before_bn or bn != "before"
            layers.append((f"fc{i}", nn.Linear(width, h, bias=bias)))
            if bn == "before":
                layers.append((f"norm{i}", bn_layer(h)))
            layers.append((f"act{i}", ACTIVATIONS[activation]()))
            if bn == "after":
                layers.append((f"norm{i}", bn_layer(h)))
            if dropout > 0:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            width = h
        layers.append(("out", nn.Linear(width, out_features)))
        model = nn.Sequential(OrderedDict(layers))
    return init_weights_(model, init_scale=init_scale, seed=seed)


def _cnn_norm(func: str, norm: str, groups: int, norm_layer):
    if norm_layer is not None:
        if not callable(norm_layer):
            fail(func, "norm_layer", "a callable num_channels -> nn.Module",
                  f"{type(norm_layer).__name__}", TypeError)
        return norm_layer
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "ln":
        return lambda c: nn.GroupNorm(1, c)

    def group_norm(c: int) -> nn.Module:
        if c % groups:
            fail(func, "groups", f"a divisor of every channel width (width {c})", repr(groups))
        return nn.GroupNorm(groups, c)

    return group_norm


def make_cnn(in_channels: int = 1, num_classes: int = 10, channels=(16, 32), norm: str = "none",
             activation: str = "relu", init_scale=None, groups: int = 4, norm_layer=None,
             bias_before_norm: bool = True, image_size: int = 8,
             seed: int = 0) -> nn.Sequential:
    """A small CNN for ``(N, C, H, W)`` images (8x8 digits by default).

    Block ``i``: ``conv_i`` (3x3, stride 1, padding 1) ``-> norm_i -> act_i``
    then ``pool_i`` (2x2 max pooling) while the feature map is at least 2x2.
    Then ``flatten`` and a Linear ``out`` to ``num_classes`` logits. The
    pooling and every other layer are the same whatever ``norm`` is, and the
    conv/linear weights are the same for the same ``seed``.

    Parameters
    ----------
    in_channels : int
    num_classes : int
    channels : sequence of int
        Output channels of each conv block.
    norm : {"none", "bn", "gn", "ln"}
        BatchNorm2d; GroupNorm(groups, C); GroupNorm(1, C), which normalizes
        each sample over (C, H, W) like LayerNorm.
    activation : {"sigmoid", "tanh", "relu", "identity"}
    init_scale : None, "he" or float (see ``make_mlp``)
    groups : int
        Number of groups for ``norm="gn"``; must divide every width.
    norm_layer : callable(num_channels) -> nn.Module, optional
        Overrides ``norm`` (used whenever ``norm != "none"``).
    bias_before_norm : bool
        Whether the convs keep their bias when a norm follows.
    image_size : int
        Height = width of the input (8 for digits).
    seed : int

    Examples
    --------
    >>> net = make_cnn(norm="gn", channels=(8, 16), seed=0)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> [n for n, _ in net.named_children()]
    ['conv1', 'norm1', 'act1', 'pool1', 'conv2', 'norm2', 'act2', 'pool2', 'flatten', 'out']
    """
    func = "make_cnn"
    in_channels = check_int(func, "in_channels", in_channels)
    num_classes = check_int(func, "num_classes", num_classes)
    channels = _check_sizes(func, "channels", channels)
    _check_choice(func, "norm", norm, ("none", "bn", "gn", "ln"))
    _check_choice(func, "activation", activation, tuple(ACTIVATIONS))
    init_scale = _check_init_scale(func, init_scale)
    groups = check_int(func, "groups", groups)
    image_size = check_int(func, "image_size", image_size)
    seed = check_int(func, "seed", seed, minimum=0)
    factory = _cnn_norm(func, norm, groups, norm_layer)

    with torch.random.fork_rng(devices=[]):  # leave the global generator untouched
        layers: list[tuple[str, nn.Module]] = []
        width, size = in_channels, image_size
        for i, c in enumerate(channels, start=1):
            bias = bias_before_norm or norm == "none"
            layers.append((f"conv{i}", nn.Conv2d(width, c, kernel_size=3, padding=1,
                                                 bias=bias)))
            if norm != "none":
                layers.append((f"norm{i}", factory(c)))
            layers.append((f"act{i}", ACTIVATIONS[activation]()))
            if size >= 2:
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
                size //= 2
            width = c
        layers.append(("flatten", nn.Flatten()))
        layers.append(("out", nn.Linear(width * size * size, num_classes)))
        model = nn.Sequential(OrderedDict(layers))
    return init_weights_(model, init_scale=init_scale, seed=seed)


def sequential_child(func: str, model, name: str, kind, arg: str = "name"):
    """``(names, index, module)`` of child ``name`` of an ``nn.Sequential``, checked to be a ``kind``.

    ``names`` lists every child's name in order; errors name ``func`` and the
    argument ``arg`` that held ``name``.
    """
    if not isinstance(model, nn.Sequential):
        fail(func, "model", "an nn.Sequential", type(model).__name__, TypeError)
    names = [n for n, _ in model.named_children()]
    if name not in names:
        fail(func, arg, f"the name of a child of model (one of {names})", repr(name))
    index = names.index(name)
    module = model[index]
    if not isinstance(module, kind):
        fail(func, arg, f"the name of a {kind.__name__} layer",
             f"{name!r}, a {type(module).__name__}")
    return names, index, module
