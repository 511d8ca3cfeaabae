"""Run an expensive probe on only some of the record steps of a training run.

``bncourse.lab.training.train`` calls every probe at the same record steps
(``record_every``). A cheap probe (percentiles) is worth recording often; an
expensive one (``bncourse.experiments.ics.ics_probe`` or ``bncourse.experiments.landscape.smoothness_probe``,
several extra forward and backward passes each) only now and then. ``every(probe, n)``
runs ``probe`` on the 1st, (n+1)-th, (2n+1)-th ... call and records NaN of the
same shape on the others, so all records of the run still stack into one array.

Public API
----------
``every(probe, n) -> callable(model, batch)``
    With ``record_every=r`` the wrapped probe measures at steps ``0, n*r, 2n*r, ...``.
``measured(record_steps, values) -> (steps, values)``
    Keep only the rows that were measured (not all NaN): ``(R,), (R, ...) -> (R',), (R', ...)``.

Examples
--------
>>> import numpy as np
>>> probe = every(lambda model, batch: np.array([1.0, 2.0]), 3)
>>> records = np.array([probe(None, None) for _ in range(4)])
>>> records
array([[ 1.,  2.],
       [nan, nan],
       [nan, nan],
       [ 1.,  2.]])
>>> steps, values = measured([0, 10, 20, 30], records)
>>> steps.tolist(), values.shape
([0, 30], (2, 2))
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
import torch
from torch import nn

from bncourse._checks import fail

__all__ = ["Preserved", "every", "measured"]


class _Every:
    def __init__(self, probe: Callable, n: int):
        self.probe, self.n = probe, n
        self.calls = 0
        self.shape = None

    def __call__(self, model, batch):
        k = self.calls
        self.calls += 1
        if k % self.n == 0 or self.shape is None:
            value = np.asarray(self.probe(model, batch), dtype=np.float64)
            self.shape = value.shape
            return value
        return np.full(self.shape, np.nan)


def every(probe: Callable, n: int) -> Callable:
    """Wrap ``probe`` so that it runs on every ``n``-th call only (NaN of its shape otherwise).

    Parameters
    ----------
    probe : callable(model, batch) -> float | array
    n : int >= 1

    Returns
    -------
    callable(model, batch) -> ndarray. Make a new wrapper for every training
    run: it counts its calls.

    Raises
    ------
    TypeError / ValueError
        For a non-callable ``probe`` or ``n`` that is not a positive int.
    """
    if not callable(probe):
        fail("every", "probe", "a callable (model, batch) -> value", type(probe).__name__,
              TypeError)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        fail("every", "n", "a positive int", f"{type(n).__name__} {n!r}", TypeError)
    if n < 1:
        fail("every", "n", "a positive int", repr(n))
    return _Every(probe, int(n))


def measured(record_steps, values):
    """The record steps and rows where a thinned probe measured (rows not entirely NaN).

    Parameters
    ----------
    record_steps : array-like, shape (R,)
        ``History.record_steps`` of one run.
    values : array-like, shape (R, ...)
        ``History.records[name]`` of the same run.

    Returns
    -------
    (steps (R',), values (R', ...))

    Raises
    ------
    ValueError
        When ``values`` does not have one row per record step.
    """
    steps = np.asarray(record_steps)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim < 1 or v.shape[0] != steps.shape[0]:
        fail("measured", "values", f"an array with {steps.shape[0]} rows (one per record step)",
              f"shape {v.shape}")
    rows = ~np.all(np.isnan(v.reshape(v.shape[0], -1)), axis=1)
    return steps[rows], v[rows]


class Preserved:
    """Context manager: restore parameters, grads, buffers, modes and the RNG after a probe.

    A probe may step the weights, run forwards that update BN buffers and
    draw dropout masks; on exit the model and torch's global generator are
    as they were on entry, so the probe leaves the training run unchanged.

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> before = model.weight.detach().clone()
    >>> with Preserved(model):
    ...     _ = model.weight.data.add_(1.0)
    >>> bool(torch.equal(model.weight, before))
    True
    """

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        m = self.model
        self.params = [(p, p.detach().clone(), None if p.grad is None else p.grad.clone())
                       for p in m.parameters()]
        self.buffers = [(b, b.clone()) for b in m.buffers()]
        self.modes = [(mod, mod.training) for mod in m.modules()]
        self.rng = torch.get_rng_state()
        self.grad_enabled = torch.is_grad_enabled()
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for p, data, grad in self.params:
                p.copy_(data)
                p.grad = grad
            for b, data in self.buffers:
                b.copy_(data)
        for mod, mode in self.modes:
            mod.training = mode
        torch.set_rng_state(self.rng)
        torch.set_grad_enabled(self.grad_enabled)
        return False
