"""The study's experiments: thin per-(setting, seed) wrappers over the lab and the chapters.

Each function here is registered with :func:`bncourse.study.experiments.register`
and decides one claim of the ledger (:mod:`bncourse.study.claims`). Every seed
varies the data split as well as the initialization and the batch order.

- ``conditioning`` (claim 14): gradient descent on least squares, raw against
  standardized features, each at its best learning rate, on a seeded 80%
  subsample of a scikit-learn data set; metric ``log10_speedup``.
- ``z_vs_a`` (claim 15): a sigmoid MLP on the digits with BN on the
  pre-activation z (``bn="before"``) or on the activation a (``"after"``).
- ``placement`` (claim 13): a two-layer MLP with BN before or after ReLU,
  sigmoid or tanh.
- ``bias_gradient`` (claim 8) and ``undo_normalization`` (claim 10):
  demonstrations of identities on seeded random batches.
"""

from __future__ import annotations

import functools

import numpy as np

from bncourse._checks import fail
from bncourse.batchnorm import batchnorm_forward
from bncourse.experiments.conditioning import extreme_eigenvalues, least_squares_quadratic, \
    predicted_steps, with_intercept
from bncourse.gradcheck import relative_error
from bncourse.standardize import Standardizer
from bncourse.study.experiments import Diverged, grid, register

# torch and the modules built on it are imported inside the functions: listing,
# planning and a fully cached study then start in a fraction of a second.

__all__ = ["run_conditioning", "run_z_vs_a", "run_placement", "run_bias_gradient",
           "run_undo_normalization", "torch_device", "clear_caches"]


def torch_device(device: str):
    """``"cpu"`` or ``"cuda"`` as a ``torch.device``; CUDA must be available when asked for."""
    import torch

    if device not in ("cpu", "cuda"):
        fail("torch_device", "device", "'cpu' or 'cuda'", repr(device))
    if device == "cuda" and not torch.cuda.is_available():
        fail("torch_device", "device", "'cpu' on a machine without CUDA", repr(device))
    return torch.device(device)


def clear_caches() -> None:
    """Forget the data sets loaded so far in this process (for timing a cold start)."""
    _regression_data.cache_clear()
    _digits.cache_clear()


# ---------------------------------------------------------------- claim 14
@functools.lru_cache(maxsize=None)
def _regression_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    if name == "diabetes":
        return load_diabetes(return_X_y=True, scaled=False)
    if name == "wine":
        x, labels = load_wine(return_X_y=True)
        return x, np.where(labels == 0, 1.0, -1.0)
    if name == "breast_cancer":
        x, labels = load_breast_cancer(return_X_y=True)
        return x, np.where(labels == 1, 1.0, -1.0)
    fail("run_conditioning", "dataset", "'diabetes', 'wine' or 'breast_cancer'", repr(name))


def _best_steps(x: np.ndarray, y: np.ndarray, n_lrs: int, tol: float) -> float:
    """Predicted steps to relative gap ``tol`` at the best of ``n_lrs`` + 1 learning rates."""
    quad = least_squares_quadratic(with_intercept(x), y)
    mu, big_l = extreme_eigenvalues(quad.hessian)
    lrs = np.append(np.geomspace(0.05, 1.999, n_lrs) / big_l, 2.0 / (big_l + mu))
    return float(min(predicted_steps(quad, lr, tol) for lr in lrs))


def run_conditioning(seed: int, device: str = "cpu", *, dataset: str, fraction: float,
                     n_lrs: int, tol: float = 1e-6) -> dict:
    """Claim 14 on one seeded subsample: steps on raw over standardized features.

    The seed draws ``round(fraction * n)`` rows without replacement; the
    standardizer is fitted on them. ``log10_speedup = log10(steps_raw /
    steps_standardized)`` with the steps of chapter 1 (predicted from the
    eigen-decomposition, at the best learning rate of a geometric grid).
    """
    if device not in ("cpu", "cuda"):                     # NumPy only
        fail("run_conditioning", "device", "'cpu' or 'cuda'", repr(device))
    x, y = _regression_data(dataset)
    rows = np.random.default_rng(seed).permutation(len(x))[:int(round(fraction * len(x)))]
    x, y = x[rows], y[rows]
    raw = _best_steps(x, y, n_lrs, tol)
    std = _best_steps(Standardizer().fit_transform(x), y, n_lrs, tol)
    return {"steps_raw": raw, "steps_standardized": std,
            "log10_speedup": float(np.log10(raw / std))}


register("conditioning", version=1, claims=(14,),
         settings={"smoke": grid(dataset=["diabetes", "wine", "breast_cancer"],
                                 fraction=[0.8], n_lrs=[8]),
                   "book": grid(dataset=["diabetes", "wine", "breast_cancer"],
                                fraction=[0.8], n_lrs=[40]),
                   "study": grid(dataset=["diabetes", "wine", "breast_cancer"],
                                 fraction=[0.8], n_lrs=[40])},
         seeds={"smoke": range(2), "book": range(5), "study": range(20)})(run_conditioning)


# ---------------------------------------------------------------- MLPs on the digits
@functools.lru_cache(maxsize=8)
def _digits(seed: int):
    from bncourse.lab.data import load_digits_split

    return load_digits_split(seed=seed)


