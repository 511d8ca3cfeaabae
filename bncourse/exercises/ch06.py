"""Chapter 6 exercises: the weight gradient of a Linear layer before BN (the gradient that
scale invariance makes orthogonal to the weights); gradient norms of a BN network.

The expected answers come from PyTorch's autograd in float64. The references
are ``bncourse.batchnorm`` and
``bncourse.experiments.grad_explosion.bn_relu_grad_norms``. Heavy imports happen inside
the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/06_optimization.ipynb"


# --------------------------------------------------------------------------- weight gradient

def _weight_case(seed, n=16, d=5, c=3, dtype="float64", eps=1e-5, w_scale=1.0):
    """A batch x, the weight W of the Linear layer before BN (rows of norm ~ w_scale), gamma,
    and the gradient dy arriving at BN's output."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=d) + rng.standard_normal((n, d))
    w = w_scale * rng.standard_normal((c, d)) / np.sqrt(d)
    gamma = rng.choice([-1.0, 1.0], size=c) * rng.uniform(0.5, 2.0, size=c)
    dy = rng.standard_normal((n, c))
    return {"x": x.astype(dtype), "w": w.astype(dtype), "gamma": gamma.astype(dtype),
            "dy": dy.astype(dtype), "eps": eps}


def _weight_reference(x, w, gamma, dy, eps):
    from bncourse.batchnorm import batchnorm_backward, batchnorm_forward

    _, cache = batchnorm_forward(x @ w.T, gamma, np.zeros_like(gamma), eps)
    return (batchnorm_backward(dy, cache)[0].T @ x).astype(x.dtype)


def _weight_torch(x, w, gamma, dy, eps):
    import torch

    x_t, w_t, g_t, dy_t = (torch.from_numpy(a.astype(np.float64)) for a in (x, w, gamma, dy))
    w_t.requires_grad_(True)
    y = torch.nn.functional.batch_norm(x_t @ w_t.T, None, None, g_t, None, training=True,
                                       eps=float(eps))
    y.backward(dy_t)
    return w_t.grad.numpy().astype(x.dtype)


def _weight_mistake(frozen_stats=False, ddof=0, transpose=False, with_gamma=True):
    def mistake(x, w, gamma, dy, eps):
        z = x @ w.T
        m = len(z)
        std = np.sqrt(z.var(axis=0, ddof=ddof) + eps)
        x_hat = (z - z.mean(axis=0)) / std
        g = gamma if with_gamma else 1.0
        if frozen_stats:
            dz = g / std * dy
        else:
            dz = g / std / m * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))
        dw = x.T @ dz if transpose else dz.T @ x
        return dw.astype(x.dtype)
    return mistake


_WEIGHT_MISTAKES = [
    Mistake("the batch mean and variance of z = x @ W.T depend on W too: backpropagate "
            "through batch norm's full backward, not through a fixed scale. (The true dW is "
            "orthogonal to each row of W; yours is not.)", _weight_mistake(frozen_stats=True)),
    Mistake(hints.UNBIASED_VARIANCE, _weight_mistake(ddof=1)),
    Mistake("dW has the shape of W, (C, D): dz.T @ x, not x.T @ dz.",
            _weight_mistake(transpose=True)),
    Mistake("the gradient reaches z through the scale gamma.", _weight_mistake(with_gamma=False)),
]


# --------------------------------------------------------------------------- gradient norms

def _grad_case(seed, batch=16, width=8, depth=3, classes=5, dtype="float64", scale="he"):
    """Input ``(batch, width)``, hidden weights ``(depth, width, width)``, output weights
    ``(width, classes)`` (He-scaled Gaussians unless ``scale`` is a number) and an
    upstream gradient ``dlogits`` of shape ``(batch, classes)``."""
    rng = np.random.default_rng(seed)
    std = np.sqrt(2.0 / width) if scale == "he" else float(scale)
    x = rng.standard_normal((batch, width))
    weights = std * rng.standard_normal((depth, width, width))
    w_out = std * rng.standard_normal((width, classes))
    dlogits = rng.standard_normal((batch, classes)) / batch
    return {"x": x.astype(dtype), "weights": weights.astype(dtype),
            "w_out": w_out.astype(dtype), "dlogits": dlogits.astype(dtype)}


def _grad_reference(x, weights, w_out, dlogits):
    from bncourse.experiments.grad_explosion import bn_relu_grad_norms

    return bn_relu_grad_norms(x, list(weights) + [w_out], dlogits)


def _grad_torch(x, weights, w_out, dlogits):
    import torch
    import torch.nn.functional as F

    ws = [torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True)
          for w in list(weights) + [w_out]]
    h = torch.tensor(np.asarray(x, dtype=np.float64))
    for w in ws[:-1]:
        h = torch.relu(F.batch_norm(h @ w, None, None, training=True, eps=1e-5))
    logits = h @ ws[-1]
    grads = torch.autograd.grad(logits, ws,
                                grad_outputs=torch.tensor(np.asarray(dlogits, dtype=np.float64)))
    return np.array([g.norm().item() for g in grads]).astype(x.dtype)


