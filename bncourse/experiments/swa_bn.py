"""Averaged weights and BN statistics: SWA and EMA with and without ``update_bn``.

``torch.optim.swa_utils.AveragedModel`` keeps a running average of a model's
*parameters*. BN's running statistics are buffers: by default
(``use_buffers=False``) the averaged copy takes the buffers of the model it
averages at every update, so it ends with the statistics of the *last*
weights, not of the averaged ones. ``use_buffers=True`` averages the buffers
like the weights: an average of statistics of other weights, which is not the
statistics of the averaged weights either (the variance of an average is not
the average of the variances). The statistics that fit the averaged weights
have to be measured again on training data, which
``torch.optim.swa_utils.update_bn`` does (a cumulative average over one pass).

Two averages over one training run: an exponential moving average (EMA) of
the weights, created at step 0, and stochastic weight averaging (SWA,
Izmailov et al. 2018), an equal-weight average of snapshots taken every
``swa_every`` steps over the second half of the run.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from bncourse._checks import check_int
from bncourse.lab.data import Dataset
from bncourse.lab.models import make_cnn
from bncourse.lab.training import Probe, evaluate, train

__all__ = ["run_swa_bn"]


class _Averager(Probe):
    """Update the averaged models from the training model at each record step."""

    def __init__(self, model: nn.Module, decay: float, swa_start: int, swa_every: int):
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.ema_buffers = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                                         use_buffers=True)
        self.swa = None
        self.swa_start, self.swa_every, self.t = swa_start, swa_every, 0

    def __call__(self, model, batch):
        self.ema.update_parameters(model)
        self.ema_buffers.update_parameters(model)
        if self.t >= self.swa_start and (self.t - self.swa_start) % self.swa_every == 0:
            if self.swa is None:
                self.swa = AveragedModel(model)        # a copy of this moment's buffers
            self.swa.update_parameters(model)
        self.t += 1
        return 0.0


def run_swa_bn(data: Dataset, steps: int = 600, batch_size: int = 32, lr: float = 0.1,
               decay: float = 0.99, swa_every: int = 5, seed: int = 0,
               channels=(8, 16), progress: bool = False) -> dict:
    """Train a BN CNN; test accuracy of the last, EMA and SWA weights with each choice of buffers.

    Returns:
        dict of test accuracies: ``last`` (the SGD weights), ``ema_last``
        (EMA weights with the last model's buffers, the default),
        ``ema_buffers`` (EMA of weights and buffers), ``ema_update_bn``,
        ``swa_last``, ``swa_update_bn``; and ``var_error[name]``, the mean over
        BN channels of ``|running_var / running_var_after_update_bn - 1|`` for
        ``name`` in ``ema_last``, ``ema_buffers``, ``swa_last``: how far the
        buffers used are from the statistics of the averaged weights.
    """
    steps = check_int("run_swa_bn", "steps", steps, minimum=4)
    model = make_cnn(norm="bn", channels=channels, bias_before_norm=False, seed=seed)
    averager = _Averager(model, decay, steps // 2, check_int("run_swa_bn", "swa_every",
                                                             swa_every))
    train(model, data, steps=steps, batch_size=batch_size, lr=lr, momentum=0.9, seed=seed,
          eval_every=None, probes={"average": averager}, record_every=1, progress=progress,
          desc="SWA / EMA")
    loader = list(data.x_train.split(batch_size))

    def acc(m):
        return evaluate(m, data.x_test, data.y_test)[1]

    out = dict(last=acc(model), ema_last=acc(averager.ema),
               ema_buffers=acc(averager.ema_buffers), swa_last=acc(averager.swa), var_error={})
    for name, averaged, others in (("ema", averager.ema, ("last", "buffers")),
                                   ("swa", averager.swa, ("last",))):
        fixed = copy.deepcopy(averaged)
        update_bn(loader, fixed)
        out[f"{name}_update_bn"] = acc(fixed)
        true_vars = [m.running_var for m in fixed.modules() if isinstance(m, nn.BatchNorm2d)]
        for other in others:
            used = averager.ema_buffers if other == "buffers" else averaged
            used_vars = [m.running_var for m in used.modules() if isinstance(m, nn.BatchNorm2d)]
            ratios = torch.cat([u / t for u, t in zip(used_vars, true_vars)])
            out["var_error"][f"{name}_{other}"] = float((ratios - 1).abs().mean())
    return out