def _train_mlp(seed: int, device: str, *, activation: str, bn: str, hidden, steps: int,
               lr: float, batch_size: int, init_scale=None) -> dict:
    """Train a digits MLP for one seed (split, initialization and batch order) -> metrics."""
    from bncourse.lab.models import make_mlp
    from bncourse.lab.training import train

    dev = torch_device(device)
    data = _digits(seed)
    net = make_mlp(data.n_features, hidden=tuple(hidden), activation=activation, bn=bn,
                   init_scale=init_scale, seed=seed)
    if dev.type != "cpu":
        import dataclasses

        net = net.to(dev)
        data = dataclasses.replace(data, **{k: getattr(data, k).to(dev) for k in
                                            ("x_train", "y_train", "x_test", "y_test")})
    hist = train(net, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                 eval_every=None, progress=False)
    metrics = {"test_accuracy": float(hist.test_accuracy[-1]),
               "train_accuracy": float(hist.train_accuracy[-1]),
               "test_loss": float(hist.test_loss[-1])}
    if hist.diverged:
        raise Diverged(f"loss not finite at step {hist.diverged_at}", metrics)
    return metrics


def run_z_vs_a(seed: int, device: str = "cpu", *, bn: str, init_scale, hidden, steps: int,
               lr: float = 0.5, batch_size: int = 60) -> dict:
    """Claim 15: sigmoid MLP with BN on z (``bn="before"``) or on a (``"after"``)."""
    return _train_mlp(seed, device, activation="sigmoid", bn=bn, hidden=hidden, steps=steps,
                      lr=lr, batch_size=batch_size, init_scale=init_scale)


_ZA = dict(bn=["before", "after"], init_scale=[None, 1.0])
register("z_vs_a", version=1, claims=(15,),
         settings={"smoke": grid(**_ZA, hidden=[[32, 32]], steps=[40]),
                   "book": grid(**_ZA, hidden=[[100, 100, 100]], steps=[200]),
                   "study": grid(**_ZA, hidden=[[100, 100, 100]], steps=[1000])},
         seeds={"smoke": range(10), "book": range(5), "study": range(20)})(run_z_vs_a)


def run_placement(seed: int, device: str = "cpu", *, activation: str, bn: str, lr: float,
                  hidden, steps: int, batch_size: int = 60) -> dict:
    """Claim 13: BN before (``bn="before"``) or after the activation, one seed."""
    return _train_mlp(seed, device, activation=activation, bn=bn, hidden=hidden, steps=steps,
                      lr=lr, batch_size=batch_size)


_PL = dict(activation=["relu", "sigmoid", "tanh"], bn=["before", "after"])
register("placement", version=1, claims=(13,),
         settings={"smoke": grid(**_PL, lr=[0.1], hidden=[[32, 32]], steps=[30]),
                   "book": grid(**_PL, lr=[0.1, 0.5], hidden=[[64, 64]], steps=[250]),
                   "study": grid(**_PL, lr=[0.1, 0.5], hidden=[[64, 64]], steps=[2000])},
         seeds={"smoke": range(2), "book": range(10), "study": range(20)})(run_placement)


# ---------------------------------------------------------------- demonstrations
def run_bias_gradient(seed: int, device: str = "cpu", *, dtype: str, batch: int) -> dict:
    """Claim 8: ``max |dL/db| / max |dL/dW|`` for a Linear bias right before BN."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    dev = torch_device(device)
    kind = {"float64": torch.float64, "float32": torch.float32}[dtype]
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(20, 8, dtype=kind)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=kind))
    head = nn.Linear(8, 3, dtype=kind)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=kind))
    model = nn.Sequential(layer, nn.BatchNorm1d(8, dtype=kind), nn.Sigmoid(), head).to(dev)
    inputs = torch.randn(batch, 20, generator=gen, dtype=kind).to(dev)
    labels = torch.randint(0, 3, (batch,), generator=gen).to(dev)
    F.cross_entropy(model(inputs), labels).backward()
    return {"bias_gradient_ratio": float(layer.bias.grad.abs().max()
                                         / layer.weight.grad.abs().max())}


register("bias_gradient", version=1, claims=(8,),
         settings={s: grid(dtype=["float64"], batch=[32]) for s in ("smoke", "book", "study")},
         seeds={"smoke": range(3), "book": range(10), "study": range(50)})(run_bias_gradient)


def run_undo_normalization(seed: int, device: str = "cpu", *, dtype: str, batch: int,
                           eps: float = 1e-5) -> dict:
    """Claim 10: BN with ``gamma = sqrt(var + eps)``, ``beta = mean`` returns its input."""
    if device not in ("cpu", "cuda"):
        fail("run_undo_normalization", "device", "'cpu' or 'cuda'", repr(device))
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.uniform(-5, 5), rng.uniform(0.1, 10), size=(batch, 4)).astype(dtype)
    gamma, beta = np.sqrt(x.var(axis=0) + eps), x.mean(axis=0)
    y, _ = batchnorm_forward(x, gamma.astype(dtype), beta.astype(dtype), eps)
    return {"undo_error": float(relative_error(y, x))}


register("undo_normalization", version=1, claims=(10,),
         settings={s: grid(dtype=["float64"], batch=[32]) for s in ("smoke", "book", "study")},
         seeds={"smoke": range(3), "book": range(10), "study": range(50)})(
    run_undo_normalization)
