"""Check a batch-norm forward pass, or a whole layer, against PyTorch on 2-D to 5-D input.

The oracle is PyTorch in float64: ``torch.nn.functional.batch_norm`` for a
training-mode forward function, ``torch.nn.BatchNorm1d/2d/3d`` for a layer.
Every comparison is a relative error ``max|a - b| / max(|a| + |b|)`` (see
:func:`bncourse.gradcheck.relative_error`), so round-off in float64 shows up as
about ``1e-16`` and a real mistake as something near ``1e-2`` to ``1``.

Shape letters: N batch, C channels (axis 1), m = values per channel.

Public API
----------
``SHAPES``
    One input shape per rank: ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``,
    ``(N, C, D, H, W)``, all with C = 4.
``bn_case(shape, seed=0, dtype=np.float64) -> (x, gamma, beta)``
    A random input whose channels have different means (-4 to 4) and spreads
    (0.5 to 3), so that a forward which forgets to subtract the mean, divides
    by the wrong spread or mixes channels is caught.
``forward_errors(forward, shapes=SHAPES, eps=1e-5, seed=0) -> dict[shape, float]``
    ``forward(x, gamma, beta, eps) -> y`` against
    ``torch.nn.functional.batch_norm(..., training=True)``.
``layer_errors(make_layer, shapes=SHAPES, steps=3, momentum=0.1, eps=1e-5, seed=0) -> dict``
    A NumPy layer with the :class:`bncourse.batchnorm.BatchNorm` interface
    against torch's module over ``steps`` training batches and one
    evaluation batch: output, running mean and running variance.

Example
-------
>>> from bncourse.batchnorm import batchnorm_forward
>>> errors = forward_errors(lambda x, g, b, eps: batchnorm_forward(x, g, b, eps)[0])
>>> sorted(errors) == sorted(SHAPES), max(errors.values()) < 1e-14
(True, True)
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from bncourse._checks import check_int, check_positive, fail
from bncourse.gradcheck import relative_error

__all__ = ["SHAPES", "bn_case", "forward_errors", "layer_errors"]

SHAPES = ((32, 4), (8, 4, 12), (4, 4, 6, 5), (3, 4, 3, 4, 5))


def _check_shape(func: str, shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not 2 <= len(shape) <= 5 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in shape):
        fail(func, "shape", "a tuple of 2 to 5 positive ints (N, C, ...)", repr(shape))
    if int(np.prod(shape)) // shape[1] < 2:
        fail(func, "shape", "more than 1 value per channel", repr(shape))
    return shape



def bn_case(shape, seed: int = 0, dtype=np.float64):
    """Random ``(x, gamma, beta)`` for a batch-norm test with distinct per-channel statistics.

    Channel ``c`` of ``x`` is drawn from a normal distribution whose mean is
    spread evenly over ``[-4, 4]`` and whose std is spread over ``[0.5, 3]``
    across channels; ``gamma`` is drawn from ``U(0.5, 2)`` and ``beta`` from
    ``N(0, 1)``.

    Args:
        shape: ``(N, C, ...)``, 2-D to 5-D, more than one value per channel.
        seed: seeds ``np.random.default_rng``.
        dtype: ``np.float32`` or ``np.float64`` for all three arrays.

    Returns:
        ``x`` of ``shape``, ``gamma`` and ``beta`` of shape ``(C,)``.

    Raises:
        TypeError, ValueError: a malformed shape, seed or dtype.
    """
    func = "bn_case"
    shape = _check_shape(func, shape)
    seed = check_int(func, "seed", seed, minimum=0)
    if np.dtype(dtype) not in (np.float32, np.float64):
        fail(func, "dtype", "float32 or float64", str(np.dtype(dtype)))
    rng = np.random.default_rng(seed)
    c = shape[1]
    view = (1, c) + (1,) * (len(shape) - 2)
    mean = np.linspace(-4.0, 4.0, c).reshape(view)
    std = np.linspace(0.5, 3.0, c).reshape(view)
    x = mean + std * rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 2.0, size=c)
    beta = rng.standard_normal(c)
    return x.astype(dtype), gamma.astype(dtype), beta.astype(dtype)


def forward_errors(forward: Callable, shapes=SHAPES, eps: float = 1e-5,
                   seed: int = 0) -> dict[tuple, float]:
    """Relative error of a training-mode forward against ``torch.nn.functional.batch_norm``.

    For each shape, ``x, gamma, beta = bn_case(shape, seed)`` (float64) and
    ``forward(x, gamma, beta, eps)`` is compared with torch's output computed
    in float64 with batch statistics. ``forward`` gets copies, so it cannot
    change the inputs torch sees.

    Args:
        forward: ``forward(x, gamma, beta, eps) -> y`` with ``y`` shaped like ``x``.
        shapes: input shapes to try (default :data:`SHAPES`, one per rank).
        eps: the epsilon passed to both.
        seed: seed of the inputs.

    Returns:
        ``{shape: relative error}``; ``inf`` where ``forward`` raised, returned
        something of another shape, or returned non-finite values, so one
        broken rank does not hide the others.

    Raises:
        TypeError, ValueError: ``forward`` is not callable, a malformed shape,
        seed, or ``eps <= 0``.
    """
    import torch
    import torch.nn.functional as F

    func = "forward_errors"
    if not callable(forward):
        fail(func, "forward", "a callable forward(x, gamma, beta, eps) -> y",
              type(forward).__name__, TypeError)
    eps = check_positive(func, "eps", eps)
    errors = {}
    for shape in shapes:
        x, gamma, beta = bn_case(shape, seed)
        want = F.batch_norm(torch.from_numpy(x), None, None, torch.from_numpy(gamma),
                            torch.from_numpy(beta), training=True, eps=eps).numpy()
        try:
            got = np.asarray(forward(x.copy(), gamma.copy(), beta.copy(), eps), dtype=np.float64)
        except Exception:  # noqa: BLE001 - a learner's bug may raise anything
            errors[shape] = float("inf")
            continue
        ok = got.shape == want.shape and bool(np.all(np.isfinite(got)))
        errors[shape] = relative_error(got, want) if ok else float("inf")
    return errors


def layer_errors(make_layer: Callable, shapes=SHAPES, steps: int = 3, momentum: float = 0.1,
                 eps: float = 1e-5, seed: int = 0) -> dict[tuple, dict[str, float]]:
    """Relative errors of a NumPy BatchNorm layer against ``torch.nn.BatchNorm1d/2d/3d``.

    For each shape the two layers (same ``num_features = C``, ``eps``,
    ``momentum``, affine with the same random ``weight``/``bias``, float64)
    see ``steps`` training batches (``bn_case(shape, seed + t)``), then one
    evaluation batch. The errors are the largest over the steps.

    Args:
        make_layer: ``make_layer(num_features, eps=..., momentum=...)``
            returning an object with ``weight``, ``bias``, ``running_mean``,
            ``running_var``, ``train()``, ``eval()`` and ``__call__(x)``, as
            :class:`bncourse.batchnorm.BatchNorm`.
        shapes: input shapes (2-D and 3-D go to BatchNorm1d, 4-D to
            BatchNorm2d, 5-D to BatchNorm3d).
        steps: number of training batches (>= 1).
        momentum, eps: passed to both layers.
        seed: first seed of the batches.

    Returns:
        ``{shape: {"train output": e, "running mean": e, "running var": e,
        "eval output": e}}``.

    Raises:
        TypeError, ValueError: a non-callable ``make_layer``, ``steps < 1``,
        bad ``eps``/``momentum``/``seed`` or a malformed shape.
    """
    import torch
    from torch import nn

    func = "layer_errors"
    if not callable(make_layer):
        fail(func, "make_layer", "a callable num_features -> layer",
              type(make_layer).__name__, TypeError)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        fail(func, "steps", "an int >= 1", repr(steps))
    eps = check_positive(func, "eps", eps)
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) \
            or not 0.0 <= momentum <= 1.0:
        fail(func, "momentum", "a float in [0, 1]", repr(momentum))
    seed = check_int(func, "seed", seed, minimum=0)
    torch_class = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
    result = {}
    for shape in shapes:
        shape = _check_shape(func, shape)
        c = shape[1]
        ours = make_layer(c, eps=eps, momentum=momentum)
        theirs = torch_class[len(shape)](c, eps=eps, momentum=momentum, dtype=torch.float64)
        _, gamma, beta = bn_case(shape, seed)
        ours.weight[...] = gamma
        ours.bias[...] = beta
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(gamma))
            theirs.bias.copy_(torch.from_numpy(beta))
        errors = {"train output": 0.0, "running mean": 0.0, "running var": 0.0}
        ours.train()
        theirs.train()
        for t in range(steps):
            x, _, _ = bn_case(shape, seed + t)
            with torch.no_grad():
                want = theirs(torch.from_numpy(x)).numpy()
            errors["train output"] = max(errors["train output"], relative_error(ours(x), want))
            errors["running mean"] = max(errors["running mean"], relative_error(
                ours.running_mean, theirs.running_mean.numpy()))
            errors["running var"] = max(errors["running var"], relative_error(
                ours.running_var, theirs.running_var.numpy()))
        ours.eval()
        theirs.eval()
        x, _, _ = bn_case(shape, seed + steps)
        with torch.no_grad():
            want = theirs(torch.from_numpy(x)).numpy()
        errors["eval output"] = relative_error(ours(x), want)
        result[shape] = errors
    return result
