"""Gradient explosion at initialization in deep batch-normalized networks without skip connections.

Yang et al. (2019) showed that in a deep fully connected network with batch
norm after every linear layer and no residual connections, the gradient
*grows* from the top of the network towards its input, geometrically in
depth, at initialization: normalization removes the vanishing signal but the
backward pass through each BN layer amplifies the gradient a little.

Measured here: a ``make_mlp`` network ``Linear -> BN -> act`` repeated
``depth`` times (``width`` units, He-initialised weights by default), then a
``Linear`` output layer, fed one mini-batch of ``batch_size`` Gaussian inputs
``x ~ N(0, I_width)`` with uniformly random labels, mean cross-entropy loss,
training-mode BN (batch statistics). With ``g_l = ||dL/dW_l||_F`` for the
weight layers ``l = 1 .. depth + 1`` (the last one the output layer)::

    ratio      = g_1 / g_{depth + 1}          # input layer over top layer
    per_layer  = ratio ** (1 / depth)         # geometric growth per layer

Shape letters: B batch, H width, L = depth + 1 weight layers, C classes.

Public API
----------
``weight_gradient_norms(model, x, y) -> ndarray (L,)``
    ``||dL/dW_l||_F`` of every Linear/Conv layer for one training-mode
    forward/backward; the model is not changed.
``growth_factor(norms) -> (ratio, per_layer)``
    The two summaries above from any vector of per-layer norms.
``run_growth(width, depth, batch_size, seed=0, bn="before", activation="relu", init_scale="he", num_classes=10) -> Growth``
    Build the network and the batch from ``seed`` and measure.
``bn_relu_grad_norms(x, weights, dlogits, eps=1e-5) -> ndarray (L,)``
    The same gradient norms in NumPy for a bias-free ``Linear -> BN (gamma=1,
    beta=0) -> ReLU`` stack and a given upstream gradient ``dlogits``, built
    on ``bncourse.batchnorm`` (the reference of a chapter 6 exercise).
``ANCHOR``
    The reference measurement in Yang et al.'s setting (width 512, batch 128,
    depth 30, He init, ReLU) listed in the course's anchors: ratio about 195,
    about 1.19 per layer.

Examples
--------
>>> g = run_growth(width=64, depth=10, batch_size=32, seed=0)
>>> g.norms.shape, bool(g.ratio > 1.0)          # the input layer gets the larger gradient
((11,), True)
>>> ratio, per_layer = growth_factor([8.0, 4.0, 2.0, 1.0])
>>> float(ratio), float(per_layer)
(8.0, 2.0)
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bncourse._checks import check_array, check_int, fail
from bncourse.lab.models import make_mlp, weight_layers

__all__ = ["weight_gradient_norms", "growth_factor", "run_growth", "Growth",
           "bn_relu_grad_norms", "ANCHOR"]

#: Reference numbers for width 512, batch 128, depth 30, He init, ReLU (course anchors).
ANCHOR = {"width": 512, "batch_size": 128, "depth": 30, "ratio": 195.0, "per_layer": 1.19}


@dataclasses.dataclass(frozen=True)
class Growth:
    """One measurement: per-layer gradient norms ``(L,)`` and their two summaries."""

    norms: np.ndarray
    ratio: float
    per_layer: float


def weight_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``||dL/dW_l||_F`` for every Linear/Conv layer of ``model``, in module order.

    ``L = cross_entropy(model(x), y)`` (mean over the batch) with the model in
    training mode, so batch norm uses the statistics of ``x``. The work is done
    on a deep copy: the model's parameters, gradients and running statistics
    are left as they were.

    Parameters
    ----------
    model : nn.Module
    x : tensor (B, ...)
    y : int64 tensor (B,)

    Returns
    -------
    ndarray (L,), float64.
    """
    if not isinstance(model, nn.Module):
        fail("weight_gradient_norms", "model", "a torch.nn.Module", type(model).__name__,
              TypeError)
    work = copy.deepcopy(model).train()
    layers = [m.weight for _, m in weight_layers(work)]
    if not layers:
        fail("weight_gradient_norms", "model", "a model with Linear/Conv layers", repr(model))
    loss = F.cross_entropy(work(x), y)
    grads = torch.autograd.grad(loss, layers)
    return np.array([float(torch.linalg.vector_norm(g)) for g in grads])


def growth_factor(norms) -> tuple[float, float]:
    """``ratio = norms[0] / norms[-1]`` and ``per_layer = ratio ** (1 / (len(norms) - 1))``.

    Raises ``ValueError`` for fewer than two norms or a norm that is not
    positive and finite.
    """
    g = np.asarray(norms, dtype=np.float64)
    if g.ndim != 1 or g.size < 2:
        fail("growth_factor", "norms", "a 1-D sequence of at least 2 norms",
              f"shape {g.shape}")
    if not np.all(np.isfinite(g) & (g > 0)):
        fail("growth_factor", "norms", "positive finite values", repr(g.tolist()))
    ratio = g[0] / g[-1]
    return float(ratio), float(ratio ** (1.0 / (g.size - 1)))


