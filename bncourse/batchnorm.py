"""Batch normalization in NumPy: forward, two backward passes, torch's functional.

Shapes
------
``x`` has shape ``(N, C, *S)``: N samples, C channels on axis 1 (as in
PyTorch) and trailing axes ``S`` that are empty, ``(L,)``, ``(H, W)`` or
``(D, H, W)``. Statistics are taken over every axis except axis 1, so each
channel pools ``m = x.size // C`` values. Per-channel vectors (``gamma``,
``beta``, ``mean``, ``var``) have shape ``(C,)``; inside the computation
they are viewed as ``(1, C, 1, ...)`` so that they broadcast against ``x``.

Training-mode forward, per channel::

    mean    = sum(x) / m
    var     = sum((x - mean)**2) / m        # biased: it normalizes this batch
    inv_std = 1 / sqrt(var + eps)           # eps inside the root: finite when var = 0
    x_hat   = (x - mean) * inv_std
    y       = gamma * x_hat + beta

Closed-form backward (``batchnorm_backward``)::

    dbeta  = sum(dy)
    dgamma = sum(dy * x_hat)
    dx     = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma)

``batchnorm_backward_graph`` reaches the same numbers node by node.
``batch_norm`` mirrors ``torch.nn.functional.batch_norm`` and the layer
``BatchNorm`` mirrors ``torch.nn.BatchNorm1d/2d/3d``: the layer owns the
state (parameters, running buffers, mode) and decides which statistics to
use, the functions compute. Speed-only kernels (long NumPy loops, BLAS
column sums, the corrected two-pass statistics) live in
:mod:`bncourse._kernels`; they return what plain broadcasting would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bncourse._checks import (
    check_array,
    check_bn_input,
    check_channel_vector,
    check_finite_sums,
    check_momentum,
    check_num_features,
    check_positive,
    check_shape,
    check_training_size,
    check_writeable,
)
from bncourse._kernels import batch_statistics, channel_op, channel_sum, per_channel

__all__ = [
    "BatchNorm",
    "BatchNormCache",
    "batch_norm",
    "batchnorm_backward",
    "batchnorm_backward_graph",
    "batchnorm_forward",
]


@dataclass(frozen=True, eq=False)
class BatchNormCache:
    """What the backward pass needs from the forward pass, and nothing more.

    Attributes
    ----------
    x_hat : ndarray, shape (N, C, *S)
        The normalized input ``(x - mean) * inv_std``.
    inv_std : ndarray, shape (1, C, 1, ...)
        ``1 / sqrt(var + eps)`` of the statistics that were used.
    gamma : ndarray, shape (1, C, 1, ...)
        The scale (ones when the forward had no scale).
    axes : tuple of int
        The reduction axes, every axis except 1.
    batch_stats : bool
        True when mean and var were computed from this batch (training mode):
        the gradient then also flows through them. False when they were
        constants (running statistics in evaluation mode).
    """

    x_hat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    axes: tuple
    batch_stats: bool = True

    @property
    def m(self) -> int:
        """Values per channel, ``x.size // C``."""
        return self.x_hat.size // self.x_hat.shape[1]


def _affine(x_hat: np.ndarray, gamma, beta):
    """Return ``(y, gamma_b)``: ``y = gamma * x_hat + beta`` (a missing scale is 1, shift 0)."""
    dtype, ndim = x_hat.dtype, x_hat.ndim
    if gamma is None:
        gamma_b = np.ones((1, x_hat.shape[1]) + (1,) * (ndim - 2), dtype=dtype)
        y = x_hat.copy()  # never hand out the cached x_hat itself
    else:
        gamma_b = per_channel(gamma.astype(dtype, copy=False), ndim)
        y = channel_op(np.multiply, x_hat, gamma_b)
    if beta is not None:
        channel_op(np.add, y, per_channel(beta.astype(dtype, copy=False), ndim), out=y)
    return y, gamma_b


