"""Chapter 5 exercises: percentile drift, the Jacobian of batch norm, smoothness along the
gradient.

The expected answers come from independent oracles (``torch.quantile``,
``torch.autograd.functional.jacobian``, the closed form of a quadratic); the
references are ``bncourse.experiments.drift``, ``bncourse.batchnorm`` and
``bncourse.experiments.landscape``. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/05_covariate_shift.ipynb"


# --------------------------------------------------------------------------- percentile drift

def _snapshots(seed, t=6, m=40, c=3, q=(15, 50, 85), drift=0.3, ties=False):
    """Inputs of C units on a fixed batch of M samples at T record steps, drifting over time."""
    rng = np.random.default_rng(seed)
    loc = np.cumsum(rng.normal(scale=drift, size=(t, 1, c)), axis=0)
    scale = np.exp(np.cumsum(rng.normal(scale=drift / 3, size=(t, 1, c)), axis=0))
    z = loc + scale * rng.standard_normal((t, m, c))
    if ties:
        z = np.round(z, 1)
    return {"z": z, "q": tuple(float(v) for v in q)}


def _track_reference(z, q):
    from bncourse.experiments.drift import percentile_drift, unit_percentiles

    p = np.stack([unit_percentiles(z_t, q) for z_t in z])
    return p, percentile_drift(p)


def _track_torch(z, q):
    import torch

    t = torch.from_numpy(np.asarray(z, dtype=np.float64))
    levels = torch.tensor(q, dtype=torch.float64) / 100
    p = torch.quantile(t, levels, dim=1).permute(1, 0, 2)       # (Q, T, C) -> (T, Q, C)
    drift = (p[1:] - p[:-1]).abs().mean()
    return p.numpy(), float(drift)


def _track_with(percentile=None, drift=None):
    def mistake(z, q):
        p = percentile(z, q) if percentile else np.stack([np.percentile(zt, q, axis=0)
                                                          for zt in z])
        d = drift(p) if drift else float(np.mean(np.abs(np.diff(p, axis=0))))
        return p, d
    return mistake


_TRACK_MISTAKES = [
    Mistake("take the percentiles over the samples of each unit (axis 0 of z[t], shape "
            "(M, C)), not over the units of each sample.",
            _track_with(percentile=lambda z, q: np.stack([np.percentile(zt, q, axis=1)
                                                          for zt in z]))),
    Mistake("q is in percent (0 to 100), as np.percentile expects; np.quantile takes "
            "fractions.",
            _track_with(percentile=lambda z, q: np.stack([np.percentile(zt, np.array(q) / 100,
                                                                        axis=0) for zt in z]))),
    Mistake("the drift averages the ABSOLUTE changes: with signed changes a rise and a fall "
            "cancel.",
            _track_with(drift=lambda p: float(np.mean(np.diff(p, axis=0))))),
    Mistake("compare consecutive records (p[t + 1] - p[t]), not every record with the first.",
            _track_with(drift=lambda p: float(np.mean(np.abs(p[1:] - p[0]))))),
    Mistake("the drift is a mean over steps, percentiles and units, not a sum.",
            _track_with(drift=lambda p: float(np.sum(np.abs(np.diff(p, axis=0)))))),
]


# --------------------------------------------------------------------------- BN's Jacobian

def _jacobian_case(seed, shape=(6, 2), dtype="float64", eps=1e-5, min_scale=0.3):
    """x with a different mean and spread per feature, gamma of both signs."""
    rng = np.random.default_rng(seed)
    n, c = shape
    scale = np.exp(rng.uniform(np.log(min_scale), np.log(5.0), size=c))
    x = rng.uniform(-3.0, 3.0, size=c) + scale * rng.standard_normal(shape)
    gamma = rng.choice([-1.0, 1.0], size=c) * rng.uniform(0.5, 2.0, size=c)
    return {"x": x.astype(dtype), "gamma": gamma.astype(dtype), "eps": eps}


def _jacobian_reference(x, gamma, eps):
    """Column j of each feature's Jacobian is bncourse's backward of the basis vector e_j."""
    from bncourse.batchnorm import batchnorm_backward, batchnorm_forward

    n, c = x.shape
    _, cache = batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
    jac = np.empty((c, n, n), dtype=x.dtype)
    for i in range(n):
        dy = np.zeros_like(x)
        dy[i] = 1.0                                     # row i of every feature at once
        jac[:, i, :] = batchnorm_backward(dy, cache)[0].T
    return jac


def _jacobian_torch(x, gamma, eps):
    import torch

    g = torch.from_numpy(gamma.astype(np.float64))

    def bn(v):
        return torch.nn.functional.batch_norm(v, None, None, g, None, training=True,
                                              eps=float(eps))

    full = torch.autograd.functional.jacobian(bn, torch.from_numpy(x.astype(np.float64)))
    # full[i, c, j, d] = d y[i, c] / d x[j, d]; features do not mix, keep c == d
    jac = torch.stack([full[:, c, :, c] for c in range(x.shape[1])])
    return jac.numpy().astype(x.dtype)


def _jacobian_mistake(paths=("mean", "var"), ddof=0, eps_outside=False, with_gamma=True):
    def mistake(x, gamma, eps):
        n, c = x.shape
        mean, var = x.mean(axis=0), x.var(axis=0, ddof=ddof)
        std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
        x_hat = (x - mean) / std
        jac = np.empty((c, n, n))
        for k in range(c):
            inner = np.eye(n)
            if "mean" in paths:
                inner = inner - 1.0 / n
            if "var" in paths:
                inner = inner - np.outer(x_hat[:, k], x_hat[:, k]) / n
            jac[k] = (gamma[k] if with_gamma else 1.0) / std[k] * inner
        return jac.astype(x.dtype)
    return mistake


_JACOBIAN_MISTAKES = [
    Mistake("every output of a feature depends on every input of it, through the batch mean "
            "and variance: the Jacobian is not diagonal.", _jacobian_mistake(paths=())),
    Mistake("the mean's path is there; the variance depends on each x_j too, which adds a "
            "term built from x_hat.", _jacobian_mistake(paths=("mean",))),
    Mistake("the variance's path is there; the mean depends on each x_j too, which adds a "
            "constant term to every entry.", _jacobian_mistake(paths=("var",))),
    Mistake(hints.UNBIASED_VARIANCE, _jacobian_mistake(ddof=1)),
    Mistake(hints.EPS_OUTSIDE_ROOT, _jacobian_mistake(eps_outside=True)),
    Mistake("y = gamma * x_hat + beta: the Jacobian carries the factor gamma.",
            _jacobian_mistake(with_gamma=False)),
]


# --------------------------------------------------------------------------- smoothness

def _quadratic(seed, d=3, spread=0.5, step_sizes=(0.02, 0.05, 0.1, 0.2)):
    """f(w) = w^T H w / 2 with H symmetric positive definite, eigenvalues over 2*spread decades."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    h = q @ np.diag(10.0 ** rng.uniform(-spread, spread, size=d)) @ q.T
    return {"h": (h + h.T) / 2, "w": rng.normal(size=d),
            "step_sizes": np.asarray(step_sizes, dtype=np.float64)}


