"""Regularization experiments: a train/validation/test split and learning rates tuned on validation.

A claim such as "BN regularizes less as the batch grows" compares runs that
differ in the batch size. Each batch size has its own best learning rate, so
a fair comparison tunes the learning rate *per batch size* on data the
verdict never sees: a validation set carved out of the training set. The
test set is only evaluated, never used to choose anything.

Shape letters: G learning rates in a grid, S seeds.

Public API
----------
``TuningSplit``
    Frozen dataclass: ``tune`` (a ``Dataset`` whose ``x_train`` is the *fit*
    set and whose ``x_test``/``y_test`` are the *validation* set, so that
    ``training.train`` reports validation accuracy), ``x_test``/``y_test``
    (the untouched test set); ``n_fit``, ``n_val``, ``n_test``.
``tuning_split(seed=0, val_fraction=0.2, test_fraction=0.25) -> TuningSplit``
    scikit-learn's digits split into fit / validation / test sets (stratified
    by class), standardized with the statistics of the *fit* set only.
``RunResult``
    ``train_accuracy`` (fit set), ``val_accuracy``, ``test_accuracy``
    (fractions, NaN when the run diverged), ``diverged``, ``steps``.
``run_once(build, split, batch_size, lr, steps, seed, momentum=0.0) -> RunResult``
    Build ``build(seed)``, train it with ``training.train`` and evaluate it.
``TunedRuns``
    The result of ``run_tuned``: the grid and its validation accuracies,
    the chosen ``best_lr``, per-seed ``train_accuracy``, ``val_accuracy``,
    ``test_accuracy`` (shape ``(S,)``) and ``gap`` = train minus test.
``run_tuned(build, split, batch_size, lrs, epochs, seeds, tune_seeds=1, momentum=0.0,
 progress=False, desc=None) -> TunedRuns``
    Train for ``epochs`` epochs (``epochs * (n_fit // batch_size)`` steps) at
    every learning rate of ``lrs`` with the first ``tune_seeds`` seeds, keep
    the one with the best mean validation accuracy, and run the remaining
    seeds with it.
``conjunction_verdict(verdicts) -> str``
    The verdict on a claim made of several parts that must all hold.

Examples
--------
>>> from bncourse.lab.models import make_mlp
>>> split = tuning_split(seed=0)
>>> split.n_fit, split.n_val, split.n_test
(1078, 269, 450)
>>> runs = run_tuned(lambda s: make_mlp(64, hidden=(16,), activation="relu", seed=s),
...                     split, batch_size=64, lrs=[0.1, 0.3], epochs=2, seeds=[0, 1])
>>> runs.best_lr in (0.1, 0.3), runs.test_accuracy.shape
(True, (2,))
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from bncourse._checks import check_int, fail
from bncourse.lab.data import Dataset, load_digits_split, stratified_split
from bncourse.lab.sweeps import VERDICTS
from bncourse.lab.training import evaluate, train
from bncourse.standardize import Standardizer

__all__ = ["TuningSplit", "tuning_split", "RunResult", "run_once", "TunedRuns",
           "run_tuned", "conjunction_verdict"]


@dataclasses.dataclass(frozen=True)
class TuningSplit:
    """Fit, validation and test sets; ``tune`` is what ``training.train`` receives.

    Attributes
    ----------
    tune : Dataset
        ``x_train (n_fit, D)``, ``y_train`` (the fit set, trained on) and
        ``x_test (n_val, D)``, ``y_test`` (the validation set, for tuning).
    x_test : torch.Tensor (n_test, D), float32
    y_test : torch.Tensor (n_test,), int64
        The test set, standardized with the fit set's statistics.
    """

    tune: Dataset
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_fit(self) -> int:
        """Samples trained on."""
        return self.tune.n_train

    @property
    def n_val(self) -> int:
        """Validation samples (used to choose hyperparameters)."""
        return self.tune.n_test

    @property
    def n_test(self) -> int:
        """Test samples (only evaluated)."""
        return int(self.x_test.shape[0])


def _check_fraction(func: str, arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        fail(func, arg, "a float in (0, 1)", repr(value))
    return float(value)


def tuning_split(seed: int = 0, val_fraction: float = 0.2,
                 test_fraction: float = 0.25) -> TuningSplit:
    """Digits split into fit / validation / test, standardized with fit-set statistics only.

    The test set is the one of ``data.load_digits_split(seed, test_fraction)``;
    ``val_fraction`` of each class of the remaining training set becomes the
    validation set (stratified, seeded with ``seed``). Each pixel is then
    standardized with the mean and population std of the fit set, so neither
    the validation nor the test samples influence the inputs.

    Raises
    ------
    ValueError / TypeError for a bad ``seed`` or fraction.
    """
    func = "tuning_split"
    val_fraction = _check_fraction(func, "val_fraction", val_fraction)
    raw = load_digits_split(seed=seed, test_fraction=test_fraction, standardize=False)
    x_all = raw.x_train.double().numpy()
    y_all = raw.y_train.numpy()
    fit, val = stratified_split(y_all, val_fraction, seed)
    scaler = Standardizer().fit(x_all[fit])

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(scaler.transform(x), dtype=np.float32))

    tune = Dataset(x_train=tensor(x_all[fit]), y_train=raw.y_train[fit],
                   x_test=tensor(x_all[val]), y_test=raw.y_train[val],
                   num_classes=raw.num_classes, image_shape=raw.image_shape,
                   name="digits (fit / validation)")
    return TuningSplit(tune=tune, x_test=tensor(raw.x_test.double().numpy()),
                       y_test=raw.y_test)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Accuracies (fractions) of one trained model; NaN when the run diverged."""

    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    diverged: bool
    steps: int


