"""Chapter 2 exercises: per-channel statistics, the training-mode forward, gamma/beta that undo it.

The expected answers come from PyTorch in float64 (the oracle); the
references are ``bncourse.batchnorm``. Every common mistake of the chapter
(the missing parentheses of the study notes, the unbiased variance, eps
outside the root, statistics over axis 0 only) is implemented so that the
learner's check recognises it. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/02_bn_equations.ipynb"


# --------------------------------------------------------------------------- shared

def _case(seed, shape=(8, 3), dtype="float64", eps=1e-5, max_loc=5.0, constant=False):
    """x with a different mean (up to ``max_loc``) and spread (0.1 to 10) per channel.

    With ``constant``, channel 0 holds one dyadic value everywhere (exact
    mean, variance exactly 0): only eps keeps the normalization finite.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=channels))
    loc = rng.uniform(-max_loc, max_loc, size=channels)
    x = loc.reshape(view) + scale.reshape(view) * rng.standard_normal(shape)
    if constant:
        x[:, 0] = 2.5
    gamma = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.5, 2.0, size=channels)
    beta = rng.normal(size=channels)
    return {"x": x.astype(dtype), "gamma": gamma.astype(dtype), "beta": beta.astype(dtype),
            "eps": eps}


def _axes(x):
    return (0, *range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _torch_stats(x):
    """Per-channel mean and biased variance from torch, in float64."""
    import torch

    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    dims = _axes(x)
    return t.mean(dim=dims).numpy(), t.var(dim=dims, unbiased=False).numpy()


# --------------------------------------------------------------------------- channel statistics

def _stats_case(seed, shape=(8, 3), dtype="float64"):
    return {"x": _case(seed, shape, dtype)["x"]}


def _stats_reference(x):
    from bncourse.batchnorm import batch_norm

    # With momentum 1 the running buffers become this batch's statistics; torch (and
    # bncourse) store the unbiased variance there, var * m / (m - 1), so undo that factor.
    m = x.size // x.shape[1]
    mean = np.zeros(x.shape[1], dtype=x.dtype)
    var = np.ones(x.shape[1], dtype=x.dtype)
    batch_norm(x, mean, var, training=True, momentum=1.0)
    return mean, (var * ((m - 1) / m)).astype(x.dtype)


def _stats_torch(x):
    mean, var = _torch_stats(x)
    return mean.astype(x.dtype), var.astype(x.dtype)


def _stats_mistake(axes=None, ddof=0):
    def mistake(x):
        ax = _axes(x) if axes is None else axes
        return x.mean(axis=ax), x.var(axis=ax, ddof=ddof)
    return mistake


_STATS_MISTAKES = [
    Mistake(hints.UNBIASED_VARIANCE, _stats_mistake(ddof=1)),
    Mistake(hints.WRONG_AXES, _stats_mistake(axes=0)),
    Mistake(hints.WRONG_AXES, _stats_mistake(axes=(0, 2))),
]


# --------------------------------------------------------------------------- forward

def _forward_reference(x, gamma, beta, eps):
    from bncourse.batchnorm import batchnorm_forward

    return batchnorm_forward(x, gamma, beta, eps)[0]


def _forward_torch(x, gamma, beta, eps):
    import torch
    import torch.nn.functional as F

    x_t, gamma_t, beta_t = (torch.from_numpy(np.asarray(a, dtype=np.float64))
                            for a in (x, gamma, beta))
    y = F.batch_norm(x_t, None, None, gamma_t, beta_t, training=True, eps=float(eps))
    return y.numpy().astype(x.dtype)


def _forward_mistake(kind):
    """The forward with one thing wrong."""
    def mistake(x, gamma, beta, eps):
        ax = (0,) if kind == "axis0" else _axes(x)
        if kind == "axis0" and x.ndim == 2:
            raise ValueError("for (N, C) input axis 0 is the right axis")
        mean = x.mean(axis=ax, keepdims=True)
        var = x.var(axis=ax, keepdims=True, ddof=1 if kind == "unbiased" else 0)
        if kind == "parentheses":
            x_hat = x - mean / np.sqrt(var + eps)
        elif kind == "eps-outside":
            x_hat = (x - mean) / (np.sqrt(var) + eps)
        elif kind == "no-eps":
            with np.errstate(divide="ignore", invalid="ignore"):
                x_hat = (x - mean) / np.sqrt(var)
        else:
            x_hat = (x - mean) / np.sqrt(var + eps)
        y = _view(gamma, x) * x_hat + _view(beta, x)
        if kind == "no-affine":
            y = x_hat
        return y.astype(x.dtype)
    return mistake


_FORWARD_MISTAKES = [
    Mistake(hints.MISSING_PARENTHESES, _forward_mistake("parentheses")),
    Mistake(hints.UNBIASED_VARIANCE, _forward_mistake("unbiased")),
    Mistake(hints.EPS_OUTSIDE_ROOT, _forward_mistake("eps-outside")),
    Mistake("eps belongs in the denominator, sqrt(var + eps): without it a constant channel "
            "(variance 0) gives 0 / 0 = NaN.", _forward_mistake("no-eps")),
    Mistake(hints.WRONG_AXES, _forward_mistake("axis0")),
    Mistake("finish with the scale and shift: y = gamma * x_hat + beta, gamma and beta "
            "viewed as (1, C, 1, ...) so that they act on axis 1.",
            _forward_mistake("no-affine")),
]


# --------------------------------------------------------------------------- undo

def _undo_case(seed, shape=(8, 3), dtype="float64", eps=1e-5):
    case = _case(seed, shape, dtype, eps)
    return {"x": case["x"], "eps": eps}


def _undo_reference(x, eps):
    mean, var = _stats_reference(x)
    return (np.sqrt(var.astype(np.float64) + eps).astype(x.dtype), mean)


def _undo_torch(x, eps):
    mean, var = _torch_stats(x)
    return np.sqrt(var + eps).astype(x.dtype), mean.astype(x.dtype)


def _undo_mistake(kind):
    def mistake(x, eps):
        mean, var = _torch_stats(x)
        if kind == "no-eps":
            gamma = np.sqrt(var)
        elif kind == "no-sqrt":
            gamma = var + eps
        elif kind == "unbiased":
            m = x.size // x.shape[1]
            gamma = np.sqrt(var * m / (m - 1) + eps)
        else:
            gamma = np.sqrt(var + eps)
        if kind == "swapped":
            gamma, mean = mean, gamma
        return gamma.astype(x.dtype), mean.astype(x.dtype)
    return mistake


_UNDO_MISTAKES = [
    Mistake("BN divided by sqrt(var + eps), not by sqrt(var): to undo it exactly, gamma must "
            "multiply by the same sqrt(var + eps).", _undo_mistake("no-eps")),
    Mistake("gamma is a standard deviation, the square root: sqrt(var + eps).",
            _undo_mistake("no-sqrt")),
    Mistake(hints.UNBIASED_VARIANCE, _undo_mistake("unbiased")),
    Mistake("return (gamma, beta) in this order: gamma = sqrt(var + eps) scales, beta = mean "
            "shifts.", _undo_mistake("swapped")),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch02-channel-stats",
        notebook=NOTEBOOK,
        function="channel_stats",
        points=1,
        reference=_stats_reference,
        expected=_stats_torch,
        make_case=_stats_case,
        visible=[dict(seed=0, note="(N, C): one mean per feature"),
                 dict(seed=1, shape=(4, 3, 5, 5), note="(N, C, H, W): one mean per channel"),
                 dict(seed=2, shape=(6, 2, 7), dtype="float32")],
        hidden=[dict(seed=201, shape=(2, 5)),
                dict(seed=202, shape=(3, 4, 2, 3, 2)),
                dict(seed=203, shape=(1, 3, 4), note="N=1: statistics over L only"),
                dict(seed=204, shape=(16, 1, 3, 3), dtype="float32"),
                dict(seed=205, shape=(5, 6, 4))],
        outputs=("mean", "var"),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_STATS_MISTAKES,
        stub='''import numpy as np


def channel_stats(x):
    """Per-channel mean and biased variance, as batch norm computes them in training.

    x: array of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), channels on
    axis 1. Each channel pools its m = x.size // C values over every other axis.
    Returns (mean, var), both of shape (C,) and in the dtype of x; var divides by m.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch02-bn-forward-train",
        notebook=NOTEBOOK,
        function="bn_forward_train",
        points=2,
        reference=_forward_reference,
        expected=_forward_torch,
        make_case=_case,
        visible=[dict(seed=0, note="(N, C)"),
                 dict(seed=1, shape=(4, 3, 5, 5), note="(N, C, H, W)"),
                 dict(seed=2, shape=(6, 2, 7), dtype="float32", eps=1e-3),
                 dict(seed=3, shape=(5, 3), eps=0.1, constant=True,
                      note="channel 0 is constant")],
        hidden=[dict(seed=211, shape=(2, 4), note="two values per channel"),
                dict(seed=212, shape=(3, 2, 2, 3, 2)),
                dict(seed=213, shape=(1, 3, 6), note="N=1: statistics over L only"),
                dict(seed=214, shape=(16, 5, 3, 3), dtype="float32"),
                dict(seed=215, shape=(8, 2, 4, 4), constant=True, eps=1e-5),
                dict(seed=216, shape=(32, 7), max_loc=50.0, eps=1e-2),
                dict(seed=217, shape=(4, 1, 2, 2, 2), dtype="float32", constant=True)],
        outputs=("y",),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_FORWARD_MISTAKES,
        stub='''import numpy as np


def bn_forward_train(x, gamma, beta, eps):
    """Training-mode batch norm: y = gamma * (x - mean) / sqrt(var + eps) + beta.

    x: array of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), channels on
    axis 1. mean and the biased var are this batch's statistics of each channel, over
    every other axis (m = x.size // C values). gamma, beta: shape (C,). eps: a float > 0.
    Returns y, the shape and dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch02-undo-params",
        notebook=NOTEBOOK,
        function="undo_params",
        points=1,
        reference=_undo_reference,
        expected=_undo_torch,
        make_case=_undo_case,
        visible=[dict(seed=0, note="(N, C)"),
                 dict(seed=1, shape=(4, 3, 5, 5), note="(N, C, H, W)"),
                 dict(seed=2, shape=(6, 2, 7), dtype="float32", eps=1e-3)],
        hidden=[dict(seed=221, shape=(2, 3)),
                dict(seed=222, shape=(3, 2, 2, 3, 2), eps=0.5),
                dict(seed=223, shape=(10, 4, 3), dtype="float32"),
                dict(seed=224, shape=(2, 6, 2, 2), eps=1e-2)],
        outputs=("gamma", "beta"),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_UNDO_MISTAKES,
        stub='''import numpy as np


def undo_params(x, eps):
    """The gamma and beta for which training-mode batch norm returns x unchanged.

    x: array of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), channels on
    axis 1; eps: the float > 0 batch norm adds to the variance.
    Returns (gamma, beta), both of shape (C,) in the dtype of x, such that
    gamma * (x - mean) / sqrt(var + eps) + beta == x (up to round-off) for this batch.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
