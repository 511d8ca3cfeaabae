"""Causal leakage: does the output at position t of a causal model depend on later positions?

An autoregressive model must compute its output at position ``t`` from
positions ``0..t`` only. Causal attention guarantees that, but a batch-norm
layer in training mode takes each feature's mean and variance over every
position of every sequence in the batch, later ones included, so the future
leaks back through the statistics. Layer and RMS normalization use the
features of one position and cannot leak.

The measurement: a batch ``x`` of B sequences, and a copy ``x'`` in which
every position ``>= t`` of every sequence is replaced by fresh values. The
leakage at cut ``t`` is ``max |h(x') - h(x)|`` over positions ``< t`` of the
hidden states after the last block (float64, untrained seeded weights).

Public API
----------
``run_causal_leakage(settings=SETTINGS, batch_size=8, seq_len=12, features=8, d_model=16, depth=2, seed=0) -> LeakageResult``
``leakage_verdict(result) -> str``
    The claim "batch statistics let a causal model see later positions,
    per-position normalization does not": "supported" when BN in training
    mode changes the past at every cut and every other setting changes it by
    exactly 0.0.
``SETTINGS``: ``{"LN": ("ln", True), "RMSNorm": ("rms", True), "BN, train mode": ("bn", True),
"BN, eval mode": ("bn", False)}``, name -> (norm, training mode).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bncourse._checks import fail, check_int
from bncourse.lab.transformer import make_transformer

__all__ = ["run_causal_leakage", "LeakageResult", "SETTINGS", "leakage_verdict"]

SETTINGS = {"LN": ("ln", True), "RMSNorm": ("rms", True), "BN, train mode": ("bn", True),
            "BN, eval mode": ("bn", False)}


@dataclasses.dataclass(frozen=True)
class LeakageResult:
    """``leakage[name]``: shape ``(T - 1,)``, the largest change before cut ``t = 1 .. T-1``.

    ``scale``: the largest ``|h(x)|``, to read the leakage against.
    """

    cuts: np.ndarray
    leakage: dict
    scale: dict


@torch.no_grad()
def run_causal_leakage(settings=None, batch_size: int = 8, seq_len: int = 12, features: int = 8,
                       d_model: int = 16, depth: int = 2, seed: int = 0) -> LeakageResult:
    """Measure the dependence of earlier outputs on later inputs for each normalization.

    Every setting uses the same seeded Linear weights and the same inputs; a
    pre-LN arrangement with the setting's normalization in every slot. In
    training mode a BN layer would update its running statistics; here the
    model is rebuilt for every cut, so nothing carries over.
    """
    func = "run_causal_leakage"
    settings = dict(SETTINGS if settings is None else settings)
    if not settings:
        fail(func, "settings", "a non-empty dict name -> (norm, training)", "an empty one")
    batch_size = check_int(func, "batch_size", batch_size)
    seq_len = check_int(func, "seq_len", seq_len, minimum=2)
    gen = torch.Generator().manual_seed(check_int(func, "seed", seed, minimum=0))
    x = torch.randn(batch_size, seq_len, features, generator=gen, dtype=torch.float64)
    fresh = torch.randn(batch_size, seq_len, features, generator=gen, dtype=torch.float64)
    cuts = np.arange(1, seq_len)
    leakage, scale = {}, {}
    for name, (norm, training) in settings.items():
        changes = []
        for t in cuts:
            net = make_transformer(features, 2, seq_len, d_model=d_model, depth=depth, norm=norm,
                                   placement="pre", seed=seed).double().train(training)
            h = net.hidden(x)
            x_later = x.clone()
            x_later[:, t:] = fresh[:, t:]                       # only positions >= t change
            h_later = net.hidden(x_later)
            changes.append(float((h_later[:, :t] - h[:, :t]).abs().max()))
        leakage[name] = np.array(changes)
        scale[name] = float(h.abs().max())
    return LeakageResult(cuts, leakage, scale)


def leakage_verdict(result: LeakageResult, leaking: str = "BN, train mode") -> str:
    """"supported" when ``leaking`` leaks at every cut and every other setting never does."""
    if not isinstance(result, LeakageResult):
        fail("leakage_verdict", "result", "a LeakageResult", type(result).__name__, TypeError)
    if leaking not in result.leakage:
        fail("leakage_verdict", "leaking", f"one of {list(result.leakage)}", repr(leaking))
    leaks = bool(np.all(result.leakage[leaking] > 0.0))
    exact = all(np.all(v == 0.0) for k, v in result.leakage.items() if k != leaking)
    return "supported" if leaks and exact else "not supported"
