"""Chapter 4 exercises: the closed-form backward of batch norm, and a finite-difference check.

The expected answers come from PyTorch's autograd in float64 (the oracle);
the references are ``bncourse.batchnorm`` and ``bncourse.gradcheck``. Each
common mistake is implemented so that the learner's check can recognise it.
Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/04_backprop.ipynb"


# --------------------------------------------------------------------------- shared

def _bn_inputs(rng, shape, dtype, min_scale=0.3, max_scale=10.0, max_loc=5.0):
    """x with a different mean and spread per channel, gamma of both signs, dy ~ N(0, 1)."""
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    scale = np.exp(rng.uniform(np.log(min_scale), np.log(max_scale), size=channels))
    loc = rng.uniform(-max_loc, max_loc, size=channels)
    x = loc.reshape(view) + scale.reshape(view) * rng.standard_normal(shape)
    gamma = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.5, 2.0, size=channels)
    beta = rng.normal(size=channels)
    dy = rng.standard_normal(shape)
    return (x.astype(dtype), gamma.astype(dtype), beta.astype(dtype), dy.astype(dtype))


def _torch_gradients(x, gamma, beta, dy, eps):
    """dx, dgamma, dbeta of training-mode batch norm from torch's autograd, in float64."""
    import torch

    x_t, gamma_t, beta_t = (torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)
                            for a in (x, gamma, beta))
    y = torch.nn.functional.batch_norm(x_t, None, None, gamma_t, beta_t, training=True,
                                       eps=float(eps))
    y.backward(torch.tensor(np.asarray(dy, dtype=np.float64)))
    return tuple(t.grad.numpy() for t in (x_t, gamma_t, beta_t))


