"""Padding pollution: plain batch norm pools padded positions with the real ones.

A batch of sequences of lengths ``lengths`` (features with a mean away from 0)
is padded with zeros to a common length ``T``. Plain BN (``bncourse.batchnorm``)
takes each feature's statistics over all ``N * T`` positions; with a fraction
``p`` of real positions, its mean is ``p * mu`` and its variance
``p * sigma^2 + p * (1 - p) * mu^2`` instead of ``mu`` and ``sigma^2``. Masked BN
(``bncourse.masked_bn``) uses the real positions only; layer norm
(``bncourse.layernorm``) normalizes each position by itself.

For each ``T`` the experiment reports, over the real positions, the largest
difference between each method's output and the output of BN on the real
positions alone (the masked answer, which does not depend on ``T``).

Public API
----------
``run_padding_pollution(lengths=(12, 9, 7, 4), pad_to=(12, 24, 48), features=6, mean=2.0, std=1.0, seed=0) -> PaddingResult``
``padding_verdict(result, threshold=0.1) -> str``
    The claim "zero padding corrupts BN's statistics and a mask repairs them":
    "supported" when plain BN's real outputs are off by more than ``threshold``
    (in units of the normalized output) at every padded length and masked BN's
    and LN's by exactly 0.0.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bncourse._checks import fail, check_int
from bncourse.batchnorm import batchnorm_forward
from bncourse.layernorm import layernorm_forward
from bncourse.masked_bn import masked_batch_stats, masked_batchnorm_forward

__all__ = ["run_padding_pollution", "PaddingResult", "padding_mean_var", "padding_verdict"]


def padding_mean_var(p, mu, var):
    """Mean and variance of a feature when a fraction ``1 - p`` of its values are zeros."""
    return p * mu, p * var + p * (1.0 - p) * mu**2


@dataclasses.dataclass(frozen=True)
class PaddingResult:
    """Per padded length ``pad_to[i]``: real fraction, statistics and output errors.

    ``real_fraction (P,)``; ``bn_mean``/``bn_var (P, C)`` plain BN's statistics;
    ``true_mean``/``true_var (C,)`` those of the real positions;
    ``output_error[name] (P,)`` the largest ``|y - y_masked_at_first_T|`` over the
    real positions for ``"BN"``, ``"masked BN"`` and ``"LN"`` (LN's against its own
    output at the first ``T``).
    """

    pad_to: tuple
    lengths: tuple
    real_fraction: np.ndarray
    bn_mean: np.ndarray
    bn_var: np.ndarray
    true_mean: np.ndarray
    true_var: np.ndarray
    output_error: dict


def run_padding_pollution(lengths=(12, 9, 7, 4), pad_to=(12, 24, 48), features: int = 6,
                          mean: float = 2.0, std: float = 1.0, seed: int = 0) -> PaddingResult:
    """Normalize the same real tokens padded to each length in ``pad_to`` (module docstring)."""
    func = "run_padding_pollution"
    lengths = tuple(check_int(func, "lengths", n) for n in lengths)
    pad_to = tuple(check_int(func, "pad_to", t) for t in pad_to)
    if not lengths or not pad_to or min(pad_to) < max(lengths):
        fail(func, "pad_to", f"non-empty, every length >= the longest sequence {max(lengths)}",
              repr(pad_to))
    rng = np.random.default_rng(check_int(func, "seed", seed, minimum=0))
    c, n, longest = check_int(func, "features", features), len(lengths), max(lengths)
    real = rng.normal(mean, std, size=(n, c, longest))          # (N, C, L), used up to each length
    ones, zeros = np.ones(c), np.zeros(c)
    y_ref = y_ln_ref = None
    fraction, bn_mean, bn_var, errors = [], [], [], {"BN": [], "masked BN": [], "LN": []}
    for t in pad_to:
        mask = np.arange(t)[None, :] < np.array(lengths)[:, None]
        x = np.zeros((n, c, t))
        x[:, :, :longest] = real
        x[np.broadcast_to(~mask[:, None, :], x.shape)] = 0.0     # zero padding
        y_bn, _ = batchnorm_forward(x, ones, zeros)
        y_masked, _ = masked_batchnorm_forward(x, mask, ones, zeros)
        y_ln, _ = layernorm_forward(np.swapaxes(x, 1, 2), ones, zeros)   # (N, T, C): per position
        keep = np.broadcast_to(mask[:, None, :], x.shape)
        if y_ref is None:
            y_ref = y_masked[:, :, :longest][keep[:, :, :longest]]
            y_ln_ref = np.swapaxes(y_ln, 1, 2)[:, :, :longest][keep[:, :, :longest]]
        errors["BN"].append(float(np.abs(y_bn[keep] - y_ref).max()))
        errors["masked BN"].append(float(np.abs(y_masked[keep] - y_ref).max()))
        errors["LN"].append(float(np.abs(np.swapaxes(y_ln, 1, 2)[keep] - y_ln_ref).max()))
        fraction.append(mask.mean())
        bn_mean.append(x.mean(axis=(0, 2)))
        bn_var.append(x.var(axis=(0, 2)))
    true_mean, true_var, _ = masked_batch_stats(x, mask)
    return PaddingResult(pad_to, lengths, np.array(fraction), np.array(bn_mean),
                         np.array(bn_var), true_mean, true_var,
                         {k: np.array(v) for k, v in errors.items()})


def padding_verdict(result: PaddingResult, threshold: float = 0.1) -> str:
    """The verdict on "padding corrupts BN, a mask repairs it" (module docstring)."""
    if not isinstance(result, PaddingResult):
        fail("padding_verdict", "result", "a PaddingResult", type(result).__name__, TypeError)
    polluted = bool(np.all(result.output_error["BN"] > threshold))
    repaired = all(np.all(result.output_error[k] == 0.0) for k in ("masked BN", "LN"))
    return "supported" if polluted and repaired else "not supported"
