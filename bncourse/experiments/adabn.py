"""Domain shift at test time: the source statistics against recomputed ones (AdaBN).

A network trained on one domain meets inputs from another: here the digits
with lower contrast, a brightness offset and pixel noise,
``x' = contrast * x + offset + noise * z``. In evaluation mode its BN layers
normalize with the *source* running statistics, which no longer centre and
scale the target activations. AdaBN (Li et al., 2016) recomputes the
statistics of every BN layer on unlabelled target inputs and changes nothing
else; here with ``bncourse.precise_bn.recompute_bn_stats``.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from bncourse._checks import check_int
from bncourse.lab.data import Dataset
from bncourse.lab.training import evaluate
from bncourse.precise_bn import recompute_bn_stats

__all__ = ["shift_domain", "run_adabn"]


def shift_domain(data: Dataset, contrast: float = 0.5, offset: float = 1.0,
                 noise: float = 0.3, seed: int = 0) -> Dataset:
    """The same samples and labels with ``x' = contrast * x + offset + noise * z``, z ~ N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)

    def move(x):
        return contrast * x + offset + noise * torch.randn(x.shape, generator=gen)

    return dataclasses.replace(data, x_train=move(data.x_train), x_test=move(data.x_test),
                               name=f"{data.name} (shifted)")


def run_adabn(model: nn.Module, source: Dataset, target: Dataset, sizes=(8, 32, 128, None),
              batch_size: int = 32) -> dict:
    """Target test accuracy with source statistics and after AdaBN on ``n`` target images.

    Args:
        model: trained on ``source`` (left unchanged; AdaBN runs on copies).
        source, target: the two domains (same classes).
        sizes: numbers of unlabelled target *training* images used to recompute
            the statistics (None: all of them).
        batch_size: batch size of the recomputation pass.

    Returns:
        dict with ``source`` (accuracy on the source test set), ``target``
        (target test set, source statistics) and ``adabn[n]`` (target test set
        after recomputing on the first ``n`` target training images).
    """
    batch_size = check_int("run_adabn", "batch_size", batch_size)
    out = dict(source=evaluate(model, source.x_test, source.y_test)[1],
               target=evaluate(model, target.x_test, target.y_test)[1], adabn={})
    for n in sizes:
        n_used = target.n_train if n is None else check_int("run_adabn", "sizes", n, minimum=2)
        x = target.x_train[:n_used]
        adapted = recompute_bn_stats(copy.deepcopy(model), x.split(batch_size))
        out["adabn"][n_used] = evaluate(adapted, target.x_test, target.y_test)[1]
    return out
