"""Batch normalization in PyTorch with the hand-derived backward.

The same mathematics as the NumPy reference, wrapped for PyTorch: an
``autograd.Function`` whose ``backward`` is the simplified closed form, a
functional ``batch_norm`` that decides which statistics to use, and modules
``BatchNorm1d``/``2d``/``3d`` that are drop-in replacements for torch's.

Shape letters: ``N`` batch, ``C`` channels (always axis 1), ``m`` values per
channel (``m = x.numel() // C``: every axis except axis 1 is averaged over).
``x`` is ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

Training forward, per channel::

    mean = sum(x) / m
    var = sum((x - mean) ** 2) / m        # biased: this is what normalizes
    inv_std = 1 / sqrt(var + eps)         # eps inside the root keeps it finite
    x_hat = (x - mean) * inv_std
    y = gamma * x_hat + beta

Backward (``dy_hat = dy * gamma``, sums over the ``m`` values of a channel)::

    dx = inv_std / m * (m * dy_hat - sum(dy_hat) - x_hat * sum(dy_hat * x_hat))
    dgamma = sum(dy * x_hat)
    dbeta = sum(dy)

The two subtracted terms exist because ``mean`` and ``var`` depend on ``x``.
In evaluation mode the running statistics are constants, so both vanish and
``dx = dy_hat * inv_std``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from bncourse._checks import fail, check_momentum, check_num_features, check_positive

__all__ = ["BatchNormFunction", "batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


def _reduce_dims(x: torch.Tensor) -> list[int]:
    """Every axis except the channel axis 1: the axes a statistic averages over."""
    return [0, *range(2, x.dim())]


def _per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a ``(C,)`` vector as ``(1, C, 1, ...)`` so it broadcasts against ``x``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _mean_var(x: torch.Tensor, correction: int, keepdim: bool):
    """Per-channel ``mean`` and ``var = sum((x - mean)**2) / (m - correction)``, in two passes.

    The same values as ``torch.var_mean`` up to rounding, but faster: on CPU
    (torch 2.x) ``var_mean`` over the batch axis of ``(N, C)`` input was
    measured about ten times slower than a mean followed by a sum of squares.
    Returns ``(mean, var)``, shape ``(1, C, 1, ...)`` with ``keepdim``, else ``(C,)``.
    """
    dims = _reduce_dims(x)
    mean = x.mean(dim=dims, keepdim=True)
    xc = x - mean
    m = x.numel() // x.shape[1]
    var = (xc * xc).sum(dim=dims, keepdim=keepdim) / (m - correction)
    return (mean if keepdim else mean.reshape(-1)), var


class BatchNormFunction(torch.autograd.Function):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the closed-form backward.

    Call it as ``BatchNormFunction.apply(x, weight, bias, eps)`` to normalize
    with the batch statistics of ``x`` (training), or as
    ``BatchNormFunction.apply(x, weight, bias, eps, running_mean, running_var)``
    to normalize with fixed statistics (evaluation).

    Args:
        x: ``(N, C, *)`` input, 2-D to 5-D.
        weight: ``gamma``, ``(C,)``, or None for ``gamma = 1``.
        bias: ``beta``, ``(C,)``, or None for ``beta = 0``.
        eps: positive float added to the variance inside the square root.
        running_mean, running_var: ``(C,)`` fixed statistics, or both None to
            use the batch statistics (mean and biased variance over ``m``).

    Returns:
        ``y``, same shape and dtype as ``x``.

    The backward returns ``dx``, ``dgamma``, ``dbeta`` (each only when needed)
    and no gradient for ``eps`` or the fixed statistics. It is written with
    torch operations but saves no graph, so it cannot be differentiated again
    (``once_differentiable`` raises if one tries).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running_mean=None, running_var=None):
        batch_stats = running_mean is None and running_var is None
        ndim = x.dim()
        if batch_stats:
            dims = _reduce_dims(x)
            x_hat = x - x.mean(dim=dims, keepdim=True)  # centred now, normalized in place below
            var = (x_hat * x_hat).mean(dim=dims, keepdim=True)
        else:
            x_hat = x - _per_channel(running_mean, ndim)
            var = _per_channel(running_var, ndim)
        inv_std = torch.rsqrt(var + eps)
        x_hat.mul_(inv_std)
        # Fewer temporaries are faster (each full-size one costs an allocation):
        # addcmul computes beta + x_hat * gamma in one pass.
        if weight is not None and bias is not None:
            y = torch.addcmul(_per_channel(bias, ndim), x_hat, _per_channel(weight, ndim))
        elif weight is not None:
            y = x_hat * _per_channel(weight, ndim)
        elif bias is not None:
            y = x_hat + _per_channel(bias, ndim)
        else:
            y = x_hat
        # x_hat and inv_std are all the backward needs (besides gamma): x, mean
        # and var themselves are not kept.
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.batch_stats = batch_stats
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x_hat, inv_std, weight = ctx.saved_tensors
        dims, ndim = _reduce_dims(dy), dy.dim()
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        through_stats = need_dx and ctx.batch_stats
        # dbeta = sum(dy) and dgamma = sum(dy * x_hat); with batch statistics dx needs
        # both too (gamma is constant per channel, so sum(dy_hat) = gamma * dbeta, and
        # sum(dy_hat * x_hat) = gamma * dgamma).
        dbeta = dy.sum(dim=dims) if need_dbeta or through_stats else None
        dgamma = (dy * x_hat).sum(dim=dims) if need_dgamma or through_stats else None
        dx = None
        if need_dx:
            scale = inv_std if weight is None else inv_std * _per_channel(weight, ndim)
            if ctx.batch_stats:
                m = dy.numel() // dy.shape[1]
                # dx = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma), in one buffer
                dx = torch.addcmul(_per_channel(dbeta, ndim), x_hat, _per_channel(dgamma, ndim))
                dx.mul_(-1.0 / m).add_(dy).mul_(scale)
            else:
                # Fixed statistics do not depend on x: only the direct path remains.
                dx = dy * scale
        return (dx, dgamma if need_dgamma else None, dbeta if need_dbeta else None,
                None, None, None)


def _check_input(func: str, x, arg: str = "input") -> torch.Tensor:
    """Check a floating tensor of rank 2 to 5 with at least one channel."""
    if not isinstance(x, torch.Tensor):
        fail(func, arg, "a torch.Tensor", type(x).__name__, TypeError)
    if not x.is_floating_point():
        fail(func, arg, "a floating-point tensor", f"dtype {x.dtype}", TypeError)
    if not 2 <= x.dim() <= 5:
        fail(func, arg, "2-D to 5-D with channels on axis 1 ((N, C), (N, C, L), "
              "(N, C, H, W) or (N, C, D, H, W))", f"shape {tuple(x.shape)} ({x.dim()}-D)")
    if x.shape[1] == 0:
        fail(func, arg, "at least one channel on axis 1", f"shape {tuple(x.shape)}")
    return x


def _check_training_size(func: str, x: torch.Tensor, arg: str = "input") -> None:
    """Batch statistics need more than one value per channel (torch raises too)."""
    m = x.numel() // x.shape[1]
    if m <= 1:
        fail(func, arg, "more than 1 value per channel when using batch statistics",
              f"shape {tuple(x.shape)} ({m} value per channel)")


def _check_vector(func: str, arg: str, v, num_channels: int) -> None:
    """Check an optional per-channel tensor of shape ``(C,)``."""
    if v is None:
        return
    if not isinstance(v, torch.Tensor):
        fail(func, arg, "a torch.Tensor or None", type(v).__name__, TypeError)
    if tuple(v.shape) != (num_channels,):
        fail(func, arg, f"shape ({num_channels},) to match the channels of input",
              f"shape {tuple(v.shape)}")


def check_batch_norm_args(func: str, x: torch.Tensor, running_mean, running_var, weight,
                           bias, training, momentum, eps) -> tuple[float, float]:
    """Check the arguments that ``F.batch_norm``-like functions share; return (eps, momentum).

    ``x`` has been checked already. Raises the ``ValueError``/``TypeError`` documented by
    ``batch_norm``: per-channel shapes, both running buffers or neither, ``eps > 0``,
    ``momentum`` in [0, 1], running buffers present in evaluation.
    """
    num_channels = x.shape[1]
    for arg, v in (("running_mean", running_mean), ("running_var", running_var),
                   ("weight", weight), ("bias", bias)):
        _check_vector(func, arg, v, num_channels)
    if (running_mean is None) != (running_var is None):
        fail(func, "running_mean and running_var", "both tensors or both None",
              f"running_mean={type(running_mean).__name__}, "
              f"running_var={type(running_var).__name__}")
    eps = check_positive(func, "eps", eps)
    momentum = check_momentum(func, momentum, allow_none=False)
    if not training and running_mean is None:
        fail(func, "running_mean and running_var", "tensors when training=False", "None")
    return eps, momentum


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization with the same arguments and behaviour as ``F.batch_norm``.

    ``training=True`` normalizes with the batch statistics and, when the
    running buffers are given, updates them in place (under ``torch.no_grad``,
    so they never carry an autograd graph)::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)

    The stored variance is the unbiased one (``m / (m - 1)``), while the
    normalization uses the biased one, exactly as PyTorch does.
    ``training=False`` normalizes with ``running_mean`` / ``running_var``.

    Args:
        x: ``(N, C, *)`` floating tensor, 2-D to 5-D.
        running_mean, running_var: ``(C,)`` tensors, or None (training only).
        weight, bias: ``gamma``, ``beta``, ``(C,)``, or None.
        training: use batch statistics (and update the buffers).
        momentum: weight of the new batch in the running averages, in [0, 1].
        eps: positive float added to the variance.

    Returns:
        ``y``, the shape and dtype of ``x``.

    Raises:
        TypeError: ``x`` (or a per-channel argument) is not a tensor.
        ValueError: wrong rank, a per-channel shape that does not match ``C``,
            one value per channel when using batch statistics, only one of
            the running buffers given, running buffers missing in evaluation,
            ``eps <= 0``, ``momentum`` outside [0, 1].
    """
    func = "batch_norm"
    _check_input(func, x, "x")
    eps, momentum = check_batch_norm_args(func, x, running_mean, running_var, weight, bias,
                                           training, momentum, eps)
    if not training:
        return BatchNormFunction.apply(x, weight, bias, eps, running_mean, running_var)

    _check_training_size(func, x, "x")
    y = BatchNormFunction.apply(x, weight, bias, eps)
    if running_mean is not None:
        # The buffers are state, not part of the model's function: keeping a
        # graph in them would make every step's graph reachable from the next
        # (a memory leak) and would raise when backward is called twice.
        with torch.no_grad():
            mean, var = _mean_var(x, correction=1, keepdim=False)
            running_mean.mul_(1.0 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1.0 - momentum).add_(var.to(running_var.dtype), alpha=momentum)
    return y


