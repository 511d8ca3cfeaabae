"""Sweeps for the optimization claims: grids of learning rate x initial scale x seed, and summaries.

Every network of a sweep is ``bncourse.lab.models.make_mlp`` with the model seed
``seed`` and trained with plain SGD on the data order of the same ``seed``,
so a BN / no-BN pair of the same seed starts from the same Linear weights and
sees the same mini-batches: only the batch-norm layers differ. All members of
one call are trained together by ``bncourse.lab.mlp_stack.train_stack``, which is
tested to train each exactly as ``bncourse.lab.training.train`` would.

Shape letters: A learning rates, I initial scales, S seeds, R record steps,
L weight layers.

Public API
----------
``run_grid(data, hidden, activation, bn, lrs, init_scales, seeds, steps, batch_size, record_every=None, max_loss=None, progress=False, desc=None) -> GridResult``
    One network per (learning rate, initial scale, seed), trained side by side.
``GridResult``
    ``test_accuracy``, ``train_loss`` (final values, NaN for a diverged run)
    and ``diverged`` of shape ``(A, I, S)``; ``records(name)`` of shape
    ``(A, I, S, R, L)``; ``histories`` in (lr, init, seed) order.
``best_lr_index(train_loss) -> int array``
    The learning rate with the lowest mean final *training* loss over seeds
    (a diverged run counts as infinitely bad), so test accuracy is never used
    to pick it.
``largest_stable_lr(lrs, accuracies, target) -> ndarray (S,)``
    Per seed, the largest learning rate whose run reached ``target`` accuracy
    (NaN if none did).
``fraction_reaching(accuracies, target, axis) -> ndarray``
    The fraction of runs that reached ``target`` (a diverged run did not).

Examples
--------
>>> import numpy as np
>>> lrs = np.array([0.01, 0.1, 1.0, 10.0])
>>> acc = np.array([[0.50, 0.80], [0.95, 0.96], [0.93, 0.40], [np.nan, 0.10]])  # (A, S)
>>> largest_stable_lr(lrs, acc, target=0.9).tolist()
[1.0, 0.1]
>>> fraction_reaching(acc, 0.9, axis=0).tolist()
[0.5, 0.25]
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from bncourse._checks import fail
from bncourse.lab.data import Dataset
from bncourse.lab.mlp_stack import MLPStack, train_stack
from bncourse.lab.models import make_mlp

__all__ = ["run_grid", "GridResult", "best_lr_index", "largest_stable_lr",
           "fraction_reaching"]


@dataclasses.dataclass
class GridResult:
    """Final results of a (learning rate x initial scale x seed) grid of training runs.

    Attributes
    ----------
    lrs : ndarray (A,)
    init_scales : list (I,)
        As given to ``make_mlp`` (None = torch's default initialization).
    seeds : ndarray (S,)
    test_accuracy, train_loss : ndarray (A, I, S)
        After the last step, NaN for a run that diverged.
    diverged : ndarray of bool (A, I, S)
    histories : list of History, length A * I * S, in (lr, init, seed) order
    seconds : float
        Wall-clock time of the whole grid.
    """

    lrs: np.ndarray
    init_scales: list
    seeds: np.ndarray
    test_accuracy: np.ndarray
    train_loss: np.ndarray
    diverged: np.ndarray
    histories: list
    seconds: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(A, I, S)``."""
        return self.test_accuracy.shape

    def history(self, a: int, i: int, s: int):
        """The ``History`` of learning rate ``a``, initial scale ``i``, seed ``s`` (indices)."""
        n_init, n_seed = self.shape[1], self.shape[2]
        return self.histories[(a * n_init + i) * n_seed + s]

    def records(self, name: str) -> np.ndarray:
        """A record (``"grad_norms"``, ``"weight_norms"``) of every run: ``(A, I, S, R, L)``."""
        return np.stack([h.records[name] for h in self.histories]).reshape(
            self.shape + self.histories[0].records[name].shape)


def _check_values(func: str, arg: str, values) -> list:
    try:
        values = list(values)
    except TypeError:
        fail(func, arg, "a non-empty sequence", f"{type(values).__name__}", TypeError)
    if not values:
        fail(func, arg, "a non-empty sequence", "an empty one")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) \
                or v <= 0:
            fail(func, arg, "positive finite numbers", repr(v))
    return values