def run_once(build: Callable, split: TuningSplit, batch_size: int, lr: float, steps: int,
             seed: int, momentum: float = 0.0) -> RunResult:
    """Train ``build(seed)`` on the fit set for ``steps`` SGD steps; evaluate fit, validation, test.

    The model seed and the data-order seed are both ``seed`` (``training.train``).
    Training-set accuracy is measured on the whole fit set in evaluation mode.
    """
    if not callable(build):
        fail("run_once", "build", "a callable seed -> nn.Module", type(build).__name__,
              TypeError)
    if not isinstance(split, TuningSplit):
        fail("run_once", "split", "a TuningSplit", type(split).__name__, TypeError)
    model = build(seed)
    hist = train(model, split.tune, steps=steps, batch_size=batch_size, lr=lr,
                 momentum=momentum, seed=seed, eval_every=None, progress=False)
    if hist.diverged:
        return RunResult(math.nan, math.nan, math.nan, True, steps)
    test = evaluate(model, split.x_test, split.y_test)[1]
    return RunResult(hist.final_train_accuracy, hist.final_test_accuracy, test, False, steps)


@dataclasses.dataclass(frozen=True)
class TunedRuns:
    """Learning rate tuned on validation, then several seeds at that learning rate.

    Attributes
    ----------
    batch_size, epochs, steps : int
        ``steps = epochs * (n_fit // batch_size)``.
    lrs : ndarray (G,)
        The grid.
    lr_val_accuracy : ndarray (G,)
        Mean validation accuracy of the tuning seeds at each learning rate
        (NaN where a run diverged).
    best_lr : float
        The grid value with the best ``lr_val_accuracy`` (the first on ties).
    seeds : ndarray (S,)
    train_accuracy, val_accuracy, test_accuracy : ndarray (S,)
        At ``best_lr``; fit-set accuracy in evaluation mode for ``train_accuracy``.
    """

    batch_size: int
    epochs: int
    steps: int
    lrs: np.ndarray
    lr_val_accuracy: np.ndarray
    best_lr: float
    seeds: np.ndarray
    train_accuracy: np.ndarray
    val_accuracy: np.ndarray
    test_accuracy: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        """Generalization gap per seed: training minus test accuracy, shape (S,)."""
        return self.train_accuracy - self.test_accuracy

    @property
    def best_at_edge(self) -> bool:
        """True when the chosen learning rate is the smallest or largest of the grid."""
        return bool(self.best_lr in (float(self.lrs.min()), float(self.lrs.max())))