class _BatchNorm(nn.Module):
    """State and forward shared by ``BatchNorm1d``/``2d``/``3d``; subclasses only check rank.

    Parameters ``weight`` (gamma, initialised to 1) and ``bias`` (beta,
    initialised to 0) exist when ``affine=True``; buffers ``running_mean``
    (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (a long
    scalar) exist when ``track_running_stats=True``. The names, shapes and
    dtypes are torch's, so state dicts load in both directions.

    Mode comes from ``self.training`` (set by ``train()`` / ``eval()``), never
    from whether gradients are enabled: evaluating a training-mode module
    under ``torch.no_grad()`` still uses and updates batch statistics, as in
    torch.
    """

    _version = 2  # torch's: version 2 added num_batches_tracked
    _expected_dims: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        name = type(self).__name__
        factory_kwargs = {"device": device, "dtype": dtype}
        self.num_features = check_num_features(name, num_features)
        self.eps = check_positive(name, "eps", eps)
        self.momentum = check_momentum(name, momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory_kwargs))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory_kwargs))
            self.register_buffer("running_var", torch.ones(num_features, **factory_kwargs))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and set gamma = 1, beta = 0 (identity affine)."""
        self.reset_running_stats()
        if self.affine:
            with torch.no_grad():
                self.weight.fill_(1)
                if self.bias is not None:
                    self.bias.zero_()

    def _check_input_dim(self, x) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            fail(name, "input", "a torch.Tensor", type(x).__name__, TypeError)
        if x.dim() not in self._expected_dims:
            fail(name, "input", f"{self._layout}", f"shape {tuple(x.shape)} ({x.dim()}-D)")
        if x.shape[1] != self.num_features:
            fail(name, "input", f"{self.num_features} channels on axis 1 "
                  f"(num_features={self.num_features})", f"shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (shape kept); see the class docstring for the modes."""
        name = type(self).__name__
        self._check_input_dim(x)
        _check_input(name, x)
        use_batch_stats = self.training or self.running_mean is None
        if use_batch_stats:
            _check_training_size(name, x)

        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # Cumulative average: batch k gets weight 1/k, so after k
                # batches every batch has contributed equally.
                momentum = 1.0 / float(self.num_batches_tracked)

        # Buffers are passed when they are to be updated (training and
        # tracked) or used (evaluation with buffers).
        pass_buffers = not self.training or self.track_running_stats
        return batch_norm(x, self.running_mean if pass_buffers else None,
                          self.running_var if pass_buffers else None,
                          self.weight, self.bias, use_batch_stats, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # State dicts saved before version 2 lack num_batches_tracked; as torch
        # does, start it from the current value instead of reporting it missing.
        version = local_metadata.get("version", None)
        if (version is None or version < 2) and self.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key not in state_dict:
                state_dict[key] = self.num_batches_tracked
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` input; drop-in for ``nn.BatchNorm1d``.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel, with
    statistics over ``N`` (and ``L``). Arguments as torch's: ``num_features``
    (``C``), ``eps=1e-5``, ``momentum=0.1`` (weight of the new batch, None for
    a cumulative average), ``affine=True``, ``track_running_stats=True``,
    ``device``, ``dtype``, keyword ``bias=True``.

    Raises:
        ValueError: input not 2-D or 3-D, channels not ``num_features``, or
            one value per channel when batch statistics are used.
    """

    _expected_dims = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` input; drop-in for ``nn.BatchNorm2d``.

    Statistics per channel over ``N``, ``H`` and ``W``; arguments as
    ``BatchNorm1d``.

    Raises:
        ValueError: input not 4-D, channels not ``num_features``, or one
            value per channel when batch statistics are used.
    """

    _expected_dims = (4,)
    _layout = "4-D (N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization of ``(N, C, D, H, W)`` input; drop-in for ``nn.BatchNorm3d``.

    Statistics per channel over ``N``, ``D``, ``H`` and ``W``; arguments as
    ``BatchNorm1d``.

    Raises:
        ValueError: input not 5-D, channels not ``num_features``, or one
            value per channel when batch statistics are used.
    """

    _expected_dims = (5,)
    _layout = "5-D (N, C, D, H, W)"