def run_growth(width: int, depth: int, batch_size: int, seed: int = 0, bn: str = "before",
                   activation: str = "relu", init_scale="he", num_classes: int = 10) -> Growth:
    """Per-layer weight-gradient norms of a fresh ``depth x width`` MLP on one Gaussian batch.

    The network is ``make_mlp(width, hidden=(width,) * depth, out_features=num_classes,
    activation=activation, bn=bn, init_scale=init_scale, seed=seed)``; the batch
    ``x ~ N(0, 1)`` of shape ``(batch_size, width)`` and labels uniform over the
    classes are drawn from ``torch.Generator().manual_seed(seed)``. With
    ``bn="before"`` (the default) the batch must have at least 2 samples.

    Returns
    -------
    Growth
        ``norms`` of shape ``(depth + 1,)`` (hidden layers, then the output
        layer), ``ratio = norms[0] / norms[-1]``, ``per_layer = ratio ** (1 / depth)``.

    Examples
    --------
    >>> plain = run_growth(width=64, depth=10, batch_size=32, bn="none", seed=0)
    >>> plain.norms.shape
    (11,)
    """
    func = "run_growth"
    width = check_int(func, "width", width)
    depth = check_int(func, "depth", depth)
    batch_size = check_int(func, "batch_size", batch_size,
                                     minimum=2 if bn != "none" else 1)
    num_classes = check_int(func, "num_classes", num_classes, minimum=2)
    model = make_mlp(width, hidden=(width,) * depth, out_features=num_classes,
                     activation=activation, bn=bn, init_scale=init_scale, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, width, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    norms = weight_gradient_norms(model, x, y)
    ratio, per_layer = growth_factor(norms)
    return Growth(norms=norms, ratio=ratio, per_layer=per_layer)


def bn_relu_grad_norms(x: np.ndarray, weights, dlogits: np.ndarray,
                       eps: float = 1e-5) -> np.ndarray:
    """Weight-gradient norms of ``Linear -> BN -> ReLU`` blocks and a linear output, in NumPy.

    Forward, with ``h_0 = x`` and no biases::

        z_l = h_{l-1} @ W_l            # W_l: (fan_in, fan_out), l = 1 .. L-1
        h_l = relu(BN(z_l))            # training-mode BN, gamma = 1, beta = 0
        logits = h_{L-1} @ W_L

    Backward from ``dlogits = dLoss/dlogits``; returns ``||dLoss/dW_l||_F``
    for ``l = 1 .. L``.

    Parameters
    ----------
    x : ndarray (B, D)
    weights : sequence of L ndarrays, ``weights[l]`` of shape ``(fan_in, fan_out)``
        (the transpose of ``nn.Linear.weight``).
    dlogits : ndarray (B, C)
    eps : float

    Returns
    -------
    ndarray (L,) in the dtype of ``x``.
    """
    from bncourse.batchnorm import batchnorm_backward, batchnorm_forward

    func = "bn_relu_grad_norms"
    x = check_array(func, "x", x, ndim=2)
    weights = [check_array(func, f"weights[{i}]", w, ndim=2) for i, w in enumerate(weights)]
    if not weights:
        fail(func, "weights", "a non-empty sequence of 2-D arrays", "an empty one")
    width = x.shape[1]
    for i, w in enumerate(weights):
        if w.shape[0] != width:
            fail(func, f"weights[{i}]", f"shape ({width}, fan_out) to follow the previous "
                  "layer", f"shape {w.shape}")
        width = w.shape[1]
    dlogits = check_array(func, "dlogits", dlogits, ndim=2)
    if dlogits.shape != (x.shape[0], width):
        fail(func, "dlogits", f"shape {(x.shape[0], width)}", f"shape {dlogits.shape}")

    h, inputs, caches, masks = x, [], [], []
    for w in weights[:-1]:
        inputs.append(h)
        z = h @ w
        ones = np.ones(z.shape[1], dtype=z.dtype)
        y, cache = batchnorm_forward(z, ones, np.zeros_like(ones), eps)
        caches.append(cache)
        masks.append(y > 0)
        h = np.where(y > 0, y, 0).astype(z.dtype)
    inputs.append(h)

    dws = [None] * len(weights)
    dh = dlogits
    dws[-1] = inputs[-1].T @ dh
    dh = dh @ weights[-1].T
    for i in range(len(weights) - 2, -1, -1):
        dy = np.where(masks[i], dh, 0).astype(dh.dtype)          # ReLU passes where y > 0
        dz, _, _ = batchnorm_backward(dy, caches[i])
        dws[i] = inputs[i].T @ dz
        dh = dz @ weights[i].T
    return np.array([np.linalg.norm(dw) for dw in dws], dtype=x.dtype)
