"""Smoothness of the loss along the gradient: loss variation and gradient predictiveness.

Santurkar et al. (2018, Section 3) argue that Batch Normalization helps
because it makes the loss landscape smoother: the loss and its gradient
change less when the weights move, so the gradient computed now stays a good
guide for the step actually taken. They measure it along the gradient
direction. With all trainable parameters ``w``, the mini-batch loss ``L``,
``g = dL/dw (w)`` and step sizes ``eta_1 < ... < eta_K``:

    w_k = w - eta_k * g                              (points on the gradient path)
    loss[k]        = L(w_k)
    grad_change[k] = ||dL/dw (w_k) - g||              (l2 over all parameters)

and three summaries, each one number per point of training:

    loss_variation       = max(L(w), loss) - min(L(w), loss)      (the loss's range on the path)
    gradient_change      = max_k grad_change[k]         (Santurkar's "gradient predictiveness":
                                                         small = predictive)
    effective_smoothness = max_k grad_change[k] / (eta_k ||g||)
                                                        (a Lipschitz constant of the gradient
                                                         measured along the path, "beta")

All losses and gradients are computed on the same mini-batch, in the model's
current mode (training mode: BN uses the statistics of each forward's batch,
which is the same batch here). Torch's global random state is reset before
every forward, so random layers see the same noise on the whole path. The
model's parameters, their ``.grad``, its buffers and the random state are left
as they were.

Shape letters: K step sizes.

Public API
----------
``gradient_path(model, x, y, step_sizes, loss_fn=F.cross_entropy) -> GradientPath``
    Dataclass ``step_sizes (K,)``, ``loss0``, ``grad_norm`` (``||g||``),
    ``loss (K,)``, ``grad_change (K,)``, and properties ``loss_variation``,
    ``gradient_change``, ``effective_smoothness``; ``summary()`` -> ``(4,)``
    in the order of ``SMOOTHNESS_ROWS``.
``smoothness_probe(step_sizes, loss_fn=F.cross_entropy)``
    The same as a probe for ``bncourse.lab.training.train``: records
    ``gradient_path(model, *batch, step_sizes).summary()``, shape ``(4,)``.
``SMOOTHNESS_ROWS``
    ``("loss_variation", "gradient_change", "effective_smoothness", "grad_norm")``.

Examples
--------
>>> import torch
>>> from bncourse.lab.models import make_mlp
>>> net = make_mlp(8, hidden=(6,), out_features=3, init_scale=0.5, seed=0)
>>> x, y = torch.randn(10, 8, generator=torch.Generator().manual_seed(1)), torch.arange(10) % 3
>>> path = gradient_path(net, x, y, step_sizes=[0.1, 0.5, 1.0])
>>> path.loss.shape, path.summary().shape
((3,), (4,))
>>> bool(path.loss_variation >= 0)
True
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bncourse._checks import check_model_batch, fail
from bncourse.lab.probes import Preserved

__all__ = ["gradient_path", "smoothness_probe", "GradientPath", "SMOOTHNESS_ROWS"]

SMOOTHNESS_ROWS = ("loss_variation", "gradient_change", "effective_smoothness", "grad_norm")


@dataclasses.dataclass(frozen=True)
class GradientPath:
    """Loss and gradient at points ``w - eta_k g`` along the gradient.

    Attributes
    ----------
    step_sizes : ndarray, shape (K,)
    loss0 : float
        ``L(w)``.
    grad_norm : float
        ``||g||`` over all trainable parameters.
    loss : ndarray, shape (K,)
        ``L(w - eta_k g)``.
    grad_change : ndarray, shape (K,)
        ``||dL/dw (w - eta_k g) - g||``.
    """

    step_sizes: np.ndarray
    loss0: float
    grad_norm: float
    loss: np.ndarray
    grad_change: np.ndarray

    @property
    def loss_variation(self) -> float:
        """Range of the loss over ``w`` and the path points (nats)."""
        values = np.append(self.loss, self.loss0)
        return float(np.max(values) - np.min(values))

    @property
    def gradient_change(self) -> float:
        """Largest ``||grad(w_k) - g||`` on the path (small = predictive gradient)."""
        return float(np.max(self.grad_change))

    @property
    def effective_smoothness(self) -> float:
        """Largest ``||grad(w_k) - g|| / (eta_k ||g||)``: gradient change per unit distance."""
        if self.grad_norm == 0:
            return float("nan")
        return float(np.max(self.grad_change / (self.step_sizes * self.grad_norm)))

    def summary(self) -> np.ndarray:
        """The four numbers of ``SMOOTHNESS_ROWS``: the three summaries and ``grad_norm``."""
        return np.array([self.loss_variation, self.gradient_change, self.effective_smoothness,
                         self.grad_norm])


def _check_steps(func: str, step_sizes) -> np.ndarray:
    try:
        eta = np.asarray(step_sizes, dtype=np.float64)
    except (TypeError, ValueError):
        fail(func, "step_sizes", "a non-empty 1-D sequence of positive floats",
              repr(step_sizes), TypeError)
    if eta.ndim != 1 or eta.size == 0 or not np.all(np.isfinite(eta)) or np.any(eta <= 0):
        fail(func, "step_sizes", "a non-empty 1-D sequence of positive finite floats",
              repr(step_sizes))
    return eta


def gradient_path(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_sizes,
                  loss_fn: Callable = F.cross_entropy) -> GradientPath:
    """Loss and gradient change at ``w - eta_k * g`` for each step size ``eta_k``.

    Parameters
    ----------
    model : nn.Module
    x : torch.Tensor, shape (N, ...)
    y : torch.Tensor, shape (N, ...)
    step_sizes : sequence of float > 0, length K
        E.g. multiples of the learning rate, ``lr * [0.25, 0.5, 1, 2, 4]``.
    loss_fn : callable(output, y) -> scalar tensor
        Default: mean cross-entropy.

    Returns
    -------
    GradientPath

    Raises
    ------
    ValueError / TypeError
        For a non-module model, non-tensor or mismatched ``x``/``y``, or step
        sizes that are not positive and finite.
    """
    func = "gradient_path"
    check_model_batch(func, model, x, y)
    eta = _check_steps(func, step_sizes)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        fail(func, "model", "a model with trainable parameters", "none")
    saved = [p.detach().clone() for p in params]
    rng = torch.get_rng_state()

    def loss_and_grad():
        torch.set_rng_state(rng)                      # same dropout/noise on the whole path
        with torch.enable_grad():
            loss = loss_fn(model(x), y)
            g = torch.autograd.grad(loss, params, allow_unused=True)
        flat = torch.cat([(torch.zeros_like(p) if gp is None else gp).reshape(-1)
                          for p, gp in zip(params, g)])
        return float(loss.detach()), flat

    losses, changes = [], []
    with Preserved(model):  # parameters, buffers and the generator as on entry
        loss0, g0 = loss_and_grad()
        for e in eta:
            with torch.no_grad():
                offset = 0
                for p, data in zip(params, saved):
                    n = p.numel()
                    p.copy_(data - float(e) * g0[offset:offset + n].reshape(p.shape))
                    offset += n
            loss_k, g_k = loss_and_grad()
            losses.append(loss_k)
            changes.append(float(torch.linalg.vector_norm(g_k - g0)))
    return GradientPath(step_sizes=eta, loss0=loss0, grad_norm=float(torch.linalg.vector_norm(g0)),
                        loss=np.array(losses), grad_change=np.array(changes))


def smoothness_probe(step_sizes, loss_fn: Callable = F.cross_entropy) -> Callable:
    """A ``train`` probe recording ``gradient_path(...).summary()``, shape ``(4,)``.

    >>> probe = smoothness_probe([0.125, 0.25, 0.5, 1.0, 2.0])
    """
    eta = _check_steps("smoothness_probe", step_sizes)

    def probe(model, batch):
        x, y = batch
        return gradient_path(model, x, y, eta, loss_fn).summary()

    return probe