def _axes(x):
    return (0, *range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


# --------------------------------------------------------------------------- closed-form backward

def _backward_case(seed, shape=(4, 5), dtype="float64", eps=1e-5, min_scale=0.3):
    rng = np.random.default_rng(seed)
    x, gamma, _, dy = _bn_inputs(rng, tuple(shape), dtype, min_scale=min_scale)
    return {"dy": dy, "x": x, "gamma": gamma, "eps": eps}


def _backward_reference(dy, x, gamma, eps):
    from bncourse.batchnorm import batchnorm_backward, batchnorm_forward

    _, cache = batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
    return batchnorm_backward(dy, cache)


def _backward_torch(dy, x, gamma, eps):
    grads = _torch_gradients(x, gamma, np.zeros_like(gamma), dy, eps)
    return tuple(g.astype(x.dtype) for g in grads)


def _backward_mistake(paths=("mean", "var"), ddof=0, eps_outside=False, axes=None,
                      with_gamma=True):
    """The closed form with one thing wrong: a missing path, the variance, eps, axes, gamma."""
    def mistake(dy, x, gamma, eps):
        if axes is not None and x.ndim == 2:
            raise ValueError("for (N, C) input the per-feature axes are the right ones")
        ax = _axes(x) if axes is None else axes
        m = np.prod([x.shape[a] for a in ax])
        mean = x.mean(axis=ax, keepdims=True)
        var = x.var(axis=ax, keepdims=True, ddof=ddof)
        inv_std = 1.0 / (np.sqrt(var) + eps) if eps_outside else 1.0 / np.sqrt(var + eps)
        x_hat = (x - mean) * inv_std
        sum_dy = dy.sum(axis=ax, keepdims=True)
        sum_dy_x_hat = (dy * x_hat).sum(axis=ax, keepdims=True)
        inner = m * dy
        if "mean" in paths:
            inner = inner - sum_dy
        if "var" in paths:
            inner = inner - x_hat * sum_dy_x_hat
        scale = _view(gamma, x) * inv_std if with_gamma else inv_std
        dx = scale / m * inner
        full = _axes(x)
        x_hat_full = (x - x.mean(axis=full, keepdims=True)) / np.sqrt(
            x.var(axis=full, keepdims=True) + eps)
        dgamma = (dy * (x_hat if axes is None else x_hat_full)).sum(axis=full)
        return dx.astype(x.dtype), dgamma.astype(x.dtype), dy.sum(axis=full).astype(x.dtype)
    return mistake


_BACKWARD_MISTAKES = [
    Mistake("the mean and the variance depend on x too. dx = gamma * inv_std * dy is only the "
            "direct path; subtract the paths through the mean and the variance: "
            "dx = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma).",
            _backward_mistake(paths=())),
    Mistake("you have the path through the mean (the dbeta term) but not the one through the "
            "variance: also subtract x_hat * dgamma inside the parentheses.",
            _backward_mistake(paths=("mean",))),
    Mistake("you have the path through the variance (the x_hat * dgamma term) but not the one "
            "through the mean: also subtract dbeta = sum(dy) inside the parentheses.",
            _backward_mistake(paths=("var",))),
    Mistake(hints.UNBIASED_VARIANCE, _backward_mistake(ddof=1)),
    Mistake(hints.EPS_OUTSIDE_ROOT, _backward_mistake(eps_outside=True)),
    Mistake(hints.WRONG_AXES, _backward_mistake(axes=(0,))),
    Mistake("the scale gamma multiplies the gradient on its way back (dx_hat = gamma * dy): "
            "dx needs the factor gamma.", _backward_mistake(with_gamma=False)),
]


# --------------------------------------------------------------------------- finite differences

def _numerical_case(seed, shape=(4, 5), h=1e-5):
    rng = np.random.default_rng(seed)
    # Channel scales of at least 1: h stays small against the spread, so the centred
    # difference's h**2 error is far below the tolerance.
    x, gamma, beta, dy = _bn_inputs(rng, tuple(shape), "float64", min_scale=1.0)
    return {"x": x, "gamma": gamma, "beta": beta, "dy": dy, "h": h}


def _forward(x, gamma, beta, eps=1e-5):
    ax = _axes(x)
    x_hat = (x - x.mean(axis=ax, keepdims=True)) / np.sqrt(x.var(axis=ax, keepdims=True) + eps)
    return _view(gamma, x) * x_hat + _view(beta, x)


def _numerical_reference(x, gamma, beta, dy, h):
    from bncourse.batchnorm import batchnorm_forward
    from bncourse.gradcheck import numerical_gradient

    return (numerical_gradient(lambda v: batchnorm_forward(v, gamma, beta)[0], x, dy, h),
            numerical_gradient(lambda v: batchnorm_forward(x, v, beta)[0], gamma, dy, h),
            numerical_gradient(lambda v: batchnorm_forward(x, gamma, v)[0], beta, dy, h))


def _numerical_torch(x, gamma, beta, dy, h):
    return _torch_gradients(x, gamma, beta, dy, 1e-5)


def _difference_mistake(kind):
    """Finite differences done wrong: one-sided, without the 2, or ignoring dy."""
    def mistake(x, gamma, beta, dy, h):
        args = [x.copy(), gamma.copy(), beta.copy()]
        weights = np.ones_like(dy) if kind == "no-dy" else dy

        def loss():
            return float(np.sum(_forward(*args) * weights))

        grads = []
        for a in args:
            g = np.zeros_like(a)
            for i in np.ndindex(a.shape):
                old = a[i]
                a[i] = old + h
                plus = loss()
                a[i] = old - h if kind != "one-sided" else old
                minus = loss()
                a[i] = old
                g[i] = (plus - minus) / (h if kind in ("one-sided", "no-2") else 2 * h)
            grads.append(g)
        return tuple(grads)
    return mistake


_NUMERICAL_MISTAKES = [
    Mistake("use the centred difference (L(x + h) - L(x - h)) / (2 h). The one-sided "
            "(L(x + h) - L(x)) / h has an error of order h, too large for a gradient check; "
            "the centred one's is of order h**2.", _difference_mistake("one-sided")),
    Mistake("the centred difference divides by 2 h: the two evaluations are 2 h apart.",
            _difference_mistake("no-2")),
    Mistake("differentiate L = sum(y * dy): dy weights each output. sum(y) alone does not "
            "depend on x at all for batch norm (each channel of y sums to m * beta).",
            _difference_mistake("no-dy")),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch04-bn-backward",
        notebook=NOTEBOOK,
        function="bn_backward",
        points=3,
        reference=_backward_reference,
        expected=_backward_torch,
        make_case=_backward_case,
        visible=[dict(seed=0, note="N=4, D=5, as in the chapter's gradient check"),
                 dict(seed=1, shape=(6, 3, 4, 4), note="(N, C, H, W): per-channel statistics"),
                 dict(seed=2, shape=(8, 2, 5), dtype="float32", eps=1e-3)],
        hidden=[dict(seed=401, shape=(2, 3, 2, 2, 3)),
                dict(seed=402, shape=(2, 1), note="two values per channel"),
                dict(seed=403, shape=(16, 7), eps=0.1, min_scale=0.05),
                dict(seed=404, shape=(3, 4, 6), dtype="float32"),
                dict(seed=405, shape=(5, 3, 3, 3), dtype="float32", eps=1e-4),
                dict(seed=406, shape=(1, 2, 9), note="N=1: statistics over L only"),
                dict(seed=407, shape=(32, 1, 2, 2), eps=1e-2)],
        outputs=("dx", "dgamma", "dbeta"),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_BACKWARD_MISTAKES,
        stub='''import numpy as np


def bn_backward(dy, x, gamma, eps):
    """Gradients of training-mode batch norm y = gamma * (x - mean) / sqrt(var + eps) + beta.

    x, dy: arrays of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W),
    channels on axis 1; mean and the biased var are taken per channel over every
    other axis (m = x.size // C values). gamma: shape (C,). eps: a float > 0.
    beta does not change any of the three gradients, so it is not an argument.

    Returns (dx, dgamma, dbeta): dx the shape of x, dgamma and dbeta shape (C,),
    all in the dtype of x. Use the closed form, not a loop over entries.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch04-numerical-gradients",
        notebook=NOTEBOOK,
        function="bn_numerical_gradients",
        points=2,
        reference=_numerical_reference,
        expected=_numerical_torch,
        make_case=_numerical_case,
        visible=[dict(seed=0), dict(seed=1, shape=(3, 2, 4))],
        hidden=[dict(seed=411, shape=(3, 3)),
                dict(seed=412, shape=(5, 2, 3)),
                dict(seed=413, shape=(2, 2, 2, 2)),
                dict(seed=414, shape=(2, 2, 1, 2, 2)),
                dict(seed=415, shape=(6, 1), h=3e-6)],
        outputs=("dx", "dgamma", "dbeta"),
        rtol=1e-7,
        mistakes=_NUMERICAL_MISTAKES,
        stub='''import numpy as np


def bn_numerical_gradients(x, gamma, beta, dy, h):
    """Gradients of L = sum(y * dy) by centred finite differences, y = batch norm of x.

    y = gamma * (x - mean) / sqrt(var + 1e-5) + beta, training mode: mean and the
    biased var per channel (axis 1) over every other axis. x, dy: float64 arrays of
    shape (N, C, ...); gamma, beta: shape (C,); h: the step, a small float.

    For every entry v of x, gamma and beta:
        dL/dv ~ (L(v + h) - L(v - h)) / (2 h)
    Returns (dx, dgamma, dbeta), shapes of x, gamma, beta. The inputs must be
    exactly unchanged afterwards: work on copies, or restore each entry you change.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
