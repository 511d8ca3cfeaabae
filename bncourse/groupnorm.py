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

Public API
----------
``groupnorm_forward(x, num_groups, gamma, beta, eps=1e-5) -> (y, cache)``
``layernorm_forward(x, gamma, beta, eps=1e-5) -> (y, cache)``
``NormCache``: ``x_hat`` (shape of ``x``), ``mean``, ``var``, ``inv_std``
(one value per normalized set: ``(N, G)`` for group norm, ``x.shape[:-k]``
for layer norm).

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
from dataclasses import dataclass

import numpy as np

from bncourse._checks import (
    fail,
    check_array,
    check_bn_input,
    check_channel_vector,
    check_positive,
)

__all__ = ["NormCache", "groupnorm_forward", "layernorm_forward"]


@dataclass(frozen=True, eq=False)
class NormCache:
    """The normalized input and the per-set statistics of one forward pass.

    Attributes
    ----------
    x_hat : ndarray, shape of ``x``
        ``(x - mean) * inv_std``, before the scale and shift.
    mean, var, inv_std : ndarray
        Mean, biased variance and ``1 / sqrt(var + eps)`` of each normalized
        set: shape ``(N, G)`` for group norm, ``x.shape[:-k]`` for layer norm.
    """

    x_hat: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray


def _row_statistics(rows: np.ndarray):
    """Return ``(centred, mean, var)`` of each row of a 2-D array, computed in its dtype.

    Two passes with a correction, as ``bncourse.batchnorm``: the variance is
    taken from centred values (``E[x^2] - E[x]^2`` cancels when the mean is
    large against the spread), and the mean of the residuals is removed once
    more because in float32 the first mean itself carries rounding error.
    """
    m = rows.shape[1]
    mean = rows.sum(axis=1, keepdims=True) / m
    centred = rows - mean
    correction = centred.sum(axis=1, keepdims=True) / m
    centred -= correction
    mean = mean + correction
    var = np.einsum("pm,pm->p", centred, centred)[:, None] / m
    return centred, mean, var


def _normalize_rows(rows: np.ndarray, eps: float):
    """Normalize each row of ``(P, m)``: ``(x_hat, mean, var, inv_std)``, stats of shape (P,)."""
    centred, mean, var = _row_statistics(rows)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = np.multiply(centred, inv_std, out=centred)
    return x_hat, mean[:, 0], var[:, 0], inv_std[:, 0]


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
        ``mean``, ``var``, ``inv_std`` of shape ``(N, G)``.

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
    x_hat, mean, var, inv_std = _normalize_rows(x.reshape(n * g, m), eps)
    x_hat = x_hat.reshape(x.shape)
    view = (1, c) + (1,) * (x.ndim - 2)
    y = x_hat.copy() if gamma is None else x_hat * gamma.astype(x.dtype, copy=False).reshape(view)
    if beta is not None:
        y += beta.astype(x.dtype, copy=False).reshape(view)
    cache = NormCache(x_hat, mean.reshape(n, g), var.reshape(n, g), inv_std.reshape(n, g))
    return y, cache


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Layer norm ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` over the last axes.

    The normalized axes are the last ``gamma.ndim`` axes of ``x``.

    Parameters
    ----------
    x : ndarray, shape (N, ..., *normalized_shape), float32 or float64
        2-D to 5-D. Not modified.
    gamma, beta : ndarray, shape ``normalized_shape``
        Elementwise scale and shift; ``normalized_shape = gamma.shape`` must be
        the trailing part of ``x.shape`` and leave the batch axis out.
    eps : float, > 0

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : NormCache
        ``mean``, ``var``, ``inv_std`` of shape ``x.shape[:-gamma.ndim]``.

    Raises
    ------
    TypeError
        ``x``/``gamma``/``beta`` not a float ndarray.
    ValueError
        ``x`` not 2-D to 5-D or not finite; ``gamma.shape`` not a trailing part
        of ``x.shape`` that leaves axis 0 out; ``beta.shape != gamma.shape``;
        ``eps <= 0``.
    """
    func = "layernorm_forward"
    x = check_array(func, "x", x)
    if not 2 <= x.ndim <= 5:
        fail(func, "x", "2-D to 5-D", f"shape {x.shape} ({x.ndim}-D)")
    gamma = check_array(func, "gamma", gamma)
    k = gamma.ndim
    if not 1 <= k < x.ndim or x.shape[x.ndim - k:] != gamma.shape:
        fail(func, "gamma", f"of shape x.shape[-k:] for some k in 1..{x.ndim - 1} "
              f"(the normalized trailing axes of x of shape {x.shape})", f"shape {gamma.shape}")
    beta = check_array(func, "beta", beta)
    if beta.shape != gamma.shape:
        fail(func, "beta", f"of shape {gamma.shape} (the shape of gamma)", f"shape {beta.shape}")
    eps = check_positive(func, "eps", eps)

    lead = x.shape[:x.ndim - k]
    x_hat, mean, var, inv_std = _normalize_rows(x.reshape(int(np.prod(lead)), gamma.size), eps)
    x_hat = x_hat.reshape(x.shape)
    y = x_hat * gamma.astype(x.dtype, copy=False) + beta.astype(x.dtype, copy=False)
    cache = NormCache(x_hat, mean.reshape(lead), var.reshape(lead), inv_std.reshape(lead))
    return y, cache
