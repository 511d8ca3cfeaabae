"""Batch dependence at inference: a prediction that changes with the rest of the batch.

A sequence classifier with batch norm, left in training mode at prediction
time (or any layer that uses batch statistics there), answers a question
about one sequence with statistics of whatever else is in the batch. The
experiment trains the tiny transformer twice, with BN and with LN, on the
digits read as sequences of 8 rows (``bncourse.lab.transformer``,
``bncourse.lab.training.train``: same seed, same weights at the start, same
batches), then predicts the test set in chunks of ``b`` sequences for several
``b`` with batch statistics, and in evaluation mode.

Public API
----------
``run_batch_dependence(chunk_sizes=(1, 4, 32), n_predict=150, steps=80, lr=3e-3, depth=2, seed=0, data=None) -> DependenceResult``
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from bncourse._checks import check_int
from bncourse.lab.data import Dataset
from bncourse.experiments.warmup_trainability import ROW, SEQ_LEN, digit_rows
from bncourse.lab.transformer import make_transformer
from bncourse.lab.training import train

__all__ = ["run_batch_dependence", "DependenceResult", "predict_in_chunks"]


@torch.no_grad()
def predict_in_chunks(model: torch.nn.Module, x: torch.Tensor, chunk: int, training: bool):
    """Class predictions for ``x`` computed ``chunk`` sequences at a time.

    ``training=True`` uses batch statistics in BN layers; the model is a copy,
    so its running statistics are left as they were.
    """
    model = copy.deepcopy(model).train(training)
    return torch.cat([model(x[i:i + chunk]).argmax(dim=1) for i in range(0, len(x), chunk)])


@dataclasses.dataclass(frozen=True)
class DependenceResult:
    """Per norm (``"BN"``, ``"LN"``): test accuracy and disagreement by chunk size.

    ``accuracy[norm] (K,)`` with batch statistics for each chunk size,
    ``changed[norm] (K,)`` the fraction of test predictions that differ from
    the predictions made on the whole test set at once,
    ``eval_accuracy[norm]`` in evaluation mode (running statistics for BN).
    """

    chunk_sizes: tuple
    n_predict: int
    accuracy: dict
    changed: dict
    eval_accuracy: dict


def run_batch_dependence(chunk_sizes=(1, 4, 32), n_predict: int = 150, steps: int = 80,
                         lr: float = 3e-3, depth: int = 2, seed: int = 0,
                         data: Dataset | None = None) -> DependenceResult:
    """Train a BN and an LN transformer, then predict test sequences in chunks (module docstring).

    The predictions use the first ``n_predict`` test sequences (all of them when
    there are fewer).
    """
    func = "run_batch_dependence"
    chunk_sizes = tuple(check_int(func, "chunk_sizes", b) for b in chunk_sizes)
    data = digit_rows() if data is None else data
    n = min(check_int(func, "n_predict", n_predict), data.n_test)
    x_test, y_test = data.x_test[:n], data.y_test[:n]
    accuracy, changed, eval_accuracy = {}, {}, {}
    for name, norm in (("BN", "bn"), ("LN", "ln")):
        net = make_transformer(ROW, data.num_classes, SEQ_LEN, depth=depth, norm=norm,
                               placement="pre", seed=seed)
        train(net, data, steps=steps, batch_size=32, lr=lr, optimizer="adam", seed=seed,
              eval_every=None, progress=False)
        whole = predict_in_chunks(net, x_test, n, training=True)
        preds = [predict_in_chunks(net, x_test, b, training=True) for b in chunk_sizes]
        accuracy[name] = np.array([float((p == y_test).float().mean()) for p in preds])
        changed[name] = np.array([float((p != whole).float().mean()) for p in preds])
        eval_pred = predict_in_chunks(net, x_test, n, training=False)
        eval_accuracy[name] = float((eval_pred == y_test).float().mean())
    return DependenceResult(chunk_sizes, n, accuracy, changed, eval_accuracy)