def _train_forward(func, x, gamma, beta, eps):
    """Training-mode forward: ``(y, cache, mean, var)``, mean and var of shape (C,).

    Arguments are checked by the caller except the finiteness of ``x``,
    which is read off its statistics (cheaper than a separate scan).
    """
    if x.size == 0:  # an empty batch (as torch): mean 0 and var 1 keep everything finite
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        x_centered, mean, var = x.copy(), np.zeros(shape, x.dtype), np.ones(shape, x.dtype)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
            x_centered, mean, var = batch_statistics(x)
        check_finite_sums(func, "x", x, mean, var)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = channel_op(np.multiply, x_centered, inv_std, out=x_centered)  # ours: reuse it
    y, gamma_b = _affine(x_hat, gamma, beta)
    axes = (0, *range(2, x.ndim))
    cache = BatchNormCache(x_hat, inv_std, gamma_b, axes, batch_stats=True)
    return y, cache, mean.reshape(-1), var.reshape(-1)


def _eval_forward(x, mean, var, gamma, beta, eps):
    """Forward with given (running) statistics, without checks: ``(y, cache)``."""
    dtype, ndim = x.dtype, x.ndim
    mean_b = per_channel(mean.astype(dtype, copy=False), ndim)
    inv_std = 1.0 / np.sqrt(per_channel(var.astype(dtype, copy=False), ndim) + eps)
    x_hat = x - mean_b
    x_hat *= inv_std
    y, gamma_b = _affine(x_hat, gamma, beta)
    axes = (0, *range(2, ndim))
    return y, BatchNormCache(x_hat, inv_std, gamma_b, axes, batch_stats=False)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch norm ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    ``mean`` and the biased ``var`` are this batch's per-channel statistics.

    Parameters
    ----------
    x : ndarray, shape (N, C, *S), float32 or float64
        Input, 2-D to 5-D, channels on axis 1. Not modified.
    gamma, beta : ndarray, shape (C,)
        Scale and shift (torch's ``weight`` and ``bias``).
    eps : float, > 0
        Added to the variance inside the square root.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : BatchNormCache
        What :func:`batchnorm_backward` needs.

    Raises
    ------
    TypeError
        ``x``, ``gamma`` or ``beta`` is not a float32/float64 ndarray; ``eps`` is not a number.
    ValueError
        ``x`` is not 2-D to 5-D, holds non-finite values or one value per
        channel; ``gamma``/``beta`` do not have shape ``(C,)``; ``eps <= 0``.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(8, 4))
    >>> y, cache = batchnorm_forward(x, np.ones(4), np.zeros(4))
    >>> bool(np.allclose(y.mean(axis=0), 0.0)), bool(np.allclose(y.var(axis=0), 1.0, atol=1e-4))
    (True, True)
    """
    func = "batchnorm_forward"
    x = check_bn_input(func, x, finite=False)  # finiteness: see _train_forward
    channels = x.shape[1]
    gamma = check_channel_vector(func, "gamma", gamma, channels)
    beta = check_channel_vector(func, "beta", beta, channels)
    eps = check_positive(func, "eps", eps)
    check_training_size(func, x)
    y, cache, _, _ = _train_forward(func, x, gamma, beta, eps)
    return y, cache


def _check_cache(func: str, cache) -> None:
    """Check that ``cache`` is consistent, as the forward pass builds it.

    A tampered or mismatched cache would otherwise end in a NumPy broadcast
    error or, for the graph backward with other ``axes``, in a silently
    different gradient.
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"{func}: cache must be the BatchNormCache returned by the forward pass, "
                        f"got {type(cache).__name__}")
    x_hat = cache.x_hat
    if not isinstance(x_hat, np.ndarray) or not 2 <= x_hat.ndim <= 5:
        raise ValueError(f"{func}: cache.x_hat must be a 2-D to 5-D ndarray, got "
                         f"{type(x_hat).__name__} of shape {np.shape(x_hat)}")
    ndim, channels = x_hat.ndim, x_hat.shape[1]
    view = (1, channels) + (1,) * (ndim - 2)
    for name in ("inv_std", "gamma"):
        v = getattr(cache, name)
        if not isinstance(v, np.ndarray) or v.shape != view:
            raise ValueError(f"{func}: cache.{name} must be an ndarray of shape {view} (one "
                             f"value per channel of x_hat {x_hat.shape}), got "
                             f"{type(v).__name__} of shape {np.shape(v)}")
    axes = (0, *range(2, ndim))
    if tuple(cache.axes) != axes:
        raise ValueError(f"{func}: cache.axes must be {axes} (every axis of x_hat but 1), "
                         f"got {cache.axes!r}")


