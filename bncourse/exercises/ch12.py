"""Chapter 12 exercises: layer-norm backward, RMS norm forward and backward, masked statistics.

The expected answers come from PyTorch in float64 (``layer_norm`` and
``rms_norm`` with autograd, ``batch_norm``'s statistics of the real positions
gathered by indexing); the references are ``bncourse.layernorm`` and
``bncourse.masked_bn``. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/12_sequence_models.ipynb"

BATCH_AXIS = (
    "layer and RMS normalization take their statistics over the LAST axis (the features of "
    "one position), never over the batch axis 0: use axis=-1, keepdims=True. (axis=0 is "
    "batch norm.)")


def _row_inputs(seed, shape, dtype):
    """x with a different mean and spread per row, gamma of both signs, dy ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    lead = shape[:-1] + (1,)
    x = rng.uniform(-4.0, 4.0, size=lead) + np.exp(rng.uniform(-1.0, 1.5, size=lead)) \
        * rng.standard_normal(shape)
    d = shape[-1]
    gamma = rng.choice([-1.0, 1.0], size=d) * rng.uniform(0.5, 2.0, size=d)
    return x.astype(dtype), gamma.astype(dtype), rng.standard_normal(shape).astype(dtype)


def _torch_grads(fn, x, params, dy):
    import torch

    leaves = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)
              for a in (x, *params)]
    y = fn(*leaves)
    y.backward(torch.tensor(np.asarray(dy, dtype=np.float64)))
    return y.detach().numpy(), [leaf.grad.numpy() for leaf in leaves]


# --------------------------------------------------------------------------- layer-norm backward

def _ln_case(seed, shape=(6, 8), dtype="float64", eps=1e-5):
    x, gamma, dy = _row_inputs(seed, shape, dtype)
    return {"dy": dy, "x": x, "gamma": gamma, "eps": eps}


def _ln_reference(dy, x, gamma, eps):
    from bncourse.layernorm import layernorm_backward, layernorm_forward

    _, cache = layernorm_forward(x, gamma, np.zeros_like(gamma), eps)
    return layernorm_backward(dy, cache)


def _ln_torch(dy, x, gamma, eps):
    import torch.nn.functional as F

    d = x.shape[-1]
    _, grads = _torch_grads(lambda a, g, b: F.layer_norm(a, (d,), g, b, eps=float(eps)),
                            x, (gamma, np.zeros_like(gamma)), dy)
    return tuple(g.astype(x.dtype) for g in grads)


def _ln_mistake(kind):
    def mistake(dy, x, gamma, eps):
        axis = 0 if kind == "batch-axis" else -1
        lead = tuple(range(x.ndim - 1))
        m = x.shape[axis]
        mean = x.mean(axis=axis, keepdims=True)
        inv_std = 1.0 / np.sqrt(x.var(axis=axis, keepdims=True) + eps)
        x_hat = (x - mean) * inv_std
        dgamma, dbeta = (dy * x_hat).sum(axis=lead), dy.sum(axis=lead)
        if kind == "bn-sums":
            # batch norm's formula copied: dbeta and dgamma where sums of dx_hat belong
            dx = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma)
        else:
            dx_hat = gamma * dy
            inner = m * dx_hat - dx_hat.sum(axis=axis, keepdims=True)
            if kind != "no-var":
                inner = inner - x_hat * (dx_hat * x_hat).sum(axis=axis, keepdims=True)
            dx = inv_std / m * inner
        return tuple(a.astype(x.dtype) for a in (dx, dgamma, dbeta))
    return mistake


_LN_MISTAKES = [
    Mistake(BATCH_AXIS, _ln_mistake("batch-axis")),
    Mistake("batch norm's closed form does not carry over as it is: in layer norm gamma varies "
            "along the normalized axis, so the sums inside dx are over dx_hat = gamma * dy, "
            "sum(dx_hat) and sum(dx_hat * x_hat) per row, not dbeta and dgamma.",
            _ln_mistake("bn-sums")),
    Mistake("the variance depends on x too: subtract x_hat * sum(dx_hat * x_hat) inside the "
            "parentheses as well.", _ln_mistake("no-var")),
]


# --------------------------------------------------------------------------- RMS norm

def _rms_case(seed, shape=(6, 8), dtype="float64", eps=1e-6):
    x, gamma, dy = _row_inputs(seed, shape, dtype)
    return {"x": x, "gamma": gamma, "eps": eps, "dy": dy}


