"""Accuracy against batch size at an equal number of examples seen, for several normalizations.

Wu and He (:cite:`wu2018group`) train every batch size for the same number
of epochs, with the learning rate scaled linearly with the batch size, and
compare the final error of BatchNorm and GroupNorm. This module runs that
protocol in small: a CNN from ``bncourse.lab.models.make_cnn`` on the 8x8 digits,
one model per (normalization, batch size, seed), each trained for
``epochs`` passes over the same training images.

Shape letters: ``S`` seeds, ``B`` batch sizes.

For batch size ``b``: ``steps = epochs * (n_train // b)`` SGD updates with
learning rate ``base_lr * b / base_batch`` (the linear scaling rule) and the
given momentum. Everything else is fixed: the same initial conv/linear
weights for a given seed whatever the normalization (``make_cnn``'s rule),
and the same data order for a given seed and batch size (``train``'s rule).
Only one thing changes between two runs that are compared.

Public API
----------
``scaled_lr(batch_size, base_lr, base_batch) -> float``
``first_n_train(data, n_train) -> Dataset``
    The same data with only the first ``n_train`` training samples.
``run_batch_size(variant, batch_size, seed, data, epochs=1, base_lr=0.05, base_batch=64,
 momentum=0.9, channels=(8, 16, 32, 32), groups=4, onednn_min_batch=16) -> History``
``run_batch_size_sweep(variants, batch_sizes, seeds, data, **kwargs) -> SweepResult``
``values_per_statistic(model, x) -> dict``
    How many values share one mean and variance in each normalization layer.

A *variant* is a dict of keyword arguments for ``make_cnn`` that says which
normalization to use: ``{"norm": "bn"}``, ``{"norm": "gn"}``,
``{"norm": "ln"}``, or ``{"norm": "bn", "norm_layer": factory}``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bncourse._checks import check_int, check_positive, fail
from bncourse.lab.data import Dataset
from bncourse.lab.models import make_cnn
from bncourse.lab.training import History, eval_forward, train

__all__ = ["scaled_lr", "first_n_train", "run_batch_size", "run_batch_size_sweep", "SweepResult",
           "values_per_statistic"]



def scaled_lr(batch_size, base_lr, base_batch) -> float:
    """The linear scaling rule: ``base_lr * batch_size / base_batch``."""
    func = "scaled_lr"
    batch_size = check_int(func, "batch_size", batch_size)
    base_batch = check_int(func, "base_batch", base_batch)
    return check_positive(func, "base_lr", base_lr) * batch_size / base_batch


def first_n_train(data: Dataset, n_train) -> Dataset:
    """``data`` with only its first ``n_train`` training samples (the test set is unchanged)."""
    n_train = check_int("first_n_train", "n_train", n_train)
    if n_train > data.n_train:
        fail("first_n_train", "n_train", f"at most the {data.n_train} training samples",
              repr(n_train))
    return dataclasses.replace(data, x_train=data.x_train[:n_train],
                               y_train=data.y_train[:n_train])


def run_batch_size(variant: dict, batch_size, seed, data: Dataset, epochs=1, base_lr=0.05,
                   base_batch=64, momentum=0.9, channels=(8, 16, 32, 32), groups=4,
                   onednn_min_batch=16) -> History:
    """Train one CNN with ``variant``'s normalization at one batch size; return its ``History``.

    ``data`` must hold images ``(N, 1, H, W)`` (``Dataset.as_images()``).
    The run makes ``epochs * (data.n_train // batch_size)`` updates with the
    linearly scaled learning rate, and evaluates only at the start and the end.

    Speed only: for batches smaller than ``onednn_min_batch`` the run switches
    PyTorch's oneDNN (mkldnn) CPU kernels off (and restores the setting
    afterwards). For these tiny tensors the native kernels were measured about
    1.6 times faster at batch size 2, and slower from batch size 32 on. The
    two compute the same function up to rounding.

    Raises:
        TypeError / ValueError: bad counts, a batch larger than the training
            set, or a ``variant`` that is not a dict.
    """
    func = "run_batch_size"
    if not isinstance(variant, dict):
        fail(func, "variant", "a dict of make_cnn keyword arguments",
              type(variant).__name__, TypeError)
    batch_size = check_int(func, "batch_size", batch_size)
    epochs = check_int(func, "epochs", epochs)
    if batch_size > data.n_train:
        fail(func, "batch_size", f"at most the {data.n_train} training samples", repr(batch_size))
    model = make_cnn(in_channels=data.x_train.shape[1], num_classes=data.num_classes,
                     channels=channels, groups=groups, image_size=data.x_train.shape[-1],
                     seed=seed, **variant)
    steps = epochs * (data.n_train // batch_size)
    onednn = torch.backends.mkldnn.enabled
    try:
        torch.backends.mkldnn.enabled = onednn and batch_size >= onednn_min_batch
        return train(model, data, steps=steps, batch_size=batch_size,
                     lr=scaled_lr(batch_size, base_lr, base_batch), momentum=momentum,
                     seed=seed, eval_every=None, progress=False)
    finally:
        torch.backends.mkldnn.enabled = onednn


@dataclasses.dataclass
class SweepResult:
    """Final accuracies of a batch-size sweep.

    Attributes:
        batch_sizes: ``(B,)`` ints; seeds: ``(S,)`` ints.
        test_accuracy, train_accuracy: ``{label: (S, B) array}`` (NaN for a
            diverged run), in eval mode after the last update.
        seconds: ``{label: total training seconds}``.
    """

    batch_sizes: np.ndarray
    seeds: np.ndarray
    test_accuracy: dict
    train_accuracy: dict
    seconds: dict


def run_batch_size_sweep(variants: dict, batch_sizes, seeds, data: Dataset, progress=True,
                     **kwargs) -> SweepResult:
    """``run_batch_size`` for every variant, batch size and seed.

    Args:
        variants: ``{label: make_cnn keyword dict}``.
        batch_sizes, seeds: sequences of ints.
        data: image data set.
        progress: one ``tqdm`` bar (stderr) over all runs.
        **kwargs: passed to ``run_batch_size`` (``epochs``, ``base_lr``, ...).
    """
    if not isinstance(variants, dict) or not variants:
        fail("run_batch_size_sweep", "variants", "a non-empty dict {label: make_cnn kwargs}",
              repr(variants), TypeError if not isinstance(variants, dict) else ValueError)
    batch_sizes = [int(b) for b in batch_sizes]
    seeds = [int(s) for s in seeds]
    test = {k: np.full((len(seeds), len(batch_sizes)), np.nan) for k in variants}
    train_acc = {k: np.full((len(seeds), len(batch_sizes)), np.nan) for k in variants}
    seconds = {k: 0.0 for k in variants}
    total = len(variants) * len(batch_sizes) * len(seeds)
    with tqdm(total=total, desc="batch-size sweep", disable=not progress) as bar:
        for label, variant in variants.items():
            for i, seed in enumerate(seeds):
                for j, b in enumerate(batch_sizes):
                    history = run_batch_size(variant, b, seed, data, **kwargs)
                    test[label][i, j] = history.final_test_accuracy
                    train_acc[label][i, j] = history.final_train_accuracy
                    seconds[label] += history.seconds
                    bar.update(1)
    return SweepResult(np.array(batch_sizes), np.array(seeds), test, train_acc, seconds)


_BATCH_STAT_TYPES = (nn.modules.batchnorm._BatchNorm,)


def values_per_statistic(model: nn.Module, x: torch.Tensor) -> dict:
    """How many values share one mean and one variance in each normalization layer, for input ``x``.

    Runs one forward pass in evaluation mode (under ``torch.no_grad``; the
    model's mode is restored) with hooks on every BatchNorm-like layer
    (``torch.nn`` BatchNorm, or any module with ``running_mean`` and
    ``num_batches_tracked``, such as ``bncourse`` BN variants) and every
    ``nn.GroupNorm``/``nn.LayerNorm``. For an input of shape ``(N, C, *S)``
    to the layer: BatchNorm pools ``N * prod(S)`` values per channel,
    GroupNorm with ``G`` groups pools ``C / G * prod(S)`` per sample and
    group, LayerNorm ``prod(normalized_shape)`` per sample.

    Returns:
        ``{layer name: (kind, m)}`` in module order, ``kind`` one of
        ``"batch"``, ``"group"``, ``"layer"``.
    """
    found = {}
    hooks = []

    def hook_for(name, kind, module):
        def hook(_module, inputs, _output):
            shape = inputs[0].shape
            spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            if kind == "batch":
                m = shape[0] * spatial
            elif kind == "group":
                m = shape[1] // module.num_groups * spatial
            else:
                m = int(np.prod(module.normalized_shape))
            found[name] = (kind, int(m))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.GroupNorm):
            kind = "group"
        elif isinstance(module, nn.LayerNorm):
            kind = "layer"
        elif isinstance(module, _BATCH_STAT_TYPES) or (
                hasattr(module, "running_mean") and hasattr(module, "num_batches_tracked")):
            kind = "batch"
        else:
            continue
        hooks.append(module.register_forward_hook(hook_for(name, kind, module)))
    try:
        eval_forward(model, x)
    finally:
        for h in hooks:
            h.remove()
    return found
