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
``BatchNorm`` (in :mod:`bncourse.layer`, re-exported here) mirrors
``torch.nn.BatchNorm1d/2d/3d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bncourse._checks import (
    check_array,
    check_bn_input,
    check_channel_vector,
    check_finite_sums,
    check_momentum,
    check_positive,
    check_shape,
    check_training_size,
    check_writeable,
)

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


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """View a ``(C,)`` vector as ``(1, C, 1, ...)`` for broadcasting against ``ndim``-D data."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# Values per innermost NumPy loop beyond which the loop's fixed cost is negligible (measured).
_MIN_RUN = 16384


def _channel_op(ufunc, a: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``ufunc(a, v, out=out)`` for data ``a`` (N, C, *S) and ``v`` of shape (1, C, 1, ...).

    Speed only, the values are those of plain broadcasting. Broadcast
    against ``v``, NumPy's innermost loop runs over one channel's ``S`` values
    (or, for 2-D input, one row of C values) at a time, with a fixed cost per
    run: on (512, 1024) float32 a pass takes 1.7 times as long as with long
    runs. So ``v`` is spelled out over a block of ``rows`` whole samples (at
    least ``_MIN_RUN`` values) and the arrays are viewed as rows of such
    blocks, ``(N / rows, rows * C * prod(S))``: each run covers a block.
    """
    if out is None:
        out = np.empty(a.shape, dtype=np.result_type(a, v))  # C order: its reshape is a view
    n, sample = a.shape[0], math.prod(a.shape[1:])
    rows = -(-_MIN_RUN // max(sample, 1))  # samples per block, rounded up
    if a.size == 0 or n % rows or not out.flags.c_contiguous:  # plain broadcasting
        return ufunc(a, v, out=out)
    block = np.broadcast_to(v, (rows,) + a.shape[1:]).reshape(1, -1)  # a copy: spelled out
    ufunc(a.reshape(n // rows, -1), block, out=out.reshape(n // rows, -1))
    return out


def _channel_sum(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``a`` (or of ``a * b``, without a temporary) over every axis but 1: shape (C,).

    Speed only: einsum runs over (N, C, m) in one call where ``a.sum(axis=(0, 2, 3))``
    is about three times slower. For 2-D input the column sums are one
    matrix-vector product ``ones @ a``: BLAS is faster than ``a.sum(axis=0)``
    and, accumulating in blocks, about three times more accurate in float32.
    """
    if b is None and a.ndim == 2:
        return np.ones(a.shape[0], dtype=a.dtype) @ a
    a3 = a.reshape(a.shape[0], a.shape[1], -1)
    if b is None:
        return np.einsum("ncm->c", a3)
    return np.einsum("ncm,ncm->c", a3, b.reshape(a3.shape))


# The batch mean of x_hat may stay off zero by at most this many float spacings (eps:
# 1.2e-7 in float32, 2.2e-16 in float64) before removing it earns a pass over the data.
_MEAN_TOLERANCE_EPS = 32


def _batch_statistics(x: np.ndarray):
    """Return ``(x - mean, mean, var)``: biased per-channel statistics, computed in ``x.dtype``.

    A corrected two-pass algorithm. The naive ``E[x^2] - E[x]^2`` cancels
    catastrophically when the mean is large against the spread (mean 1e4,
    std 0.1 in float32 leaves no correct digit), so the variance is taken from
    centred values. And in float32 the first mean itself is off: the running
    sum of m values near 1e4 is held with a step of about m * 1e-3, so the
    mean of the residuals, ``correction``, is added to it.

    Subtracting ``correction`` from the centred values costs a whole pass over
    the data. Usually it is a few eps times the spread, below what rounding
    already does to ``x_hat``, so the pass runs only when some channel's
    correction exceeds ``_MEAN_TOLERANCE_EPS`` eps in units of the spread
    (the units of ``x_hat``).
    """
    m = x.size // x.shape[1]
    mean = _per_channel(_channel_sum(x) / m, x.ndim)
    # x - mean: x and mean share their leading digits, so little is lost here
    x_centered = _channel_op(np.subtract, x, mean)
    correction = _per_channel(_channel_sum(x_centered) / m, x.ndim)
    mean_square = _per_channel(_channel_sum(x_centered, x_centered) / m, x.ndim)
    # Exact: sum((xc - correction)**2) = sum(xc**2) - m * correction**2 for xc = x_centered.
    # It loses digits only when correction nears the spread, and by then the rounding of x
    # itself is a sizeable part of the spread. The clip: rounding below 0 (constant channel).
    var = np.maximum(mean_square - correction**2, 0.0)
    tolerance = _MEAN_TOLERANCE_EPS * np.finfo(x.dtype).eps
    if np.any(np.abs(correction) > tolerance * np.sqrt(mean_square)):
        _channel_op(np.subtract, x_centered, correction, out=x_centered)
    return x_centered, mean + correction, var


def _affine(x_hat: np.ndarray, gamma, beta):
    """Return ``(y, gamma_b)``: ``y = gamma * x_hat + beta`` (a missing scale is 1, shift 0)."""
    dtype, ndim = x_hat.dtype, x_hat.ndim
    if gamma is None:
        gamma_b = np.ones((1, x_hat.shape[1]) + (1,) * (ndim - 2), dtype=dtype)
        y = x_hat.copy()  # never hand out the cached x_hat itself
    else:
        gamma_b = _per_channel(gamma.astype(dtype, copy=False), ndim)
        y = _channel_op(np.multiply, x_hat, gamma_b)
    if beta is not None:
        _channel_op(np.add, y, _per_channel(beta.astype(dtype, copy=False), ndim), out=y)
    return y, gamma_b


def _train_forward(func, x, gamma, beta, eps):
    """Training-mode forward: ``(y, cache, mean, var)``, mean and var of shape (C,).

    Arguments are checked by the caller except the finiteness of ``x``,
    which is read off its statistics (cheaper than a separate scan).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        x_centered, mean, var = _batch_statistics(x)
    check_finite_sums(func, "x", x, mean, var)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = _channel_op(np.multiply, x_centered, inv_std, out=x_centered)  # ours: reuse it
    y, gamma_b = _affine(x_hat, gamma, beta)
    axes = (0, *range(2, x.ndim))
    cache = BatchNormCache(x_hat, inv_std, gamma_b, axes, batch_stats=True)
    return y, cache, mean.reshape(-1), var.reshape(-1)


def _eval_forward(x, mean, var, gamma, beta, eps):
    """Forward with given (running) statistics, without checks: ``(y, cache)``."""
    dtype, ndim = x.dtype, x.ndim
    mean_b = _per_channel(mean.astype(dtype, copy=False), ndim)
    inv_std = 1.0 / np.sqrt(_per_channel(var.astype(dtype, copy=False), ndim) + eps)
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


def _check_backward_args(func: str, dy, cache) -> np.ndarray:
    """Check ``cache`` and that ``dy`` matches it; return ``dy`` in the cache's dtype.

    Finiteness of ``dy`` is checked by the caller, from its sums.
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"{func}: cache must be the BatchNormCache returned by the forward pass, "
                        f"got {type(cache).__name__}")
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
        ``dy`` does not have the shape of ``x``, or is not finite.
    """
    return _closed_form_backward("batchnorm_backward", dy, cache)


def _closed_form_backward(func: str, dy, cache):
    """:func:`batchnorm_backward` with the caller's name in error messages."""
    dy = _check_backward_args(func, dy, cache)
    x_hat, inv_std, gamma = cache.x_hat, cache.inv_std, cache.gamma
    ndim, m = x_hat.ndim, cache.m
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dbeta = _channel_sum(dy)
        dgamma = _channel_sum(dy, x_hat)
    check_finite_sums(func, "dy", dy, dbeta, dgamma)
    if not cache.batch_stats:
        return dy * (gamma * inv_std), dgamma, dbeta
    # dx = gamma * inv_std * (dy - (x_hat * dgamma + dbeta) / m), built in one buffer
    dx = _channel_op(np.multiply, x_hat, _per_channel(dgamma / m, ndim))
    _channel_op(np.add, dx, _per_channel(dbeta / m, ndim), out=dx)
    np.subtract(dy, dx, out=dx)
    _channel_op(np.multiply, dx, gamma * inv_std, out=dx)
    return dx, dgamma, dbeta


def batchnorm_backward_graph(dy, cache):
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
    if not cache.batch_stats:  # mean and var were constants: nodes 1-6 pass no gradient
        return dxc_direct, dgamma, dbeta
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
        if running_mean is not None:
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


def __getattr__(name):
    # BatchNorm lives in bncourse.layer, which imports this module; importing it
    # lazily here keeps both import orders working.
    if name == "BatchNorm":
        from bncourse.layer import BatchNorm

        return BatchNorm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
