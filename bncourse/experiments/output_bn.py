"""BatchNorm on the output layer: calibration of the logits and dependence on the batch.

A classifier's logits ``u`` (N, K) carry two things BN would standardize
away over each batch: their *scale*, which sets how confident the softmax
is, and their per-class *offset*, which carries how likely each class is.
``with_output_bn`` appends ``BatchNorm1d(K)`` to a model so that the effect
can be measured; ``calibration`` measures accuracy, cross-entropy and the
expected calibration error; ``batch_dependence`` measures how much one
example's prediction moves with the other examples of its batch when BN
uses batch statistics (training mode).

Shape letters: N samples, K classes, B bins, R random batchings.

Public API
----------
``with_output_bn(model, affine=True) -> nn.Sequential``
``calibration(logits, y, bins=10) -> Calibration``
``reliability(logits, y, bins=10) -> (confidence (B,), accuracy (B,), count (B,))``
``batch_dependence(model, x, y, batch_size=60, draws=20, seed=0) -> BatchDependence``
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bncourse._checks import fail

__all__ = ["with_output_bn", "calibration", "Calibration", "reliability", "batch_dependence",
           "BatchDependence"]


def with_output_bn(model: nn.Sequential, affine: bool = True) -> nn.Sequential:
    """A deep copy of ``model`` with ``("norm_out", BatchNorm1d(K, affine=affine))`` appended.

    ``K`` is the ``out_features`` of the model's last Linear layer. All
    other children (and their weights) are copied unchanged, so a model built
    with the same seed differs from ``model`` in the output BN only.

    Raises
    ------
    TypeError for a model that is not an ``nn.Sequential``; ValueError when its
    last child is not an ``nn.Linear``.
    """
    func = "with_output_bn"
    if not isinstance(model, nn.Sequential):
        fail(func, "model", "an nn.Sequential", type(model).__name__, TypeError)
    children = list(model.named_children())
    if not children or not isinstance(children[-1][1], nn.Linear):
        fail(func, "model", "an nn.Sequential ending with an nn.Linear (the logits)",
              type(children[-1][1]).__name__ if children else "an empty one")
    last = children[-1][1]
    new = copy.deepcopy(model)
    bn = nn.BatchNorm1d(last.out_features, affine=bool(affine), dtype=last.weight.dtype)
    out = nn.Sequential(OrderedDict(list(new.named_children()) + [("norm_out", bn)]))
    return out.train(model.training)


def _logits_labels(func: str, logits, y):
    logits = torch.as_tensor(logits).detach().double()
    y = torch.as_tensor(y).detach()
    if logits.dim() != 2 or logits.shape[1] < 2:
        fail(func, "logits", "shape (N, K) with K >= 2", f"shape {tuple(logits.shape)}")
    if y.shape != (logits.shape[0],) or y.dtype not in (torch.int64, torch.int32):
        fail(func, "y", f"integer labels of shape ({logits.shape[0]},)",
              f"{y.dtype} of shape {tuple(y.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= logits.shape[1]):
        fail(func, "y", f"labels in 0..{logits.shape[1] - 1}",
              f"values from {int(y.min())} to {int(y.max())}")
    return logits, y.long()


def _check_bins(func: str, bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        fail(func, "bins", "a positive int", repr(bins))
    return int(bins)


def reliability(logits, y, bins: int = 10):
    """Confidence and accuracy per confidence bin (a reliability diagram).

    The confidence of a prediction is its largest softmax probability. Bin
    ``b`` holds the predictions with confidence in ``(b / B, (b + 1) / B]``
    (the first bin includes 0).

    Returns
    -------
    confidence, accuracy : ndarrays (B,), float64
        Mean confidence and fraction correct in each bin; NaN for an empty bin.
    count : ndarray (B,), int64
    """
    func = "reliability"
    logits, y = _logits_labels(func, logits, y)
    bins = _check_bins(func, bins)
    prob = torch.softmax(logits, dim=1)
    conf, pred = prob.max(dim=1)
    conf, correct = conf.numpy(), (pred == y).double().numpy()
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return mean_conf, accuracy, count


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Accuracy and calibration of a classifier's logits on one data set.

    Attributes
    ----------
    accuracy : float     fraction correct
    nll : float          mean cross-entropy (nats)
    ece : float          expected calibration error ``sum_b (n_b / N) |acc_b - conf_b|``
    confidence : float   mean largest softmax probability
    logit_std : float    std of all logits (one number for the scale of the logits)
    """

    accuracy: float
    nll: float
    ece: float
    confidence: float
    logit_std: float


