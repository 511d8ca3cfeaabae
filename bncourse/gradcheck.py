"""Finite-difference gradients and the relative error used to compare gradients.

Shapes: ``x`` is any float64 array, ``f(x)`` returns an array of the shape
of ``dy``; the gradient has the shape of ``x``.

The centred difference of ``L(x) = sum(f(x) * dy)``::

    dL/dx_i  ~  (L(x + h e_i) - L(x - h e_i)) / (2 h)

has error of order ``h**2`` (plus rounding of order ``eps / h``), so with
float64 and ``h = 1e-5`` a correct analytic gradient agrees to about 1e-8
or better in :func:`relative_error`.
"""

from __future__ import annotations

import numpy as np

from bncourse._checks import check_array, check_callable, check_positive, check_writeable

__all__ = ["numerical_gradient", "relative_error"]


def numerical_gradient(f, x, dy, h=1e-5):
    """Centred differences of ``sum(f(x) * dy)`` with respect to every entry of ``x``.

    Each entry of ``x`` is nudged in place by ``+h`` and ``-h`` and then put
    back, so ``x`` is bitwise unchanged afterwards (also if ``f`` raises).

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of the shape of ``dy``. It may read ``x`` but
        must not keep or modify it.
    x : ndarray, float32 or float64, writeable
        Point of evaluation (use float64: float32 differences are too coarse).
    dy : ndarray
        Upstream gradient, the weights of the outputs.
    h : float, > 0
        Step.

    Returns
    -------
    ndarray, shape and dtype of ``x``

    Raises
    ------
    TypeError
        ``f`` is not callable; ``x`` or ``dy`` is not a float ndarray.
    ValueError
        ``x`` is read-only or not finite; ``f(x)`` does not have the shape of
        ``dy``; ``h <= 0``.

    Examples
    --------
    >>> x = np.array([1.0, 2.0])
    >>> numerical_gradient(lambda a: a**2, x, np.ones(2)).round(6)
    array([2., 4.])
    """
    func = "numerical_gradient"
    f = check_callable(func, "f", f)
    x = check_array(func, "x", x)
    check_writeable(func, "x", x)
    dy = check_array(func, "dy", dy)
    h = check_positive(func, "h", h)

    def loss(point):
        out = np.asarray(f(point))
        if out.shape != dy.shape:
            raise ValueError(f"{func}: f(x) must return the shape of dy {dy.shape}, "
                             f"got shape {out.shape}")
        return float(np.sum(out * dy))

    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        try:
            x[index] = old + h
            loss_plus = loss(x)
            x[index] = old - h
            loss_minus = loss(x)
        finally:
            x[index] = old  # the stored value, not old + h - h: restores x bit for bit
        grad[index] = (loss_plus - loss_minus) / (2.0 * h)
    return grad


def relative_error(a, b):
    """``max|a - b| / max(|a| + |b|)``, and 0.0 when ``a`` and ``b`` are both zero.

    Scale-free: 1e-8 means agreement in about eight digits whatever the size
    of the values. ``a`` and ``b`` are array-likes (ndarrays, CPU tensors,
    numbers) of the same shape, compared in float64.

    Raises
    ------
    TypeError
        ``a`` or ``b`` is not numeric.
    ValueError
        The shapes differ (no broadcasting: it would hide a mistake), or a
        value is not finite.

    Examples
    --------
    >>> relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    0.1111111111111111
    """
    func = "relative_error"
    arrays = []
    for arg, value in (("a", a), ("b", b)):
        try:
            array = np.asarray(value)
        except Exception as error:  # e.g. a tensor that requires grad
            raise TypeError(f"{func}: {arg} must be an array of numbers, got "
                            f"{type(value).__name__} ({error})") from error
        if array.dtype.kind not in "iuf":
            raise TypeError(f"{func}: {arg} must be an array of real numbers, got "
                            f"dtype {array.dtype}")
        arrays.append(check_array(func, arg, array.astype(np.float64)))
    a, b = arrays
    if a.shape != b.shape:
        raise ValueError(f"{func}: a and b must have the same shape, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    denominator = float(np.max(np.abs(a) + np.abs(b)))
    if denominator == 0.0:
        return 0.0
    return float(np.max(np.abs(a - b))) / denominator