def _check_backward_args(func: str, dy, cache) -> np.ndarray:
    """Check ``cache`` and that ``dy`` matches it; return ``dy`` in the cache's dtype.

    Finiteness of ``dy`` is checked by the caller, from its sums.
    """
    _check_cache(func, cache)
    dy = check_array(func, "dy", dy, finite=False)
    check_shape(func, "dy", dy, cache.x_hat.shape, "the shape of x in the forward pass")
    return dy.astype(cache.x_hat.dtype, copy=False)


def batchnorm_backward(dy, cache):
    """Closed-form gradients of batch norm: ``dx``, ``dgamma``, ``dbeta``.

    With batch statistics (training mode)::

        dx = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

    The two subtracted terms are the gradient that flows through the mean
    and through the variance; with constant (running) statistics only
    ``dx = gamma * inv_std * dy`` remains.

    Parameters
    ----------
    dy : ndarray, shape (N, C, *S)
        Upstream gradient, the shape of ``x``. Not modified.
    cache : BatchNormCache
        From :func:`batchnorm_forward`.

    Returns
    -------
    dx : ndarray, shape (N, C, *S)
    dgamma, dbeta : ndarray, shape (C,)

    Raises
    ------
    TypeError
        ``cache`` is not a ``BatchNormCache``; ``dy`` is not a float ndarray.
    ValueError
        ``dy`` does not have the shape of ``x``, or is not finite; the cache
        is inconsistent (``inv_std`` or ``gamma`` not of shape ``(1, C, 1, ...)``,
        ``axes`` not every axis but 1).
    """
    func = "batchnorm_backward"
    dy = _check_backward_args(func, dy, cache)
    x_hat, inv_std, gamma = cache.x_hat, cache.inv_std, cache.gamma
    ndim, m = x_hat.ndim, cache.m
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dbeta = channel_sum(dy)
        dgamma = channel_sum(dy, x_hat)
    check_finite_sums(func, "dy", dy, dbeta, dgamma)
    if not cache.batch_stats:
        return dy * (gamma * inv_std), dgamma, dbeta
    if m == 0:  # an empty batch: an empty dx, zero dgamma and dbeta
        return np.zeros_like(dy), dgamma, dbeta
    # dx = gamma * inv_std * (dy - (x_hat * dgamma + dbeta) / m), built in one buffer
    dx = channel_op(np.multiply, x_hat, per_channel(dgamma / m, ndim))
    channel_op(np.add, dx, per_channel(dbeta / m, ndim), out=dx)
    np.subtract(dy, dx, out=dx)
    channel_op(np.multiply, dx, gamma * inv_std, out=dx)
    return dx, dgamma, dbeta


