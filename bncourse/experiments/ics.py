"""Internal covariate shift measured as Santurkar et al. define it: through gradients.

Ioffe and Szegedy describe internal covariate shift (ICS) as the change of a
layer's input distribution caused by updates of the layers before it.
Santurkar et al. (2018, Definition 2.1) measure what that change does to the
layer's *optimization problem*: the gradient of layer ``i``'s weights before
and after the previous layers take their step, on the same mini-batch.

With weights ``W_1, ..., W_k`` after ``t`` updates, a mini-batch ``(x, y)``,
loss ``L`` and the SGD step ``W_j <- W_j - lr * G_j``:

    G_i  = dL/dW_i (W_1,            ..., W_{i-1},            W_i, ..., W_k; x, y)
    G'_i = dL/dW_i (W_1 - lr * G_1, ..., W_{i-1} - lr * G_{i-1}, W_i, ..., W_k; x, y)

    l2_i       = ||G_i - G'_i||                  (Frobenius norm)
    relative_i = ||G_i - G'_i|| / ||G_i||
    cosine_i   = <G_i, G'_i> / (||G_i|| ||G'_i||)

Large ``l2``/``relative`` and a cosine far below 1 mean that the layers below
``i`` change the problem ``i`` is solving. "Previous layers" are all the
parameters registered before ``W_i`` (``model.named_parameters()`` order):
earlier weights, biases and BN ``gamma``/``beta``; ``W_i``'s own bias and BN
and every later parameter keep their values. The first weight layer has no
previous parameters, so it is left out.

Both gradients come from a forward pass in the model's current mode (training
mode: BN uses the statistics of ``x``). Torch's global random state is the
same at the start of every forward, so a model with random layers (dropout,
``NoisyBatchNorm1d``) sees the same noise in both, and the difference is due
to the update alone. The model's parameters, their ``.grad``, its buffers (BN
running statistics) and the global random state are left as they were.

Shape letters: L the number of measured weight layers.

Public API
----------
``run_ics(model, x, y, lr, loss_fn=F.cross_entropy) -> ICS``
    ``ICS`` dataclass: ``layers`` (names, length L), ``l2 (L,)``,
    ``relative (L,)``, ``cosine (L,)``, ``grad_norm (L,)`` (``||G_i||``),
    and ``as_array()`` -> ``(3, L)`` rows ``l2, relative, cosine``.
``gradient_change(g, g_after) -> (l2, relative, cosine)``
    The three numbers for one pair of gradients (NumPy arrays or torch
    tensors of the same shape), as floats.
``ics_probe(lr, loss_fn=F.cross_entropy)``
    The same as a probe for ``bncourse.lab.training.train``: records
    ``run_ics(model, *batch, lr).as_array()``, shape ``(3, L)``.
``ICS_ROWS``
    ``("l2", "relative", "cosine")``, the row names of ``as_array()``.

Examples
--------
>>> import torch
>>> from bncourse.lab.models import make_mlp
>>> net = make_mlp(8, hidden=(6, 6), out_features=3, init_scale=0.5, seed=0)
>>> x, y = torch.randn(10, 8, generator=torch.Generator().manual_seed(1)), torch.arange(10) % 3
>>> r = run_ics(net, x, y, lr=0.5)
>>> r.layers, r.as_array().shape
(['fc2', 'out'], (3, 2))
>>> bool(((r.cosine > -1) & (r.cosine <= 1 + 1e-6)).all())
True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bncourse._checks import check_model_batch, fail
from bncourse.lab.models import weight_layers
from bncourse.lab.probes import Preserved

__all__ = ["run_ics", "ics_probe", "gradient_change", "ICS", "ICS_ROWS"]

ICS_ROWS = ("l2", "relative", "cosine")


@dataclasses.dataclass(frozen=True)
class ICS:
    """Gradient change of each weight layer after the previous layers' SGD step.

    Attributes
    ----------
    layers : list of str
        Names of the measured weight layers (every Linear/Conv but the first).
    l2, relative, cosine, grad_norm : ndarray, shape (L,)
        ``||G - G'||``, ``||G - G'|| / ||G||``, ``cos(G, G')`` and ``||G||``
        (cosine and relative are NaN where a gradient is exactly zero).
    """

    layers: list
    l2: np.ndarray
    relative: np.ndarray
    cosine: np.ndarray
    grad_norm: np.ndarray

    def as_array(self) -> np.ndarray:
        """Rows ``l2, relative, cosine`` (``ICS_ROWS``): shape ``(3, L)``."""
        return np.stack([self.l2, self.relative, self.cosine])


def _check_lr(func: str, lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        fail(func, "lr", "a positive finite float", f"{type(lr).__name__} {lr!r}", TypeError)
    if not math.isfinite(lr) or lr <= 0:
        fail(func, "lr", "a positive finite float", repr(lr))
    return float(lr)


def gradient_change(g, g_after) -> tuple[float, float, float]:
    """``(||g - g'||, ||g - g'|| / ||g||, cos(g, g'))`` for two gradients of one layer.

    Norms are Frobenius (l2 over all entries), computed in float64;
    the cosine is ``<g, g'> / (||g|| ||g'||)``. ``relative`` is NaN when
    ``g`` is zero, ``cosine`` when either gradient is zero.

    Parameters
    ----------
    g, g_after : ndarray or torch.Tensor, same shape
        The gradient before and after the previous layers' update.

    Returns
    -------
    (l2, relative, cosine) : three floats

    Raises
    ------
    TypeError / ValueError
        For inputs that are not arrays/tensors or have different shapes.

    Examples
    --------
    >>> import numpy as np
    >>> gradient_change(np.array([[3.0, 0.0]]), np.array([[0.0, 4.0]]))
    (5.0, 1.6666666666666667, 0.0)
    """
    func = "gradient_change"
    arrays = []
    for arg, v in (("g", g), ("g_after", g_after)):
        if isinstance(v, torch.Tensor):
            v = v.detach().to("cpu", torch.float64).numpy()
        elif not isinstance(v, np.ndarray):
            fail(func, arg, "a numpy.ndarray or torch.Tensor", type(v).__name__, TypeError)
        arrays.append(np.asarray(v, dtype=np.float64))
    a, b = arrays
    if a.shape != b.shape:
        fail(func, "g_after", f"the shape of g {a.shape}", f"shape {b.shape}")
    na, nb = float(np.sqrt(np.sum(a * a))), float(np.sqrt(np.sum(b * b)))
    l2 = float(np.sqrt(np.sum((a - b) ** 2)))
    relative = l2 / na if na > 0 else float("nan")
    cosine = float(np.sum(a * b)) / (na * nb) if na > 0 and nb > 0 else float("nan")
    return l2, relative, cosine


def run_ics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float,
                loss_fn: Callable = F.cross_entropy) -> ICS:
    """Santurkar et al.'s internal covariate shift of every weight layer but the first.

    Parameters
    ----------
    model : nn.Module
        Its Linear/Conv layers (``bncourse.lab.models.weight_layers``) are the
        layers ``W_1 .. W_k``.
    x : torch.Tensor, shape (N, ...)
        The mini-batch input.
    y : torch.Tensor, shape (N, ...)
        Targets for ``loss_fn``.
    lr : float > 0
        The SGD step of the previous layers (the training learning rate).
    loss_fn : callable(output, y) -> scalar tensor
        Default: mean cross-entropy.

    Returns
    -------
    ICS
        One entry per weight layer after the first, in module order.

    Raises
    ------
    ValueError / TypeError
        For a non-module model, non-tensor or mismatched ``x``/``y``, a
        non-positive ``lr``, or a model with fewer than two weight layers.
    """
    func = "run_ics"
    check_model_batch(func, model, x, y)
    lr = _check_lr(func, lr)
    layers = weight_layers(model)
    if len(layers) < 2:
        fail(func, "model", "a model with at least two Linear/Conv layers",
              f"{len(layers)} weight layer(s)")
    params = [p for p in model.parameters() if p.requires_grad]
    position = {id(p): k for k, p in enumerate(params)}

    saved = [p.detach().clone() for p in params]
    rng = torch.get_rng_state()

    def grads(wrt):
        torch.set_rng_state(rng)                      # same dropout/noise in every forward
        with torch.enable_grad():
            loss = loss_fn(model(x), y)
            return torch.autograd.grad(loss, wrt, allow_unused=True)

    names, l2, rel, cos, gnorm = [], [], [], [], []
    with Preserved(model):  # parameters, buffers and the generator as on entry
        g_all = grads(params)
        for name, layer in layers[1:]:
            w = layer.weight
            k = position[id(w)]
            g = g_all[k]
            with torch.no_grad():
                for p, gp in zip(params[:k], g_all[:k]):
                    if gp is not None:
                        p.sub_(lr * gp)
            (g_new,) = grads([w])
            with torch.no_grad():
                for p, data in zip(params[:k], saved[:k]):
                    p.copy_(data)
            if g is None or g_new is None:
                g = torch.zeros_like(w) if g is None else g
                g_new = torch.zeros_like(w) if g_new is None else g_new
            diff, relative, cosine = gradient_change(g, g_new)
            names.append(name)
            l2.append(diff)
            rel.append(relative)
            cos.append(cosine)
            gnorm.append(float(torch.linalg.vector_norm(g.detach().double())))
    return ICS(layers=names, l2=np.array(l2), relative=np.array(rel), cosine=np.array(cos),
               grad_norm=np.array(gnorm))


def ics_probe(lr: float, loss_fn: Callable = F.cross_entropy) -> Callable:
    """A ``train`` probe recording ``run_ics(model, x, y, lr).as_array()``, shape (3, L).

    Use the training learning rate, so ``G'`` is the gradient after the step
    the previous layers actually take (for plain SGD without momentum).

    >>> probe = ics_probe(lr=0.5)
    """
    lr = _check_lr("ics_probe", lr)

    def probe(model, batch):
        x, y = batch
        return run_ics(model, x, y, lr, loss_fn).as_array()

    return probe
