"""How much a layer's input distribution moves during training: percentiles on fixed data.

Ioffe and Szegedy's Figure 1 follows the 15th, 50th and 85th percentiles of
one sigmoid's input over training. Computed on each training mini-batch, such
percentiles also jump from batch to batch because the *samples* change; that
sampling noise is not covariate shift. Here the percentiles are computed on
one fixed reference batch ``x_ref`` at every record step, so what moves them
is the network alone: its weights, BN's normalization, and any noise the
network injects itself (``bncourse.noisy_bn``).

Shape letters: T record steps, Q percentiles, C units of the layer, M samples
in the reference batch.

Public API
----------
``unit_percentiles(z, q=(15, 50, 85)) -> ndarray (Q, C)``
    Percentiles over the samples (axis 0) of each unit of ``z (M, C)``
    (``numpy.percentile``, linear interpolation).
``percentile_drift(p) -> float``
    Mean absolute change between consecutive records,
    ``mean_{t, q, c} |p[t+1, q, c] - p[t, q, c]|`` for ``p (T, Q, C)`` (or
    ``(T, Q)`` for one unit), in the unit of the percentiles.
``reference_percentiles(module, x_ref, q=(15, 50, 85), where="input")``
    A probe for ``bncourse.lab.training.train``: forwards ``x_ref`` through the
    model in its current mode (training: BN normalizes with the statistics of
    ``x_ref``), captures the input (or output) of ``module`` and records
    ``unit_percentiles`` of it, shape ``(Q, C)``. The model's buffers (BN
    running statistics) and torch's global random state are restored
    afterwards, so the training run is unchanged.

Examples
--------
>>> import numpy as np
>>> z = np.arange(12.0).reshape(6, 2)            # 6 samples, 2 units
>>> unit_percentiles(z, q=(0, 50, 100))
array([[ 0.,  1.],
       [ 5.,  6.],
       [10., 11.]])
>>> p = np.array([[0.0, 1.0], [0.5, 1.0], [0.5, 3.0]])   # T=3 records, Q=2, one unit
>>> float(percentile_drift(p))                           # (0.5 + 0 + 0 + 2) / 4
0.625
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bncourse._checks import fail

__all__ = ["unit_percentiles", "percentile_drift", "reference_percentiles"]


def _check_q(func: str, q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)) or np.any((q < 0) | (q > 100)):
        fail(func, "q", "a non-empty 1-D sequence of numbers in [0, 100]", repr(q.tolist()))
    return q


def unit_percentiles(z, q=(15, 50, 85)) -> np.ndarray:
    """Percentiles ``q`` (in %) over the samples of every unit: ``(M, C) -> (Q, C)``.

    Parameters
    ----------
    z : array-like, shape (M, C) or (M,)
        M samples of C units (a 1-D input is one unit).
    q : sequence of float in [0, 100]

    Returns
    -------
    ndarray float64, shape (Q, C) (or (Q,) for 1-D ``z``)

    Raises
    ------
    ValueError
        For an empty or non-finite ``z``, more than 2 dimensions, or a bad ``q``.
    """
    func = "unit_percentiles"
    q = _check_q(func, q)
    z = np.asarray(z, dtype=np.float64)
    if z.ndim not in (1, 2) or z.shape[0] == 0:
        fail(func, "z", "a non-empty (M, C) or (M,) array", f"shape {z.shape}")
    if not np.all(np.isfinite(z)):
        fail(func, "z", "finite (no NaN or inf)", "non-finite values")
    return np.percentile(z, q, axis=0)


def percentile_drift(p) -> float:
    """Mean absolute step-to-step change of tracked percentiles.

    ``drift = mean over t, q, c of |p[t+1, q, c] - p[t, q, c]|``.

    Parameters
    ----------
    p : array-like, shape (T, Q, C) or (T, Q), T >= 2
        Percentiles at T consecutive record steps.

    Returns
    -------
    float, in the unit of ``p``.

    Raises
    ------
    ValueError
        For fewer than 2 records, a 1-D or >3-D array, or NaN values.
    """
    func = "percentile_drift"
    p = np.asarray(p, dtype=np.float64)
    if p.ndim not in (2, 3) or p.shape[0] < 2:
        fail(func, "p", "an array (T, Q, C) or (T, Q) with T >= 2 records", f"shape {p.shape}")
    if not np.all(np.isfinite(p)):
        fail(func, "p", "finite (no NaN or inf; a diverged run has none)", "non-finite values")
    return float(np.mean(np.abs(np.diff(p, axis=0))))


class _ReferencePercentiles:
    def __init__(self, module, x_ref: torch.Tensor, q: np.ndarray, where: str):
        self.module, self.x_ref, self.q, self.where = module, x_ref, q, where

    def _target(self, model: nn.Module) -> nn.Module:
        if isinstance(self.module, nn.Module):
            return self.module
        try:
            return model.get_submodule(self.module)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            fail("reference_percentiles", "module", f"a submodule name (one of {names})",
                  repr(self.module))

    def __call__(self, model: nn.Module, batch):
        captured = []

        def hook(mod, inputs, output):
            captured.append((inputs[0] if self.where == "input" else output).detach())

        handle = self._target(model).register_forward_hook(hook)
        buffers = [(b, b.clone()) for b in model.buffers()]
        rng = torch.get_rng_state()
        try:
            with torch.no_grad():
                model(self.x_ref)
        finally:
            handle.remove()
            with torch.no_grad():                   # BN running statistics stay as they were
                for b, data in buffers:
                    b.copy_(data)
            torch.set_rng_state(rng)
        z = captured[0]
        return unit_percentiles(z.reshape(z.shape[0], z.shape[1], -1).transpose(1, 2)
                                .reshape(-1, z.shape[1]).double().numpy(), self.q)


def reference_percentiles(module, x_ref: torch.Tensor, q=(15, 50, 85), where: str = "input"):
    """Probe: percentiles of ``module``'s input/output on the fixed batch ``x_ref``, ``(Q, C)``.

    Parameters
    ----------
    module : str or nn.Module
        E.g. ``"act3"``: the input of the third activation is the
        pre-activation (after BN, if any) of the third hidden layer.
    x_ref : torch.Tensor, shape (M, ...)
        A fixed batch, e.g. the first 500 training samples.
    q : sequence of float in [0, 100]
    where : {"input", "output"}

    Returns
    -------
    callable(model, batch) -> ndarray (Q, C); for a conv layer's output
    ``(M, C, H, W)`` the percentiles pool the M*H*W values of each channel.

    >>> import torch
    >>> probe = reference_percentiles("act3", torch.zeros(4, 64))
    """
    func = "reference_percentiles"
    q = _check_q(func, q)
    if where not in ("input", "output"):
        fail(func, "where", "'input' or 'output'", repr(where))
    if not isinstance(x_ref, torch.Tensor) or x_ref.dim() < 1 or x_ref.shape[0] < 1:
        fail(func, "x_ref", "a non-empty torch.Tensor batch", type(x_ref).__name__, TypeError)
    if not isinstance(module, (str, nn.Module)):
        fail(func, "module", "a submodule name or an nn.Module", type(module).__name__,
              TypeError)
    return _ReferencePercentiles(module, x_ref, q, where)
