"""Weight decay on scale-invariant weights: an effective learning rate, and gamma and beta.

The weights ``W`` of a layer followed by BN (without bias) are scale-invariant:
``BN(c W x) = BN(W x)`` for every ``c > 0``, so the loss does not depend on
``||W||`` and its gradient is orthogonal to ``W`` and shrinks as ``1/||W||``.
Plain SGD therefore only *grows* the norm,
``||W_{t+1}||^2 = ||W_t||^2 + lr^2 ||g_t||^2``, and the angle a step turns
``W`` by, about ``lr ||g_t|| / ||W_t||``, falls as the norm grows: an effective
learning rate ``lr / ||W||^2`` that decays by itself (van Laarhoven 2017).
Weight decay ``lambda`` shrinks the norm by ``(1 - lr lambda)`` per step; the
two balance at an equilibrium where the angular update per step is about
``sqrt(2 lr lambda)`` (plain SGD, no momentum), whatever ``lr`` and
``lambda`` are separately: only their product matters (Li & Arora 2020's
"intrinsic learning rate"; Wan et al. 2021).

Shape letters: D the number of weights of one layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bncourse._checks import check_int
from bncourse.lab.data import Dataset
from bncourse.lab.models import make_mlp
from bncourse.lab.training import train

__all__ = ["angular_updates", "param_groups", "run_weight_decay", "run_bn_param_decay"]


def angular_updates(weights: np.ndarray) -> np.ndarray:
    """Angle (radians) between successive rows of ``weights`` ``(T, D)``: shape ``(T - 1,)``.

    ``theta_t = 2 arcsin(||u_{t+1} - u_t|| / 2)`` with ``u_t = w_t / ||w_t||``:
    the same angle as ``arccos(<u_t, u_{t+1}>)``, without the loss of digits of
    ``arccos`` near 1, so tiny angles come out accurate.
    """
    w = np.asarray(weights, dtype=np.float64)
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    chord = np.linalg.norm(u[1:] - u[:-1], axis=1)
    return 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def param_groups(model: nn.Module, weight_decay: float, decay_bn: bool) -> list[dict]:
    """Optimizer groups: ``weight_decay`` on everything, or on everything but BN's gamma, beta."""
    bn_params = {id(p) for m in model.modules() if isinstance(m, _BatchNorm)
                 for p in m.parameters(recurse=False)}
    rest = [p for p in model.parameters() if id(p) not in bn_params]
    bn = [p for p in model.parameters() if id(p) in bn_params]
    return [{"params": rest, "weight_decay": weight_decay},
            {"params": bn, "weight_decay": weight_decay if decay_bn else 0.0}]


def _mlp(seed: int, init_scale=None) -> nn.Module:
    return make_mlp(64, hidden=(64, 64), activation="relu", bn="before", bias_before_bn=False,
                    init_scale=init_scale, seed=seed)


def run_weight_decay(data: Dataset, settings, steps: int = 600, batch_size: int = 32,
                     layer: str = "fc2", init_scale=None, seed: int = 0,
                     progress: bool = False) -> dict:
    """Norm and angular update per step of a scale-invariant layer under SGD with weight decay.

    Args:
        data: a vector data set (digits, ``(N, 64)``).
        settings: ``(lr, weight_decay)`` pairs; plain SGD, no momentum, decay on
            every parameter but BN's.
        steps, batch_size, seed: the training run (the same data order for all).
        layer: the Linear layer followed by BN whose weights are tracked.
        init_scale: initial weights (see ``make_mlp``); a small scale starts the
            norm below its equilibrium.

    Returns:
        dict ``(lr, weight_decay) -> {"norm": (steps,), "angle": (steps - 1,),
        "predicted": sqrt(2 lr weight_decay), "test_accuracy": float}``.
    """
    steps = check_int("run_weight_decay", "steps", steps, minimum=2)
    out = {}
    for lr, wd in settings:
        model = _mlp(seed, init_scale)
        snaps = []

        def snapshot(m, batch):
            w = m.get_submodule(layer).weight.detach().flatten().double().numpy().copy()
            snaps.append(w)
            return float(np.linalg.norm(w))

        history = train(model, data, steps=steps, batch_size=batch_size, lr=lr,
                        optimizer=lambda params, lr=lr, wd=wd: torch.optim.SGD(
                            param_groups(model, wd, decay_bn=False), lr=lr),
                        seed=seed, eval_every=None, probes={"norm": snapshot}, record_every=1,
                        progress=progress, desc=f"lr {lr:g}, weight decay {wd:g}")
        out[(lr, wd)] = dict(norm=history.records["norm"].astype(np.float64),
                             angle=angular_updates(np.stack(snaps)),
                             predicted=math.sqrt(2 * lr * wd),
                             test_accuracy=float(history.final_test_accuracy))
    return out


def run_bn_param_decay(data: Dataset, lr: float = 0.1, weight_decay: float = 5e-3,
                       steps: int = 600, batch_size: int = 32, seeds=(0, 1, 2)) -> dict:
    """Test accuracy and mean |gamma| with weight decay on BN's gamma and beta, and without.

    Returns:
        dict ``decay_bn -> {"accuracy": [per seed], "gamma": [mean |gamma| per seed]}``
        for ``decay_bn`` in (True, False); SGD with momentum 0.9, the same seeds.
    """
    out = {}
    for decay_bn in (True, False):
        accs, gammas = [], []
        for seed in seeds:
            model = _mlp(seed)
            history = train(model, data, steps=steps, batch_size=batch_size, lr=lr,
                            optimizer=lambda params, d=decay_bn, m=model: torch.optim.SGD(
                                param_groups(m, weight_decay, decay_bn=d), lr=lr,
                                momentum=0.9),
                            seed=seed, eval_every=None, progress=False)
            accs.append(float(history.final_test_accuracy))
            gammas.append(float(torch.cat([m.weight.detach().abs() for m in model.modules()
                                           if isinstance(m, _BatchNorm)]).mean()))
        out[decay_bn] = dict(accuracy=accs, gamma=gammas)
    return out