def _grad_numpy(x, weights, w_out, dlogits, ddof=0, eps_outside=False, frozen_stats=False,
                mask_before_bn=False, squared=False, skip_output=False, eps=1e-5):
    """A plain NumPy forward/backward with one optional mistake."""
    weights = list(weights) + [w_out]
    h, saved = x, []
    for w in weights[:-1]:
        z = h @ w
        mean, var = z.mean(axis=0), z.var(axis=0, ddof=ddof)
        inv_std = 1.0 / (np.sqrt(var) + eps) if eps_outside else 1.0 / np.sqrt(var + eps)
        x_hat = (z - mean) * inv_std
        saved.append((h, z, x_hat, inv_std))
        h = np.maximum(x_hat, 0)
    dws = [h.T @ dlogits]
    dh = dlogits @ weights[-1].T
    for (h_in, z, x_hat, inv_std), w in zip(reversed(saved), reversed(weights[:-1])):
        dy = dh * ((z > 0) if mask_before_bn else (x_hat > 0))
        m = dy.shape[0]
        if frozen_stats:
            dz = dy * inv_std
        else:
            dz = inv_std / m * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))
        dws.append(h_in.T @ dz)
        dh = dz @ w.T
    norms = np.array([np.sum(d * d) if squared else np.linalg.norm(d) for d in reversed(dws)])
    return (norms[:-1] if skip_output else norms).astype(x.dtype)


def _grad_mistake(**kwargs):
    return lambda x, weights, w_out, dlogits: _grad_numpy(x, weights, w_out, dlogits, **kwargs)


_GRAD_MISTAKES = [
    Mistake(hints.UNBIASED_VARIANCE, _grad_mistake(ddof=1)),
    Mistake(hints.EPS_OUTSIDE_ROOT, _grad_mistake(eps_outside=True)),
    Mistake("backpropagate through the batch mean and variance too: they depend on every "
            "sample, so dz = inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat)) "
            "(chapter 4's closed form), not dy * inv_std.", _grad_mistake(frozen_stats=True)),
    Mistake("the ReLU acts on the output of BN, so its mask is (BN output > 0), not "
            "(pre-activation z > 0).", _grad_mistake(mask_before_bn=True)),
    Mistake("the Frobenius norm is the square root of the sum of squares "
            "(np.linalg.norm(dW)).", _grad_mistake(squared=True)),
    Mistake("return one norm per weight matrix, the output layer included "
            "(len(weights) + 1 values).", _grad_mistake(skip_output=True)),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch06-linear-bn-weight-grad",
        notebook=NOTEBOOK,
        function="linear_bn_weight_grad",
        points=2,
        reference=_weight_reference,
        expected=_weight_torch,
        make_case=_weight_case,
        visible=[dict(seed=0, note="16 samples, 5 inputs, 3 units"),
                 dict(seed=1, n=8, d=4, c=4, dtype="float32"),
                 dict(seed=2, w_scale=10.0, note="the same W scaled by 10")],
        hidden=[dict(seed=621, n=2, d=1, c=1, note="two samples"),
                dict(seed=622, n=32, d=7, c=5, w_scale=0.1),
                dict(seed=623, n=12, d=3, c=6, dtype="float32", eps=1e-3),
                dict(seed=624, n=5, d=9, c=2, eps=0.5)],
        outputs=("dW",),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_WEIGHT_MISTAKES,
        stub='''import numpy as np


def linear_bn_weight_grad(x, w, gamma, dy, eps):
    """The gradient with respect to W of a Linear layer (no bias) followed by batch norm.

    z = x @ w.T, y = gamma * (z - mean) / sqrt(var + eps) + beta, training mode
    (mean and biased var of each unit over the batch). x: (N, D) inputs; w: (C, D)
    weight; gamma: (C,); dy: (N, C), the gradient of the loss with respect to y;
    eps: a float > 0.

    Returns dW, shape (C, D) in the dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch06-bn-relu-grad-norms",
        notebook=NOTEBOOK,
        function="bn_relu_grad_norms",
        points=3,
        reference=_grad_reference,
        expected=_grad_torch,
        make_case=_grad_case,
        visible=[dict(seed=0),
                 dict(seed=1, batch=4, width=6, depth=2, classes=3, dtype="float32"),
                 dict(seed=2, batch=32, width=16, depth=8, classes=10,
                      note="eight hidden layers: compare the first norm with the last")],
        hidden=[dict(seed=601, batch=2, width=3, depth=1, classes=2,
                     note="two samples per batch"),
                dict(seed=602, width=5, depth=0, classes=7, note="no hidden layer"),
                dict(seed=603, batch=64, width=32, depth=3, classes=10, dtype="float32"),
                dict(seed=604, batch=8, width=3, depth=6, classes=2),
                dict(seed=605, batch=10, width=6, depth=2, classes=4, scale=0.003,
                     note="tiny weights: the variance is close to eps")],
        outputs=("norms",),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_GRAD_MISTAKES,
        stub='''import numpy as np


def bn_relu_grad_norms(x, weights, w_out, dlogits):
    """Frobenius norms of dLoss/dW for a stack of Linear -> BN -> ReLU blocks and a linear output.

    x: (B, H) input. weights: (L, H, H), the L hidden weight matrices (L may be 0).
    w_out: (H, C), the output layer. Forward (no biases): h = x; for l = 0 .. L-1,
        z = h @ weights[l];  h = relu(BN(z))
    with training-mode BN per column: gamma = 1, beta = 0, eps = 1e-5, the biased
    batch variance. Then logits = h @ w_out.
    dlogits: (B, C), the gradient of the loss with respect to the logits.
    Returns an array of L + 1 norms: ||dLoss/dW|| of each hidden layer (first layer
    first), then of w_out; in the dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
