"""Precise batch-norm statistics: recompute the running buffers after training.

During training a BatchNorm layer keeps ``running_mean`` and ``running_var`` as
exponentially weighted averages of the mini-batch statistics (torch's
``momentum``). Those averages mix statistics produced by *old* weights, so
after the weights have moved they can be stale. "Precise BN" (Wu & Johnson,
2021, *Rethinking "Batch" in BatchNorm*) freezes the weights and recomputes the
population statistics of every BN input with one extra pass over training data.

Shape letters: N batch, C channels, m values per channel in one batch
(``m = x.size // C``), M values per channel over all batches.

Two estimators are offered, both computed in one pass in training mode (each
BN layer normalizes with its batch statistics, as during training, so later
layers see the inputs they saw in training):

``method="exact"`` (default)
    the pooled statistics of all M values per channel:
    ``running_mean = sum(x) / M`` and
    ``running_var = sum((x - running_mean)**2) / (M - 1)`` (unbiased, as torch
    stores), accumulated in float64 with Chan's parallel update.
``method="cumulative"``
    torch's own ``momentum=None`` mode: the plain average of the per-batch
    means and of the per-batch unbiased variances. With equal batch sizes the
    mean is exact; the variance leaves out the spread of the batch means, so it
    differs slightly from the pooled one (it is usually smaller).

Either way ``num_batches_tracked`` counts the batches of the pass, every
module's ``training`` flag and every BN layer's ``momentum`` are restored, and
no gradient is recorded.

For experiments that compare estimators on one training run,
``batch_moments`` measures the statistics of one mini-batch (use it as a
training probe), and ``running_stats_trajectory`` and
``running_stats_from_history`` replay torch's running update over a recorded
sequence of them for any momentum, with or without bias correction: the momentum never changes the trained weights (training
mode normalizes with batch statistics), so one run serves every momentum.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bncourse._checks import check_array, check_momentum
from bncourse.ewa import ewa

__all__ = ["batch_moments", "batchnorm_layers", "population_stats", "recompute_bn_stats",
           "running_stats_from_history", "running_stats_trajectory"]

_METHODS = ("exact", "cumulative")


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Return the batch-norm layers of ``model`` that keep running statistics.

    A layer counts when it is a ``torch.nn.BatchNorm1d/2d/3d`` (or
    ``SyncBatchNorm``, or any subclass) or, duck-typed, a module with tensor
    buffers ``running_mean``, ``running_var``, ``num_batches_tracked``, a
    ``momentum`` attribute and ``BatchNorm`` in its class name (the course's
    ``bncourse.torch_bn`` layers). Layers with ``track_running_stats=False``
    are skipped: they always normalize with batch statistics.
    """
    layers = []
    for module in model.modules():
        is_bn = isinstance(module, _BatchNorm) or (
            "BatchNorm" in type(module).__name__
            and hasattr(module, "momentum")
            and all(isinstance(getattr(module, name, None), torch.Tensor)
                    for name in ("running_mean", "running_var", "num_batches_tracked"))
        )
        if is_bn and getattr(module, "running_mean", None) is not None:
            layers.append(module)
    return layers


def _inputs_of(func: str, batch):
    """The model input of one batch: a tensor, or the first item of a tuple/list."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError(f"{func}: each batch must be a tensor or a non-empty "
                             "(inputs, ...) tuple, got an empty sequence")
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"{func}: each batch must be a torch.Tensor or an "
                        f"(inputs, ...) tuple, got {type(batch).__name__}")
    return batch


class _PooledMoments:
    """Per-channel count, mean and sum of squared deviations (float64), merged batch by batch."""

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None

    def update(self, x: torch.Tensor) -> None:
        # Channels on axis 1: move them first and flatten the rest, (C, m).
        x = x.detach().to(torch.float64).transpose(0, 1).reshape(x.shape[1], -1)
        n_b = x.shape[1]
        mean_b = x.mean(dim=1)
        m2_b = ((x - mean_b[:, None]) ** 2).sum(dim=1)
        if self.count == 0:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        # Chan et al.'s parallel update: exact, and stable for large counts.
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.count * n_b / n)
        self.count = n

    def unbiased_var(self) -> torch.Tensor:
        return self.m2 / (self.count - 1)


def _reset_running_stats(layer: nn.Module) -> None:
    """Running mean 0, running variance 1, no batch tracked: torch's initial state."""
    with torch.no_grad():
        layer.running_mean.zero_()
        layer.running_var.fill_(1.0)
        layer.num_batches_tracked.zero_()


