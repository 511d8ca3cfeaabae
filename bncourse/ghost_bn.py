"""Ghost batch normalization: batch statistics over virtual sub-batches of a large batch.

Hoffer, Hubara and Soudry (2017, :cite:`hoffer2017train`) split a large
mini-batch of ``N`` samples into ``k = N / g`` consecutive *ghost* batches of
``g`` samples and normalize each ghost batch with its own statistics. The
gradient step still averages over all ``N`` samples; only the normalization
sees the small, noisier batches.

Shape letters: ``N`` batch, ``C`` channels (axis 1), ``L`` positions (for
``(N, C, L)`` input), ``g`` the ghost size, ``k = N / g`` ghost batches,
``m = g * L`` values per channel in one ghost batch.

Training forward, for ghost batch ``l = 1..k`` (samples ``(l-1) g .. l g - 1``)
and each channel::

    mean_l = sum(x) / m                      # over the ghost batch only
    var_l = sum((x - mean_l) ** 2) / m       # biased, as in BatchNorm
    y = gamma * (x - mean_l) / sqrt(var_l + eps) + beta

Running statistics
------------------
Each ghost batch counts as one batch of ``torch.nn.BatchNorm1d``, in order:
the module behaves *exactly* like ``BatchNorm1d`` called on the ghost batches
one after another (outputs, gradients, ``running_mean``, ``running_var``,
``num_batches_tracked``). With torch's ``momentum`` ``eta`` one forward makes
``k`` updates, so, with ``s_l`` the statistic of ghost batch ``l`` (the mean,
or the *unbiased* variance ``var_l * m / (m - 1)``)::

    running <- (1 - eta)**k * running + sum_l eta * (1 - eta)**(k - l) * s_l

which is the update of Hoffer et al.'s Algorithm 1. Per optimizer step the
average therefore forgets faster than ``BatchNorm1d`` with the same momentum
(effective momentum ``1 - (1 - eta)**k``); pass
``momentum = 1 - (1 - eta_step)**(1 / k)`` to keep the per-step horizon of
``eta_step``. ``momentum=None`` keeps a cumulative average over all ghost
batches seen, and ``num_batches_tracked`` grows by ``k`` per forward. The
running variance estimates the variance *within a ghost batch*, averaged
over ghost batches; that is what evaluation mode then uses.

Modes
-----
Batch statistics are used exactly when ``torch.nn.BatchNorm1d`` would use
them (``training`` is True, or the running statistics are not tracked), and
then they are per ghost batch. In evaluation mode with tracked statistics the
module is ``BatchNorm1d``'s evaluation: every sample is normalized with the
running statistics, independently of the batch. A batch of at most ``g``
samples is a single ghost batch, so ``ghost_size >= N`` gives
``BatchNorm1d`` itself (the same code path, bitwise).

Public API
----------
``ghost_batch_norm(x, ghost_size, running_mean=None, running_var=None, weight=None,
 bias=None, training=False, momentum=0.1, eps=1e-5) -> y``
    The functional form, like ``torch.nn.functional.batch_norm`` (running
    buffers updated in place when training and given).
``GhostBatchNorm1d(num_features, ghost_size, eps=1e-5, momentum=0.1, affine=True,
 track_running_stats=True)``
    A subclass of ``torch.nn.BatchNorm1d`` (same parameters, buffers and
    state-dict keys) for ``(N, C)`` or ``(N, C, L)`` input. Use it with
    ``bncourse.lab.models.make_mlp(..., bn_layer=ghost_bn_factory(g))``.
``ghost_bn_factory(ghost_size, **kwargs) -> callable(num_features) -> GhostBatchNorm1d``
``per_ghost_momentum(momentum, num_ghosts) -> float``
    The momentum per ghost batch that gives the running averages the same
    horizon per optimizer step as ``momentum`` per whole batch.

Examples
--------
>>> import torch
>>> gbn = GhostBatchNorm1d(3, ghost_size=4)
>>> x = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
>>> y = gbn(x)
>>> y.reshape(3, 4, 3).mean(dim=1).abs().max().item() < 1e-6   # each ghost batch centred
True
>>> int(gbn.num_batches_tracked)                                   # three ghost batches
3
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from bncourse._checks import fail, check_momentum
from bncourse._torch_checks import check_bn_tensor

__all__ = ["ghost_batch_norm", "GhostBatchNorm1d", "ghost_bn_factory", "per_ghost_momentum",
           "running_weights"]


def _check_ghost_size(func: str, ghost_size) -> int:
    if isinstance(ghost_size, bool) or not isinstance(ghost_size, numbers.Integral):
        fail(func, "ghost_size", "a positive int", f"{type(ghost_size).__name__} "
              f"{ghost_size!r}", TypeError)
    if ghost_size <= 0:
        fail(func, "ghost_size", "a positive int", repr(ghost_size))
    return int(ghost_size)


_LAYOUT = "2-D (N, C) or 3-D (N, C, L)"


def _ghost_count(func: str, x: torch.Tensor, ghost_size: int) -> int:
    """k, the number of ghost batches; N must be a multiple of g when N > g."""
    n = x.shape[0]
    if n <= ghost_size:
        return 1
    if n % ghost_size:
        fail(func, "x", f"a batch whose size is a multiple of ghost_size={ghost_size} "
              "(or at most ghost_size)", f"batch size {n}")
    return n // ghost_size


def running_weights(factors) -> tuple[float, list[float]]:
    """Weights of k successive updates ``r <- (1 - f_l) r + f_l s_l`` folded into one.

    Returns ``(w0, w)`` with ``r_k = w0 * r_0 + sum_l w[l] * s_l``:
    ``w0 = prod_l (1 - f_l)`` and ``w[l] = f_l * prod_{j > l} (1 - f_j)``.

    >>> running_weights([0.5, 0.5])
    (0.25, [0.25, 0.5])
    """
    w0, w = 1.0, []
    for f in factors:
        w = [wl * (1.0 - f) for wl in w] + [f]
        w0 *= 1.0 - f
    return w0, w


def _batch_norm_ghost(x, k, running_mean, running_var, weight, bias, factors, eps):
    """Per-ghost-batch normalization (k >= 1) and, when given, the running-buffer update.

    The k ghost batches are laid side by side as ``k * C`` channels of one
    ``(g, k * C[, L])`` tensor, so torch's fused ``batch_norm`` computes all
    ghost statistics (and their gradient) in one call; ``gamma``/``beta`` are
    repeated k times, so their gradients sum over the ghost batches.
    """
    n, c = x.shape[0], x.shape[1]
    g = n // k
    rest = x.shape[2:]
    m = g * (rest[0] if rest else 1)                          # values per channel per ghost
    if m <= 1:
        fail("ghost_batch_norm", "x", "more than 1 value per channel in each ghost batch "
              "when batch statistics are used", f"shape {tuple(x.shape)} with ghost batches "
              f"of {g} sample(s)")
    # (N, C, *rest) -> (k, g, C, *rest) -> (g, k, C, *rest) -> (g, k * C, *rest)
    xs = x.reshape(k, g, c, *rest).transpose(0, 1).reshape(g, k * c, *rest)
    w = None if weight is None else weight.repeat(k)
    b = None if bias is None else bias.repeat(k)
    update = running_mean is not None and running_var is not None and factors is not None
    if update:
        # momentum 1 makes torch store exactly this call's statistics: the mean and the
        # unbiased variance (m / (m - 1)) of every ghost batch, which we then fold in.
        batch_mean = torch.zeros(k * c, dtype=x.dtype, device=x.device)
        batch_var = torch.ones(k * c, dtype=x.dtype, device=x.device)
        ys = torch.nn.functional.batch_norm(xs, batch_mean, batch_var, w, b, True, 1.0, eps)
        w0, wl = running_weights(factors)
        with torch.no_grad():
            wl = torch.tensor(wl, dtype=running_mean.dtype, device=running_mean.device)
            running_mean.mul_(w0).add_(wl @ batch_mean.reshape(k, c).to(running_mean.dtype))
            running_var.mul_(w0).add_(wl @ batch_var.reshape(k, c).to(running_var.dtype))
    else:
        ys = torch.nn.functional.batch_norm(xs, None, None, w, b, True, 0.0, eps)
    return ys.reshape(g, k, c, *rest).transpose(0, 1).reshape(x.shape)


def ghost_batch_norm(x: torch.Tensor, ghost_size: int, running_mean=None, running_var=None,
                     weight=None, bias=None, training: bool = False, momentum: float = 0.1,
                     eps: float = 1e-5) -> torch.Tensor:
    """``torch.nn.functional.batch_norm`` with batch statistics taken per ghost batch of ``g``.

    Parameters
    ----------
    x : torch.Tensor, shape (N, C) or (N, C, L)
        ``N`` must be a multiple of ``ghost_size`` when ``N > ghost_size``.
    ghost_size : int
        ``g``, samples per ghost batch (the last axes are all used, as in BatchNorm).
    running_mean, running_var : torch.Tensor (C,) or None
        Updated in place, once per ghost batch in order, when ``training`` is
        True (see the module docstring); used to normalize when it is False.
    weight, bias : torch.Tensor (C,) or None
        gamma and beta.
    training : bool
        Batch (ghost) statistics when True, or when the running buffers are None.
    momentum : float in [0, 1]
        torch's convention: the weight of the new ghost batch.
    eps : float > 0

    Returns
    -------
    y : torch.Tensor, the shape of ``x``.

    Raises
    ------
    TypeError / ValueError
        For a non-tensor or wrongly shaped ``x``, a non-positive ``ghost_size``,
        a batch that does not split into ghost batches, or a ghost batch with a
        single value per channel while batch statistics are used.

    Examples
    --------
    >>> x = torch.arange(8.0).reshape(4, 2)
    >>> ghost_batch_norm(x, 2, training=True)[:, 0]       # two ghost batches of two
    tensor([-1.0000,  1.0000, -1.0000,  1.0000])
    """
    func = "ghost_batch_norm"
    x = check_bn_tensor(func, x, dims=(2, 3), layout=_LAYOUT)
    ghost_size = _check_ghost_size(func, ghost_size)
    momentum = check_momentum(func, momentum, allow_none=False)
    use_batch_stats = training or running_mean is None or running_var is None
    if not use_batch_stats:
        return torch.nn.functional.batch_norm(x, running_mean, running_var, weight, bias,
                                              False, momentum, eps)
    k = _ghost_count(func, x, ghost_size)
    factors = [momentum] * k if training else None
    return _batch_norm_ghost(x, k, running_mean, running_var, weight, bias, factors, eps)


class GhostBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose batch statistics come from ghost batches of ``ghost_size`` samples.

    Same constructor arguments as ``torch.nn.BatchNorm1d`` plus ``ghost_size``,
    same parameters (``weight``, ``bias``) and buffers (``running_mean``,
    ``running_var``, ``num_batches_tracked``), so state dicts load both ways.
    The running statistics are updated once per ghost batch (see the module
    docstring); evaluation mode with tracked statistics is exactly
    ``BatchNorm1d``'s.

    Parameters
    ----------
    num_features : int
        C.
    ghost_size : int
        g; a training batch of ``N > g`` samples must be a multiple of ``g``.
    eps, momentum, affine, track_running_stats
        As ``torch.nn.BatchNorm1d`` (``momentum=None``: cumulative average over
        every ghost batch seen).

    Raises
    ------
    TypeError / ValueError
        For a bad ``ghost_size`` (at construction) or an input that does not
        split into ghost batches (in ``forward``).

    Examples
    --------
    >>> gbn = GhostBatchNorm1d(4, ghost_size=8)
    >>> gbn(torch.randn(32, 4)).shape
    torch.Size([32, 4])
    >>> repr(gbn).endswith("ghost_size=8)")
    True
    """

    def __init__(self, num_features: int, ghost_size: int, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        ghost_size = _check_ghost_size("GhostBatchNorm1d", ghost_size)
        momentum = check_momentum("GhostBatchNorm1d", momentum)
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)
        self.ghost_size = ghost_size

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ghost_size={self.ghost_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (shape kept); see the class docstring for the modes."""
        func = "GhostBatchNorm1d.forward"
        x = check_bn_tensor(func, x, dims=(2, 3), layout=_LAYOUT)
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats or x.shape[0] <= self.ghost_size:
            return super().forward(x)       # one ghost batch, or evaluation: BatchNorm1d itself
        k = _ghost_count(func, x, self.ghost_size)
        factors = None
        if self.training and self.track_running_stats:
            t0 = int(self.num_batches_tracked)
            self.num_batches_tracked.add_(k)
            if self.momentum is None:       # cumulative average: factor 1 / (batches so far)
                factors = [1.0 / (t0 + l) for l in range(1, k + 1)]
            else:
                factors = [self.momentum] * k
        running = self.training and self.track_running_stats
        return _batch_norm_ghost(x, k, self.running_mean if running else None,
                                 self.running_var if running else None, self.weight,
                                 self.bias, factors, self.eps)


def ghost_bn_factory(ghost_size: int, **kwargs):
    """A ``bn_layer`` factory for ``make_mlp``: ``num_features -> GhostBatchNorm1d``.

    >>> from bncourse.lab.models import make_mlp
    >>> net = make_mlp(64, hidden=(16,), bn="before", bn_layer=ghost_bn_factory(8))
    >>> type(net.norm1).__name__, net.norm1.ghost_size
    ('GhostBatchNorm1d', 8)
    """
    ghost_size = _check_ghost_size("ghost_bn_factory", ghost_size)

    def factory(num_features: int) -> GhostBatchNorm1d:
        return GhostBatchNorm1d(num_features, ghost_size, **kwargs)

    return factory


def per_ghost_momentum(momentum: float, num_ghosts: int) -> float:
    """``1 - (1 - momentum) ** (1 / num_ghosts)``: k ghost updates forget like one update.

    With this momentum per ghost batch, the ``num_ghosts`` updates of one
    forward shrink the old running value by ``1 - momentum`` in total, as one
    ``BatchNorm1d`` update with ``momentum`` does. ``num_ghosts=1`` returns
    ``momentum`` itself (exactly).

    >>> round(per_ghost_momentum(0.1, 4), 6)
    0.025996
    >>> per_ghost_momentum(0.1, 1)
    0.1
    """
    momentum = check_momentum("per_ghost_momentum", momentum, allow_none=False)
    if isinstance(num_ghosts, bool) or not isinstance(num_ghosts, numbers.Integral) \
            or num_ghosts < 1:
        fail("per_ghost_momentum", "num_ghosts", "a positive int", repr(num_ghosts))
    if num_ghosts == 1:
        return momentum
    return 1.0 - (1.0 - momentum) ** (1.0 / num_ghosts)
