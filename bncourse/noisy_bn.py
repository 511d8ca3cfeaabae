"""Noisy Batch Normalization: BN whose output distribution is moved at random every step.

Santurkar et al. (2018) tested whether Batch Normalization works *because*
it keeps the distribution of each layer's input fixed. They injected noise
after every BN layer, with a non-zero mean and a non-unit variance that are
redrawn at every training step, so that the distributions the next layers see
are *less* stable than without BN, and asked whether training still benefits.

This module's version draws, at every forward pass in training mode, one
shift and one scale per feature ``j``:

    y_hat = BN(x)                                  (torch's BatchNorm1d, affine)
    m_j ~ U(-shift, shift),   s_j ~ U(scale_low, scale_high)
    y[:, j] = s_j * y_hat[:, j] + m_j

so every sample of the batch sees the same random affine map, and the whole
distribution of feature ``j`` jumps by ``m_j`` and stretches by ``s_j`` from
one step to the next. (Santurkar et al. perturb each activation of each
sample; here the per-step draw moves the distribution as a whole, which is
the quantity Ioffe and Szegedy's Figure 1 tracks.)

In evaluation mode there is no noise; the output is the noise's expectation
given ``y_hat``: ``E[s] * y_hat + E[m] = (scale_low + scale_high) / 2 * y_hat``
(as dropout uses its expected mask at test time).

Shape letters: N batch, C features (channels), L length.

Public API
----------
``NoisyBatchNorm1d(num_features, shift=1.0, scale=(1.0, 2.0), generator=None, **bn_kwargs)``
    A subclass of ``torch.nn.BatchNorm1d`` (so it is found by code that looks
    for BN layers); input ``(N, C)`` or ``(N, C, L)``. Pass it to
    ``bncourse.lab.models.make_mlp(..., bn="before", bn_layer=NoisyBatchNorm1d)``
    or ``functools.partial(NoisyBatchNorm1d, shift=0.5)``.
    ``last_shift`` / ``last_scale`` hold the noise of the latest training forward.

Randomness: the noise comes from ``generator`` when one is given, otherwise
from torch's global generator, which ``bncourse.lab.training.train`` seeds from
its ``seed`` (inside ``torch.random.fork_rng``), so a training run with noisy
BN is reproducible.

Examples
--------
>>> import torch
>>> gen = torch.Generator().manual_seed(0)
>>> bn = NoisyBatchNorm1d(3, shift=0.5, scale=(1.0, 1.5), generator=gen)
>>> y = bn(torch.randn(8, 3))
>>> bool((bn.last_shift.abs() <= 0.5).all())
True
>>> bool(((bn.last_scale >= 1.0) & (bn.last_scale <= 1.5)).all())
True
>>> _ = bn.eval()
>>> x = torch.randn(4, 3)
>>> bool(torch.allclose(bn(x), 1.25 * torch.nn.BatchNorm1d.forward(bn, x)))  # E[s] * BN(x)
True
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from bncourse._checks import fail
from bncourse._torch_checks import per_channel

__all__ = ["NoisyBatchNorm1d"]


def _check_nonneg(func: str, arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        fail(func, arg, "a finite float >= 0", repr(value),
              TypeError if isinstance(value, bool) or not isinstance(value, numbers.Real)
              else ValueError)
    return float(value)


def _check_scale(func: str, scale) -> tuple[float, float]:
    try:
        low, high = scale
    except (TypeError, ValueError):
        fail(func, "scale", "a pair (scale_low, scale_high) with 0 < low <= high",
              repr(scale), TypeError)
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            fail(func, "scale", "a pair of finite floats with 0 < low <= high", repr(scale),
                  TypeError)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        fail(func, "scale", "a pair (scale_low, scale_high) with 0 < low <= high", repr(scale))
    return float(low), float(high)


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """``y = s * BN(x) + m``, ``m ~ U(-shift, shift)``, ``s ~ U(*scale)`` per feature and step.

    Parameters
    ----------
    num_features : int
        C, the number of features (axis 1 of the input).
    shift : float >= 0
        Half-width of the uniform distribution of the per-feature shift ``m``.
    scale : (float, float)
        Range ``(scale_low, scale_high)`` of the per-feature scale ``s``,
        ``0 < scale_low <= scale_high``. ``shift=0, scale=(1, 1)`` is plain BN.
    generator : torch.Generator, optional
        Source of the noise; default torch's global generator.
    **bn_kwargs
        ``eps``, ``momentum``, ``affine``, ``track_running_stats`` of
        ``nn.BatchNorm1d``. The running statistics are those of ``x`` (before
        the noise), exactly as in plain BN.

    Shapes
    ------
    x : (N, C) or (N, C, L);  output: same shape.

    Raises
    ------
    ValueError / TypeError
        For a negative or non-finite ``shift``, or a ``scale`` that is not a
        pair ``0 < low <= high``; the input checks are torch's.
    """

    def __init__(self, num_features: int, shift: float = 1.0, scale=(1.0, 2.0),
                 generator: torch.Generator | None = None, **bn_kwargs):
        super().__init__(num_features, **bn_kwargs)
        func = "NoisyBatchNorm1d"
        self.shift = _check_nonneg(func, "shift", shift)
        self.scale_low, self.scale_high = _check_scale(func, scale)
        if generator is not None and not isinstance(generator, torch.Generator):
            fail(func, "generator", "a torch.Generator or None", type(generator).__name__,
                  TypeError)
        self.generator = generator
        self.last_shift: torch.Tensor | None = None
        self.last_scale: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_hat = super().forward(x)
        if not self.training:
            mean_scale = (self.scale_low + self.scale_high) / 2
            return y_hat if mean_scale == 1.0 else mean_scale * y_hat
        c = self.num_features
        u_shift = torch.rand(c, generator=self.generator, dtype=y_hat.dtype)
        u_scale = torch.rand(c, generator=self.generator, dtype=y_hat.dtype)
        m = (2 * u_shift - 1) * self.shift
        s = self.scale_low + (self.scale_high - self.scale_low) * u_scale
        self.last_shift, self.last_scale = m, s
        return per_channel(s, x.dim()) * y_hat + per_channel(m, x.dim())

    def extra_repr(self) -> str:
        return (super().extra_repr()
                + f", shift={self.shift}, scale=({self.scale_low}, {self.scale_high})")