def run_tuned(build: Callable, split: TuningSplit, batch_size: int, lrs, epochs: int,
                 seeds, tune_seeds: int = 1, momentum: float = 0.0, progress: bool = False,
                 desc: str | None = None) -> TunedRuns:
    """Choose the learning rate on the validation set, then train every seed with it.

    Parameters
    ----------
    build : callable(seed) -> nn.Module
        A fresh model for a seed (e.g. ``lambda s: make_mlp(..., seed=s)``).
    split : TuningSplit
    batch_size : int
    lrs : sequence of float, length G
        The learning-rate grid for this batch size.
    epochs : int
        Passes over the fit set; the number of steps follows from the batch size.
    seeds : sequence of int, length S
    tune_seeds : int in [1, S]
        How many of the first seeds are trained at every learning rate; their
        mean validation accuracy picks ``best_lr``, and their runs at
        ``best_lr`` are reused. The other seeds are trained at ``best_lr`` only.
    momentum : float
        SGD momentum (the same for every run).
    progress : bool
        A tqdm bar over the runs (stderr).

    Returns
    -------
    TunedRuns

    Raises
    ------
    ValueError / TypeError for an empty grid or seed list, a bad ``tune_seeds``
    or ``epochs``, or a batch that leaves no step per epoch.
    """
    func = "run_tuned"
    lrs = np.asarray(list(lrs), dtype=np.float64)
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
        fail(func, "lrs", "a non-empty sequence of positive floats", repr(lrs.tolist()))
    seeds = [check_int(func, "seeds", s, minimum=0) for s in seeds]
    if not seeds:
        fail(func, "seeds", "a non-empty sequence of ints", "an empty one")
    tune_seeds = check_int(func, "tune_seeds", tune_seeds)
    if tune_seeds > len(seeds):
        fail(func, "tune_seeds", f"at most the {len(seeds)} seeds", repr(tune_seeds))
    epochs = check_int(func, "epochs", epochs)
    batch_size = check_int(func, "batch_size", batch_size)
    if not isinstance(split, TuningSplit):
        fail(func, "split", "a TuningSplit", type(split).__name__, TypeError)
    per_epoch = split.n_fit // batch_size
    if per_epoch < 1:
        fail(func, "batch_size", f"at most the {split.n_fit} fit samples", repr(batch_size))
    steps = epochs * per_epoch

    total = lrs.size * tune_seeds + len(seeds) - tune_seeds
    bar = tqdm(total=total, desc=desc, disable=not progress)
    grid: dict[tuple[int, int], RunResult] = {}
    for i, lr in enumerate(lrs):
        for seed in seeds[:tune_seeds]:
            grid[i, seed] = run_once(build, split, batch_size, float(lr), steps, seed, momentum)
            bar.update()
    lr_val = np.array([np.mean([grid[i, s].val_accuracy for s in seeds[:tune_seeds]])
                       for i in range(lrs.size)])
    best = int(np.argmax(np.where(np.isfinite(lr_val), lr_val, -np.inf)))
    results = []
    for seed in seeds:
        if (best, seed) not in grid:
            grid[best, seed] = run_once(build, split, batch_size, float(lrs[best]), steps, seed,
                                        momentum)
            bar.update()
        results.append(grid[best, seed])
    bar.close()
    return TunedRuns(batch_size=batch_size, epochs=epochs, steps=steps, lrs=lrs,
                     lr_val_accuracy=lr_val, best_lr=float(lrs[best]),
                     seeds=np.array(seeds),
                     train_accuracy=np.array([r.train_accuracy for r in results]),
                     val_accuracy=np.array([r.val_accuracy for r in results]),
                     test_accuracy=np.array([r.test_accuracy for r in results]))


def conjunction_verdict(verdicts) -> str:
    """Verdict on a claim that is the conjunction of parts ("A, and B"), one verdict per part.

    "supported" when every part is supported, "not supported" when no part is
    (every part "not supported"), and "partly supported" otherwise. Unlike
    ``sweeps.combine_verdicts``, which combines *settings* of one claim and
    answers "depends" when they disagree, a claim with one true and one false
    part is partly right.

    >>> conjunction_verdict(["supported", "not supported"])
    'partly supported'
    >>> conjunction_verdict(["not supported", "not supported"])
    'not supported'
    """
    verdicts = list(verdicts)
    if not verdicts:
        fail("conjunction_verdict", "verdicts", "a non-empty sequence", "an empty one")
    for v in verdicts:
        if v not in VERDICTS:
            fail("conjunction_verdict", "verdicts", f"labels from {VERDICTS}", repr(v))
    if all(v == "supported" for v in verdicts):
        return "supported"
    if all(v == "not supported" for v in verdicts):
        return "not supported"
    return "partly supported"
