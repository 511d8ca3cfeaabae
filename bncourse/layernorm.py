"""Layer and RMS normalization in NumPy: forward, closed-form backward, graph backward.

Layer normalization (:cite:`ba2016layer`) and RMS normalization
(:cite:`zhang2019root`) take their statistics over the *features of one
position*, the trailing axes ``normalized_shape = gamma.shape``, never over
the batch or the time axis. Every leading index (sample, position, ...) is one
*row* of ``m = prod(normalized_shape)`` values.

Shape letters: ``x`` has shape ``(*lead, *F)`` with ``F = normalized_shape``
(``k = len(F)`` trailing axes), ``P = prod(lead)`` rows of ``m = prod(F)``
values. Per-row statistics have shape ``lead``; ``gamma``/``beta`` have shape
``F`` (one value per *element* of a row, as ``torch.nn.LayerNorm``).

Layer norm, per row::

    mean    = sum(x) / m
    var     = sum((x - mean)**2) / m      # biased, as in BN
    inv_std = 1 / sqrt(var + eps)         # eps inside the root
    x_hat   = (x - mean) * inv_std
    y       = gamma * x_hat + beta

    dbeta  = sum over rows of dy          # the parameter gradients sum over the
    dgamma = sum over rows of dy * x_hat  # leading axes, the statistics over F
    dx_hat = gamma * dy
    dx     = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))

RMS norm, per row (no centring, no shift; ``eps=None`` means
``np.finfo(x.dtype).eps``, as ``torch.nn.RMSNorm``)::

    inv_rms = 1 / sqrt(sum(x**2) / m + eps)
    x_hat   = x * inv_rms
    y       = gamma * x_hat

    dgamma = sum over rows of dy * x_hat
    dx     = inv_rms / m * (m * dx_hat - x_hat * sum(dx_hat * x_hat)),  dx_hat = gamma * dy

Compared with batch norm (:mod:`bncourse.batchnorm`) the roles of the axes are
swapped: the sums inside ``dx`` run over the features of a row, and ``gamma``
varies along them, so ``dx`` needs ``sum(dx_hat)`` and ``sum(dx_hat * x_hat)``
rather than ``dbeta`` and ``dgamma``.

Public API
----------
``layernorm_forward(x, gamma, beta, eps=1e-5) -> (y, NormCache)``
``layernorm_backward(dy, cache) -> (dx, dgamma, dbeta)``
``layernorm_backward_graph(dy, cache) -> (dx, dgamma, dbeta)``
``rmsnorm_forward(x, gamma, eps=None) -> (y, RMSNormCache)``
``rmsnorm_backward(dy, cache) -> (dx, dgamma)``
``rmsnorm_backward_graph(dy, cache) -> (dx, dgamma)``
``NormCache``, ``RMSNormCache``: what the backward passes need.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(2, 5, 4))     # (B, T, D)
>>> y, cache = layernorm_forward(x, np.ones(4), np.zeros(4))
>>> cache.mean.shape                                        # one mean per position
(2, 5)
>>> y2, _ = layernorm_forward(x[:, :3], np.ones(4), np.zeros(4))
>>> bool(np.array_equal(y2, y[:, :3]))                      # later positions change nothing
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bncourse._checks import fail, check_array, check_finite_sums, check_positive, check_shape

__all__ = ["NormCache", "RMSNormCache", "layernorm_forward", "layernorm_backward",
           "layernorm_backward_graph", "rmsnorm_forward", "rmsnorm_backward",
           "rmsnorm_backward_graph"]


@dataclass(frozen=True, eq=False)
class NormCache:
    """The normalized input and the per-set statistics of one forward pass.

    Attributes
    ----------
    x_hat : ndarray, shape of ``x``
        ``(x - mean) * inv_std``, before the scale and shift.
    mean, var, inv_std : ndarray
        Mean, biased variance and ``1 / sqrt(var + eps)`` of each normalized
        set: shape ``lead = x.shape[:-k]`` for layer norm, ``(N, G)`` for group
        norm (:mod:`bncourse.groupnorm`).
    gamma : ndarray or None
        The scale: shape ``F`` for layer norm, ``(C,)`` for group norm; None
        means 1.
    kind : str
        ``"layer"`` or ``"group"``: which backward pass the cache belongs to.
    """

    x_hat: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray | None = None
    kind: str = "layer"


@dataclass(frozen=True, eq=False)
class RMSNormCache:
    """What the RMS-norm backward needs.

    Attributes
    ----------
    x_hat : ndarray, shape of ``x``
        ``x * inv_rms``.
    inv_rms : ndarray, shape ``lead``
        ``1 / sqrt(mean(x**2) + eps)`` of each row.
    gamma : ndarray, shape ``F``
    """

    x_hat: np.ndarray
    inv_rms: np.ndarray
    gamma: np.ndarray


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


def _check_row_input(func: str, x, gamma):
    """Check ``x`` (2-D to 5-D) and ``gamma`` (a trailing part of x.shape); return them and lead."""
    x = check_array(func, "x", x)
    if not 2 <= x.ndim <= 5:
        fail(func, "x", "2-D to 5-D", f"shape {x.shape} ({x.ndim}-D)")
    gamma = check_array(func, "gamma", gamma)
    k = gamma.ndim
    if not 1 <= k < x.ndim or x.shape[x.ndim - k:] != gamma.shape:
        fail(func, "gamma", f"of shape x.shape[-k:] for some k in 1..{x.ndim - 1} "
              f"(the normalized trailing axes of x of shape {x.shape})", f"shape {gamma.shape}")
    return x, gamma, x.shape[:x.ndim - k]


def _per_row(v: np.ndarray, k: int) -> np.ndarray:
    """View a per-row array of shape ``lead`` as ``(*lead, 1, ..., 1)`` (k ones) to broadcast."""
    return v.reshape(v.shape + (1,) * k)


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Layer norm ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` over the last axes.

    The normalized axes are the last ``gamma.ndim`` axes of ``x``. Matches
    ``torch.nn.functional.layer_norm(x, gamma.shape, gamma, beta, eps)``.

    Parameters
    ----------
    x : ndarray, shape (*lead, *F), float32 or float64
        2-D to 5-D. Not modified.
    gamma, beta : ndarray, shape ``F = normalized_shape``
        Elementwise scale and shift; ``F`` must be the trailing part of
        ``x.shape`` and leave axis 0 out.
    eps : float, > 0

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : NormCache
        ``mean``, ``var``, ``inv_std`` of shape ``lead``.

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
    x, gamma, lead = _check_row_input(func, x, gamma)
    beta = check_array(func, "beta", beta)
    if beta.shape != gamma.shape:
        fail(func, "beta", f"of shape {gamma.shape} (the shape of gamma)", f"shape {beta.shape}")
    eps = check_positive(func, "eps", eps)

    centred, mean, var = _row_statistics(x.reshape(int(np.prod(lead)), gamma.size))
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = np.multiply(centred, inv_std, out=centred).reshape(x.shape)
    y = x_hat * gamma.astype(x.dtype, copy=False) + beta.astype(x.dtype, copy=False)
    cache = NormCache(x_hat, mean.reshape(lead), var.reshape(lead), inv_std.reshape(lead),
                      gamma=gamma.astype(x.dtype, copy=False), kind="layer")
    return y, cache


def _check_backward(func: str, dy, cache, cache_type, kind=None):
    """Check the cache and ``dy`` against it.

    Returns ``(dy, k, lead_axes, row_axes, m)``: ``dy`` in the cache's dtype, the
    number ``k`` of normalized axes, the leading axes (the rows), the normalized
    axes of a row and its number ``m`` of values.
    """
    if not isinstance(cache, cache_type) or (kind is not None and cache.kind != kind):
        made_by = {"layer": "layernorm_forward", "group": "groupnorm_forward"}.get(
            kind, "rmsnorm_forward")
        got = type(cache).__name__ + (f" of kind {cache.kind!r}" if hasattr(cache, "kind") else "")
        raise TypeError(f"{func}: cache must be the {cache_type.__name__} returned by "
                        f"{made_by}, got {got}")
    dy = check_array(func, "dy", dy, finite=False)
    check_shape(func, "dy", dy, cache.x_hat.shape, "the shape of x in the forward pass")
    stats = cache.inv_std if isinstance(cache, NormCache) else cache.inv_rms
    ndim, k = cache.x_hat.ndim, cache.x_hat.ndim - stats.ndim
    m = int(np.prod(cache.x_hat.shape[ndim - k:]))
    return (dy.astype(cache.x_hat.dtype, copy=False), k, tuple(range(ndim - k)),
            tuple(range(ndim - k, ndim)), m)


def layernorm_backward(dy, cache):
    """Closed-form gradients of layer norm: ``dx``, ``dgamma``, ``dbeta``.

    ::

        dx_hat = gamma * dy
        dx     = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))

    with the sums over the ``m`` features of each row, and ``dgamma = sum(dy * x_hat)``,
    ``dbeta = sum(dy)`` over the rows (every leading axis).

    Parameters
    ----------
    dy : ndarray, shape of ``x``
        Upstream gradient. Not modified.
    cache : NormCache
        From :func:`layernorm_forward`.

    Returns
    -------
    dx : ndarray, shape of ``x``
    dgamma, dbeta : ndarray, shape ``F``

    Raises
    ------
    TypeError
        ``cache`` is not a layer-norm ``NormCache``; ``dy`` is not a float ndarray.
    ValueError
        ``dy`` does not have the shape of ``x``, or is not finite.
    """
    func = "layernorm_backward"
    dy, k, lead_axes, row, m = _check_backward(func, dy, cache, NormCache, "layer")
    x_hat, inv_std = cache.x_hat, _per_row(cache.inv_std, k)
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dbeta = dy.sum(axis=lead_axes)
        dgamma = (dy * x_hat).sum(axis=lead_axes)
    check_finite_sums(func, "dy", dy, dbeta, dgamma)
    dx_hat = dy if cache.gamma is None else dy * cache.gamma
    sum_dx_hat = dx_hat.sum(axis=row, keepdims=True)
    sum_dx_hat_x_hat = (dx_hat * x_hat).sum(axis=row, keepdims=True)
    dx = inv_std / m * (m * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)
    return dx, dgamma, dbeta


def layernorm_backward_graph(dy, cache):
    """Gradients of layer norm computed node by node along the forward graph of each row.

    The graph is batch norm's (:func:`bncourse.batchnorm.batchnorm_backward_graph`)
    with the sums taken over the features of a row instead of over the batch::

        1  mean    = sum(x) / m
        2  xc      = x - mean
        3  sq      = xc ** 2
        4  var     = sum(sq) / m
        5  std     = sqrt(var + eps)
        6  inv_std = 1 / std
        7  x_hat   = xc * inv_std
        8  gx      = gamma * x_hat
        9  y       = gx + beta

    Same arguments, returns and errors as :func:`layernorm_backward`.
    """
    func = "layernorm_backward_graph"
    dy, k, lead_axes, row, m = _check_backward(func, dy, cache, NormCache, "layer")
    x_hat, inv_std, gamma = cache.x_hat, _per_row(cache.inv_std, k), cache.gamma
    std = 1.0 / inv_std                                         # node 6 solved for std
    xc = x_hat * std                                            # node 7 solved for xc
    dgx = dy                                                    # 9  y = gx + beta
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dbeta = np.sum(dy, axis=lead_axes)                      # 9  beta is shared by the rows
        dgamma = np.sum(dgx * x_hat, axis=lead_axes)            # 8  gx = gamma * x_hat
    check_finite_sums(func, "dy", dy, dbeta, dgamma)
    dx_hat = dgx if gamma is None else dgx * gamma              # 8  gx = gamma * x_hat
    dinv_std = np.sum(dx_hat * xc, axis=row, keepdims=True)     # 7  x_hat = xc * inv_std
    dxc_direct = dx_hat * inv_std                               # 7
    dstd = -dinv_std / std**2                                   # 6  inv_std = 1 / std
    dvar = dstd * 0.5 / std                                     # 5  std = sqrt(var + eps)
    dsq = np.ones_like(xc) * dvar / m                           # 4  var = sum(sq) / m
    dxc_via_var = 2.0 * xc * dsq                                # 3  sq = xc ** 2
    dxc = dxc_direct + dxc_via_var                              # 2,3,7  xc feeds nodes 3 and 7
    dmean = -np.sum(dxc, axis=row, keepdims=True)               # 2  xc = x - mean
    dx = dxc + np.ones_like(xc) * dmean / m                     # 1,2  x feeds nodes 1 and 2
    return dx, dgamma, dbeta


def rmsnorm_forward(x, gamma, eps=None):
    """RMS norm ``y = gamma * x / sqrt(mean(x**2) + eps)`` over the last ``gamma.ndim`` axes.

    Matches ``torch.nn.functional.rms_norm(x, gamma.shape, gamma, eps)`` and
    ``torch.nn.RMSNorm``: no mean is subtracted and there is no shift.

    Parameters
    ----------
    x : ndarray, shape (*lead, *F), float32 or float64
        2-D to 5-D. Not modified.
    gamma : ndarray, shape ``F``
        Elementwise scale (torch's ``weight``).
    eps : float > 0 or None
        Added to the mean square inside the root; None means the machine
        epsilon of ``x.dtype`` (torch's default).

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : RMSNormCache
        ``inv_rms`` of shape ``lead``.

    Raises
    ------
    TypeError
        ``x``/``gamma`` not a float ndarray; ``eps`` not a number or None.
    ValueError
        ``x`` not 2-D to 5-D or not finite; ``gamma.shape`` not a trailing part
        of ``x.shape`` that leaves axis 0 out; ``eps <= 0``.
    """
    func = "rmsnorm_forward"
    x, gamma, lead = _check_row_input(func, x, gamma)
    eps = float(np.finfo(x.dtype).eps) if eps is None else check_positive(func, "eps", eps)
    rows = x.reshape(int(np.prod(lead)), gamma.size)
    mean_square = np.einsum("pm,pm->p", rows, rows) / gamma.size
    inv_rms = (1.0 / np.sqrt(mean_square + eps)).astype(x.dtype, copy=False)
    x_hat = (rows * inv_rms[:, None]).reshape(x.shape)
    gamma = gamma.astype(x.dtype, copy=False)
    return x_hat * gamma, RMSNormCache(x_hat, inv_rms.reshape(lead), gamma)


def rmsnorm_backward(dy, cache):
    """Closed-form gradients of RMS norm: ``dx`` and ``dgamma``.

    ::

        dx_hat = gamma * dy
        dx     = inv_rms / m * (m * dx_hat - x_hat * sum(dx_hat * x_hat))

    (layer norm's formula without the ``sum(dx_hat)`` term, which came through
    the mean), ``dgamma = sum(dy * x_hat)`` over the rows.

    Parameters
    ----------
    dy : ndarray, shape of ``x``
    cache : RMSNormCache
        From :func:`rmsnorm_forward`.

    Returns
    -------
    dx : ndarray, shape of ``x``
    dgamma : ndarray, shape ``F``

    Raises
    ------
    TypeError
        ``cache`` is not an ``RMSNormCache``; ``dy`` is not a float ndarray.
    ValueError
        ``dy`` does not have the shape of ``x``, or is not finite.
    """
    func = "rmsnorm_backward"
    dy, k, lead_axes, row, m = _check_backward(func, dy, cache, RMSNormCache)
    x_hat, inv_rms = cache.x_hat, _per_row(cache.inv_rms, k)
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dgamma = (dy * x_hat).sum(axis=lead_axes)
    check_finite_sums(func, "dy", dy, dgamma)
    dx_hat = dy * cache.gamma
    sum_dx_hat_x_hat = (dx_hat * x_hat).sum(axis=row, keepdims=True)
    return inv_rms / m * (m * dx_hat - x_hat * sum_dx_hat_x_hat), dgamma


def rmsnorm_backward_graph(dy, cache):
    """Gradients of RMS norm computed node by node along the forward graph of each row::

        1  sq      = x ** 2
        2  ms      = sum(sq) / m
        3  rms     = sqrt(ms + eps)
        4  inv_rms = 1 / rms
        5  x_hat   = x * inv_rms
        6  y       = gamma * x_hat

    Same arguments, returns and errors as :func:`rmsnorm_backward`.
    """
    func = "rmsnorm_backward_graph"
    dy, k, lead_axes, row, m = _check_backward(func, dy, cache, RMSNormCache)
    x_hat, inv_rms, gamma = cache.x_hat, _per_row(cache.inv_rms, k), cache.gamma
    rms = 1.0 / inv_rms                                         # node 4 solved for rms
    x = x_hat * rms                                             # node 5 solved for x
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/inf are reported just below
        dgamma = np.sum(dy * x_hat, axis=lead_axes)             # 6  y = gamma * x_hat
    check_finite_sums(func, "dy", dy, dgamma)
    dx_hat = dy * gamma                                         # 6
    dinv_rms = np.sum(dx_hat * x, axis=row, keepdims=True)      # 5  x_hat = x * inv_rms
    dx_direct = dx_hat * inv_rms                                # 5
    drms = -dinv_rms / rms**2                                   # 4  inv_rms = 1 / rms
    dms = drms * 0.5 / rms                                      # 3  rms = sqrt(ms + eps)
    dsq = np.ones_like(x) * dms / m                             # 2  ms = sum(sq) / m
    dx_via_sq = 2.0 * x * dsq                                   # 1  sq = x ** 2
    return dx_direct + dx_via_sq, dgamma                        # 1,5  x feeds nodes 1 and 5
