"""Fine-tuning a BN network on a small data set: BN in training mode or frozen.

A network is pretrained on one task (digits 0-4) and fine-tuned on another
(digits 5-9) from a handful of images, at a small batch size. Three ways to
treat its BN layers:

``"train"``
    the default after ``model.train()``: batch statistics from a few images,
    running statistics re-estimated with momentum, gamma and beta trained;
``"frozen"``
    every BN replaced by :class:`FrozenBatchNorm` (torchvision's
    ``FrozenBatchNorm2d`` idea): the pretrained running statistics and gamma,
    beta are constants, ``y = x * scale + shift`` per channel, whatever mode;
``"frozen-affine"``
    the statistics frozen the same way, gamma and beta trained.

Shape letters: N batch, C channels.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bncourse._checks import check_int, fail
from bncourse.lab.data import Dataset
from bncourse.lab.models import init_weights_
from bncourse.lab.training import train

__all__ = ["FrozenBatchNorm", "freeze_batchnorm", "class_subset", "run_finetune", "MODES"]

MODES = ("train", "frozen", "frozen-affine")


class FrozenBatchNorm(nn.Module):
    """BN with fixed statistics: ``y = gamma * (x - mean) / sqrt(var + eps) + beta``, per channel.

    ``mean``, ``var`` (buffers) come from a trained BN's running statistics;
    ``gamma``, ``beta`` are buffers too, or parameters with ``affine_trainable``.
    The train/eval mode changes nothing: there are no batch statistics.
    Input ``(N, C, ...)``; output the same shape.
    """

    def __init__(self, bn: nn.Module, affine_trainable: bool = False):
        super().__init__()
        if not isinstance(bn, _BatchNorm) or bn.running_mean is None:
            fail("FrozenBatchNorm", "bn", "a torch BatchNorm with running statistics",
                  type(bn).__name__, TypeError)
        c = bn.num_features
        gamma = bn.weight.detach().clone() if bn.weight is not None else torch.ones(c)
        beta = bn.bias.detach().clone() if bn.bias is not None else torch.zeros(c)
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        if affine_trainable:
            self.weight, self.bias = nn.Parameter(gamma), nn.Parameter(beta)
        else:
            self.register_buffer("weight", gamma)
            self.register_buffer("bias", beta)
        self.eps = bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.reshape(view) + shift.reshape(view)


def freeze_batchnorm(model: nn.Module, affine_trainable: bool = False) -> nn.Module:
    """A copy of ``model`` with every BN layer replaced by a :class:`FrozenBatchNorm`."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(parent, name, FrozenBatchNorm(child, affine_trainable))
    return model


def class_subset(data: Dataset, classes, per_class: int | None = None) -> Dataset:
    """The samples of ``classes`` only, labels renumbered 0..K-1 in that order.

    ``per_class`` keeps the first that many training samples of each class
    (all test samples are kept).
    """
    classes = list(classes)

    def pick(x, y, limit):
        idx = torch.cat([torch.nonzero(y == c).flatten()[:limit] for c in classes])
        idx = torch.sort(idx).values
        lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(classes)] = torch.arange(len(classes))
        return x[idx], lookup[y[idx]]

    x_train, y_train = pick(data.x_train, data.y_train, per_class)
    x_test, y_test = pick(data.x_test, data.y_test, None)
    return dataclasses.replace(data, x_train=x_train, y_train=y_train, x_test=x_test,
                               y_test=y_test, num_classes=len(classes))


def run_finetune(pretrained: nn.Module, target: Dataset, mode: str, batch_size: int,
                 steps: int, lr: float = 0.01, momentum: float = 0.9, seed: int = 0) -> float:
    """Fine-tune a copy of ``pretrained`` on ``target`` with BN handled as ``mode``; test accuracy.

    The output layer ``out`` is redrawn (seeded) for ``target.num_classes``
    classes; every other weight starts from ``pretrained``. SGD on all
    trainable parameters for ``steps`` steps of ``batch_size``, then the
    accuracy on ``target``'s test set (evaluation mode).
    """
    func = "run_finetune"
    if mode not in MODES:
        fail(func, "mode", f"one of {MODES}", repr(mode))
    batch_size = check_int(func, "batch_size", batch_size)
    model = copy.deepcopy(pretrained)
    old = model.out
    model.out = nn.Linear(old.in_features, target.num_classes)
    init_weights_(model.out, seed=seed)
    if mode != "train":
        model = freeze_batchnorm(model, affine_trainable=mode == "frozen-affine")
    history = train(model, target, steps=steps, batch_size=batch_size, lr=lr,
                    momentum=momentum, seed=seed, eval_every=None, progress=False)
    return float(history.final_test_accuracy)
