"""Chapter 9 exercises: fold an evaluation-mode BatchNorm into the Linear before it, or after
it, and into a Conv2d before it.

Both answers are an affine map, so the expected answer is read off PyTorch
itself, independently of any folding formula: in float64, the composed
modules are evaluated at ``0`` (which gives the folded bias) and at each basis
vector ``e_j`` (which gives column ``j`` of the folded weight plus the bias).
The convolution's fold is checked against torch's own
``torch.nn.utils.fusion.fuse_conv_bn_eval`` on a real ``nn.Conv2d`` (with
groups, stride, padding, with or without bias). The references are
``bncourse.fold.fold_batchnorm`` and ``bncourse.fold.fold_batchnorm_into_next``.
Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/09_cost_and_folding.ipynb"


# --------------------------------------------------------------------------- shared

_EPS_OUTSIDE_ROOT = ("eps belongs inside the square root, as in BN itself: "
                     "scale = gamma / np.sqrt(running_var + eps), not "
                     "gamma / (np.sqrt(running_var) + eps).")

def _bn_state(rng, channels, spread=2.0):
    """gamma of both signs, beta, a running mean far from 0 and a running variance in (0.05, 4)."""
    gamma = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.3, 2.0, size=channels)
    beta = rng.normal(0.0, 1.0, size=channels)
    running_mean = rng.normal(0.0, spread, size=channels)
    running_var = rng.uniform(0.05, 4.0, size=channels)
    return gamma, beta, running_mean, running_var


def _modules(gamma, beta, running_mean, running_var, eps, weight, bias):
    """float64 torch modules: an eval-mode BatchNorm1d(C) and a Linear with the given weight."""
    import torch
    from torch import nn

    f64 = torch.float64
    bn = nn.BatchNorm1d(len(gamma), eps=float(eps), dtype=f64)
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, dtype=f64)
    with torch.no_grad():
        for param, value in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, running_mean),
                             (bn.running_var, running_var), (linear.weight, weight),
                             (linear.bias, bias)):
            param.copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))
    return bn.eval(), linear


def _probe_affine(f, in_features, dtype):
    """``(W, b)`` of an affine map ``f``: ``b = f(0)``, column ``j`` of ``W`` is ``f(e_j) - f(0)``.

    Computed in float64 and returned in ``dtype``.
    """
    import torch

    with torch.no_grad():
        f0 = f(torch.zeros(1, in_features, dtype=torch.float64))[0]
        columns = f(torch.eye(in_features, dtype=torch.float64)) - f0
    return columns.T.numpy().astype(dtype), f0.numpy().astype(dtype)


def _module_outputs(layer, dtype):
    return (layer.weight.detach().numpy().astype(dtype),
            layer.bias.detach().numpy().astype(dtype))


# --------------------------------------------------------------------------- Linear then BN

def _fold_case(seed, out_features=4, in_features=3, dtype="float64", eps=1e-5, spread=2.0):
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 1.0 / np.sqrt(in_features), size=(out_features, in_features))
    bias = rng.normal(0.0, 0.5, size=out_features)
    gamma, beta, running_mean, running_var = _bn_state(rng, out_features, spread)
    return {name: np.asarray(value).astype(dtype) for name, value in (
        ("W", weight), ("b", bias), ("gamma", gamma), ("beta", beta),
        ("running_mean", running_mean), ("running_var", running_var))} | {"eps": eps}


def _fold_reference(W, b, gamma, beta, running_mean, running_var, eps):
    from bncourse.fold import fold_batchnorm

    bn, linear = _modules(gamma, beta, running_mean, running_var, eps, W, b)
    return _module_outputs(fold_batchnorm(linear, bn), W.dtype)


def _fold_torch(W, b, gamma, beta, running_mean, running_var, eps):
    bn, linear = _modules(gamma, beta, running_mean, running_var, eps, W, b)
    return _probe_affine(lambda x: bn(linear(x)), W.shape[1], W.dtype)


def _fold_mistake(eps_outside=False, no_root=False, bias="right", columns=False):
    """The folding formula with one thing wrong."""
    def mistake(W, b, gamma, beta, running_mean, running_var, eps):
        if no_root:
            s = gamma / (running_var + eps)
        elif eps_outside:
            s = gamma / (np.sqrt(running_var) + eps)
        else:
            s = gamma / np.sqrt(running_var + eps)
        if columns:
            if W.shape[0] != W.shape[1]:
                raise ValueError("scaling the columns only runs for a square W")
            W_folded = W * s[None, :]
        else:
            W_folded = W * s[:, None]
        b_folded = {"right": (b - running_mean) * s + beta,
                    "no_mean": b * s + beta,
                    "mean_unscaled": b * s - running_mean + beta,
                    "no_beta": (b - running_mean) * s,
                    "no_b": beta - s * running_mean}[bias]
        return W_folded.astype(W.dtype), b_folded.astype(W.dtype)
    return mistake


_FOLD_MISTAKES = [
    Mistake(_EPS_OUTSIDE_ROOT,
            _fold_mistake(eps_outside=True)),
    Mistake("divide gamma by the standard deviation, np.sqrt(running_var + eps), not by the "
            "variance.", _fold_mistake(no_root=True)),
    Mistake("the running mean is subtracted from the pre-activation before BN scales it: "
            "b_folded = (b - running_mean) * scale + beta.", _fold_mistake(bias="no_mean")),
    Mistake("BN scales (z - running_mean) as a whole, so the running mean is scaled too: "
            "b_folded = (b - running_mean) * scale + beta, not b * scale - running_mean + beta.",
            _fold_mistake(bias="mean_unscaled")),
    Mistake("BN adds beta after scaling: b_folded = (b - running_mean) * scale + beta.",
            _fold_mistake(bias="no_beta")),
    Mistake("the Linear layer's own bias b goes through BN as well: it is shifted by the "
            "running mean and scaled like the rest of the pre-activation, "
            "b_folded = (b - running_mean) * scale + beta.", _fold_mistake(bias="no_b")),
    Mistake("output feature (row) c of W feeds BN channel c: scale the ROWS, "
            "W * scale[:, None], not the columns.", _fold_mistake(columns=True)),
]


# --------------------------------------------------------------------------- BN then Linear

def _next_case(seed, in_features=3, out_features=4, dtype="float64", eps=1e-5, spread=2.0):
    rng = np.random.default_rng(seed)
    gamma, beta, running_mean, running_var = _bn_state(rng, in_features, spread)
    weight = rng.normal(0.0, 1.0 / np.sqrt(in_features), size=(out_features, in_features))
    bias = rng.normal(0.0, 0.5, size=out_features)
    return {name: np.asarray(value).astype(dtype) for name, value in (
        ("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
        ("running_var", running_var))} | {"eps": eps} | {
        "W": weight.astype(dtype), "b": bias.astype(dtype)}


def _next_reference(gamma, beta, running_mean, running_var, eps, W, b):
    from bncourse.fold import fold_batchnorm_into_next

    bn, linear = _modules(gamma, beta, running_mean, running_var, eps, W, b)
    return _module_outputs(fold_batchnorm_into_next(bn, linear), W.dtype)


def _next_torch(gamma, beta, running_mean, running_var, eps, W, b):
    bn, linear = _modules(gamma, beta, running_mean, running_var, eps, W, b)
    return _probe_affine(lambda a: linear(bn(a)), W.shape[1], W.dtype)


def _next_mistake(eps_outside=False, rows=False, bias="right"):
    def mistake(gamma, beta, running_mean, running_var, eps, W, b):
        s = gamma / (np.sqrt(running_var) + eps if eps_outside else np.sqrt(running_var + eps))
        t = beta - s * running_mean
        if rows:
            if W.shape[0] != W.shape[1]:
                raise ValueError("scaling the rows only runs for a square W")
            W_folded = W * s[:, None]
        else:
            W_folded = W * s[None, :]
        b_folded = {"right": b + W @ t,
                    "no_mean": b + W @ beta,
                    "mean_unscaled": b + W @ (beta - running_mean),
                    "folded_w": b + W_folded @ t}[bias]
        return W_folded.astype(W.dtype), b_folded.astype(W.dtype)
    return mistake


_NEXT_MISTAKES = [
    Mistake(_EPS_OUTSIDE_ROOT,
            _next_mistake(eps_outside=True)),
    Mistake("BN's channel j is INPUT feature j of the Linear layer: scale the COLUMNS of W, "
            "W * scale[None, :], not the rows.", _next_mistake(rows=True)),
    Mistake("BN's shift is beta - scale * running_mean, not beta alone: "
            "b_folded = b + W @ (beta - scale * running_mean).", _next_mistake(bias="no_mean")),
    Mistake("the running mean is scaled too: BN computes scale * (a - running_mean) + beta, "
            "so the shift is beta - scale * running_mean.", _next_mistake(bias="mean_unscaled")),
    Mistake("the shift passes through the ORIGINAL weights: b_folded = b + W @ shift, "
            "with W before you scale its columns.", _next_mistake(bias="folded_w")),
]


# --------------------------------------------------------------------------- conv

def _conv_case(seed, in_channels=4, out_channels=6, kernel=3, groups=1, stride=1, padding=1,
               bias=True, dtype="float64", eps=1e-5, spread=2.0):
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 0.5, size=(out_channels, in_channels // groups, kernel, kernel))
    gamma, beta, running_mean, running_var = _bn_state(rng, out_channels, spread)
    conv = {"weight": weight.astype(dtype),
            "bias": rng.normal(size=out_channels).astype(dtype) if bias else None,
            "stride": (stride, stride), "padding": (padding, padding), "groups": int(groups)}
    bn = {"weight": gamma.astype(dtype), "bias": beta.astype(dtype),
          "running_mean": running_mean.astype(dtype), "running_var": running_var.astype(dtype),
          "eps": eps}
    return {"conv": conv, "bn": bn}


def _torch_conv_bn(conv, bn):
    """float64 torch modules: the Conv2d described by ``conv`` and an eval-mode BatchNorm2d."""
    import torch
    from torch import nn

    w = conv["weight"]
    layer = nn.Conv2d(w.shape[1] * conv["groups"], w.shape[0], tuple(w.shape[2:]),
                      stride=tuple(conv["stride"]), padding=tuple(conv["padding"]),
                      groups=conv["groups"], bias=conv["bias"] is not None, dtype=torch.float64)
    norm = nn.BatchNorm2d(w.shape[0], eps=bn["eps"], dtype=torch.float64).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w.astype(np.float64)))
        if conv["bias"] is not None:
            layer.bias.copy_(torch.from_numpy(conv["bias"].astype(np.float64)))
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, name).copy_(torch.from_numpy(bn[name].astype(np.float64)))
    return layer.eval(), norm


def _conv_description(layer, dtype):
    return {"weight": layer.weight.detach().numpy().astype(dtype),
            "bias": layer.bias.detach().numpy().astype(dtype),
            "stride": tuple(layer.stride), "padding": tuple(layer.padding),
            "groups": int(layer.groups)}


def _conv_torch(conv, bn):
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return _conv_description(fuse_conv_bn_eval(*_torch_conv_bn(conv, bn)),
                             conv["weight"].dtype)


def _conv_reference(conv, bn):
    from bncourse.fold import fold_batchnorm

    return _conv_description(fold_batchnorm(*_torch_conv_bn(conv, bn)), conv["weight"].dtype)


def _conv_mistake(kind):
    def mistake(conv, bn):
        w, dtype = conv["weight"], conv["weight"].dtype
        b = conv["bias"] if conv["bias"] is not None else np.zeros(w.shape[0], dtype)
        std = np.sqrt(bn["running_var"]) + bn["eps"] if kind == "eps" else \
            np.sqrt(bn["running_var"] + bn["eps"])
        scale = bn["weight"] / std
        if kind == "input-axis":
            weight = w * scale.reshape(1, -1, 1, 1)
        else:
            weight = w * scale.reshape(-1, 1, 1, 1)
        if kind == "bias-unscaled":
            bias = b - scale * bn["running_mean"] + bn["bias"]
        elif kind == "no-bias-no-shift" and conv["bias"] is None:
            bias = bn["bias"]
        else:
            bias = (b - bn["running_mean"]) * scale + bn["bias"]
        out = {"weight": weight.astype(dtype), "bias": np.asarray(bias).astype(dtype),
               "stride": tuple(conv["stride"]), "padding": tuple(conv["padding"]),
               "groups": conv["groups"]}
        if kind == "defaults":
            out.update(stride=(1, 1), padding=(0, 0), groups=1)
        return out
    return mistake


_CONV_MISTAKES = [
    Mistake("BN scales each OUTPUT channel of the convolution: multiply weight[o] (axis 0, "
            "all of its input channels and kernel positions) by the scale of channel o, "
            "not axis 1, which indexes the input channels of a group.",
            _conv_mistake("input-axis")),
    Mistake(_EPS_OUTSIDE_ROOT, _conv_mistake("eps")),
    Mistake("the convolution's own bias goes through BN like every other part of its "
            "output: it is shifted by the running mean and scaled too.",
            _conv_mistake("bias-unscaled")),
    Mistake("a convolution without bias is one with bias 0: the folded convolution needs a "
            "bias all the same, which still contains the running mean's shift.",
            _conv_mistake("no-bias-no-shift")),
    Mistake("folding changes the weight and the bias only: the folded convolution keeps the "
            "stride, the padding and the groups of the original.", _conv_mistake("defaults")),
]


# --------------------------------------------------------------------------- the exercises

_TOL = {"float32": 2e-5, "float64": 1e-10}

EXERCISES = [
    Exercise(
        id="ch09-fold-linear-bn",
        notebook=NOTEBOOK,
        function="fold_linear_bn",
        points=2,
        reference=_fold_reference,
        expected=_fold_torch,
        make_case=_fold_case,
        visible=[dict(seed=0), dict(seed=1, out_features=3, in_features=3,
                                    note="a square W"),
                 dict(seed=2, out_features=5, in_features=2, dtype="float32")],
        hidden=[dict(seed=901, out_features=1, in_features=6),
                dict(seed=902, out_features=7, in_features=7, eps=1e-3),
                dict(seed=903, out_features=16, in_features=9, dtype="float32", spread=20.0),
                dict(seed=904, out_features=2, in_features=1, eps=0.5)],
        outputs=("W_folded", "b_folded"),
        rtol=_TOL,
        mistakes=_FOLD_MISTAKES,
        stub='''import numpy as np


def fold_linear_bn(W, b, gamma, beta, running_mean, running_var, eps):
    """Fold an evaluation-mode BatchNorm into the Linear layer before it.

    The pair computes y = BN(z) with z = W @ x + b, per output feature c:
        y_c = gamma_c * (z_c - running_mean_c) / sqrt(running_var_c + eps) + beta_c
    W: (C, D) weight, b: (C,) bias, gamma, beta, running_mean, running_var: (C,),
    eps: a float > 0. Return (W_folded, b_folded), shapes (C, D) and (C,), in the
    dtype of W, such that W_folded @ x + b_folded equals y for every x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch09-fold-bn-into-next",
        notebook=NOTEBOOK,
        function="fold_bn_into_next",
        points=2,
        reference=_next_reference,
        expected=_next_torch,
        make_case=_next_case,
        visible=[dict(seed=0), dict(seed=1, in_features=3, out_features=3,
                                    note="a square W"),
                 dict(seed=2, in_features=5, out_features=2, dtype="float32")],
        hidden=[dict(seed=911, in_features=1, out_features=4),
                dict(seed=912, in_features=6, out_features=6, eps=1e-3),
                dict(seed=913, in_features=12, out_features=5, dtype="float32", spread=20.0),
                dict(seed=914, in_features=4, out_features=1, eps=0.5)],
        outputs=("W_folded", "b_folded"),
        rtol=_TOL,
        mistakes=_NEXT_MISTAKES,
        stub='''import numpy as np


def fold_bn_into_next(gamma, beta, running_mean, running_var, eps, W, b):
    """Fold an evaluation-mode BatchNorm into the Linear layer AFTER it.

    BN placed after an activation computes, per feature j of its input a,
        u_j = gamma_j * (a_j - running_mean_j) / sqrt(running_var_j + eps) + beta_j
    and the next layer computes y = W @ u + b.
    gamma, beta, running_mean, running_var: (C,), eps: a float > 0,
    W: (K, C) weight, b: (K,) bias. Return (W_folded, b_folded), shapes (K, C)
    and (K,), in the dtype of W, such that W_folded @ a + b_folded equals y.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch09-fold-conv-bn",
        notebook=NOTEBOOK,
        function="fold_conv_bn",
        points=2,
        reference=_conv_reference,
        expected=_conv_torch,
        make_case=_conv_case,
        visible=[dict(seed=0, note="3x3, padding 1, with bias"),
                 dict(seed=1, in_channels=4, out_channels=4, groups=4, bias=False,
                      note="depthwise (groups = channels), no bias"),
                 dict(seed=2, in_channels=6, out_channels=4, groups=2, kernel=1, padding=0,
                      stride=2, dtype="float32", bias=False)],
        hidden=[dict(seed=921, in_channels=1, out_channels=1, kernel=5, padding=2),
                dict(seed=922, in_channels=8, out_channels=8, groups=8, kernel=3, stride=2,
                     bias=True, eps=1e-3),
                dict(seed=923, in_channels=3, out_channels=12, groups=3, kernel=3, padding=0,
                     bias=False, dtype="float32", spread=20.0),
                dict(seed=924, in_channels=2, out_channels=5, kernel=2, padding=1, eps=0.5)],
        rtol=_TOL,
        mistakes=_CONV_MISTAKES,
        stub='''import numpy as np


def fold_conv_bn(conv, bn):
    """Fold an evaluation-mode BatchNorm2d into the Conv2d before it.

    conv: a dict describing a torch.nn.Conv2d: "weight", shape
    (C_out, C_in // groups, kh, kw); "bias", shape (C_out,) or None (a conv built
    with bias=False); "stride" and "padding", pairs of ints; "groups", an int.
    bn: a dict describing a BatchNorm2d(C_out) in eval mode: "weight" (gamma),
    "bias" (beta), "running_mean", "running_var", all (C_out,), and "eps".

    Returns the folded Conv2d as a dict with the same keys, whose "bias" is always
    an array (C_out,), arrays in the dtype of conv["weight"]: one convolution that
    computes what the convolution followed by the BatchNorm computes, for every
    input.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
