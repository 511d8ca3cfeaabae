"""Pre-LN against post-LN in a tiny transformer: gradients at initialization, and warmup.

Xiong et al. (:cite:`xiong2020layer`) showed that in the original post-LN
transformer the gradients of the last layers' weights are large at
initialization and grow with the layer index, so Adam at a large learning
rate without a warmup period goes wrong early, while the pre-LN arrangement
keeps the gradient norms level and trains without warmup. Two experiments:

``run_prepost_gradients(depths, seeds, ...)``
    Norm of the gradient of each block's second feed-forward weight (Xiong et
    al.'s ``W^2`` of the FFN) at initialization, on one batch of digits read
    as sequences of 8 rows, for both placements and several depths.
``warmup_effects(deep, shallow, threshold=0.1) -> dict``
    The paired per-seed effects behind the verdicts, and the verdicts:
    ``"post_warmup"`` (warmup gain of post-LN, deep), ``"pre_warmup"`` (of
    pre-LN, deep), ``"pre_vs_post"`` (pre-LN minus post-LN, both without
    warmup, deep), ``"shallow_post_warmup"`` (warmup gain of post-LN, shallow);
    each ``(effects (S,), verdict)``.
``run_warmup_trainability(depths, seeds, ...)``
    Test accuracy after a short Adam run at a fixed learning rate, with and
    without a linear warmup, for both placements and several depths. Runs
    of one seed share the initial Linear weights and the data order
    (``bncourse.lab.transformer.make_transformer``, ``bncourse.lab.training.train``).

Shapes: L depths, S seeds, ``depth`` blocks.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bncourse._checks import fail, check_int
from bncourse.lab.batches import batch_order
from bncourse.lab.data import Dataset, load_digits_split
from bncourse.lab.transformer import PLACEMENTS, make_transformer
from bncourse.lab.training import train

__all__ = ["WarmupAdam", "run_prepost_gradients", "run_warmup_trainability",
           "GradientResult", "WarmupResult", "digit_rows", "seed_verdict", "warmup_effects"]

SEQ_LEN = 8      # the 8 rows of a digit image are the positions
ROW = 8          # 8 pixels per row are the features of a position


def digit_rows(seed: int = 0) -> Dataset:
    """The handwritten digits, standardized; ``(N, 64)`` rows that the transformer reads as 8x8."""
    return load_digits_split(seed=seed)


class WarmupAdam(torch.optim.Adam):
    """Adam whose learning rate rises linearly from ``lr / warmup_steps`` to ``lr``.

    Update ``u = 1, 2, ...`` uses ``lr * min(1, u / warmup_steps)``; ``warmup_steps=0``
    is plain Adam. ``betas=(0.9, 0.98)`` as in :cite:`vaswani2017attention`.
    """

    def __init__(self, params, lr: float, warmup_steps: int, betas=(0.9, 0.98)):
        super().__init__(params, lr=lr, betas=betas, foreach=True)  # one kernel per op: fast on CPU
        self.base_lr = float(lr)
        self.warmup_steps = check_int("WarmupAdam", "warmup_steps", warmup_steps, minimum=0)
        self.updates = 0

    def step(self, closure=None):
        self.updates += 1
        scale = min(1.0, self.updates / self.warmup_steps) if self.warmup_steps else 1.0
        for group in self.param_groups:
            group["lr"] = self.base_lr * scale
        return super().step(closure)


def _check_seeds(func: str, seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        fail(func, "seeds", "a non-empty sequence of ints >= 0", "an empty one")
    return tuple(check_int(func, "seeds", s, minimum=0) for s in seeds)


@dataclasses.dataclass(frozen=True)
class GradientResult:
    """``norms[placement][depth]``: ``(S, depth)`` gradient norms of each block's FFN weight W2."""

    depths: tuple
    seeds: tuple
    batch_size: int
    norms: dict

    def last_layer(self, placement: str) -> np.ndarray:
        """``(L, S)``: the norm at the last block, for every depth and seed."""
        return np.stack([self.norms[placement][d][:, -1] for d in self.depths])

    def depth_exponent(self, placement: str) -> float:
        """Slope ``a`` of the fit ``log(norm) = a * log(depth) + b`` at the last block (least squares).

        Xiong et al.'s bounds: ``a = 0`` for post-LN, ``a = -1/2`` for pre-LN.
        """
        y = np.log(self.last_layer(placement).mean(axis=1))
        return float(np.polyfit(np.log(np.array(self.depths, dtype=float)), y, 1)[0])


def run_prepost_gradients(depths=(2, 4, 8, 16), seeds=(0, 1, 2), batch_size: int = 64,
                          d_model: int = 16, data: Dataset | None = None) -> GradientResult:
    """Gradient norm per block at initialization for post-LN and pre-LN (Xiong et al., Fig. 3).

    For each seed both placements get the same initial Linear weights and the
    same batch (the first batch that ``train(..., seed=seed)`` would see);
    the cross-entropy of that batch is backpropagated once.
    """
    func = "run_prepost_gradients"
    depths = tuple(check_int(func, "depths", d) for d in depths)
    if not depths:
        fail(func, "depths", "a non-empty sequence of ints >= 1", "an empty one")
    seeds = _check_seeds(func, seeds)
    batch_size = check_int(func, "batch_size", batch_size)
    data = digit_rows() if data is None else data
    norms = {p: {d: np.zeros((len(seeds), d)) for d in depths} for p in PLACEMENTS}
    for i, seed in enumerate(seeds):
        idx = batch_order(data.n_train, batch_size, 1, seed)[0]     # train()'s first batch
        x, y = data.x_train[idx], data.y_train[idx]
        for depth in depths:
            for placement in PLACEMENTS:
                net = make_transformer(ROW, data.num_classes, SEQ_LEN, d_model=d_model,
                                       depth=depth, norm="ln", placement=placement, seed=seed)
                F.cross_entropy(net(x), y).backward()
                norms[placement][depth][i] = [float(b.ff2.weight.grad.norm()) for b in net.blocks]
    return GradientResult(depths, seeds, batch_size, norms)


