"""Batch renormalization (Ioffe 2017): train with the batch, correct towards the running statistics.

Batch normalization trains on batch statistics and predicts with running
averages. With small batches the two differ a lot, and the network learns on
activations it will never see at prediction time. Batch renormalization
(:cite:`ioffe2017batch`) keeps the batch statistics in the graph but
rescales and shifts the result so that, as long as two correction factors stay
within their limits, the training output *equals* the output with the running
statistics.

Shape letters: ``N`` batch, ``C`` channels (axis 1), ``m = x.numel() // C``
values per channel. Per channel, in training::

    mean_B, var_B = batch mean and biased variance over the m values
    std_B = sqrt(var_B + eps)                  # as in BatchNorm
    std = sqrt(running_var + eps)              # what evaluation will use
    r = clip(std_B / std, 1 / rmax, rmax)      # treated as a constant:
    d = clip((mean_B - running_mean) / std, -dmax, dmax)   # no gradient flows
    x_hat = (x - mean_B) / std_B * r + d
    y = gamma * x_hat + beta

When neither clip is active, ``x_hat = (x - running_mean) / std``: exactly the
evaluation-mode normalization. The gradient still flows through ``mean_B``
and ``std_B`` (that is what makes it batch *normalization*), while ``r`` and
``d`` are constants in the backward pass (``detach``). So batch
renormalization is BatchNorm with the scale ``gamma * r`` and the shift
``gamma * d + beta``, and that is how it is computed here (torch's fused
BatchNorm kernel does the work, and its gradient is the right one). With
``rmax = 1`` and ``dmax = 0``, ``r = 1`` and ``d = 0`` and the layer *is*
BatchNorm.

Running statistics are updated after the forward, exactly as torch's
BatchNorm does (``momentum`` is the weight of the new batch, and the stored
variance is the unbiased one, ``var_B * m / (m - 1)``); buffers and parameters
have BatchNorm's names, so state dicts move between the two. (The paper
averages ``std`` itself rather than the variance; the difference is small and
this choice keeps evaluation identical to BatchNorm's.) Evaluation mode is
BatchNorm's evaluation: ``y = gamma * (x - running_mean) / std + beta``.

Ioffe starts training with ``rmax = 1, dmax = 0`` (plain BatchNorm, while the
running averages are still meaningless) and relaxes the limits gradually.
``warmup_steps`` and ``ramp_steps`` do the same here, counted in training
batches (``num_batches_tracked``): plain BatchNorm for the first
``warmup_steps`` batches, then limits growing linearly to ``rmax`` and
``dmax`` over ``ramp_steps`` batches.

Public API
----------
``renorm_factors(mean_b, var_b, running_mean, running_var, rmax, dmax, eps=1e-5) -> (r, d)``
``batch_renorm(x, running_mean, running_var, weight=None, bias=None, training=False,
 momentum=0.1, eps=1e-5, rmax=3.0, dmax=5.0) -> y``
``BatchRenorm1d``, ``BatchRenorm2d``: modules with BatchNorm's arguments plus
``rmax``, ``dmax``, ``warmup_steps``, ``ramp_steps``; ``current_limits()``.
``batch_renorm_factory(**kwargs) -> callable(num_features) -> BatchRenorm2d``
for ``bncourse.lab.models.make_cnn(norm="bn", norm_layer=...)``.

Examples
--------
>>> import torch
>>> brn = BatchRenorm1d(3, rmax=1.0, dmax=0.0)     # no correction: BatchNorm1d
>>> bn = torch.nn.BatchNorm1d(3)
>>> x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
>>> bool(torch.allclose(brn(x), bn(x), atol=1e-6))
True
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _NormBase

from bncourse._checks import fail, check_momentum, check_num_features, check_positive
from bncourse._torch_checks import (
    check_bn_tensor,
    check_channel_tensor,
    check_module_input,
    check_training_size,
    reduce_dims,
)

__all__ = ["renorm_factors", "batch_renorm", "BatchRenorm1d", "BatchRenorm2d",
           "batch_renorm_factory"]


def _check_limit(func: str, arg: str, value, lowest: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(func, arg, f"a float >= {lowest:g}", f"{type(value).__name__} {value!r}", TypeError)
    if not value >= lowest or value == float("inf"):
        fail(func, arg, f"a finite float >= {lowest:g}", repr(value))
    return float(value)


def _check_steps(func: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(func, arg, "an int >= 0", f"{type(value).__name__} {value!r}", TypeError)
    if value < 0:
        fail(func, arg, "an int >= 0", repr(value))
    return int(value)


def renorm_factors(mean_b, var_b, running_mean, running_var, rmax, dmax, eps=1e-5):
    """The clipped correction factors ``r`` and ``d`` of batch renormalization.

    ``r = clip(std_B / std, 1/rmax, rmax)`` and ``d = clip((mean_B - mu) / std, -dmax, dmax)``
    with ``std_B = sqrt(var_b + eps)`` and ``std = sqrt(running_var + eps)``. All
    arguments are tensors of the same shape (``(C,)`` or a broadcastable
    view); the results are detached from the autograd graph, since Batch
    Renormalization treats them as constants.

    Returns:
        ``(r, d)``, the shape of ``mean_b``.
    """
    with torch.no_grad():
        std = torch.sqrt(running_var + eps)
        r = torch.clamp(torch.sqrt(var_b + eps) / std, 1.0 / rmax, rmax)
        d = torch.clamp((mean_b - running_mean) / std, -dmax, dmax)
    return r.detach(), d.detach()


def batch_renorm(x, running_mean, running_var, weight=None, bias=None, training=False,
                 momentum=0.1, eps=1e-5, rmax=3.0, dmax=5.0):
    """Batch renormalization, functional form (like ``torch.nn.functional.batch_norm``).

    ``training=True``: normalize with the batch statistics corrected by
    ``r`` and ``d`` (see the module docstring), then update ``running_mean``
    and ``running_var`` in place (unbiased variance, torch's ``momentum``).
    ``training=False``: ``gamma * (x - running_mean) / sqrt(running_var + eps) + beta``.

    Args:
        x: ``(N, C, *)`` floating tensor, 2-D to 5-D.
        running_mean, running_var: ``(C,)`` tensors (required: the correction
            needs them even in training).
        weight, bias: ``gamma``, ``beta``, ``(C,)``, or None.
        training: use (corrected) batch statistics and update the buffers.
        momentum: weight of the new batch in the running averages, in [0, 1].
        eps: positive float added to the variances.
        rmax: limit of ``r`` (>= 1); dmax: limit of ``|d|`` (>= 0).

    Returns:
        ``y``, the shape and dtype of ``x``.

    Raises:
        TypeError: a non-tensor, or missing running statistics.
        ValueError: wrong rank or per-channel shape, one value per channel in
            training, ``eps <= 0``, ``momentum`` outside [0, 1], ``rmax < 1``,
            ``dmax < 0``.
    """
    func = "batch_renorm"
    check_bn_tensor(func, x)
    c = x.shape[1]
    check_channel_tensor(func, "running_mean", running_mean, c, allow_none=False)
    check_channel_tensor(func, "running_var", running_var, c, allow_none=False)
    check_channel_tensor(func, "weight", weight, c)
    check_channel_tensor(func, "bias", bias, c)
    eps = check_positive(func, "eps", eps)
    momentum = check_momentum(func, momentum, allow_none=False)
    rmax = _check_limit(func, "rmax", rmax, 1.0)
    dmax = _check_limit(func, "dmax", dmax, 0.0)
    if not training:
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
    check_training_size(func, x)
    # r and d use the running statistics from BEFORE this batch's update.
    var_b, mean_b = torch.var_mean(x.detach(), dim=reduce_dims(x), correction=0)
    r, d = renorm_factors(mean_b, var_b, running_mean, running_var, rmax, dmax, eps)
    # gamma * (x_bn * r + d) + beta is BatchNorm with scale gamma * r and shift gamma * d + beta,
    # so torch's fused kernel does the work: the gradient flows through the batch statistics
    # as in BN, r and d are constants, and the buffers get BN's update.
    scale = r if weight is None else weight * r
    shift = d if weight is None else weight * d
    if bias is not None:
        shift = shift + bias
    return F.batch_norm(x, running_mean, running_var, scale, shift, True, momentum, eps)


class _BatchRenorm(_NormBase):
    """BatchNorm's parameters and buffers (torch's ``_NormBase``: state dicts, resets and old
    checkpoints as BatchNorm's), plus the limits and their schedule."""

    _expected_dims: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features, rmax=3.0, dmax=5.0, eps=1e-5, momentum=0.1, affine=True,
                 warmup_steps=0, ramp_steps=0):
        name = type(self).__name__
        rmax = _check_limit(name, "rmax", rmax, 1.0)
        dmax = _check_limit(name, "dmax", dmax, 0.0)
        warmup_steps = _check_steps(name, "warmup_steps", warmup_steps)
        ramp_steps = _check_steps(name, "ramp_steps", ramp_steps)
        super().__init__(check_num_features(name, num_features), check_positive(name, "eps", eps),
                         check_momentum(name, momentum, allow_none=False), bool(affine),
                         track_running_stats=True)
        self.rmax, self.dmax = rmax, dmax
        self.warmup_steps, self.ramp_steps = warmup_steps, ramp_steps

    def current_limits(self) -> tuple[float, float]:
        """``(rmax, dmax)`` for the next training batch, from the warm-up and ramp schedule.

        With ``t = num_batches_tracked`` batches seen: ``(1, 0)`` while
        ``t < warmup_steps``; then the fraction ``f = min(1, (t - warmup_steps + 1) / ramp_steps)``
        of the way to the final limits (``f = 1`` when ``ramp_steps == 0``):
        ``(1 + f * (rmax - 1), f * dmax)``.
        """
        t = int(self.num_batches_tracked)
        if t < self.warmup_steps:
            return 1.0, 0.0
        f = 1.0 if self.ramp_steps == 0 else min(1.0, (t - self.warmup_steps + 1) / self.ramp_steps)
        return 1.0 + f * (self.rmax - 1.0), f * self.dmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (shape kept): corrected batch statistics in training, running in eval."""
        self._check_input_dim(x)
        rmax, dmax = self.current_limits()
        y = batch_renorm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps, rmax, dmax)
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
        return y

    def _check_input_dim(self, x) -> None:
        check_module_input(type(self).__name__, x, self._expected_dims, self._layout,
                           self.num_features)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, rmax={self.rmax}, dmax={self.dmax}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}, "
                f"warmup_steps={self.warmup_steps}, ramp_steps={self.ramp_steps}")


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization of ``(N, C)`` or ``(N, C, L)`` input (see the module docstring).

    Args: ``num_features`` (``C``), ``rmax=3.0``, ``dmax=5.0``, ``eps=1e-5``,
    ``momentum=0.1`` (weight of the new batch), ``affine=True``,
    ``warmup_steps=0``, ``ramp_steps=0``.

    Raises:
        ValueError: input not 2-D or 3-D, channels not ``num_features``, one
            value per channel in training; bad constructor arguments.
    """

    _expected_dims = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization of ``(N, C, H, W)`` input; arguments as ``BatchRenorm1d``."""

    _expected_dims = (4,)
    _layout = "4-D (N, C, H, W)"


def batch_renorm_factory(**kwargs):
    """``factory(num_features) -> BatchRenorm2d(num_features, **kwargs)``, for ``make_cnn``."""
    def factory(num_features):
        return BatchRenorm2d(num_features, **kwargs)
    return factory
