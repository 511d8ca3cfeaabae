"""Layer and group normalization in NumPy: statistics per sample, never across the batch.

Batch normalization pools one channel over the whole batch, so its output for
one sample depends on the other samples. Layer normalization
(:cite:`ba2016layer`) and group normalization (:cite:`wu2018group`) take
their statistics *within one sample*, so they behave the same for a batch of
one image as for a batch of a thousand, in training and in evaluation.

Shape letters: ``N`` samples, ``C`` channels (axis 1), ``S`` trailing axes
(empty, ``(L,)``, ``(H, W)`` or ``(D, H, W)``), ``G`` groups of ``C / G``
consecutive channels, ``m`` values that share one mean and variance.

Group normalization of ``x`` of shape ``(N, C, *S)``: for each sample ``n``
and group ``g`` (channels ``g * C/G .. (g + 1) * C/G - 1``), over its
``m = C/G * prod(S)`` values::

    mean = sum(x) / m
    var = sum((x - mean) ** 2) / m          # biased, as in BatchNorm
    x_hat = (x - mean) / sqrt(var + eps)
    y = gamma * x_hat + beta                # gamma, beta per CHANNEL, shape (C,)

``G = 1`` normalizes each sample over all of ``(C, *S)`` (layer normalization
with a per-channel scale); ``G = C`` normalizes each channel of each sample on
its own (instance normalization). Matches ``torch.nn.functional.group_norm``.

Layer normalization normalizes each sample over its last ``k`` axes, the
``normalized_shape = gamma.shape``; the scale and shift are elementwise over
those axes. Matches ``torch.nn.functional.layer_norm(x, gamma.shape, gamma,
beta, eps)``. For ``(N, D)`` input and ``gamma`` of shape ``(D,)`` this is the
layer normalization of a fully connected layer.

There is no training/evaluation difference and no running statistic: the
statistics of a sample are always its own.

Group normalization *is* layer normalization of each group: ``x`` viewed
as ``(N, G, m)`` is layer-normalized over its last axis, then scaled and
shifted per channel. The forward and backward passes below are built that way
on :mod:`bncourse.layernorm`, where layer normalization (forward, closed-form
and graph backward) and RMS normalization live.

Backward, with ``dx_hat = gamma * dy`` (per channel)::

    dbeta  = sum(dy)            over every axis but 1, as in BN
    dgamma = sum(dy * x_hat)    over every axis but 1
    dx     = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))
             with the two sums over the m values of each (sample, group)

Public API
----------
``groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5) -> (y, cache)``
``groupnorm_backward(dy, cache) -> (dx, dgamma, dbeta)``
``layernorm_forward`` and ``NormCache``, re-exported from :mod:`bncourse.layernorm`.
``NormCache``: ``x_hat`` (shape of ``x``), ``mean``, ``var``, ``inv_std``
(one value per normalized set: ``(N, G)`` for group norm, ``x.shape[:-k]``
for layer norm), ``gamma``, ``kind``.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(2, 6, 4, 4))
>>> y, cache = groupnorm_forward(x, 3, np.ones(6), np.zeros(6))
>>> cache.mean.shape                       # one mean per (sample, group)
(2, 3)
>>> bool(np.allclose(y.reshape(2, 3, -1).mean(axis=2), 0))
True
>>> y1, _ = groupnorm_forward(x[:1], 3, np.ones(6), np.zeros(6))   # a batch of one
>>> bool(np.array_equal(y1, y[:1]))        # the other sample changes nothing
True
"""

from __future__ import annotations

import numbers

import numpy as np

from bncourse._checks import (
    fail,
    check_bn_input,
    check_channel_vector,
    check_finite_sums,
    check_positive,
)
from bncourse.layernorm import NormCache, layernorm_backward, layernorm_forward

__all__ = ["NormCache", "groupnorm_backward", "groupnorm_forward", "layernorm_forward"]


def _check_num_groups(func: str, num_groups, num_channels: int) -> int:
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral):
        fail(func, "num_groups", "a positive int", f"{type(num_groups).__name__} {num_groups!r}",
              TypeError)
    if num_groups <= 0 or num_channels % num_groups:
        fail(func, "num_groups", f"a positive divisor of the {num_channels} channel(s) of x",
              repr(num_groups))
    return int(num_groups)


def groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5):
    """Group norm ``y = gamma * (x - mean) / sqrt(var + eps) + beta``, stats per (sample, group).

    Parameters
    ----------
    x : ndarray, shape (N, C, *S), float32 or float64
        2-D to 5-D, channels on axis 1. Not modified.
    num_groups : int
        ``G``, a divisor of ``C``; group ``g`` holds channels
        ``g * C/G .. (g + 1) * C/G - 1`` (consecutive, as in torch).
    gamma, beta : ndarray of shape (C,), or None
        Per-channel scale and shift (None: 1 and 0).
    eps : float, > 0

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : NormCache
        ``mean``, ``var``, ``inv_std`` of shape ``(N, G)``, ``kind="group"``.

    Raises
    ------
    TypeError
        ``x``/``gamma``/``beta`` not a float ndarray, ``num_groups`` not an int.
    ValueError
        ``x`` not 2-D to 5-D or not finite; ``num_groups`` does not divide ``C``;
        ``gamma``/``beta`` not of shape ``(C,)``; ``eps <= 0``.

    A set of one value (``C / G = 1`` and no trailing axes) has variance 0, so
    its output is ``beta``, as in torch (which does not raise here).
    """
    func = "groupnorm_forward"
    x = check_bn_input(func, x)
    n, c = x.shape[:2]
    g = _check_num_groups(func, num_groups, c)
    gamma = check_channel_vector(func, "gamma", gamma, c, allow_none=True)
    beta = check_channel_vector(func, "beta", beta, c, allow_none=True)
    eps = check_positive(func, "eps", eps)

    m = c // g * int(np.prod(x.shape[2:]))   # explicit: reshape(-1) cannot infer it when N = 0
    ones, zeros = np.ones(m, dtype=x.dtype), np.zeros(m, dtype=x.dtype)
    x_hat, groups = layernorm_forward(x.reshape(n, g, m), ones, zeros, eps)  # each group a row
    x_hat = x_hat.reshape(x.shape)
    view = (1, c) + (1,) * (x.ndim - 2)
    if gamma is not None:
        gamma = gamma.astype(x.dtype, copy=False)
    y = x_hat.copy() if gamma is None else x_hat * gamma.reshape(view)
    if beta is not None:
        y += beta.astype(x.dtype, copy=False).reshape(view)
    cache = NormCache(x_hat, groups.mean, groups.var, groups.inv_std, gamma=gamma, kind="group")
    return y, cache


def groupnorm_backward(dy, cache):
    """Closed-form gradients of group norm: ``dx``, ``dgamma``, ``dbeta`` (module docstring).

    The input gradient is layer norm's (:func:`bncourse.layernorm.layernorm_backward`)
    applied to each (sample, group) with ``dx_hat = gamma * dy`` as its upstream
    gradient; ``dgamma`` and ``dbeta`` are per channel, summed over every axis but 1.

    Parameters
    ----------
    dy : ndarray, shape (N, C, *S)
        Upstream gradient. Not modified.
    cache : NormCache
        From :func:`groupnorm_forward`.

    Returns
    -------
    dx : ndarray, shape (N, C, *S)
    dgamma, dbeta : ndarray, shape (C,)
        Returned also when the forward had no scale or shift.

    Raises
    ------
    TypeError
        ``cache`` is not a group-norm ``NormCache``; ``dy`` is not a float ndarray.
    ValueError
        ``dy`` does not have the shape of ``x``, or is not finite.
    """
    func = "groupnorm_backward"
    if not isinstance(cache, NormCache) or cache.kind != "group":
        got = type(cache).__name__ + (f" of kind {cache.kind!r}" if hasattr(cache, "kind") else "")
        raise TypeError(f"{func}: cache must be the NormCache returned by groupnorm_forward, "
                        f"got {got}")
    x_hat = cache.x_hat
    if not isinstance(dy, np.ndarray) or dy.shape != x_hat.shape:
        got = f"shape {dy.shape}" if isinstance(dy, np.ndarray) else type(dy).__name__
        exc = ValueError if isinstance(dy, np.ndarray) else TypeError
        fail(func, "dy", f"an ndarray of shape {x_hat.shape} (the shape of x)", got, exc)
    dy = dy.astype(x_hat.dtype, copy=False)
    n, c = x_hat.shape[:2]
    g = cache.mean.shape[1]
    axes = (0, *range(2, x_hat.ndim))
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * x_hat).sum(axis=axes)
    check_finite_sums(func, "dy", dy, dbeta, dgamma)
    view = (1, c) + (1,) * (x_hat.ndim - 2)
    dx_hat = dy if cache.gamma is None else dy * cache.gamma.reshape(view)
    m = c // g * int(np.prod(x_hat.shape[2:]))
    rows = NormCache(x_hat.reshape(n, g, m), cache.mean,
                     cache.var, cache.inv_std, gamma=None, kind="layer")
    dx, _, _ = layernorm_backward(dx_hat.reshape(rows.x_hat.shape), rows)
    return dx.reshape(x_hat.shape), dgamma, dbeta
