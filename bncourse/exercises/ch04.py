"""Chapter 4 exercises: the backward of batch norm (closed form and node by node), a
finite-difference check of any function, and the capstone (``capstone``).

The expected answers come from PyTorch's autograd in float64 (the oracle);
the references are ``bncourse.batchnorm`` and ``bncourse.gradcheck``. The
finite differences are graded through a driver that hands the learner's
function each case's f (batch norm, and functions that are not) and counts
its calls, so an analytic gradient does not pass. Each
common mistake is implemented so that the learner's check can recognise it.
Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.capstone import CAPSTONE
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
            "direct path; the paths through the mean and through the variance add two more "
            "terms.",
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


# --------------------------------------------------------------------------- staged backward

#: The nodes of the graph whose gradients the staged backward returns, in graph order.
_NODES = ("dx_hat", "dstd", "dvar", "dxc", "dmean", "dx", "dgamma", "dbeta")


def _staged_torch(dy, x, gamma, eps):
    """The gradient at every node of the graph, from torch's autograd in float64."""
    import torch

    dims = _axes(x)
    x_t = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    g_t = torch.tensor(np.asarray(gamma, dtype=np.float64), requires_grad=True)
    b_t = torch.zeros_like(g_t, requires_grad=True)
    view = (1, -1) + (1,) * (x.ndim - 2)
    mean = x_t.mean(dim=dims, keepdim=True)
    xc = x_t - mean
    var = (xc * xc).mean(dim=dims, keepdim=True)
    std = torch.sqrt(var + float(eps))
    x_hat = xc / std
    for node in (mean, xc, var, std, x_hat):
        node.retain_grad()
    y = g_t.reshape(view) * x_hat + b_t.reshape(view)
    y.backward(torch.tensor(np.asarray(dy, dtype=np.float64)))
    grads = {"dx_hat": x_hat.grad, "dstd": std.grad.reshape(-1), "dvar": var.grad.reshape(-1),
             "dxc": xc.grad, "dmean": mean.grad.reshape(-1), "dx": x_t.grad,
             "dgamma": g_t.grad, "dbeta": b_t.grad}
    return {k: grads[k].numpy().astype(x.dtype) for k in _NODES}


def _staged_reference(dy, x, gamma, eps):
    """bncourse's graph backward, whose intermediate gradients are the nodes'."""
    from bncourse.batchnorm import batchnorm_backward_graph, batchnorm_forward

    _, cache = batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
    dx, dgamma, dbeta, nodes = batchnorm_backward_graph(dy, cache, return_nodes=True)
    return dict(nodes, dx=dx, dgamma=dgamma, dbeta=dbeta)


def _staged_mistake(kind):
    """The node-by-node backward with one link of the chain wrong."""
    def mistake(dy, x, gamma, eps):
        ax = _axes(x)
        m = x.size // x.shape[1]
        mean = x.mean(axis=ax, keepdims=True)
        xc = x - mean
        var = (xc * xc).sum(axis=ax, keepdims=True) / (m - (kind == "unbiased"))
        std = np.sqrt(var + eps)
        x_hat = xc / std
        dx_hat = dy * (_view(gamma, x) if kind != "no-gamma" else 1.0)
        dstd = -(dx_hat * xc).sum(axis=ax, keepdims=True) / std ** 2
        if kind == "dstd-sign":
            dstd = -dstd
        dvar = dstd if kind == "dvar-chain" else dstd / (2 * std)
        dxc = dx_hat / std
        if kind != "no-var-path":
            dxc = dxc + 2 * xc * dvar / (m - (kind == "unbiased"))
        dmean = -dxc.sum(axis=ax, keepdims=True)
        dx = dxc if kind == "no-mean-path" else dxc + dmean / m
        out = {"dx_hat": dx_hat, "dstd": dstd, "dvar": dvar, "dxc": dxc, "dmean": dmean,
               "dx": dx, "dgamma": (dy * x_hat).sum(axis=ax), "dbeta": dy.sum(axis=ax)}
        return {k: np.reshape(out[k], (-1,) if k in ("dstd", "dvar", "dmean") else
                              np.shape(out[k])).astype(x.dtype) for k in _NODES}
    return mistake


_STAGED_MISTAKES = [
    Mistake("x_hat reaches y through the scale: dx_hat = gamma * dy, not dy.",
            _staged_mistake("no-gamma")),
    Mistake("x_hat = xc / std decreases when std grows: d(x_hat)/d(std) = -xc / std**2, "
            "so dstd carries a minus sign.", _staged_mistake("dstd-sign")),
    Mistake("std = sqrt(var + eps): dvar = dstd * d(std)/d(var), and that derivative is "
            "not 1.", _staged_mistake("dvar-chain")),
    Mistake("xc feeds two nodes, x_hat and var: dxc is the sum of the gradients that come "
            "back along both edges.", _staged_mistake("no-var-path")),
    Mistake("x feeds two nodes, xc and the mean: dx adds the gradient that comes back "
            "through the mean, spread over the m values it averaged.",
            _staged_mistake("no-mean-path")),
    Mistake(hints.UNBIASED_VARIANCE, _staged_mistake("unbiased")),
]