@dataclasses.dataclass(frozen=True)
class WarmupResult:
    """Final test accuracy ``accuracy[(placement, warmup)]`` of shape ``(L, S)``; settings."""

    depths: tuple
    seeds: tuple
    warmups: tuple
    lr: float
    steps: int
    batch_size: int
    accuracy: dict
    diverged: dict


def run_warmup_trainability(depths=(2, 6), seeds=(0, 1, 2), warmups=(0, 40), lr: float = 3e-2,
                            steps: int = 80, batch_size: int = 32, d_model: int = 16,
                            placements=PLACEMENTS, data: Dataset | None = None,
                            progress: bool = True) -> WarmupResult:
    """Train post-LN and pre-LN transformers with Adam at ``lr``, with and without warmup.

    Every (depth, seed) pair starts all arms (placements x warmups) from the
    same Linear weights and feeds them the same mini-batches. A run that
    produces a non-finite loss counts as accuracy 1 / K (chance).
    """
    func = "run_warmup_trainability"
    placements = tuple(placements)
    if not placements or any(p not in PLACEMENTS for p in placements):
        fail(func, "placements", f"a non-empty sequence of {PLACEMENTS}", repr(placements))
    depths = tuple(check_int(func, "depths", d) for d in depths)
    seeds = _check_seeds(func, seeds)
    warmups = tuple(check_int(func, "warmups", w, minimum=0) for w in warmups)
    if not depths or not warmups:
        fail(func, "depths/warmups", "non-empty sequences", repr((depths, warmups)))
    steps = check_int(func, "steps", steps)
    data = digit_rows() if data is None else data
    arms = [(p, w) for p in placements for w in warmups]
    accuracy = {arm: np.zeros((len(depths), len(seeds))) for arm in arms}
    diverged = {arm: np.zeros((len(depths), len(seeds)), dtype=bool) for arm in arms}
    jobs = [(i, depth, j, seed, arm) for i, depth in enumerate(depths)
            for j, seed in enumerate(seeds) for arm in arms]
    for i, depth, j, seed, (placement, warmup) in tqdm(jobs, desc="transformer runs",
                                                       disable=not progress):
        net = make_transformer(ROW, data.num_classes, SEQ_LEN, d_model=d_model, depth=depth,
                               norm="ln", placement=placement, seed=seed)
        hist = train(net, data, steps=steps, batch_size=batch_size, lr=lr,
                     optimizer=lambda params, w=warmup: WarmupAdam(params, lr, w),
                     seed=seed, eval_every=None, progress=False)
        diverged[placement, warmup][i, j] = hist.diverged
        accuracy[placement, warmup][i, j] = (1.0 / data.num_classes if hist.diverged
                                             else hist.final_test_accuracy)
    return WarmupResult(depths, seeds, warmups, float(lr), steps, batch_size, accuracy, diverged)


def seed_verdict(effects, threshold: float, alternative: str = "greater") -> str:
    """The ledger's verdict on paired per-seed ``effects``: the chapter's one call site.

    ``bncourse.verdicts.decide`` (the course's verdict module) is not on this
    branch yet; until it is, ``bncourse.lab.sweeps.verdict`` decides, with the same
    meaning of ``threshold`` (the smallest effect that counts, fixed in advance).
    """
    from bncourse.lab.sweeps import verdict

    return verdict(np.asarray(effects, dtype=np.float64), threshold=threshold,
                   alternative=alternative)


def warmup_effects(deep: WarmupResult, shallow: WarmupResult, threshold: float = 0.1) -> dict:
    """Name -> ``(per-seed effects, verdict)`` for the chapter's warmup claims (module docstring).

    ``deep`` must hold both placements at one depth, ``shallow`` post-LN at
    another; both with warmups ``(0, w)`` and the same seeds. ``threshold`` is
    in test accuracy (fraction).
    """
    func = "warmup_effects"
    for name, result in (("deep", deep), ("shallow", shallow)):
        if not isinstance(result, WarmupResult) or len(result.warmups) != 2 \
                or result.warmups[0] != 0 or len(result.depths) != 1:
            fail(func, name, "a WarmupResult of one depth with warmups (0, w)", repr(result)[:80])
    if ("pre", 0) not in deep.accuracy or shallow.seeds != deep.seeds:
        fail(func, "deep", "both placements and the seeds of shallow", repr(deep.seeds))
    w, w_shallow = deep.warmups[1], shallow.warmups[1]
    a, b = deep.accuracy, shallow.accuracy
    effects = {"post_warmup": a["post", w][0] - a["post", 0][0],
               "pre_warmup": a["pre", w][0] - a["pre", 0][0],
               "pre_vs_post": a["pre", 0][0] - a["post", 0][0],
               "shallow_post_warmup": b["post", w_shallow][0] - b["post", 0][0]}
    return {k: (e, seed_verdict(e, threshold)) for k, e in effects.items()}
