"""The claims ledger as data: each claim of the notes, its experiment and its pre-registered test.

Every claim of the ledger (``OUTLINE.md``) is one :class:`Claim`, keyed by its
ledger number. A claim names the experiment(s) of the study registry
(:mod:`bncourse.study.experiments`) that decide it, the metric those
experiments store, how the paired effect is formed from it, the claimed
direction and the *threshold*: the smallest effect that counts. The thresholds
below were fixed from the chapters' own pre-stated rules before the study's
results were seen; changing one is a change of the claim and has to say so.

How the effect of one seed is formed (see :func:`paired_effects`):

- ``contrast = (key, claimed, baseline)``: the experiment is run at both
  values of setting ``key`` with the same seed (and the same other settings);
  the effect is ``metric(claimed) - metric(baseline)``;
- ``contrast = None``: the experiment stores the paired effect itself as
  ``metric`` (e.g. a log-ratio computed inside one run).

The effect is then decided by :func:`bncourse.verdicts.decide` with
``threshold``, ``alternative`` and ``resolution``, once per combination of the
claim's ``settings``, and the settings are combined with
:func:`bncourse.verdicts.combine` (Holm).

A ``kind="demonstration"`` claim is an identity (claims 8 and 10: algebra that
holds for every input): its experiment measures a discrepancy that must stay
below ``threshold`` (a round-off tolerance) in every seed, not a noisy effect.

Public API
----------
``Claim``, ``CLAIMS`` (id -> Claim), ``get_claim(claim_id) -> Claim``,
``paired_effects(claim, rows) -> dict[setting tuple, ndarray]``

>>> get_claim(14).threshold, get_claim(14).alternative
(1.0, 'greater')
>>> sorted(CLAIMS) == list(range(1, 16))
True
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Iterable

import numpy as np

from bncourse._checks import fail

__all__ = ["Claim", "CLAIMS", "get_claim", "paired_effects", "KINDS"]

KINDS = ("experiment", "demonstration")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the ledger and the test that decides it.

    Attributes
    ----------
    id : int
        The ledger number (1..15).
    statement : str
        The claim as the notes make it.
    chapter : str
        The notebook that shows the experiment (``"06_optimization"``).
    experiments : tuple of str
        Names in the experiment registry.
    metric : str
        The metric (as stored by the experiments) the effect is computed from.
    effect : str
        In words, what one paired effect is (and its unit).
    alternative : {"greater", "less"}
        Claimed direction of the effect.
    threshold : float > 0
        Smallest effect that counts (for a demonstration: the tolerance).
    settings : dict name -> tuple
        The settings the claim is tested in, one verdict each before combining.
    contrast : tuple (key, claimed, baseline) or None
        See the module docstring.
    resolution : float or None
        Step of the metric, for effects that can be exactly equal across seeds.
    kind : {"experiment", "demonstration"}
    """

    id: int
    statement: str
    chapter: str
    experiments: tuple
    metric: str
    effect: str
    alternative: str
    threshold: float
    settings: dict
    contrast: tuple | None = None
    resolution: float | None = None
    kind: str = "experiment"

    def setting_points(self) -> list[dict]:
        """Every combination of ``settings`` (the last name varies fastest)."""
        names = list(self.settings)
        return [dict(zip(names, combo))
                for combo in itertools.product(*(self.settings[n] for n in names))]