# --------------------------------------------------------------------------- finite differences

#: The functions f the finite-difference exercise is graded on: batch norm (of x, or of
#: gamma with x fixed) and functions that are not batch norm at all, so that an answer
#: computed from batch norm's analytic gradient fails.
_FUNCTIONS = ("batch_norm", "batch_norm_gamma", "tanh_linear", "softmax", "layer_norm",
              "sine")


def _numerical_case(seed, kind="batch_norm", shape=(4, 5), h=1e-5, out=3):
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    # Channel scales of at least 1: h stays small against the spread, so the centred
    # difference's h**2 error is far below the tolerance.
    params = {}
    if kind.startswith("batch_norm"):
        x, gamma, beta, _ = _bn_inputs(rng, shape, "float64", min_scale=1.0)
    if kind == "batch_norm":
        params = {"gamma": gamma, "beta": beta}
    elif kind == "batch_norm_gamma":
        params, x = {"x": x, "beta": beta}, gamma
    elif kind == "tanh_linear":
        x = rng.standard_normal(shape)
        params = {"w": rng.standard_normal((shape[-1], out)) / np.sqrt(shape[-1])}
    else:
        x = rng.standard_normal(shape) * (1.0 if kind != "sine" else 2.0)
    out_shape = {"batch_norm_gamma": np.shape(params.get("x")),
                 "tanh_linear": shape[:-1] + (out,)}.get(kind, np.shape(x))
    return {"kind": kind, "x": x, "dy": rng.standard_normal(out_shape), "h": h,
            "params": params}


def _run_numerical(impl, kind, x, dy, h, params):
    """Give ``impl`` the function f of this case (NumPy code), counting its calls."""
    import numpy as np

    calls = [0]

    def f(v):
        calls[0] += 1
        v = np.asarray(v, dtype=np.float64)
        if kind in ("batch_norm", "batch_norm_gamma"):
            x_, gamma = (v, params["gamma"]) if kind == "batch_norm" else (params["x"], v)
            axes = (0,) + tuple(range(2, x_.ndim))
            view = (1, -1) + (1,) * (x_.ndim - 2)
            x_hat = (x_ - x_.mean(axis=axes, keepdims=True)) / np.sqrt(
                x_.var(axis=axes, keepdims=True) + 1e-5)
            return gamma.reshape(view) * x_hat + params["beta"].reshape(view)
        if kind == "tanh_linear":
            return np.tanh(v @ params["w"])
        if kind == "softmax":
            e = np.exp(v - v.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        if kind == "layer_norm":
            return (v - v.mean(axis=-1, keepdims=True)) / np.sqrt(
                v.var(axis=-1, keepdims=True) + 1e-5)
        if kind == "sine":
            return np.sin(v) * v
        raise ValueError("unknown function " + repr(kind))

    grad = impl(f, x, dy, h)
    return {"grad": np.asarray(grad), "calls": calls[0]}


def _numerical_reference(f, x, dy, h):
    from bncourse.gradcheck import numerical_gradient

    return numerical_gradient(f, x, dy, h)


def _numerical_torch(kind, x, dy, h, params):
    """The exact gradient of sum(f(x) * dy) from torch's autograd, and 2 calls per entry."""
    import torch

    v = torch.tensor(x, requires_grad=True)
    p = {k: torch.from_numpy(a) for k, a in params.items()}
    if kind in ("batch_norm", "batch_norm_gamma"):
        xx, gamma = (v, p["gamma"]) if kind == "batch_norm" else (p["x"], v)
        y = torch.nn.functional.batch_norm(xx, None, None, gamma, p["beta"], training=True,
                                           eps=1e-5)
    elif kind == "tanh_linear":
        y = torch.tanh(v @ p["w"])
    elif kind == "softmax":
        y = torch.softmax(v, dim=-1)
    elif kind == "layer_norm":
        y = torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5)
    else:
        y = torch.sin(v) * v
    y.backward(torch.from_numpy(dy))
    return {"grad": v.grad.numpy(), "calls": 2 * x.size}


def _numerical_compare(got, want, case):
    """The gradient within 1e-7 of the exact one, from 2 calls of f per entry (or one more)."""
    from bncourse.exercises.compare import compare_outputs

    if not isinstance(got, dict) or set(got) != {"grad", "calls"}:
        return compare_outputs(got, want, rtol=_NUMERICAL_RTOL).problems
    problems = compare_outputs(got["grad"], want["grad"], rtol=_NUMERICAL_RTOL,
                               names=("dx",)).problems
    n = want["calls"]
    if not n <= got["calls"] <= n + 1:
        problems.append(f"f was called {got['calls']} times; centred differences call it "
                        f"twice per entry of x: {n} times here (one more call is allowed)")
    return problems


_NUMERICAL_RTOL = 1e-7