def _smooth_reference(h, w, step_sizes):
    import torch
    from torch import nn

    from bncourse.experiments.landscape import gradient_path

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.from_numpy(np.array(w, dtype=np.float64)))
            self.register_buffer("h", torch.from_numpy(np.array(h, dtype=np.float64)))

        def forward(self, x):
            return 0.5 * self.w @ self.h @ self.w

    path = gradient_path(Quadratic(), torch.zeros(1, 1), torch.zeros(1), step_sizes,
                         loss_fn=lambda out, y: out)
    return path.loss_variation, path.gradient_change, path.effective_smoothness


def _smooth_closed_form(h, w, step_sizes):
    # g = H w; along w - eta g the gradient changes by -eta H g, so the largest change is
    # max(eta) ||H g|| and the change per unit distance is ||H g|| / ||g|| for every eta.
    g = h @ w
    path = w[None, :] - step_sizes[:, None] * g[None, :]
    losses = np.append(0.5 * np.einsum("ki,ij,kj->k", path, h, path), 0.5 * w @ h @ w)
    hg = np.linalg.norm(h @ g)
    return (float(losses.max() - losses.min()), float(step_sizes.max() * hg),
            float(hg / np.linalg.norm(g)))


def _smooth_with(ascent=False, skip_start=False, per_step=False, loss_change=False):
    def mistake(h, w, step_sizes):
        g = h @ w
        sign = -1.0 if ascent else 1.0
        losses, changes = [], []
        for eta in step_sizes:
            wk = w - sign * eta * g
            losses.append(0.5 * wk @ h @ wk)
            changes.append(np.linalg.norm(h @ wk - g))
        losses = np.array(losses)
        if not skip_start:
            losses = np.append(losses, 0.5 * w @ h @ w)
        changes = np.array(changes)
        if loss_change:
            changes = np.abs(losses[:len(step_sizes)] - 0.5 * w @ h @ w)
        denom = step_sizes if per_step else step_sizes * np.linalg.norm(g)
        return (float(losses.max() - losses.min()), float(changes.max()),
                float(np.max(changes / denom)))
    return mistake


