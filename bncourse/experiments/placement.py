"""Where BatchNorm sits in an MLP block, and what the next Linear layer can absorb.

A hidden block of ``bncourse.lab.models.make_mlp`` is ``Linear -> BN -> act``
(``bn="before"``, the placement of Ioffe & Szegedy) or ``Linear -> act -> BN``
(``bn="after"``). BN's affine output ``y = gamma * x_hat + beta`` is followed
by different things in the two placements:

- **after**: the next layer is the next block's ``Linear``, an affine map, so
  ``W (gamma * x_hat + beta) + b = (W diag(gamma)) x_hat + (W beta + b)``.
  gamma and beta add nothing the next Linear could not represent, in training
  *and* in evaluation mode (``absorb_affine_into_next``). In evaluation mode the
  whole BN is affine and folds into the next Linear (``fold_into_next``).
- **before**: the activation sits between BN and the next Linear, so neither
  identity holds; gamma and beta set where the nonlinearity operates (how many
  ReLUs are active, how far into a sigmoid's flat tails the inputs reach).
  The previous Linear cannot do that job in training mode either: BN removes
  any scale and shift it applies, ``BN(s z + c) = BN(z)`` for ``s > 0`` (up to
  ``eps``).

Shape letters: N samples, D input features, H hidden units, K classes.

Public API
----------
``layer_spec(in_features, hidden, out_features, activation="relu", bn="before", dropout=0.0)``
    The layers of that MLP as a list of tuples: ``("linear", fan_in, fan_out)``,
    ``("bn", H)``, ``("relu",)`` / ``("sigmoid",)`` / ``("tanh",)`` /
    ``("identity",)``, ``("dropout", p)`` (``p`` the drop probability, torch's
    convention).
``model_spec(model) -> list[tuple]``
    The same description read off an ``nn.Sequential`` (``Flatten`` skipped).
``absorb_affine_into_next(model, norm) -> nn.Sequential``
    A copy where BN layer ``norm`` has no gamma/beta and the first Linear after
    it has absorbed them.
``fold_into_next(model, norm) -> nn.Sequential``
    A copy where BN layer ``norm`` (evaluation mode: running statistics) is
    removed and the first Linear after it has absorbed the whole affine map.
``run_placement_sweep(data, activations, placements, seeds, lrs, steps, hidden, batch_size=60, progress=False) -> PlacementSweep``
    Train every (activation, placement) for every seed and learning rate with
    plain SGD (``bncourse.lab.mlp_stack``: all seeds and rates of one architecture
    side by side, each member exactly as ``training.train`` would train it).
``output_difference(model_a, model_b, x, training=False) -> (max_diff, max_abs)``
    ``max|a(x) - b(x)|`` and ``max|a(x)|`` in one mode, on copies (no running
    statistics change).
``claim13_verdict(effects, threshold) -> PlacementVerdict``
    Claim 13 ("BN goes before the activation") from per-seed accuracy
    differences, before minus after, in each setting: "depends" when each
    placement wins somewhere, otherwise the settings' verdicts combined.
``train_each(build, data, seeds, steps, lr, batch_size=60, progress=False, desc=None)``
    ``[(model, History)]``: ``build(seed)`` trained with ``training.train``
    for every seed (plain SGD, data-order seed = model seed).

Examples
--------
>>> layer_spec(64, (32,), 10, activation="relu", bn="after", dropout=0.5)
[('linear', 64, 32), ('relu',), ('bn', 32), ('dropout', 0.5), ('linear', 32, 10)]
>>> from bncourse.lab.models import make_mlp
>>> model_spec(make_mlp(64, hidden=(32,), activation="relu", bn="after", dropout=0.5))
[('linear', 64, 32), ('relu',), ('bn', 32), ('dropout', 0.5), ('linear', 32, 10)]
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import time
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bncourse._checks import check_int, fail
from bncourse.lab.data import Dataset
from bncourse.lab.models import ACTIVATIONS, make_mlp, sequential_child
from bncourse.lab.sweeps import combine_verdicts, mean_ci, verdict
from bncourse.lab.training import History, train

__all__ = ["layer_spec", "model_spec", "absorb_affine_into_next", "fold_into_next",
           "output_difference", "run_placement_sweep", "PlacementSweep", "train_each",
           "PLACEMENTS", "PlacementVerdict", "claim13_verdict"]

PLACEMENTS = ("none", "before", "after")

# Module type -> activation name, for reading a model back.
_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}


# --------------------------------------------------------------------------- specs

def layer_spec(in_features: int, hidden, out_features: int, activation: str = "relu",
               bn: str = "before", dropout: float = 0.0) -> list[tuple]:
    """The layers of an MLP with BN before/after each activation, as a list of tuples.

    Hidden block ``i`` is ``linear -> [bn] -> act -> [bn]`` (BN on the side
    given by ``bn``; none for ``"none"``), followed by ``dropout`` when
    ``dropout > 0``. The output layer is a plain ``linear`` (logits, no BN, no
    activation). This is exactly the layer order of ``models.make_mlp``.

    Parameters
    ----------
    in_features, out_features : int
    hidden : sequence of int (may be empty)
    activation : {"sigmoid", "tanh", "relu", "identity"}
    bn : {"none", "before", "after"}
    dropout : float in [0, 1)
        Drop probability (torch's ``nn.Dropout(p)``).

    Returns
    -------
    list of tuples ``("linear", fan_in, fan_out)``, ``("bn", H)``,
    ``(activation,)``, ``("dropout", p)``.

    Raises
    ------
    ValueError / TypeError for non-positive sizes, an unknown activation or
    placement, or a dropout outside [0, 1).
    """
    func = "layer_spec"
    in_features = check_int(func, "in_features", in_features)
    out_features = check_int(func, "out_features", out_features)
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        hidden = tuple(hidden)
    except TypeError:
        fail(func, "hidden", "a sequence of positive ints", f"{type(hidden).__name__}",
              TypeError)
    hidden = tuple(check_int(func, "hidden", h) for h in hidden)
    if activation not in ACTIVATIONS:
        fail(func, "activation", "one of " + ", ".join(map(repr, ACTIVATIONS)),
              repr(activation))
    if bn not in PLACEMENTS:
        fail(func, "bn", "one of " + ", ".join(map(repr, PLACEMENTS)), repr(bn))
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
            or not 0.0 <= dropout < 1.0:
        fail(func, "dropout", "a float in [0, 1)", repr(dropout))

    spec: list[tuple] = []
    width = in_features
    for h in hidden:
        spec.append(("linear", width, h))
        if bn == "before":
            spec.append(("bn", h))
        spec.append((activation,))
        if bn == "after":
            spec.append(("bn", h))
        if dropout > 0:
            spec.append(("dropout", float(dropout)))
        width = h
    spec.append(("linear", width, out_features))
    return spec


def model_spec(model: nn.Module) -> list[tuple]:
    """Describe an ``nn.Sequential`` MLP in ``layer_spec``'s format (``Flatten`` is skipped).

    Raises
    ------
    TypeError for a model that is not an ``nn.Sequential``; ValueError for a
    layer that ``layer_spec`` cannot describe.
    """
    if not isinstance(model, nn.Sequential):
        fail("model_spec", "model", "an nn.Sequential", type(model).__name__, TypeError)
    spec: list[tuple] = []
    for name, m in model.named_children():
        if isinstance(m, nn.Flatten):
            continue
        if isinstance(m, nn.Linear):
            spec.append(("linear", m.in_features, m.out_features))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            spec.append(("bn", m.num_features))
        elif isinstance(m, nn.Dropout):
            spec.append(("dropout", float(m.p)))
        elif type(m) in _ACTIVATION_NAMES:
            spec.append((_ACTIVATION_NAMES[type(m)],))
        else:
            fail("model_spec", "model", "Linear, BatchNorm, Dropout and activation layers",
                  f"a {type(m).__name__} at {name!r}")
    return spec


# --------------------------------------------------------------------------- absorbing

def _norm_and_next(func: str, model, norm: str):
    """Child names of ``model``, the index of BN ``norm`` and that of the first Linear after it."""
    names, i, _ = sequential_child(func, model, norm, nn.BatchNorm1d, arg="norm")
    after = [j for j in range(i + 1, len(names)) if isinstance(model[j], nn.Linear)]
    if not after:
        fail(func, "norm", "a BN layer followed (somewhere later) by a Linear layer", repr(norm))
    return names, i, after[0]


def _affine(bn: nn.BatchNorm1d):
    """``(gamma, beta)`` of a BN layer; ones and zeros when it has no affine parameters."""
    h = bn.num_features
    gamma = bn.weight if bn.affine else torch.ones(h, dtype=bn.running_mean.dtype)
    beta = bn.bias if bn.affine else torch.zeros(h, dtype=bn.running_mean.dtype)
    return gamma.detach(), beta.detach()


def _with_children(model: nn.Sequential, replace: dict) -> nn.Sequential:
    """A deep copy of ``model`` with the children at the given indices replaced."""
    new = copy.deepcopy(model)
    children = [(n, replace.get(k, m)) for k, (n, m) in enumerate(new.named_children())]
    return nn.Sequential(OrderedDict(children))


@torch.no_grad()
def absorb_affine_into_next(model: nn.Sequential, norm: str) -> nn.Sequential:
    """Move BN ``norm``'s gamma and beta into the first Linear after it.

    The BN layer is replaced by one with ``affine=False`` and the same running
    statistics; the Linear ``(W, b)`` becomes ``(W diag(gamma), b + W beta)``.
    When only affine-preserving layers sit between the two (no activation, no
    dropout) the new model computes the same function as ``model`` in training
    mode (batch statistics) and in evaluation mode. With an activation in
    between, as in the "before" placement, it does not: that is the point of
    the experiment.

    Parameters
    ----------
    model : nn.Sequential
        E.g. from ``models.make_mlp``; not modified.
    norm : str
        Name of a ``BatchNorm1d`` child (``"norm1"``).

    Returns
    -------
    nn.Sequential (a new model, same child names), in the mode of ``model``.
    """
    func = "absorb_affine_into_next"
    _, i, j = _norm_and_next(func, model, norm)
    bn, linear = model[i], model[j]
    gamma, beta = _affine(bn)
    plain = nn.BatchNorm1d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=False,
                           track_running_stats=bn.track_running_stats,
                           dtype=bn.running_mean.dtype if bn.running_mean is not None else None)
    if bn.track_running_stats:
        plain.running_mean.copy_(bn.running_mean)
        plain.running_var.copy_(bn.running_var)
        plain.num_batches_tracked.copy_(bn.num_batches_tracked)
    new_linear = copy.deepcopy(linear)
    new_linear.weight.copy_(linear.weight * gamma)          # W diag(gamma): scale column k
    bias = linear.weight @ beta
    if linear.bias is not None:
        bias = bias + linear.bias
    new_linear.bias = nn.Parameter(bias.to(linear.weight.dtype))
    new = _with_children(model, {i: plain, j: new_linear})
    new.train(model.training)
    return new


@torch.no_grad()
def fold_into_next(model: nn.Sequential, norm: str) -> nn.Sequential:
    """Remove BN ``norm`` and fold its evaluation-mode affine map into the next Linear.

    In evaluation mode BN is ``y = s * a + (beta - s * running_mean)`` with
    ``s = gamma / sqrt(running_var + eps)``. For the next Linear ``(W, b)``::

        W y + b = (W diag(s)) a + (b + W (beta - s * running_mean))

    The BN child is replaced by ``nn.Identity()`` and the Linear by
    ``bncourse.fold.fold_batchnorm_into_next(bn, linear)``. The result equals
    ``model`` in evaluation mode when only affine layers sit between the two
    (the "after" placement); it is returned in evaluation mode.
    (``bncourse.fold.fold_batchnorm`` folds a BN into the layer *before* it,
    which works for the "before" placement.)

    Raises
    ------
    ValueError when ``norm`` is not a ``BatchNorm1d`` with running statistics
    followed by a Linear.
    """
    from bncourse.fold import fold_batchnorm_into_next

    func = "fold_into_next"
    _, i, j = _norm_and_next(func, model, norm)
    bn, linear = model[i], model[j]
    if not bn.track_running_stats:
        fail(func, "norm", "a BN layer with running statistics (evaluation mode)", repr(norm))
    new = _with_children(model, {i: nn.Identity(), j: fold_batchnorm_into_next(bn, linear)})
    return new.eval()


@torch.no_grad()
def output_difference(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor,
                      training: bool = False) -> tuple[float, float]:
    """``(max|a(x) - b(x)|, max|a(x)|)`` with both models in training or evaluation mode.

    The models run as deep copies, so a training-mode forward (batch
    statistics) does not update their running statistics. Use float64 models
    and inputs to see round-off at the 1e-15 level. Dropout layers would make
    a training-mode comparison random; the models should have none.
    """
    for arg, m in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(m, nn.Module):
            fail("output_difference", arg, "an nn.Module", type(m).__name__, TypeError)
    a = copy.deepcopy(model_a).train(training)
    b = copy.deepcopy(model_b).train(training)
    ya, yb = a(x), b(x)
    if ya.shape != yb.shape:
        fail("output_difference", "model_b", f"outputs of shape {tuple(ya.shape)} like model_a",
              f"shape {tuple(yb.shape)}")
    return float((ya - yb).abs().max()), float(ya.abs().max())


# --------------------------------------------------------------------------- experiments

@dataclasses.dataclass
class PlacementSweep:
    """Results of ``run_placement_sweep``.

    Attributes
    ----------
    accuracy : dict (activation, placement) -> ndarray (L, S)
        Final test accuracy (fraction) per learning rate (rows, ``lrs`` order)
        and seed (columns, ``seeds`` order); NaN for a diverged run.
    histories : dict (activation, placement) -> list of L*S History
        Learning-rate major: entry ``l * S + s``.
    stacks : dict (activation, placement) -> MLPStack
        The trained networks (``stack.to_models()`` gives ``nn.Sequential`` copies).
    seeds, lrs : tuples
    seconds : float
        Wall-clock time of the whole sweep.
    """

    accuracy: dict
    histories: dict
    stacks: dict
    seeds: tuple
    lrs: tuple
    seconds: float


def run_placement_sweep(data: Dataset, activations=("relu", "sigmoid", "tanh"),
                    placements=("before", "after"), seeds=range(5), lrs=(0.5,),
                    steps: int = 300, hidden=(64, 64), batch_size: int = 60,
                    eval_every: int | None = None, progress: bool = False) -> PlacementSweep:
    """Train an MLP for every activation x placement x learning rate x seed; plain SGD.

    Member ``(lr, seed)`` of architecture ``(activation, placement)`` is
    ``make_mlp(D, hidden, K, activation, bn=placement, seed=seed)`` (torch's
    default initialization) trained on ``data`` with mini-batches of
    ``batch_size`` drawn in the order of ``training.train(seed=seed)``. For one
    seed every architecture starts from the same Linear weights and sees the
    same mini-batches, so the placement is the only difference.

    Returns
    -------
    PlacementSweep
    """
    from bncourse.lab.mlp_stack import MLPStack, train_stack

    func = "run_placement_sweep"
    seeds, lrs = tuple(int(s) for s in seeds), tuple(float(lr) for lr in lrs)
    if not seeds or not lrs:
        fail(func, "seeds/lrs", "non-empty sequences", f"{len(seeds)} seeds, {len(lrs)} lrs")
    for p in placements:
        if p not in PLACEMENTS:
            fail(func, "placements", "values from " + ", ".join(map(repr, PLACEMENTS)), repr(p))
    grid = [(lr, s) for lr in lrs for s in seeds]
    accuracy, histories, stacks = {}, {}, {}
    start = time.perf_counter()
    combos = [(a, p) for a in activations for p in placements]
    for activation, placement in tqdm(combos, desc="placements", disable=not progress):
        models = [make_mlp(data.n_features, hidden=hidden, out_features=data.num_classes,
                           activation=activation, bn=placement, seed=s) for _, s in grid]
        stack = MLPStack.from_models(models)
        hist = train_stack(stack, data, steps=steps, batch_size=batch_size,
                           lrs=[lr for lr, _ in grid], seeds=[s for _, s in grid],
                           eval_every=eval_every, progress=False)
        acc = np.array([h.final_test_accuracy for h in hist]).reshape(len(lrs), len(seeds))
        accuracy[activation, placement] = acc
        histories[activation, placement] = hist
        stacks[activation, placement] = stack
    return PlacementSweep(accuracy, histories, stacks, seeds, lrs, time.perf_counter() - start)


def train_each(build: Callable[[int], nn.Module], data: Dataset, seeds, steps: int, lr: float,
               batch_size: int = 60, eval_every: int | None = None, progress: bool = False,
               desc: str | None = None) -> list[tuple[nn.Module, History]]:
    """Build and train one model per seed with ``training.train`` (plain SGD).

    ``build(seed)`` must return a fresh model; it is trained with data-order
    seed ``seed`` too, so two ``build`` functions that differ in one layer see
    the same mini-batches for the same seed. ``eval_every=None`` evaluates only
    before and after training.

    Returns
    -------
    list of ``(trained model, History)``, in ``seeds`` order.
    """
    if not callable(build):
        fail("train_each", "build", "a callable seed -> nn.Module", type(build).__name__,
              TypeError)
    out = []
    for seed in tqdm(list(seeds), desc=desc, disable=not progress):
        model = build(int(seed))
        hist = train(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=int(seed),
                     eval_every=eval_every or steps, progress=False)
        out.append((model, hist))
    return out


@dataclasses.dataclass(frozen=True)
class PlacementVerdict:
    """Claim 13 over several settings.

    Attributes
    ----------
    verdict : str
        The claim's verdict: "depends" when before wins in some setting and
        after in another, else the settings' "before is better" verdicts combined.
    rows : list of (setting, Interval, before_verdict, after_verdict)
        Per setting: the mean difference before - after with its interval, the
        verdict on "before is better" and on "after is better".
    before_better, after_better, ties : list of str
        The settings where each placement wins (by the verdict), and where neither does.
    """

    verdict: str
    rows: list
    before_better: list
    after_better: list
    ties: list


def claim13_verdict(effects: dict, threshold: float) -> PlacementVerdict:
    """Decide claim 13 from ``effects = {setting: per-seed accuracy, before minus after}``.

    In each setting both directions are tested with
    :func:`bncourse.lab.sweeps.verdict` at ``threshold`` (a fraction of
    accuracy); a placement wins a setting when its verdict is not "not supported".

    >>> v = claim13_verdict({"relu": np.array([0.02, 0.03, 0.025]),
    ...                      "tanh": np.array([-0.02, -0.03, -0.025])}, 0.01)
    >>> v.verdict, v.before_better, v.after_better
    ('depends', ['relu'], ['tanh'])
    """
    func = "claim13_verdict"
    if not isinstance(effects, dict) or not effects:
        fail(func, "effects", "a non-empty dict setting -> per-seed differences",
             type(effects).__name__, TypeError if not isinstance(effects, dict) else ValueError)
    before_better, after_better, ties, rows = [], [], [], []
    for setting, effect in effects.items():
        effect = np.asarray(effect, dtype=np.float64)
        v_before = verdict(effect, threshold)                    # "BN before is better"
        v_after = verdict(-effect, threshold)                    # "BN after is better"
        (before_better if v_before != "not supported" else
         after_better if v_after != "not supported" else ties).append(setting)
        rows.append((setting, mean_ci(effect), v_before, v_after))
    if before_better and after_better:      # each placement wins somewhere: the answer depends
        claim = "depends"
    else:
        claim = combine_verdicts([row[2] for row in rows])
    return PlacementVerdict(claim, rows, before_better, after_better, ties)