def _difference_mistake(kind):
    """Finite differences done wrong: one-sided, without the 2, ignoring dy, all at once."""
    def mistake(f, x, dy, h):
        x = x.copy()
        weights = np.ones_like(dy) if kind == "no-dy" else dy

        def loss():
            return float(np.sum(f(x) * weights))

        if kind == "all-at-once":
            x += h
            plus = loss()
            x -= 2 * h
            return np.full_like(x, (plus - loss()) / (2 * h))
        g = np.zeros_like(x)
        base = loss() if kind == "one-sided" else None
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + h
            plus = loss()
            if kind == "one-sided":
                minus = base
            else:
                x[i] = old - h
                minus = loss()
            x[i] = old
            g[i] = (plus - minus) / (h if kind in ("one-sided", "no-2") else 2 * h)
        return g
    return mistake


_NUMERICAL_MISTAKES = [
    Mistake("use the centred difference, with one evaluation on each side of x. The "
            "one-sided difference against L(x) has an error of order h, too large for a "
            "gradient check; the centred one's is of order h**2.",
            _difference_mistake("one-sided")),
    Mistake("the two evaluations of a centred difference are 2 h apart.",
            _difference_mistake("no-2")),
    Mistake("differentiate L = sum(f(x) * dy): dy weights each output. For batch norm, "
            "sum(y) alone does not depend on x at all.", _difference_mistake("no-dy")),
    Mistake("nudge one entry of x at a time: moving every entry together measures the "
            "derivative along the direction (1, 1, ..., 1), one number, not the gradient.",
            _difference_mistake("all-at-once")),
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
        id="ch04-bn-backward-staged",
        notebook=NOTEBOOK,
        function="bn_backward_staged",
        points=3,
        reference=_staged_reference,
        expected=_staged_torch,
        make_case=_backward_case,
        visible=[dict(seed=10, note="N=4, D=5"),
                 dict(seed=11, shape=(6, 3, 4, 4), note="(N, C, H, W)"),
                 dict(seed=12, shape=(8, 2, 5), dtype="float32", eps=1e-3)],
        hidden=[dict(seed=421, shape=(2, 3, 2, 2, 3)),
                dict(seed=422, shape=(3, 1), note="three values per channel"),
                dict(seed=423, shape=(16, 7), eps=0.1, min_scale=0.05),
                dict(seed=424, shape=(3, 4, 6), dtype="float32"),
                dict(seed=425, shape=(1, 2, 9), note="N=1: statistics over L only")],
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_STAGED_MISTAKES,
        stub='''import numpy as np


def bn_backward_staged(dy, x, gamma, eps):
    """The backward pass of training-mode batch norm, node by node along its graph.

    The forward graph, per channel c (axis 1), over the m = x.size // C values of
    that channel (every axis but 1):

        mean  = average of x
        xc    = x - mean
        var   = average of xc ** 2
        std   = sqrt(var + eps)
        x_hat = xc / std
        y     = gamma * x_hat + beta

    x, dy: arrays (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); gamma: (C,);
    eps: a float > 0. dy is the gradient of the loss with respect to y.

    Returns a dict of the gradient of the loss with respect to every node, each
    the sum over all the paths from that node to the loss, in the dtype of x:
    "dx_hat", "dxc", "dx" (shape of x), "dstd", "dvar", "dmean", "dgamma",
    "dbeta" (shape (C,)).
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch04-numerical-gradients",
        notebook=NOTEBOOK,
        function="numerical_gradient",
        points=2,
        reference=_numerical_reference,
        expected=_numerical_torch,
        make_case=_numerical_case,
        driver=_run_numerical,
        compare=_numerical_compare,
        visible=[dict(seed=0, note="f = batch norm of x"),
                 dict(seed=1, kind="batch_norm_gamma", shape=(3, 2, 4),
                      note="f = batch norm as a function of gamma"),
                 dict(seed=2, kind="tanh_linear", shape=(4, 3), note="f = tanh(x @ w)")],
        hidden=[dict(seed=411, shape=(3, 3)),
                dict(seed=412, shape=(5, 2, 3)),
                dict(seed=413, shape=(2, 2, 2, 2)),
                dict(seed=414, kind="softmax", shape=(3, 4)),
                dict(seed=415, kind="layer_norm", shape=(2, 6), h=3e-6),
                dict(seed=416, kind="sine", shape=(7,)),
                dict(seed=417, kind="tanh_linear", shape=(2, 3, 5), out=2),
                dict(seed=418, kind="batch_norm_gamma", shape=(6, 1))],
        outputs=("dx",),
        rtol=_NUMERICAL_RTOL,
        mistakes=_NUMERICAL_MISTAKES,
        stub='''import numpy as np


def numerical_gradient(f, x, dy, h):
    """Estimate the gradient of L(x) = sum(f(x) * dy) by centred finite differences.

    f: a function of an array of x's shape, returning an array of dy's shape (the
    grader uses batch norm and functions that are not batch norm). x: a float64
    array of any shape, the point of evaluation. dy: the weights of f's outputs.
    h: the step, a small float.

    Returns dL/dx, an array of the shape of x. The grader counts the calls of f:
    two per entry of x (one more is allowed). x must be exactly unchanged
    afterwards: work on a copy, or restore each entry you change.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]

EXERCISES.append(CAPSTONE)      # the capstone lives in its own module, capstone.py
