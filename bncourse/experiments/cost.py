"""Is BN worth its cost? Steps and time to a target accuracy, and verdicts on the cost claims.

A BN layer makes each training step more expensive, and an unfolded BN layer
makes each prediction more expensive. Whether training as a whole is slower
depends on how many steps BN saves. The helpers here run the race (the same
network with and without BN, same seed, same mini-batches, only BN differs),
turn the evaluation curve into the number of steps needed to reach a target
accuracy, and decide the ledger's claims 11 and 12 from measured ratios.

Shape letters: S seeds, E evaluation points.

Public API
----------
``steps_to_target(steps, accuracy, target) -> float``
    The first evaluated step at which ``accuracy >= target``; NaN if never.
``run_race_to_target(data, seeds, target, steps, lr, batch_size, hidden, activation, ...) -> Race``
    Train the BN and the no-BN MLP for every seed and record when each reaches the target.
``Race``
    ``steps (E,)``, ``accuracy[label] (S, E)``, ``steps_to_target[label] (S,)``,
    ``models[label]`` (the trained networks of the first seed), ``seeds``, ``target``, ``config``.
``time_to_target(race, seconds_per_step) -> dict``
    ``steps_to_target`` times the measured seconds per step, per label (S,).
``claim11_verdict(train, predict_unfolded, predict_folded) -> str``
``claim12_verdict(per_step, bn_seconds, plain_seconds) -> str``
    The comparison words come from ``bncourse.bench.classify_ratio``
    (``"slower"``, ``"faster"``, ``"same"``, ``"unclear"``).

Labels are ``"bn"`` (BN before each hidden activation) and ``"no_bn"``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from tqdm import tqdm

from bncourse._checks import fail
from bncourse.lab.data import Dataset

__all__ = ["steps_to_target", "run_race_to_target", "Race", "time_to_target", "claim11_verdict",
           "claim12_verdict", "LABELS", "COMPARISONS"]

LABELS = ("bn", "no_bn")
COMPARISONS = ("slower", "faster", "same", "unclear")


def steps_to_target(steps, accuracy, target: float) -> float:
    """The first of ``steps`` at which ``accuracy`` reaches ``target``; NaN if it never does.

    Args:
        steps: ``(E,)`` evaluation steps, increasing.
        accuracy: ``(E,)`` accuracy (fraction) at those steps; NaN counts as not reached.
        target: the accuracy to reach, in (0, 1].

    >>> steps_to_target([0, 10, 20, 30], [0.1, 0.6, 0.96, 0.97], 0.95)
    20.0
    >>> steps_to_target([0, 10], [0.1, 0.5], 0.95)
    nan
    """
    func = "steps_to_target"
    steps = np.asarray(steps, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != accuracy.shape or steps.size == 0:
        fail(func, "steps, accuracy", "two non-empty 1-D arrays of the same length",
              f"shapes {steps.shape} and {accuracy.shape}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        fail(func, "target", "an accuracy in (0, 1]", repr(target))
    reached = np.flatnonzero(np.nan_to_num(accuracy, nan=-1.0) >= target)
    return float(steps[reached[0]]) if reached.size else math.nan


@dataclasses.dataclass(frozen=True)
class Race:
    """BN against no BN, several seeds: when does each reach the target accuracy?

    Attributes
    ----------
    steps : ndarray, shape (E,)
        Evaluation steps (updates made so far).
    accuracy : dict label -> ndarray, shape (S, E)
        Test accuracy (fraction) at each evaluation step, one row per seed.
    steps_to_target : dict label -> ndarray, shape (S,)
        First evaluation step with test accuracy >= ``target`` (NaN: never).
    models : dict label -> nn.Module
        The trained networks of the first seed.
    seeds : tuple of int
    target : float
    config : dict
        The training settings shared by every run.
    """

    steps: np.ndarray
    accuracy: dict
    steps_to_target: dict
    models: dict
    seeds: tuple
    target: float
    config: dict


def run_race_to_target(data: Dataset, seeds=(0, 1, 2, 3), target: float = 0.95, steps: int = 300,
                   lr: float = 0.1, batch_size: int = 64, hidden=(256, 256, 256),
                   activation: str = "relu", eval_every: int = 7,
                   progress: bool = False) -> Race:
    """Train the same MLP with BN (before each activation) and without, for every seed.

    For one seed both networks start from identical Linear weights
    (``bncourse.lab.models.make_mlp`` with that seed), see the same mini-batches
    in the same order (``bncourse.lab.training.train`` with that seed) and use
    the same plain SGD; only the BN layers differ. Test accuracy is measured
    every ``eval_every`` updates, so ``steps_to_target`` has that resolution.

    Returns:
        A :class:`Race`.

    Raises:
        TypeError / ValueError: ``data`` is not a Dataset, ``seeds`` is empty,
            ``target`` is outside (0, 1] (other arguments are checked by
            ``make_mlp`` and ``train``).
    """
    from bncourse.lab.models import make_mlp
    from bncourse.lab.training import train

    func = "run_race_to_target"
    if not isinstance(data, Dataset):
        fail(func, "data", "a bncourse.lab.data.Dataset", type(data).__name__, TypeError)
    seeds = tuple(seeds)
    if not seeds:
        fail(func, "seeds", "a non-empty sequence of ints", "an empty one")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        fail(func, "target", "an accuracy in (0, 1]", repr(target))
    config = dict(steps=steps, lr=lr, batch_size=batch_size, hidden=tuple(hidden),
                  activation=activation, eval_every=eval_every, optimizer="sgd")
    curves = {label: [] for label in LABELS}
    models, eval_steps = {}, None
    runs = [(seed, label) for seed in seeds for label in LABELS]
    for seed, label in tqdm(runs, desc="BN vs no BN", disable=not progress):
        net = make_mlp(data.n_features, hidden=tuple(hidden), activation=activation,
                       bn="before" if label == "bn" else "none", seed=seed)
        history = train(net, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                        eval_every=eval_every, progress=False)
        curves[label].append(history.test_accuracy)
        eval_steps = history.steps
        if seed == seeds[0]:
            models[label] = net
    accuracy = {label: np.stack(rows) for label, rows in curves.items()}
    reached = {label: np.array([steps_to_target(eval_steps, row, target) for row in acc])
               for label, acc in accuracy.items()}
    return Race(steps=np.asarray(eval_steps), accuracy=accuracy, steps_to_target=reached,
                models=models, seeds=seeds, target=float(target), config=config)


def time_to_target(race: Race, seconds_per_step: dict) -> dict:
    """Training time to the target per seed: ``steps_to_target * seconds_per_step[label]``.

    Evaluation time is not included: it is the same work for both networks
    and a deployed training loop need not evaluate as often. NaN where the
    target was never reached.

    Returns:
        label -> ndarray of seconds, shape (S,).
    """
    if not isinstance(race, Race):
        fail("time_to_target", "race", "a Race from run_race_to_target", type(race).__name__,
              TypeError)
    out = {}
    for label in LABELS:
        seconds = seconds_per_step.get(label) if isinstance(seconds_per_step, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                not seconds > 0 or not math.isfinite(seconds):
            fail("time_to_target", f"seconds_per_step[{label!r}]", "a positive number of seconds",
                  repr(seconds))
        out[label] = race.steps_to_target[label] * float(seconds)
    return out


def _check_comparison(func: str, arg: str, value: str) -> str:
    if value not in COMPARISONS:
        fail(func, arg, f"one of {COMPARISONS}", repr(value))
    return value


def claim11_verdict(train: str, predict_unfolded: str, predict_folded: str) -> str:
    """Claim 11, "BN costs extra computation, also at prediction", from three comparisons.

    Args:
        train: a training step with BN compared with one without (``"slower"``,
            ``"faster"``, ``"same"`` or ``"unclear"``, from ``classify_ratio``).
        predict_unfolded: prediction with the BN layers, against no BN.
        predict_folded: prediction with BN folded into the Linear layers, against no BN.

    Returns:
        ``"supported"`` when BN costs time in training and at prediction and
        folding does not remove the prediction cost; ``"partly supported"``
        when BN costs time in training or (unfolded) at prediction but folding
        removes the prediction cost (or there was none); ``"not supported"``
        when neither training nor prediction was measurably slower.

    >>> claim11_verdict("slower", "slower", "same")
    'partly supported'
    """
    func = "claim11_verdict"
    train = _check_comparison(func, "train", train)
    unfolded = _check_comparison(func, "predict_unfolded", predict_unfolded)
    folded = _check_comparison(func, "predict_folded", predict_folded)
    if train == "slower" and unfolded == "slower" and folded == "slower":
        return "supported"
    if train == "slower" or unfolded == "slower":
        return "partly supported"
    return "not supported"


def claim12_verdict(per_step: str, bn_seconds, plain_seconds) -> str:
    """Claim 12, "BN is slow (per epoch)", from the step cost and the time to the target.

    Args:
        per_step: a training step with BN compared with one without (from
            ``classify_ratio``).
        bn_seconds, plain_seconds: ``(S,)`` training time to the target
            accuracy per seed, with and without BN (NaN: never reached, which
            counts as slower than any finite time).

    Returns:
        ``"not supported"`` unless a BN step is measurably slower; then
        ``"supported"`` when BN also took longer to reach the target for
        every seed, ``"partly supported"`` when it reached it sooner for every
        seed (slower steps, fewer of them), ``"depends"`` otherwise.

    >>> claim12_verdict("slower", [1.0, 1.2], [3.0, float("nan")])
    'partly supported'
    """
    func = "claim12_verdict"
    per_step = _check_comparison(func, "per_step", per_step)
    bn = np.nan_to_num(np.asarray(bn_seconds, dtype=np.float64), nan=np.inf)
    plain = np.nan_to_num(np.asarray(plain_seconds, dtype=np.float64), nan=np.inf)
    if bn.ndim != 1 or bn.shape != plain.shape or bn.size == 0:
        fail(func, "bn_seconds, plain_seconds", "two non-empty 1-D arrays of the same length",
              f"shapes {bn.shape} and {plain.shape}")
    if per_step != "slower":
        return "not supported"
    if np.all(bn > plain):
        return "supported"
    if np.all(bn < plain):
        return "partly supported"
    return "depends"