_ACC = "test accuracy (fraction), BN minus no BN, same seed"
CLAIMS: dict[int, Claim] = {c.id: c for c in [
    Claim(1, "BN eases vanishing/exploding gradients and so allows deeper networks.",
          "06_optimization", ("depth_sweep",), "test_accuracy",
          "final " + _ACC + ", at the deepest network", "greater", 0.10,
          {"activation": ("sigmoid", "tanh")}, ("bn", "before", "none")),
    Claim(2, "BN allows saturating activations (sigmoid, tanh).",
          "06_optimization", ("depth_sweep",), "test_accuracy_over_depths",
          _ACC + ", mean over the depths of the sweep", "greater", 0.10,
          {"activation": ("sigmoid", "tanh")}, ("bn", "before", "none")),
    Claim(3, "BN makes training less sensitive to weight initialization.",
          "06_optimization", ("init_sweep",), "fraction_reaching_target",
          "fraction of the initial weight scales reaching the target accuracy, "
          "BN minus no BN (8 scales, 0.001 to 3)", "greater", 0.25, {"activation": ("relu",)},
          ("bn", "before", "none"), resolution=1 / 8),
    Claim(4, "BN allows larger learning rates.",
          "06_optimization", ("lr_sweep",), "log10_largest_stable_lr",
          "log10 of the largest learning rate that still learns, BN minus no BN (decades)",
          "greater", 0.5, {"init_scale": (0.1, 0.3)}, ("bn", "before", "none"),
          resolution=0.5),
    Claim(5, "BN acts as a regularizer, and the effect shrinks as the batch grows.",
          "07_regularization", ("batch_size_gap",), "generalization_gap",
          "generalization gap (train minus test accuracy) without BN minus with BN",
          "less", 0.005, {"batch_size": (16, 256)}, ("bn", "before", "none")),
    Claim(6, "BN works by reducing internal covariate shift.",
          "05_covariate_shift", ("ics",), "relative_gradient_change",
          "relative change of a layer's gradient after the lower layers update, "
          "BN minus no BN", "less", 0.05, {"activation": ("sigmoid",)},
          ("bn", "before", "none")),
    Claim(7, "BN makes hyperparameters easier to choose.",
          "06_optimization", ("lr_init_grid",), "fraction_reaching_target",
          "fraction of the learning rate x initial scale grid reaching the target "
          "accuracy, BN minus no BN (6 x 8 grid)", "greater", 0.20, {"activation": ("relu",)},
          ("bn", "before", "none"), resolution=1 / 48),
    Claim(8, "The bias before BN is redundant: beta replaces it.",
          "02_bn_equations", ("bias_gradient",), "bias_gradient_ratio",
          "max |dL/db| / max |dL/dW| of the bias in front of BN, float64", "less", 1e-12,
          {"dtype": ("float64",)}, kind="demonstration"),
    Claim(9, "At inference the statistics come from exponentially weighted averages.",
          "03_inference_running_averages", ("precise_bn",), "test_accuracy",
          "test accuracy (fraction) with recomputed population statistics minus with "
          "the running averages", "greater", 0.01, {"momentum": (0.01, 0.1)},
          ("statistics", "population", "running")),
    Claim(10, "gamma and beta can learn to undo the normalization "
              "(gamma = sqrt(var + eps), beta = mean).",
          "02_bn_equations", ("undo_normalization",), "undo_error",
          "relative error of BN(x) with gamma = sqrt(var + eps), beta = mean against x",
          "less", 1e-12, {"dtype": ("float64",)}, kind="demonstration"),
    Claim(11, "BN costs extra computation, also at prediction.",
          "09_cost_and_folding", ("prediction_cost",), "log_time_ratio",
          "natural log of the time of a step with BN over without (interleaved medians)",
          "greater", float(np.log(1.05)), {"phase": ("train", "predict", "predict_folded")}),
    Claim(12, "BN is slow at first / per epoch.",
          "09_cost_and_folding", ("time_to_target",), "log_time_to_target_ratio",
          "natural log of the training time to the target accuracy, BN over no BN",
          "greater", float(np.log(1.10)), {"target": (0.95,)}),
    Claim(13, "BN goes before the activation (or after?).",
          "08_placement", ("placement",), "test_accuracy",
          "final test accuracy (fraction), BN before the activation minus BN after, same seed",
          "greater", 0.01, {"activation": ("relu", "sigmoid", "tanh"), "lr": (0.1, 0.5)},
          ("bn", "before", "after")),
    Claim(14, "Normalizing the inputs speeds up gradient descent.",
          "01_normalizing_inputs", ("conditioning",), "log10_speedup",
          "log10 of the gradient-descent steps to converge on raw features over "
          "standardized ones, each at its best learning rate (decades)", "greater", 1.0,
          {"dataset": ("diabetes", "wine", "breast_cancer")}),
    Claim(15, "Normalize z (pre-activation) rather than a.",
          "02_bn_equations", ("z_vs_a",), "test_accuracy",
          "final test accuracy (fraction), BN on z minus BN on a, same seed", "greater", 0.01,
          {"init_scale": (None, 1.0)}, ("bn", "before", "after")),
]}


def get_claim(claim_id) -> Claim:
    """The claim with ledger number ``claim_id`` (an int, or a string of one)."""
    try:
        key = int(claim_id)
    except (TypeError, ValueError):
        fail("get_claim", "claim_id", "a ledger number 1..15", repr(claim_id), TypeError)
    if key not in CLAIMS or isinstance(claim_id, bool):
        fail("get_claim", "claim_id", f"one of {sorted(CLAIMS)}", repr(claim_id))
    return CLAIMS[key]


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def paired_effects(claim: Claim, rows: Iterable[dict]) -> dict:
    """Paired per-seed effects of ``claim``, one array per setting.

    Parameters
    ----------
    claim : Claim
    rows : iterable of dict
        Results of one scale with keys ``setting`` (dict), ``seed`` (int),
        ``metric`` (str) and ``value`` (float), e.g. from the results store
        or the snapshot. Rows of other metrics, or whose setting values lie
        outside ``claim.settings``, are left out.

    Returns
    -------
    dict
        canonical JSON of the setting without the contrast key ->
        ndarray (S,), the effects ordered by seed; with a contrast only the
        seeds present in both arms count.

    >>> rows = [dict(setting={"bn": bn, "init_scale": None}, seed=s, metric="test_accuracy",
    ...              value=v) for bn, s, v in [("before", 0, 0.9), ("after", 0, 0.8),
    ...                                       ("before", 1, 0.7)]]
    >>> {k: v.round(3).tolist() for k, v in paired_effects(get_claim(15), rows).items()}
    {'{"init_scale":null}': [0.1]}
    """
    if not isinstance(claim, Claim):
        fail("paired_effects", "claim", "a Claim", type(claim).__name__, TypeError)
    allowed = {n: set(map(_canon, values)) for n, values in claim.settings.items()}
    table: dict = {}
    for r in rows:
        if r["metric"] != claim.metric:
            continue
        setting = dict(r["setting"])
        if any(_canon(setting.get(n)) not in ok for n, ok in allowed.items()):
            continue
        arm = None
        if claim.contrast is not None:
            arm = setting.pop(claim.contrast[0], None)
            if arm not in claim.contrast[1:]:
                continue
        table.setdefault((_canon(setting), int(r["seed"])), {})[arm] = float(r["value"])
    out: dict = {}
    for (rest, _), arms in sorted(table.items()):
        if claim.contrast is None:
            out.setdefault(rest, []).append(arms[None])
        elif all(a in arms for a in claim.contrast[1:]):
            out.setdefault(rest, []).append(arms[claim.contrast[1]] - arms[claim.contrast[2]])
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