def _rms_reference(x, gamma, eps, dy):
    from bncourse.layernorm import rmsnorm_backward, rmsnorm_forward

    y, cache = rmsnorm_forward(x, gamma, eps)
    return (y, *rmsnorm_backward(dy, cache))


def _rms_torch(x, gamma, eps, dy):
    import torch.nn.functional as F

    y, grads = _torch_grads(lambda a, g: F.rms_norm(a, (x.shape[-1],), g, eps=float(eps)),
                            x, (gamma,), dy)
    return tuple(a.astype(x.dtype) for a in (y, *grads))


def _rms_mistake(kind):
    def mistake(x, gamma, eps, dy):
        axis = 0 if kind == "batch-axis" else -1
        m = x.shape[axis]
        xc = x - x.mean(axis=axis, keepdims=True) if kind == "centred" else x
        ms = (xc ** 2).mean(axis=axis, keepdims=True)
        inv_rms = 1.0 / (np.sqrt(ms) + eps) if kind == "eps-outside" else 1.0 / np.sqrt(ms + eps)
        x_hat = xc * inv_rms
        dx_hat = gamma * dy
        inner = m * dx_hat
        if kind != "no-rms-path":
            inner = inner - x_hat * (dx_hat * x_hat).sum(axis=axis, keepdims=True)
        dx = inv_rms / m * inner
        lead = tuple(range(x.ndim - 1))
        return tuple(a.astype(x.dtype) for a in (gamma * x_hat, dx, (dy * x_hat).sum(axis=lead)))
    return mistake


_RMS_MISTAKES = [
    Mistake(hints.EPS_OUTSIDE_ROOT
            .replace("(x - mean) / np.sqrt(var + eps)", "x / np.sqrt(ms + eps)")
            .replace("(x - mean) / (np.sqrt(var) + eps)", "x / (np.sqrt(ms) + eps)"),
            _rms_mistake("eps-outside")),
    Mistake("RMS norm does not subtract the mean: divide x itself by sqrt(mean(x**2) + eps) "
            "(subtracting the mean first is layer norm).", _rms_mistake("centred")),
    Mistake(BATCH_AXIS, _rms_mistake("batch-axis")),
    Mistake("the root mean square depends on x too: dx = inv_rms / m * (m * dx_hat - x_hat * "
            "sum(dx_hat * x_hat)), with dx_hat = gamma * dy and the sum per row.",
            _rms_mistake("no-rms-path")),
]


# --------------------------------------------------------------------------- masked statistics

def _mask_case(seed, n=4, c=3, length=7, dtype="float64", min_len=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, length + 1, size=n)
    lengths[0] = length                                          # one sequence fills the batch
    mask = np.arange(length)[None, :] < lengths[:, None]
    x = rng.uniform(-3.0, 3.0, size=(1, c, 1)) + rng.uniform(0.5, 3.0, size=(1, c, 1)) \
        * rng.standard_normal((n, c, length))
    x = np.where(mask[:, None, :], x, 0.0)                       # zero padding, as usual
    return {"x": x.astype(dtype), "mask": mask}


def _mask_reference(x, mask):
    from bncourse.masked_bn import masked_batch_stats

    mean, var, _ = masked_batch_stats(x, mask)
    return mean, var


def _mask_torch(x, mask):
    import torch

    rows = torch.movedim(torch.from_numpy(x.astype(np.float64)), 1, -1)[torch.from_numpy(mask)]
    var, mean = torch.var_mean(rows, dim=0, correction=0)
    return mean.numpy().astype(x.dtype), var.numpy().astype(x.dtype)


def _mask_mistake(kind):
    def mistake(x, mask):
        w = mask[:, None, :].astype(x.dtype)
        if kind == "all-positions":
            return x.mean(axis=(0, 2)), x.var(axis=(0, 2))
        count = mask.size if kind == "count-all" else mask.sum()
        mean = (x * w).sum(axis=(0, 2)) / count
        dev = ((x - mean[None, :, None]) ** 2 * w).sum(axis=(0, 2))
        var = dev / (count - 1) if kind == "unbiased" else dev / count
        return mean.astype(x.dtype), var.astype(x.dtype)
    return mistake