def _forward_pass(func: str, model: nn.Module, batches: Iterable, collect: bool):
    """Run ``batches`` through ``model`` in training mode with cumulative BN averaging.

    Returns ``(layers, moments, num_batches)``; ``moments`` is a list of
    ``_PooledMoments`` (one per layer) when ``collect`` is true, else None.
    Restores every module's training flag and every layer's momentum.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError(f"{func}: model must contain at least one batch-norm layer "
                         "with track_running_stats=True, got none")
    modes = {module: module.training for module in model.modules()}
    momenta = [layer.momentum for layer in layers]
    moments = [_PooledMoments() for _ in layers] if collect else None
    handles = []
    if collect:
        for layer, acc in zip(layers, moments):
            handles.append(layer.register_forward_pre_hook(
                lambda module, args, acc=acc: acc.update(args[0])))
    num_batches = 0
    try:
        for layer in layers:
            _reset_running_stats(layer)
            layer.momentum = None  # cumulative average: weight 1 / num_batches_tracked
        model.train()
        with torch.no_grad():
            for batch in batches:
                model(_inputs_of(func, batch))
                num_batches += 1
    finally:
        for handle in handles:
            handle.remove()
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for module, mode in modes.items():
            module.training = mode
    if num_batches == 0:
        raise ValueError(f"{func}: batches must contain at least one batch, got none")
    return layers, moments, num_batches


def population_stats(model: nn.Module,
                     batches: Iterable) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Exact pooled ``(mean, unbiased var)`` of each BN layer's input over ``batches``.

    ``mean = sum(x) / M`` and ``var = sum((x - mean)**2) / (M - 1)`` per
    channel, float64, shape ``(C,)``, one pair per layer in
    ``batchnorm_layers(model)`` order. The model is run exactly as in
    ``recompute_bn_stats`` (training mode, so each layer normalizes with its
    batch statistics); its running buffers are recomputed with
    ``method="cumulative"`` as a side effect.

    Raises ValueError when the model has no BN layer with running statistics
    or ``batches`` is empty; TypeError when a batch is not a tensor or a tuple
    starting with one.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"population_stats: model must be a torch.nn.Module, "
                        f"got {type(model).__name__}")
    _, moments, _ = _forward_pass("population_stats", model, batches, collect=True)
    if any(acc.count < 2 for acc in moments):
        raise ValueError("population_stats: batches must hold more than 1 value per channel, "
                         f"got {min(acc.count for acc in moments)}")
    return [(acc.mean, acc.unbiased_var()) for acc in moments]


def recompute_bn_stats(model: nn.Module, batches: Iterable, method: str = "exact") -> nn.Module:
    """Replace every BN layer's running statistics by population statistics over ``batches``.

    The weights are frozen (no gradient, no optimizer): one pass over
    ``batches`` in training mode measures the input statistics of each BN
    layer. With ``method="exact"`` the buffers become the pooled mean and
    unbiased variance of all values seen; with ``method="cumulative"`` they
    are torch's ``momentum=None`` averages of the per-batch statistics.
    ``num_batches_tracked`` becomes the number of batches. Training flags and
    momenta are restored, so a model in eval mode stays in eval mode.

    Args:
        model: a ``torch.nn.Module`` with at least one BN layer that tracks
            running statistics (see ``batchnorm_layers``).
        batches: an iterable of input tensors ``(N, ...)`` or of tuples whose
            first item is the input (a ``DataLoader`` works). Use the training
            data, several hundred values per channel at least; each batch needs
            more than one value per channel (torch's rule in training mode).
        method: ``"exact"`` (pooled statistics) or ``"cumulative"``.

    Returns:
        ``model`` itself, updated in place.

    Raises:
        ValueError: unknown ``method``, no BN layer, no batch.
        TypeError: ``model`` is not an ``nn.Module`` or a batch is not a tensor.
    """
    if not isinstance(model, nn.Module):
        raise TypeError("recompute_bn_stats: model must be a torch.nn.Module, "
                        f"got {type(model).__name__}")
    if method not in _METHODS:
        raise ValueError(f"recompute_bn_stats: method must be one of {_METHODS}, got {method!r}")
    layers, moments, _ = _forward_pass("recompute_bn_stats", model, batches,
                                       collect=method == "exact")
    if method == "exact":
        with torch.no_grad():
            for layer, acc in zip(layers, moments):
                layer.running_mean.copy_(acc.mean.to(layer.running_mean.dtype))
                layer.running_var.copy_(acc.unbiased_var().to(layer.running_var.dtype))
    return model


def batch_moments(x: torch.Tensor) -> np.ndarray:
    """Per-channel ``[mean, unbiased var]`` of one batch, shape ``(2, C)``, float64.

    ``x`` is ``(N, C, *S)``; ``m = x.numel() // C`` values per channel; the
    variance is ``sum((x - mean)**2) / (m - 1)``, the value torch feeds into
    ``running_var``. Raises ValueError for fewer than 2 dimensions or
    ``m < 2``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batch_moments: x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.numel() // max(x.shape[1], 1) < 2:
        raise ValueError("batch_moments: x must be (N, C, ...) with more than 1 value per "
                         f"channel, got shape {tuple(x.shape)}")
    flat = x.detach().to(torch.float64).transpose(0, 1).reshape(x.shape[1], -1)
    return torch.stack([flat.mean(dim=1), flat.var(dim=1, correction=1)]).numpy()


def running_stats_trajectory(batch_mean, batch_var, momentum, bias_correction: bool = False):
    """Replay torch's running-statistics update; the buffers after every step.

    With ``beta = 1 - momentum`` and torch's initial buffers (mean 0, var 1),
    after step ``t`` (``t = 1 .. T``)::

        running_mean_t = ewa(batch_mean, beta)[t]
        running_var_t  = ewa(batch_var, beta)[t] + beta**t * 1

    which is exactly ``running = (1 - momentum) * running + momentum * stat``
    applied t times. ``bias_correction=True`` divides each EWA by
    ``1 - beta**t`` instead and drops the initial values (what torch does
    *not* do). ``momentum=None`` gives torch's cumulative average, the plain
    mean of the first t steps.

    Args:
        batch_mean, batch_var: float arrays ``(T, C)``, the per-step batch mean
            and unbiased batch variance (``batch_moments`` of each step).
        momentum: float in (0, 1], or None.
        bias_correction: bool (ignored for ``momentum=None``, which has no bias).

    Returns:
        ``(running_mean, running_var)``, each ``(T, C)``, float64; row ``t - 1``
        holds the buffers after step ``t``.

    Raises:
        ValueError / TypeError for mismatched shapes, an empty history or a
        momentum outside (0, 1].
    """
    func = "running_stats_trajectory"
    batch_mean = check_array(func, "batch_mean", batch_mean, ndim=2).astype(np.float64)
    batch_var = check_array(func, "batch_var", batch_var, ndim=2).astype(np.float64)
    if batch_var.shape != batch_mean.shape or batch_mean.shape[0] == 0:
        raise ValueError(f"{func}: batch_var must have the shape of batch_mean (T, C) with "
                         f"T >= 1, got {batch_var.shape} and {batch_mean.shape}")
    momentum = check_momentum(func, momentum)
    steps = np.arange(1, batch_mean.shape[0] + 1)[:, None]
    if momentum is None:
        return np.cumsum(batch_mean, axis=0) / steps, np.cumsum(batch_var, axis=0) / steps
    if momentum == 0.0:
        raise ValueError(f"{func}: momentum must be in (0, 1] or None, got 0.0")
    beta = 1.0 - momentum
    mean = ewa(batch_mean, beta, bias_correction=bias_correction)
    var = ewa(batch_var, beta, bias_correction=bias_correction)
    if not bias_correction:
        var = var + beta ** steps  # torch's running_var starts at 1, decaying as beta**t
    return mean, var


def running_stats_from_history(batch_mean, batch_var, momentum, bias_correction: bool = False):
    """The running buffers after the last step: ``running_stats_trajectory(...)[:, -1]``.

    Returns ``(running_mean, running_var)``, each ``(C,)``, float64; see
    ``running_stats_trajectory`` for the arguments and errors.
    """
    mean, var = running_stats_trajectory(batch_mean, batch_var, momentum, bias_correction)
    return mean[-1], var[-1]
