"""``BatchNorm1d`` on a ``(N, L, C)`` sequence: the wrong axis, loudly or silently.

``nn.BatchNorm1d(C)`` takes ``(N, C)`` or ``(N, C, L)``: channels on axis 1.
Sequence models usually carry ``(N, L, C)`` tensors (tokens, then features).
Fed such a tensor, BN treats the L positions as its channels: when
``L != C`` the running buffers have the wrong length and torch raises; when
``L == C`` nothing complains and BN normalizes each *position* over the batch
and the features, so the features keep whatever means and scales they had.
The fix is ``bn(x.transpose(1, 2)).transpose(1, 2)``.

Shape letters: N batch, L positions, C features (channels).
"""

from __future__ import annotations

import torch
from torch import nn

from bncourse._checks import check_int

__all__ = ["sequence_batch", "per_feature_moments", "run_sequence_axis"]


def sequence_batch(n: int, length: int, channels: int, seed: int = 0) -> torch.Tensor:
    """``(N, L, C)`` float64 batch whose feature ``c`` has mean ``2c - C`` and std ``1 + c``."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.arange(channels, dtype=torch.float64)
    noise = torch.randn(n, length, channels, generator=gen, dtype=torch.float64)
    return (2 * c - channels) + (1 + c) * noise


def per_feature_moments(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of each feature (last axis) of ``(N, L, C)`` over N and L."""
    flat = y.reshape(-1, y.shape[-1])
    return flat.mean(dim=0), flat.std(dim=0, correction=0)


@torch.no_grad()
def run_sequence_axis(n: int = 32, length: int = 10, channels: int = 6, seed: int = 0) -> dict:
    """The three ways to apply ``BatchNorm1d(C)`` to ``(N, L, C)`` data, measured.

    Returns:
        dict with ``error`` (the message torch raises for ``L != C``, first
        line), and for ``L == C``: ``wrong_mean`` / ``wrong_std`` (largest
        ``|mean|`` and the range ``(min, max)`` of the std over the features
        after BN on the wrong axis), the same ``right_mean`` / ``right_std``
        after transposing, ``input_std`` (the range before BN) and
        ``rel_diff`` (max difference between the two outputs over the largest
        right output).
    """
    func = "run_sequence_axis"
    n, length, channels = (check_int(func, a, v) for a, v in
                           (("n", n), ("length", length), ("channels", channels)))
    if length == channels:
        raise ValueError(f"{func}: length must differ from channels to show the error, "
                         f"got {length} and {channels}")
    bn = nn.BatchNorm1d(channels).double()
    try:
        bn(sequence_batch(n, length, channels, seed))
        error = None
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    x = sequence_batch(n, channels, channels, seed)          # L == C: no complaint
    wrong = nn.BatchNorm1d(channels).double()(x)
    right = nn.BatchNorm1d(channels).double()(x.transpose(1, 2)).transpose(1, 2)
    out = dict(error=error)
    for name, y in (("input", x), ("wrong", wrong), ("right", right)):
        mean, std = per_feature_moments(y)
        out[f"{name}_mean"] = float(mean.abs().max())
        out[f"{name}_std"] = (float(std.min()), float(std.max()))
    out["rel_diff"] = float((wrong - right).abs().max() / right.abs().max())
    return out
