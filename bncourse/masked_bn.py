"""Batch normalization that ignores padding: statistics over the real positions only.

A batch of sequences of different lengths is padded to a common length T.
Plain batch norm then pools the padded positions with the real ones, so its
mean and variance, and with them every real output, depend on how much
padding the batch happens to hold. Masked batch norm takes each channel's
statistics over the positions where ``mask`` is True and leaves the padded
positions out of everything: their output and their input gradient are 0.

Shape letters: ``x`` has shape ``(N, C, *S)`` with channels on axis 1 (``S``
is ``(L,)`` for sequences); ``mask`` has shape ``(N, *S)``, True at real
positions; ``M = mask.sum()`` real positions, each contributing one value to
every channel's statistics::

    mean = sum over real positions of x / M
    var  = sum over real positions of (x - mean)**2 / M      # biased
    y    = gamma * (x - mean) / sqrt(var + eps) + beta        at real positions, 0 elsewhere

This is exactly batch norm (:mod:`bncourse.batchnorm`) on the ``(M, C)``
matrix of real positions, which is how it is computed here: gather, normalize,
scatter back. The backward pass does the same with ``batchnorm_backward``.

Public API
----------
``masked_batch_stats(x, mask) -> (mean, var, count)``
``masked_batchnorm_forward(x, mask, gamma, beta, eps=1e-5) -> (y, MaskedBatchNormCache)``
``masked_batchnorm_backward(dy, cache) -> (dx, dgamma, dbeta)``

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(2, 3, 4))          # (N, C, L)
>>> mask = np.array([[True, True, True, False], [True, True, False, False]])
>>> mean, var, count = masked_batch_stats(x, mask)
>>> count, mean.shape
(5, (3,))
>>> y, _ = masked_batchnorm_forward(x, mask, np.ones(3), np.zeros(3))
>>> float(np.abs(y[0, :, 3]).max())                              # padded: 0
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bncourse._checks import fail, check_bn_input, check_channel_vector, check_positive, check_shape
from bncourse.batchnorm import BatchNormCache, batchnorm_backward, batchnorm_forward

__all__ = ["MaskedBatchNormCache", "masked_batch_stats", "masked_batchnorm_forward",
           "masked_batchnorm_backward"]


@dataclass(frozen=True, eq=False)
class MaskedBatchNormCache:
    """The batch-norm cache of the ``(M, C)`` real positions, and the mask to scatter with."""

    rows: BatchNormCache
    mask: np.ndarray
    shape: tuple


def _check_mask(func: str, x: np.ndarray, mask) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = f"dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        fail(func, "mask", "a numpy.ndarray of dtype bool (True at real positions)", got,
              TypeError)
    expected = (x.shape[0],) + x.shape[2:]
    check_shape(func, "mask", mask, expected, "x.shape without the channel axis 1")
    return mask


def _real_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The values at real positions as an ``(M, C)`` matrix (a copy), in the order of ``mask``."""
    return np.moveaxis(x, 1, -1)[mask]


def masked_batch_stats(x, mask):
    """Per-channel mean, biased variance and count of the real (``mask`` True) positions.

    Parameters
    ----------
    x : ndarray, shape (N, C, *S), float32 or float64
    mask : ndarray of bool, shape (N, *S)

    Returns
    -------
    mean, var : ndarray, shape (C,), dtype of ``x``
    count : int
        ``M``, the number of real positions (values per channel).

    Raises
    ------
    TypeError
        ``x`` not a float ndarray, ``mask`` not a bool ndarray.
    ValueError
        Bad shapes, non-finite ``x``, or no real position at all.
    """
    func = "masked_batch_stats"
    x = check_bn_input(func, x)
    mask = _check_mask(func, x, mask)
    count = int(mask.sum())
    if count == 0:
        fail(func, "mask", "True at one position at least", "no real position")
    rows = _real_rows(x, mask)
    mean = rows.sum(axis=0) / count
    var = ((rows - mean) ** 2).sum(axis=0) / count   # from centred values: no cancellation
    return mean, var, count


def masked_batchnorm_forward(x, mask, gamma, beta, eps=1e-5):
    """Training-mode batch norm with statistics over the real positions; 0 at padded ones.

    Parameters
    ----------
    x : ndarray, shape (N, C, *S), float32 or float64
        Not modified; its values at padded positions are never read.
    mask : ndarray of bool, shape (N, *S)
    gamma, beta : ndarray, shape (C,)
    eps : float, > 0

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : MaskedBatchNormCache

    Raises
    ------
    TypeError, ValueError
        As :func:`masked_batch_stats`; also ``gamma``/``beta`` not of shape
        ``(C,)``, ``eps <= 0``, or fewer than 2 real positions (one value per
        channel, as torch refuses in training mode).
    """
    func = "masked_batchnorm_forward"
    x = check_bn_input(func, x, finite=False)
    mask = _check_mask(func, x, mask)
    c = x.shape[1]
    gamma = check_channel_vector(func, "gamma", gamma, c)
    beta = check_channel_vector(func, "beta", beta, c)
    eps = check_positive(func, "eps", eps)
    count = int(mask.sum())
    if count < 2:
        fail(func, "mask", "True at 2 positions at least (more than 1 value per channel)",
              f"{count} real position(s)")
    rows = _real_rows(x, mask)
    if not np.all(np.isfinite(rows)):
        fail(func, "x", "finite at the real positions", "NaN or inf")
    y_rows, cache = batchnorm_forward(rows, gamma, beta, eps)
    y = np.zeros((x.shape[0],) + x.shape[2:] + (c,), dtype=x.dtype)
    y[mask] = y_rows
    return np.moveaxis(y, -1, 1), MaskedBatchNormCache(cache, mask.copy(), x.shape)


def masked_batchnorm_backward(dy, cache):
    """Gradients of masked batch norm: BN's closed form on the real positions, 0 at padded ones.

    Parameters
    ----------
    dy : ndarray, shape (N, C, *S)
        Upstream gradient; its values at padded positions are ignored.
    cache : MaskedBatchNormCache

    Returns
    -------
    dx : ndarray, shape (N, C, *S), 0 at padded positions
    dgamma, dbeta : ndarray, shape (C,)

    Raises
    ------
    TypeError
        ``cache`` not a ``MaskedBatchNormCache``; ``dy`` not a float ndarray.
    ValueError
        ``dy`` not of the shape of ``x``, or not finite at the real positions.
    """
    func = "masked_batchnorm_backward"
    if not isinstance(cache, MaskedBatchNormCache):
        raise TypeError(f"{func}: cache must be the MaskedBatchNormCache returned by "
                        f"masked_batchnorm_forward, got {type(cache).__name__}")
    dy = check_bn_input(func, dy, "dy", finite=False)
    check_shape(func, "dy", dy, cache.shape, "the shape of x in the forward pass")
    try:
        dx_rows, dgamma, dbeta = batchnorm_backward(_real_rows(dy, cache.mask), cache.rows)
    except ValueError as err:   # name this function, not the one it calls
        raise ValueError(str(err).replace("batchnorm_backward", func, 1)) from None
    dx = np.zeros((cache.shape[0],) + cache.shape[2:] + (cache.shape[1],), dtype=dx_rows.dtype)
    dx[cache.mask] = dx_rows
    return np.moveaxis(dx, -1, 1), dgamma, dbeta