def run_grid(data: Dataset, hidden, activation: str, bn: str, lrs, init_scales, seeds,
               steps: int, batch_size: int, record_every: int | None = None,
               max_loss: float | None = None, progress: bool = False,
               desc: str | None = None) -> GridResult:
    """Train ``make_mlp(D, hidden, K, activation, bn, init_scale, seed)`` for every grid point.

    Member ``(a, i, s)`` has ``init_scale=init_scales[i]``, model seed
    ``seeds[s]``, learning rate ``lrs[a]`` and data-order seed ``seeds[s]``;
    plain SGD for ``steps`` updates of ``batch_size`` samples, evaluated at the
    start and the end only.

    Parameters
    ----------
    data : Dataset
    hidden : sequence of int
        Hidden widths (its length is the depth).
    activation : str
    bn : {"none", "before", "after"}
    lrs : sequence of A positive floats
    init_scales : sequence of I values for ``make_mlp``'s ``init_scale``
        (positive floats, ``None`` for torch's default, ``"he"``)
    seeds : sequence of S non-negative ints
    steps, batch_size : int
    record_every : int, optional
        Record per-layer gradient and weight norms every this many steps
        (default: only at step 0).
    max_loss : float, optional
        A mini-batch loss above this counts as divergence.
    progress : bool
    desc : str, optional

    Returns
    -------
    GridResult

    Raises
    ------
    ValueError / TypeError
        Empty or non-positive ``lrs``, ``init_scales``, ``seeds``, or any error
        of ``make_mlp`` / ``train_stack``.
    """
    func = "run_grid"
    if not isinstance(data, Dataset):
        fail(func, "data", "a bncourse.lab.data.Dataset", type(data).__name__, TypeError)
    lrs = _check_values(func, "lrs", lrs)
    init_scales = list(init_scales)        # each value is checked by make_mlp
    if not init_scales:
        fail(func, "init_scales", "a non-empty sequence", "an empty one")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                            and s >= 0 for s in seeds):
        fail(func, "seeds", "a non-empty sequence of non-negative ints", repr(seeds))
    models, member_lrs, member_seeds = [], [], []
    for lr in lrs:
        for scale in init_scales:
            for seed in seeds:
                models.append(make_mlp(data.n_features, hidden=hidden,
                                       out_features=data.num_classes, activation=activation,
                                       bn=bn, init_scale=scale, seed=int(seed)))
                member_lrs.append(lr)
                member_seeds.append(int(seed))
    stack = MLPStack.from_models(models)
    histories = train_stack(stack, data, steps=steps, batch_size=batch_size, lrs=member_lrs,
                            seeds=member_seeds, eval_every=None,
                            record_every=steps if record_every is None else record_every,
                            max_loss=max_loss, progress=progress, desc=desc)
    shape = (len(lrs), len(init_scales), len(seeds))
    acc = np.array([h.final_test_accuracy for h in histories]).reshape(shape)
    loss = np.array([np.nan if h.diverged else h.train_loss[-1] for h in histories])
    diverged = np.array([h.diverged for h in histories]).reshape(shape)
    return GridResult(lrs=np.array(lrs, dtype=np.float64), init_scales=init_scales,
                      seeds=np.array(seeds), test_accuracy=acc, train_loss=loss.reshape(shape),
                      diverged=diverged, histories=histories,
                      seconds=float(sum(h.seconds for h in histories)))


def best_lr_index(train_loss) -> np.ndarray:
    """Index along axis 0 (learning rates) of the lowest mean final training loss over seeds.

    ``train_loss`` has shape ``(A, ..., S)``; NaN (a diverged run) counts as
    ``+inf``, so a learning rate where any seed diverged is chosen only when
    every learning rate had a divergence. Returns an int array of shape
    ``(...)`` (a plain int for ``(A, S)`` input).

    >>> best_lr_index(np.array([[0.5, 0.7], [0.1, np.nan], [0.2, 0.3]]))
    2
    """
    loss = np.asarray(train_loss, dtype=np.float64)
    if loss.ndim < 2:
        fail("best_lr_index", "train_loss", "an array (A, ..., S) with at least 2 axes",
              f"shape {loss.shape}")
    mean = np.where(np.isnan(loss), np.inf, loss).mean(axis=-1)
    index = np.argmin(mean, axis=0)
    return int(index) if np.ndim(index) == 0 else index


def largest_stable_lr(lrs, accuracies, target: float) -> np.ndarray:
    """Per seed, the largest learning rate whose run reached ``target`` accuracy; NaN if none.

    A run "still trains" when its final accuracy is at least ``target``; a
    diverged run (NaN accuracy) does not. Learning rates below the largest
    stable one may fail (too slow to reach the target in the budget): that
    does not matter, only the largest success counts.

    Parameters
    ----------
    lrs : array (A,)
        Positive learning rates, in any order.
    accuracies : array (A, S)
        Final accuracy of each learning rate (rows) and seed (columns).
    target : float

    Returns
    -------
    ndarray (S,), float64.
    """
    func = "largest_stable_lr"
    lrs = np.asarray(lrs, dtype=np.float64)
    acc = np.asarray(accuracies, dtype=np.float64)
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
        fail(func, "lrs", "a 1-D array of positive learning rates", repr(lrs.tolist()))
    if acc.ndim != 2 or acc.shape[0] != lrs.size:
        fail(func, "accuracies", f"shape ({lrs.size}, S) (learning rates x seeds)",
              f"shape {acc.shape}")
    ok = np.where(np.isnan(acc), False, acc >= target)
    best = np.where(ok, lrs[:, None], -np.inf).max(axis=0)
    return np.where(np.isfinite(best), best, np.nan)


def fraction_reaching(accuracies, target: float, axis=None) -> np.ndarray:
    """The fraction of runs with accuracy ``>= target`` along ``axis`` (NaN = diverged = failed).

    >>> fraction_reaching([[0.95, np.nan], [0.5, 0.91]], 0.9, axis=0).tolist()
    [0.5, 0.5]
    """
    acc = np.asarray(accuracies, dtype=np.float64)
    ok = np.where(np.isnan(acc), False, acc >= target)
    return ok.mean(axis=axis)