_MASK_MISTAKES = [
    Mistake("count only the real positions: divide the masked sums by mask.sum(), not by "
            "N * L (the padded positions are zeros in the sum, but they are not values).",
            _mask_mistake("count-all")),
    Mistake("the padded positions must not enter the statistics at all: multiply by the mask "
            "(or select x at mask == True) before summing.", _mask_mistake("all-positions")),
    Mistake(hints.UNBIASED_VARIANCE, _mask_mistake("unbiased")),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch12-layer-norm-backward",
        notebook=NOTEBOOK,
        function="layer_norm_backward",
        points=3,
        reference=_ln_reference,
        expected=_ln_torch,
        make_case=_ln_case,
        visible=[dict(seed=0, note="(N, D)"),
                 dict(seed=1, shape=(2, 5, 6), note="(B, T, D)"),
                 dict(seed=2, shape=(4, 3, 10), dtype="float32")],
        hidden=[dict(seed=1201, shape=(1, 7), note="a batch of one"),
                dict(seed=1202, shape=(3, 4, 2, 5)),
                dict(seed=1203, shape=(8, 16), eps=1e-2),
                dict(seed=1204, shape=(5, 2, 3), dtype="float32")],
        outputs=("dx", "dgamma", "dbeta"),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_LN_MISTAKES,
        stub='''import numpy as np


def layer_norm_backward(dy, x, gamma, eps):
    """Gradients of layer norm over the last axis, y = gamma * (x - mean) / sqrt(var + eps) + beta.

    x, dy: arrays of shape (..., D) (for example (N, D) or (B, T, D)); the mean and the
    biased variance are taken over the last axis, separately for every leading index.
    gamma: shape (D,). dy is the gradient of the loss with respect to y.
    Returns (dx, dgamma, dbeta): dx of the shape of x, dgamma and dbeta of shape (D,),
    in the dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch12-rms-norm",
        notebook=NOTEBOOK,
        function="rms_norm",
        points=3,
        reference=_rms_reference,
        expected=_rms_torch,
        make_case=_rms_case,
        visible=[dict(seed=0, note="(N, D)"),
                 dict(seed=1, shape=(2, 5, 6), eps=0.5, note="(B, T, D), a large eps"),
                 dict(seed=2, shape=(4, 3, 10), dtype="float32")],
        hidden=[dict(seed=1211, shape=(1, 9)),
                dict(seed=1212, shape=(3, 4, 2, 5), eps=1e-3),
                dict(seed=1213, shape=(8, 1), note="one feature"),
                dict(seed=1214, shape=(6, 7), dtype="float32", eps=1.0)],
        outputs=("y", "dx", "dgamma"),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_RMS_MISTAKES,
        stub='''import numpy as np


def rms_norm(x, gamma, eps, dy):
    """RMS normalization over the last axis, forward and backward, as torch.nn.RMSNorm.

    x, dy: arrays of shape (..., D); gamma: shape (D,); eps > 0.
    Forward: y = gamma * x / sqrt(mean(x**2) + eps), the mean over the last axis.
    Backward: dy is the gradient of the loss with respect to y.
    Returns (y, dx, dgamma): y and dx of the shape of x, dgamma of shape (D,), in the
    dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch12-masked-batch-stats",
        notebook=NOTEBOOK,
        function="masked_batch_stats",
        points=2,
        reference=_mask_reference,
        expected=_mask_torch,
        make_case=_mask_case,
        visible=[dict(seed=0, note="4 padded sequences"),
                 dict(seed=1, n=6, c=2, length=10, dtype="float32"),
                 dict(seed=2, n=3, c=5, length=4)],
        hidden=[dict(seed=1221, n=1, c=3, length=6, note="one sequence, no padding"),
                dict(seed=1222, n=8, c=4, length=12, min_len=1),
                dict(seed=1223, n=5, c=1, length=9, dtype="float32")],
        outputs=("mean", "var"),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_MASK_MISTAKES,
        stub='''import numpy as np


def masked_batch_stats(x, mask):
    """Per-channel mean and biased variance of the real (not padded) positions of a batch.

    x: array of shape (N, C, L): N sequences, C channels, L positions (padded ones hold 0).
    mask: bool array of shape (N, L), True at the real positions.
    Returns (mean, var), each of shape (C,) in the dtype of x: the mean and the biased
    variance (divide by the number of real positions) of each channel over the real
    positions of every sequence.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
