"""Exponentially weighted averages, the recurrence behind BatchNorm's running statistics.

Shapes: ``values`` is ``(T, *F)``: T steps along axis 0, each step an array
of shape ``F`` (empty for a scalar series). The result has the same shape.

::

    v_0 = 0
    v_t = beta * v_{t-1} + (1 - beta) * theta_t          t = 1, ..., T
    v_t / (1 - beta**t)                                  with bias correction

Unrolled, ``v_t = (1 - beta) * sum_k beta**(t - k) * theta_k``: the weights
sum to ``1 - beta**t``, not 1, so the early averages are pulled toward the
starting value 0. Dividing by that sum removes the pull. PyTorch's
``momentum`` is ``1 - beta``, with the running buffers starting at 0 (mean)
and 1 (variance) instead of 0 and without bias correction.
"""

from __future__ import annotations

import numpy as np

from bncourse._checks import check_array, check_fraction

__all__ = ["ewa"]


def ewa(values, beta, bias_correction=False):
    """Exponentially weighted averages ``v_t = beta * v_{t-1} + (1 - beta) * theta_t``, ``v_0 = 0``.

    Parameters
    ----------
    values : ndarray, shape (T, *F), float32 or float64
        The series ``theta_1, ..., theta_T`` along axis 0. Not modified.
    beta : float in [0, 1)
        Weight of the past (decay). ``beta = 1 - momentum`` in PyTorch's terms.
    bias_correction : bool
        Divide ``v_t`` by ``1 - beta**t``.

    Returns
    -------
    ndarray, shape and dtype of ``values``
        ``v_1, ..., v_T``.

    Raises
    ------
    TypeError
        ``values`` is not a float ndarray, ``beta`` is not a number,
        ``bias_correction`` is not a bool.
    ValueError
        ``values`` is 0-D or not finite; ``beta`` is outside [0, 1).

    Examples
    --------
    >>> ewa(np.array([1.0, 1.0, 1.0]), 0.5)
    array([0.5  , 0.75 , 0.875])
    >>> ewa(np.array([1.0, 1.0, 1.0]), 0.5, bias_correction=True)
    array([1., 1., 1.])
    """
    func = "ewa"
    values = check_array(func, "values", values, min_ndim=1)
    beta = check_fraction(func, "beta", beta)
    if not isinstance(bias_correction, (bool, np.bool_)):
        raise TypeError(f"{func}: bias_correction must be a bool, got "
                        f"{type(bias_correction).__name__} {bias_correction!r}")
    out = np.empty_like(values)
    v = np.zeros(values.shape[1:], dtype=values.dtype)
    for t in range(values.shape[0]):
        v = beta * v + (1.0 - beta) * values[t]
        out[t] = v / (1.0 - beta ** (t + 1)) if bias_correction else v
    return out