def batchnorm_backward_graph(dy, cache, return_nodes=False):
    """Gradients of batch norm computed node by node along the forward graph.

    The forward pass as a graph, one node per line::

        1  mean    = sum(x) / m
        2  xc      = x - mean
        3  sq      = xc ** 2
        4  var     = sum(sq) / m
        5  std     = sqrt(var + eps)
        6  inv_std = 1 / std
        7  x_hat   = xc * inv_std
        8  gx      = gamma * x_hat
        9  y       = gx + beta

    The backward pass visits the nodes from 9 down to 1 and applies the
    chain rule to each. It returns the same values as
    :func:`batchnorm_backward` (up to rounding) and is slower: it keeps
    every intermediate array. Arguments, returns and raises as there.

    With ``return_nodes=True`` it also returns a dict of the gradients at
    the intermediate nodes: ``dx_hat`` and ``dxc`` (the shape of ``x``),
    ``dstd``, ``dvar`` and ``dmean`` (per channel, shape ``(C,)``), each the
    gradient of the loss through every path from that node (training mode only).
    """
    func = "batchnorm_backward_graph"
    dy = _check_backward_args(func, dy, cache)
    x_hat, inv_std, gamma, axes, m = cache.x_hat, cache.inv_std, cache.gamma, cache.axes, cache.m
    # The cache stores x_hat and inv_std; recover the other values the nodes need.
    std = 1.0 / inv_std                                         # node 6 solved for std
    xc = x_hat * std                                            # node 7 solved for xc
    dgx = dy                                                    # 9  y = gx + beta
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dbeta = np.sum(dy, axis=axes)                           # 9  beta is broadcast: sum
        dgamma = np.sum(dgx * x_hat, axis=axes)                 # 8  gx = gamma * x_hat
    check_finite_sums(func, "dy", dy, dbeta, dgamma)
    dx_hat = dgx * gamma                                        # 8  gx = gamma * x_hat
    dxc_direct = dx_hat * inv_std                               # 7  x_hat = xc * inv_std
    if not cache.batch_stats or m == 0:  # constant mean and var (or nothing to average):
        if return_nodes and not cache.batch_stats:
            raise ValueError(f"{func}: return_nodes needs a training-mode cache, got one "
                             f"computed with running statistics")
        return dxc_direct, dgamma, dbeta     # nodes 1-6 pass no gradient
    dinv_std = np.sum(dx_hat * xc, axis=axes, keepdims=True)    # 7  x_hat = xc * inv_std
    dstd = -dinv_std / std**2                                   # 6  inv_std = 1 / std
    dvar = dstd * 0.5 / std                                     # 5  std = sqrt(var + eps)
    dsq = np.ones_like(xc) * dvar / m                           # 4  var = sum(sq) / m
    dxc_via_var = 2.0 * xc * dsq                                # 3  sq = xc ** 2
    dxc = dxc_direct + dxc_via_var                              # 2,3,7  xc feeds nodes 3 and 7
    dx_direct = dxc                                             # 2  xc = x - mean
    dmean = -np.sum(dxc, axis=axes, keepdims=True)              # 2  xc = x - mean
    dx_via_mean = np.ones_like(xc) * dmean / m                  # 1  mean = sum(x) / m
    dx = dx_direct + dx_via_mean                                # 1,2  x feeds nodes 1 and 2
    if return_nodes:
        nodes = {"dx_hat": dx_hat, "dstd": dstd.reshape(-1), "dvar": dvar.reshape(-1),
                 "dxc": dxc, "dmean": dmean.reshape(-1)}
        return dx, dgamma, dbeta, nodes
    return dx, dgamma, dbeta


