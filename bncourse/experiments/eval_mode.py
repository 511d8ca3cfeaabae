"""Forgetting ``model.eval()``: test accuracy in training mode, and statistics that move.

In training mode every BN layer normalizes a batch with that batch's own mean
and variance, so a prediction depends on the other samples of the batch and on
the batch size; in evaluation mode it uses the running statistics and every
sample is treated alone. ``torch.no_grad()`` changes nothing about that: it
turns off gradient recording, not training mode, so a "test pass" in training
mode under ``no_grad`` still overwrites the running statistics with
``running = (1 - momentum) * running + momentum * batch_stat`` at every batch.

Shape letters: N test samples, B evaluation batch size.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bncourse._checks import check_int, fail
from bncourse.lab.data import Dataset
from bncourse.lab.training import evaluate

__all__ = ["batched_accuracy", "run_eval_mode"]


@torch.no_grad()
def batched_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     training: bool) -> float:
    """Accuracy of ``model`` on ``(x, y)`` fed in consecutive batches of ``batch_size``.

    ``training`` sets the mode of the pass; the model is used as given, so in
    training mode its running statistics are updated (pass a copy to keep them).
    Only full batches are used (the last ``len(x) % batch_size`` samples are
    left out, so that no batch of one reaches BN in training mode). Returns the
    fraction of correct predictions among the samples used.
    """
    batch_size = check_int("batched_accuracy", "batch_size", batch_size)
    n = len(x) // batch_size * batch_size
    if n == 0:
        fail("batched_accuracy", "batch_size", f"at most the {len(x)} samples", repr(batch_size))
    model.train(training)
    correct = 0
    for i in range(0, n, batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(dim=1) == y[i:i + batch_size]).sum())
    return correct / n


def run_eval_mode(model: nn.Module, data: Dataset, batch_sizes=(2, None),
                  sorted_batch: int = 32) -> dict:
    """Test accuracy in evaluation and training mode, shuffled and sorted by label.

    Args:
        model: a trained model with BN layers (left unchanged: copies are used).
        data: its data set; the test set is fed in its stored (shuffled) order
            for each size of ``batch_sizes``, and once sorted by label in batches
            of ``sorted_batch`` (as a test set stored class by class would be).
        batch_sizes: evaluation batch sizes (None: the whole test set as one batch).
        sorted_batch: batch size of the sorted pass.

    Returns:
        dict with ``accuracy[(mode, order, B)]`` (mode ``"eval"``/``"train"``,
        order ``"shuffled"``/``"sorted"``), and, for a training-mode pass under
        ``no_grad`` over the test set in each order and batch size, the
        evaluation-mode test accuracy afterwards ``after_pass[(order, B)]`` and
        the mean ratio of the first BN layer's running variance after/before
        ``var_ratio[(order, B)]``; ``clean`` is the evaluation-mode accuracy of
        the untouched model; ``batch1_error`` the first line of the error a
        training-mode pass at batch size 1 raises (None if it runs).
    """
    func = "run_eval_mode"
    if not isinstance(model, nn.Module):
        fail(func, "model", "a torch.nn.Module", type(model).__name__, TypeError)
    sizes = [data.n_test if b is None else check_int(func, "batch_sizes", b)
             for b in batch_sizes]
    sorted_batch = check_int(func, "sorted_batch", sorted_batch)
    order = torch.argsort(data.y_test, stable=True)
    feeds = {("shuffled", b): (data.x_test, data.y_test, b) for b in sizes}
    feeds[("sorted", sorted_batch)] = (data.x_test[order], data.y_test[order], sorted_batch)
    first_bn = next(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    var_before = first_bn.running_var.clone()
    accuracy, after_pass, var_ratio = {}, {}, {}
    for (kind, b), (x, y, bs) in feeds.items():
        for mode in ("eval", "train"):
            probe = copy.deepcopy(model)
            accuracy[(mode, kind, b)] = batched_accuracy(probe, x, y, bs, mode == "train")
            if mode == "train":
                after_pass[(kind, b)] = evaluate(probe, data.x_test, data.y_test)[1]
                bn = next(m for m in probe.modules()
                          if isinstance(m, nn.modules.batchnorm._BatchNorm))
                var_ratio[(kind, b)] = float((bn.running_var / var_before).mean())
    clean = evaluate(model, data.x_test, data.y_test)[1]
    try:
        batched_accuracy(copy.deepcopy(model), data.x_test[:4], data.y_test[:4], 1, True)
        batch1_error = None
    except ValueError as exc:
        batch1_error = str(exc).splitlines()[0]
    return dict(accuracy=accuracy, after_pass=after_pass, var_ratio=var_ratio, clean=clean,
                batch1_error=batch1_error)
