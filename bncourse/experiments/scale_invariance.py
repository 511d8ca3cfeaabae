"""Scale invariance of the weights in front of batch norm, and what it does to the learning rate.

A layer ``z = W a + b`` followed by training-mode batch norm gives the same
output for ``c W, c b`` (any ``c > 0``): the mean and the standard deviation
of ``z`` over the batch scale with ``c`` and the normalization divides it out
(exactly when ``eps = 0``; with ``eps > 0`` up to a term of order
``eps / (c^2 var)``). Differentiating ``L(c W) = L(W)``:

- with respect to ``c`` at ``c = 1``: ``<W, dL/dW> = 0``, the gradient is
  orthogonal to the weights;
- with respect to ``W``: ``dL/dW evaluated at c W = (1 / c) * dL/dW at W``,
  larger weights get proportionally smaller gradients.

So plain SGD, ``W <- W - lr * dL/dW``, moves the *direction* of ``W`` (all
that matters to the output) by about ``lr * ||dL/dW|| / ||W||``, which
scales like ``lr / ||W||^2``: this is the effective learning rate. Because
the step is orthogonal to ``W``, ``||W||^2`` grows by ``lr^2 ||dL/dW||^2``
at every step, and the effective learning rate falls as training goes on.

Public API
----------
``layers_before_bn(model) -> list[str]``
    Names of the Linear/Conv layers immediately followed by a BatchNorm.
``scale_before_bn(model, factor) -> nn.Module``
    A copy with those layers' weights and biases multiplied by ``factor``.
``run_scale_check(model, x, y, factor) -> ScaleCheck``
    Measures the three statements above for one factor (training mode).

Examples
--------
>>> import torch
>>> from bncourse.lab.models import make_mlp
>>> net = make_mlp(8, hidden=(16, 16), bn="before", seed=0)
>>> layers_before_bn(net)
['fc1', 'fc2']
>>> x, y = torch.randn(32, 8), torch.randint(0, 10, (32,))
>>> check = run_scale_check(net, x, y, factor=10.0)
>>> bool(check.output_change < 1e-3), [round(r, 2) for r in check.grad_ratio]
(True, [1.0, 1.0])
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from bncourse._checks import fail

__all__ = ["layers_before_bn", "scale_before_bn", "run_scale_check", "ScaleCheck"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def layers_before_bn(model: nn.Module) -> list[str]:
    """Names of the Linear/Conv children of ``model`` whose next child is a BatchNorm.

    >>> from bncourse.lab.models import make_mlp
    >>> layers_before_bn(make_mlp(4, hidden=(3,), bn="after"))
    []
    """
    if not isinstance(model, nn.Module):
        fail("layers_before_bn", "model", "a torch.nn.Module", type(model).__name__, TypeError)
    children = list(model.named_children())
    return [name for (name, m), (_, nxt) in zip(children, children[1:])
            if isinstance(m, _WEIGHTED) and isinstance(nxt, _NORMS)]


def _check_factor(func: str, factor) -> float:
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) \
            or not math.isfinite(factor) or factor <= 0:
        fail(func, "factor", "a positive finite float", repr(factor))
    return float(factor)


def scale_before_bn(model: nn.Module, factor: float) -> nn.Module:
    """A deep copy of ``model`` whose layers in front of BatchNorm have ``W, b`` times ``factor``.

    Raises ``ValueError`` when no layer is followed by a BatchNorm (nothing
    would be scale invariant) or ``factor`` is not positive.
    """
    func = "scale_before_bn"
    factor = _check_factor(func, factor)
    names = layers_before_bn(model)
    if not names:
        fail(func, "model", "a model with a Linear/Conv layer directly followed by BatchNorm",
              "none in " + type(model).__name__)
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        for name in names:
            layer = scaled.get_submodule(name)
            layer.weight.mul_(factor)
            if layer.bias is not None:
                layer.bias.mul_(factor)
    return scaled


@dataclasses.dataclass(frozen=True)
class ScaleCheck:
    """What scaling the weights in front of BN by ``factor`` changed (training mode).

    Attributes
    ----------
    factor : float
    layers : list of str
        The scaled layers (``layers_before_bn``).
    output_change : float
        ``max|f_scaled(x) - f(x)| / max|f(x)|`` over the logits.
    grad_ratio : list of float
        Per scaled layer, ``factor * ||dL/dW at c W|| / ||dL/dW at W||`` (1 when the
        gradient shrinks exactly as ``1 / factor``).
    cosine : list of float
        Per scaled layer, ``<W, dL/dW> / (||W|| ||dL/dW||)`` at the unscaled weights
        (0 when the gradient is orthogonal to the weights).
    """

    factor: float
    layers: list
    output_change: float
    grad_ratio: list
    cosine: list


def _forward_and_grads(model: nn.Module, names, x, y):
    work = copy.deepcopy(model).train()
    weights = [work.get_submodule(n).weight for n in names]
    logits = work(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), weights)
    return logits.detach(), [w.detach() for w in weights], grads


def run_scale_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, factor: float) -> ScaleCheck:
    """Measure output invariance, the ``1 / factor`` gradient and orthogonality for one factor.

    ``L = cross_entropy(model(x), y)`` in training mode (batch statistics of
    ``x``). ``model`` is not modified.

    Parameters
    ----------
    model : nn.Module with Linear/Conv layers followed by BatchNorm
    x : tensor (B, ...), y : int64 tensor (B,)
    factor : float > 0

    Returns
    -------
    ScaleCheck
    """
    func = "run_scale_check"
    factor = _check_factor(func, factor)
    scaled = scale_before_bn(model, factor)
    names = layers_before_bn(model)
    logits, weights, grads = _forward_and_grads(model, names, x, y)
    logits_c, _, grads_c = _forward_and_grads(scaled, names, x, y)
    change = float((logits_c - logits).abs().max() / logits.abs().max())
    ratio = [float(factor * torch.linalg.vector_norm(gc) / torch.linalg.vector_norm(g))
             for g, gc in zip(grads, grads_c)]
    cosine = [float((w * g).sum() / (torch.linalg.vector_norm(w) * torch.linalg.vector_norm(g)))
              for w, g in zip(weights, grads)]
    return ScaleCheck(factor=factor, layers=names, output_change=change,
                      grad_ratio=ratio, cosine=cosine)