def _batch_norm(func, x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Checked functional batch norm returning ``(y, cache)``; see :func:`batch_norm`."""
    x = check_bn_input(func, x, finite=False)  # training: see _train_forward; eval: below
    channels = x.shape[1]
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{func}: training must be a bool, got {type(training).__name__} "
                        f"{training!r}")
    momentum = check_momentum(func, momentum, allow_none=False)
    eps = check_positive(func, "eps", eps)
    weight = check_channel_vector(func, "weight", weight, channels, allow_none=True)
    bias = check_channel_vector(func, "bias", bias, channels, allow_none=True)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            f"{func}: running_mean and running_var must both be arrays or both be None, got "
            f"running_mean={type(running_mean).__name__} and "
            f"running_var={type(running_var).__name__}")
    if running_mean is not None:
        running_mean = check_channel_vector(func, "running_mean", running_mean, channels)
        running_var = check_channel_vector(func, "running_var", running_var, channels)
    if training:
        m = check_training_size(func, x)
        if running_mean is not None:
            check_writeable(func, "running_mean", running_mean)
            check_writeable(func, "running_var", running_var)
        y, cache, mean, var = _train_forward(func, x, weight, bias, eps)
        if running_mean is not None and m > 0:  # an empty batch leaves them alone, as torch
            # In place, as torch. The stored variance is the unbiased estimate
            # (times m / (m - 1)): it will stand in for the population variance.
            running_mean[...] = (1.0 - momentum) * running_mean + momentum * mean
            running_var[...] = (1.0 - momentum) * running_var + momentum * (var * (m / (m - 1)))
        return y, cache
    if running_mean is None:
        raise ValueError(f"{func}: running_mean and running_var must be arrays of shape "
                         f"({channels},) when training=False (they normalize the input), got None")
    check_array(func, "x", x)  # finiteness
    if np.any(running_var < 0):
        raise ValueError(f"{func}: running_var must be non-negative, got minimum "
                         f"{float(np.min(running_var))!r}")
    return _eval_forward(x, running_mean, running_var, weight, bias, eps)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch norm with the signature and behaviour of ``torch.nn.functional.batch_norm``.

    ``training=True``: normalize with this batch's statistics and, when the
    running buffers are given, update them **in place**::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    ``training=False``: normalize with ``running_mean`` and ``running_var``.
    An empty batch (``m = 0``) returns an empty ``y`` and leaves the buffers
    unchanged, as torch does.

    Parameters
    ----------
    x : ndarray, shape (N, C, *S), float32 or float64
        Input, 2-D to 5-D. Not modified.
    running_mean, running_var : ndarray of shape (C,), or both None
        Running statistics; required when ``training=False``.
    weight, bias : ndarray of shape (C,), optional
        Scale and shift; None means 1 and 0.
    training : bool
    momentum : float in [0, 1]
        Weight of the new batch in the running averages (torch's meaning).
    eps : float, > 0
        Stricter than torch, which accepts ``eps=0`` in evaluation mode.

    Returns
    -------
    y : ndarray, shape and dtype of ``x``

    Raises
    ------
    TypeError
        An array argument is not a float32/float64 ndarray, ``training`` is
        not a bool, ``momentum`` or ``eps`` is not a number.
    ValueError
        Bad shapes or non-finite values; one value per channel in training;
        only one running buffer given; no running buffers with
        ``training=False``; read-only buffers to update; ``momentum``
        outside [0, 1]; ``eps <= 0``; negative ``running_var``.
    """
    y, _ = _batch_norm("batch_norm", x, running_mean, running_var, weight, bias, training,
                       momentum, eps)
    return y


class BatchNorm:
    """Batch normalization over axis 1, for 2-D to 5-D input (torch's BatchNorm1d/2d/3d).

    Which statistics normalize the input, as in torch:
    
    =============================  ==================  =====================
    mode                           normalize with      running buffers
    =============================  ==================  =====================
    ``train()``, tracked           batch statistics    updated
    ``eval()``, tracked            running buffers     untouched
    untracked, either mode         batch statistics    (none)
    buffers, tracking switched     batch statistics    untouched
    off later: ``train()``
    the same, ``eval()``           running buffers     untouched
    =============================  ==================  =====================

    An empty batch (``N = 0``) gives an empty output, zero ``dweight`` and
    ``dbias``, and leaves the buffers alone (``num_batches_tracked`` still
    counts it, as torch's does).

    ``y = weight * (x - mean) / sqrt(var + eps) + bias`` with batch statistics
    in training mode and running statistics in evaluation mode.

    Parameters
    ----------
    num_features : int
        C, the size of axis 1.
    eps : float, > 0
    momentum : float in [0, 1] or None
        Weight of each new batch in the running statistics:
        ``running = (1 - momentum) * running + momentum * batch_stat``.
        None gives the cumulative average, ``momentum = 1 / num_batches_tracked``.
    affine : bool
        Learn ``weight`` (init 1) and ``bias`` (init 0); without it both are None.
    track_running_stats : bool
        Keep ``running_mean`` (init 0), ``running_var`` (init 1, unbiased
        estimates) and ``num_batches_tracked``; without it these are None and
        batch statistics are used in both modes.
    dtype : numpy float dtype, keyword only
        dtype of parameters and buffers (default float64, NumPy's default;
        torch's is float32). The output always has the dtype of the input.

    Attributes
    ----------
    weight, bias : ndarray (C,) or None
    running_mean, running_var : ndarray (C,) or None
    num_batches_tracked : int or None
        Training-mode forward calls seen while tracking.
    training : bool
    dweight, dbias : ndarray (C,) or None
        Set by :meth:`backward` (None without ``affine``).

    Examples
    --------
    >>> bn = BatchNorm(3)
    >>> y = bn(np.random.default_rng(0).normal(size=(16, 3, 5)))
    >>> dx = bn.backward(np.ones_like(y))
    >>> bn.num_batches_tracked, dx.shape, bn.dweight.shape
    (1, (16, 3, 5), (3,))
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float64):
        func = "BatchNorm"
        self.num_features = check_num_features(func, num_features)
        self.eps = check_positive(func, "eps", eps)
        self.momentum = check_momentum(func, momentum)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{func}: dtype must be float32 or float64, got {dtype}")
        self.dtype = dtype
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.weight = self.bias = None
        self.running_mean = self.running_var = self.num_batches_tracked = None
        if self.affine:
            self.weight = np.empty(self.num_features, dtype)
            self.bias = np.empty(self.num_features, dtype)
        if self.track_running_stats:
            self.running_mean = np.empty(self.num_features, dtype)
            self.running_var = np.empty(self.num_features, dtype)
        self.reset_parameters()
        self.training = True
        self.dweight = self.dbias = None
        self._cache = None

    def reset_running_stats(self):
        """Running mean 0, running variance 1, no batch tracked (as torch)."""
        if self.track_running_stats:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
            self.num_batches_tracked = 0

    def reset_parameters(self):
        """Reset the running statistics and set weight 1, bias 0 (as torch)."""
        self.reset_running_stats()
        if self.affine:
            self.weight[...] = 1.0
            self.bias[...] = 0.0

    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode; return ``self``."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"BatchNorm.train: mode must be a bool, got {type(mode).__name__} "
                            f"{mode!r}")
        self.training = bool(mode)
        return self

    def eval(self):
        """Set evaluation mode; return ``self``."""
        return self.train(False)

    def forward(self, x):
        """Normalize ``x`` of shape (N, C, *S); returns ``y`` with its shape and dtype.

        Raises ``ValueError`` when ``x`` is not 2-D to 5-D, does not have
        ``num_features`` channels on axis 1, is not finite, or has one value
        per channel where batch statistics are needed; ``TypeError`` when it
        is not a float32/float64 ndarray.
        """
        func = "BatchNorm.forward"
        x = check_bn_input(func, x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{func}: x must have num_features={self.num_features} channels "
                             f"on axis 1, got shape {x.shape}")
        # torch's rule: batch statistics in training, or when there are no buffers; buffers
        # that exist are used in evaluation even if track_running_stats was switched off.
        has_buffers = self.running_mean is not None and self.running_var is not None
        use_batch_stats = self.training or not has_buffers
        update = self.training and self.track_running_stats and has_buffers
        momentum = 0.0  # unused unless the buffers are updated
        if update:
            if self.momentum is None:  # cumulative average over every batch seen
                momentum = 1.0 / (self.num_batches_tracked + 1)
            else:
                momentum = self.momentum
        pass_buffers = update or not use_batch_stats
        y, cache = _batch_norm(
            func, x,
            self.running_mean if pass_buffers else None,
            self.running_var if pass_buffers else None,
            self.weight, self.bias, use_batch_stats, momentum, self.eps)
        if update:  # counted after the checks passed (torch counts before them)
            self.num_batches_tracked += 1
        self._cache = cache
        return y

    __call__ = forward

    def backward(self, dy):
        """Return ``dx`` for the last forward call; set ``dweight`` and ``dbias``.

        In training mode (or untracked) the gradient flows through the batch
        statistics; in evaluation mode they are constants.

        Raises ``ValueError`` before any forward call or when ``dy`` does not
        have the shape of the last input; ``TypeError`` for a non-float ``dy``.
        """
        if self._cache is None:
            raise ValueError("BatchNorm.backward: forward must be called before backward, "
                             "got no cached forward pass")
        _check_backward_args("BatchNorm.backward", dy, self._cache)
        dx, dgamma, dbeta = batchnorm_backward(dy, self._cache)
        if self.affine:
            self.dweight = dgamma.astype(self.weight.dtype, copy=False)
            self.dbias = dbeta.astype(self.bias.dtype, copy=False)
        return dx

    def __repr__(self):
        return (f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats})")