_SMOOTH_MISTAKES = [
    Mistake("step DOWN the gradient: w_k = w - eta_k * g (a step along +g climbs).",
            _smooth_with(ascent=True)),
    Mistake("the loss variation is the range over the starting point w AND the path points.",
            _smooth_with(skip_start=True)),
    Mistake("effective smoothness divides the gradient change by the DISTANCE moved, "
            "eta_k * ||g||, not by eta_k alone.",
            _smooth_with(per_step=True)),
    Mistake("gradient_change is the l2 norm of the change of the GRADIENT, "
            "||H w_k - g||, not the change of the loss.",
            _smooth_with(loss_change=True)),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch05-percentile-drift",
        notebook=NOTEBOOK,
        function="track_percentiles",
        points=2,
        reference=_track_reference,
        expected=_track_torch,
        make_case=_snapshots,
        visible=[dict(seed=0), dict(seed=1, t=4, m=25, c=5, q=(10, 90))],
        hidden=[dict(seed=101, t=2, m=7, c=1), dict(seed=102, t=10, m=60, c=4, drift=0.0),
                dict(seed=103, t=3, m=1, c=2, note="a single sample"),
                dict(seed=104, t=5, m=30, c=3, q=(0, 25, 50, 75, 100)),
                dict(seed=105, t=6, m=20, c=2, ties=True, note="tied values")],
        outputs=("p", "drift"),
        rtol=1e-10,
        mistakes=_TRACK_MISTAKES,
        stub='''import numpy as np


def track_percentiles(z, q):
    """Percentiles of each unit over the samples at every record step, and their drift.

    z: (T, M, C) float64 array, the input of C units on the same M samples at
       T record steps. q: a tuple of percentiles in percent, e.g. (15, 50, 85).
    Returns (p, drift):
      p: (T, Q, C) float64, p[t, i, c] = the q[i]-th percentile of z[t, :, c]
         (linear interpolation, np.percentile's default);
      drift: a float, the mean over t, i, c of |p[t + 1, i, c] - p[t, i, c]|.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch05-bn-jacobian",
        notebook=NOTEBOOK,
        function="bn_jacobian",
        points=2,
        reference=_jacobian_reference,
        expected=_jacobian_torch,
        make_case=_jacobian_case,
        visible=[dict(seed=0, note="6 samples, 2 features"),
                 dict(seed=1, shape=(4, 3), dtype="float32", eps=1e-3),
                 dict(seed=2, shape=(10, 1), eps=0.1, min_scale=0.05)],
        hidden=[dict(seed=521, shape=(2, 2), note="two samples"),
                dict(seed=522, shape=(16, 4)),
                dict(seed=523, shape=(5, 6), dtype="float32"),
                dict(seed=524, shape=(3, 1), eps=1.0)],
        outputs=("jacobian",),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_JACOBIAN_MISTAKES,
        stub='''import numpy as np


def bn_jacobian(x, gamma, eps):
    """The Jacobian of training-mode batch norm, one matrix per feature.

    x: array (N, C), a batch of N samples with C features; gamma: (C,); eps: a
    float > 0. Batch norm normalizes each feature c with the mean and the biased
    variance of its N values: y[:, c] = gamma[c] * x_hat[:, c] + beta[c].
    Features do not mix, so the derivatives are N x N blocks, one per feature.

    Returns J of shape (C, N, N) in the dtype of x, J[c, i, j] = d y[i, c] / d x[j, c].
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch05-quadratic-smoothness",
        notebook=NOTEBOOK,
        function="smoothness_along_gradient",
        points=2,
        reference=_smooth_reference,
        expected=_smooth_closed_form,
        make_case=_quadratic,
        visible=[dict(seed=0), dict(seed=1, d=5, spread=1.5, step_sizes=(0.01, 0.1, 1.0))],
        hidden=[dict(seed=301, d=1), dict(seed=302, d=8, spread=0.5),
                dict(seed=303, d=3, step_sizes=(0.5,)),
                dict(seed=304, d=4, step_sizes=(0.1, 0.3, 1.0, 3.0), note="steps past the "
                     "minimum")],
        outputs=("loss_variation", "gradient_change", "effective_smoothness"),
        rtol=1e-9,
        mistakes=_SMOOTH_MISTAKES,
        stub='''import numpy as np


def smoothness_along_gradient(h, w, step_sizes):
    """Loss variation, gradient change and effective smoothness of f(w) = w @ h @ w / 2.

    h: (d, d) symmetric positive definite float64; w: (d,) float64, the current
    weights; step_sizes: (K,) positive float64. With g = the gradient of f at w
    and the path points w_k = w - step_sizes[k] * g, return three floats:
      loss_variation = max - min of f over w and all w_k,
      gradient_change = max over k of ||grad f(w_k) - g||,
      effective_smoothness = max over k of ||grad f(w_k) - g|| / (step_sizes[k] * ||g||).
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
