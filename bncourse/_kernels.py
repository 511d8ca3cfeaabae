"""Speed-only NumPy kernels behind :mod:`bncourse.batchnorm` (private).

Each function returns exactly what plain NumPy broadcasting and reductions
would; it only arranges the work so that NumPy's loops run long. The
formulas the book teaches are in :mod:`bncourse.batchnorm`, which calls these.

Shapes: data ``(N, C, *S)``, per-channel vectors viewed as ``(1, C, 1, ...)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MEAN_TOLERANCE_EPS", "MIN_RUN", "batch_statistics", "channel_op", "channel_sum",
           "per_channel"]


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """View a ``(C,)`` vector as ``(1, C, 1, ...)`` for broadcasting against ``ndim``-D data."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# Values per innermost NumPy loop beyond which the loop's fixed cost is negligible (measured).
MIN_RUN = 16384


def channel_op(ufunc, a: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``ufunc(a, v, out=out)`` for data ``a`` (N, C, *S) and ``v`` of shape (1, C, 1, ...).

    Speed only, the values are those of plain broadcasting. Broadcast
    against ``v``, NumPy's innermost loop runs over one channel's ``S`` values
    (or, for 2-D input, one row of C values) at a time, with a fixed cost per
    run: on (512, 1024) float32 a pass takes 1.7 times as long as with long
    runs. So ``v`` is spelled out over a block of ``rows`` whole samples (at
    least ``MIN_RUN`` values) and the arrays are viewed as rows of such
    blocks, ``(N / rows, rows * C * prod(S))``: each run covers a block.
    """
    if out is None:
        out = np.empty(a.shape, dtype=np.result_type(a, v))  # C order: its reshape is a view
    n, sample = a.shape[0], math.prod(a.shape[1:])
    rows = -(-MIN_RUN // max(sample, 1))  # samples per block, rounded up
    if a.size == 0 or n % rows or not out.flags.c_contiguous:  # plain broadcasting
        return ufunc(a, v, out=out)
    block = np.broadcast_to(v, (rows,) + a.shape[1:]).reshape(1, -1)  # a copy: spelled out
    ufunc(a.reshape(n // rows, -1), block, out=out.reshape(n // rows, -1))
    return out


def channel_sum(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Sum of ``a`` (or of ``a * b``, without a temporary) over every axis but 1: shape (C,).

    Speed only: einsum runs over (N, C, m) in one call where ``a.sum(axis=(0, 2, 3))``
    is about three times slower. For 2-D input the column sums are one
    matrix-vector product ``ones @ a``: BLAS is faster than ``a.sum(axis=0)``
    and, accumulating in blocks, about three times more accurate in float32.
    """
    if b is None and a.ndim == 2:
        return np.ones(a.shape[0], dtype=a.dtype) @ a
    a3 = a.reshape(a.shape[0], a.shape[1], -1 if a.size else 0)  # -1 is ambiguous when empty
    if b is None:
        return np.einsum("ncm->c", a3)
    return np.einsum("ncm,ncm->c", a3, b.reshape(a3.shape))


# The batch mean of x_hat may stay off zero by at most this many float spacings (eps:
# 1.2e-7 in float32, 2.2e-16 in float64) before removing it earns a pass over the data.
MEAN_TOLERANCE_EPS = 32


def batch_statistics(x: np.ndarray):
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
    correction exceeds ``MEAN_TOLERANCE_EPS`` eps in units of the spread
    (the units of ``x_hat``).
    """
    m = x.size // x.shape[1]
    mean = per_channel(channel_sum(x) / m, x.ndim)
    # x - mean: x and mean share their leading digits, so little is lost here
    x_centered = channel_op(np.subtract, x, mean)
    correction = per_channel(channel_sum(x_centered) / m, x.ndim)
    mean_square = per_channel(channel_sum(x_centered, x_centered) / m, x.ndim)
    # Exact: sum((xc - correction)**2) = sum(xc**2) - m * correction**2 for xc = x_centered.
    # It loses digits only when correction nears the spread, and by then the rounding of x
    # itself is a sizeable part of the spread. The clip: rounding below 0 (constant channel).
    var = np.maximum(mean_square - correction**2, 0.0)
    tolerance = MEAN_TOLERANCE_EPS * np.finfo(x.dtype).eps
    if np.any(np.abs(correction) > tolerance * np.sqrt(mean_square)):
        channel_op(np.subtract, x_centered, correction, out=x_centered)
    return x_centered, mean + correction, var