def calibration(logits, y, bins: int = 10) -> Calibration:
    """Accuracy, cross-entropy, expected calibration error (``bins`` equal-width bins), confidence.

    An over-confident model has ``confidence > accuracy``, an under-confident
    one ``confidence < accuracy``; ECE weighs the gap bin by bin.

    Parameters
    ----------
    logits : tensor or ndarray (N, K)
    y : integer tensor or ndarray (N,)
    bins : int
    """
    func = "calibration"
    logits, y = _logits_labels(func, logits, y)
    conf, acc, count = reliability(logits, y, bins)
    used = count > 0
    ece = float(np.sum(count[used] / count.sum() * np.abs(acc[used] - conf[used])))
    prob = torch.softmax(logits, dim=1)
    return Calibration(accuracy=float((logits.argmax(dim=1) == y).double().mean()),
                       nll=float(F.cross_entropy(logits, y)),
                       ece=ece, confidence=float(prob.max(dim=1).values.mean()),
                       logit_std=float(logits.std(unbiased=False)))


@dataclasses.dataclass(frozen=True)
class BatchDependence:
    """How one example's training-mode prediction depends on the rest of its batch.

    Attributes
    ----------
    prob_std : ndarray (N,)
        Std over ``draws`` random batchings of the probability given to the
        true class.
    changed : float
        Fraction of examples whose predicted class is not the same in every batching.
    accuracy : ndarray (R,)
        Accuracy of each batching's predictions.
    """

    prob_std: np.ndarray
    changed: float
    accuracy: np.ndarray


@torch.no_grad()
def batch_dependence(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 60,
                     draws: int = 20, seed: int = 0) -> BatchDependence:
    """Predict every example of ``x`` inside ``draws`` random batchings, BN on batch statistics.

    Each batching shuffles ``x`` with ``torch.Generator(seed)`` and cuts it
    into batches of ``batch_size``; the last, short batch is filled up with
    the first examples of the permutation so that every batch has the same
    size. The model runs in training mode (dropout too, if any) on a deep
    copy, so the running statistics of ``model`` are not touched. In
    evaluation mode the answer would be the same for every batching.

    Raises
    ------
    ValueError for ``batch_size`` outside [2, N] or ``draws < 2``.
    """
    func = "batch_dependence"
    if not isinstance(model, nn.Module):
        fail(func, "model", "an nn.Module", type(model).__name__, TypeError)
    n = int(x.shape[0])
    if y.shape != (n,):
        fail(func, "y", f"shape ({n},) to match x", f"shape {tuple(y.shape)}")
    for arg, value, low, high in (("batch_size", batch_size, 2, n), ("draws", draws, 2, None)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low \
                or (high is not None and value > high):
            fail(func, arg, f"an int in [{low}, {high if high is not None else 'inf'})",
                  repr(value))
    net = copy.deepcopy(model).train()
    gen = torch.Generator().manual_seed(int(seed))
    prob = torch.empty(draws, n, dtype=torch.float64)
    pred = torch.empty(draws, n, dtype=torch.int64)
    rows = torch.arange(batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for r in range(draws):
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                k = idx.numel()
                if k < batch_size:
                    idx = torch.cat([idx, perm[:batch_size - k]])
                logits = net(x[idx]).double()
                p = torch.softmax(logits, dim=1)[rows, y[idx]]
                prob[r, idx[:k]] = p[:k]
                pred[r, idx[:k]] = logits.argmax(dim=1)[:k]
    changed = float((pred != pred[0]).any(dim=0).double().mean())
    accuracy = (pred == y).double().mean(dim=1).numpy()
    return BatchDependence(prob_std=prob.std(dim=0, unbiased=False).numpy(), changed=changed,
                           accuracy=accuracy)
