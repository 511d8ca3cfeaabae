"""A tiny transformer for sequence experiments, with the normalization and its placement as knobs.

Shape letters: B sequences in a batch, T positions, F input features per
position, D model width, H attention heads, K classes.

Each of ``depth`` blocks has causal multi-head self-attention and a two-layer
ReLU feed-forward network (width ``ffn_mult * D``), each wrapped in a residual
connection with a normalization layer placed one of two ways
(:cite:`xiong2020layer`):

``placement="post"`` (the original transformer, :cite:`vaswani2017attention`)::

    x = norm1(x + attention(x))
    x = norm2(x + ffn(x))

``placement="pre"``::

    x = x + attention(norm1(x))
    x = x + ffn(norm2(x))
    ... and one more norm after the last block

``norm`` is ``"ln"`` (``nn.LayerNorm``: statistics over the D features of
each position), ``"rms"`` (``nn.RMSNorm``), ``"bn"`` (:class:`TokenBatchNorm`:
statistics of each feature over all B * T positions of the batch) or
``"none"``.

Causality is exact: attention (``F.scaled_dot_product_attention`` with
``is_causal=True``) sets the scores of later positions to ``-inf`` before the
softmax, so their weights are exactly 0.0 and the hidden state at
position t is computed from positions ``0..t`` only, unless a normalization
layer mixes positions (BN in training mode does).

Input: ``(B, T, F)``, or ``(B, T * F)`` rows that are reshaped (so the
flattened 8x8 digits of ``bncourse.lab.data`` are read as 8 rows of 8 pixels).
A fixed sinusoidal position code is added after the input projection; the
classifier reads the last position.

Public API
----------
``make_transformer(in_features, num_classes, seq_len, d_model=16, heads=2, depth=2, ffn_mult=2, norm="ln", placement="pre", seed=0) -> TinyTransformer``
    Same ``seed`` and sizes -> the same Linear weights whatever ``norm`` and
    ``placement`` (drawn by ``bncourse.lab.models.init_weights_``).
``TinyTransformer``: ``forward(x) -> (B, K)`` logits; ``hidden(x) -> (B, T, D)``
    the states after the last block (and the final norm for pre-LN).
``TokenBatchNorm(D)``: ``nn.BatchNorm1d`` applied to ``(B, T, D)``.
``NORMS``, ``PLACEMENTS``: the accepted names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bncourse._checks import fail, check_int
from bncourse.lab.models import init_weights_

__all__ = ["make_transformer", "TinyTransformer", "TokenBatchNorm", "NORMS", "PLACEMENTS"]

NORMS = ("ln", "rms", "bn", "none")
PLACEMENTS = ("pre", "post")


class TokenBatchNorm(nn.BatchNorm1d):
    """Batch norm over the batch and time axes of ``(B, T, D)``: per feature, over B*T values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _norm_layer(norm: str, d: int) -> nn.Module:
    if norm == "ln":
        return nn.LayerNorm(d)
    if norm == "rms":
        return nn.RMSNorm(d)
    if norm == "bn":
        return TokenBatchNorm(d)
    return nn.Identity()


def _position_code(seq_len: int, d: int) -> torch.Tensor:
    """Sinusoidal position code ``(T, D)`` of Vaswani et al.: no parameters, nothing random."""
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    code = torch.zeros(seq_len, d, dtype=torch.float64)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return code.float()


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, ffn_mult: int, norm: str, placement: str):
        super().__init__()
        self.heads, self.placement = heads, placement
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ff1 = nn.Linear(d, ffn_mult * d)
        self.ff2 = nn.Linear(ffn_mult * d, d)
        self.norm1 = _norm_layer(norm, d)
        self.norm2 = _norm_layer(norm, d)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # softmax(q k^T / sqrt(d_head)) v with the scores of later positions set to -inf
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff2(F.relu(self.ff1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.placement == "pre":
            x = x + self.attention(self.norm1(x))
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.ffn(x))


class TinyTransformer(nn.Module):
    """Causal transformer classifier; see the module docstring for the blocks."""

    def __init__(self, in_features: int, num_classes: int, seq_len: int, d_model: int,
                 heads: int, depth: int, ffn_mult: int, norm: str, placement: str):
        super().__init__()
        self.in_features, self.seq_len = in_features, seq_len
        self.norm, self.placement = norm, placement
        self.embed = nn.Linear(in_features, d_model)
        self.register_buffer("position", _position_code(seq_len, d_model))
        self.blocks = nn.ModuleList(_Block(d_model, heads, ffn_mult, norm, placement)
                                    for _ in range(depth))
        self.final_norm = _norm_layer(norm, d_model) if placement == "pre" else nn.Identity()
        self.out = nn.Linear(d_model, num_classes)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """States ``(B, T, D)`` after the last block (and the final norm of pre-LN)."""
        if x.ndim == 2:
            x = x.reshape(x.shape[0], self.seq_len, self.in_features)
        if x.ndim != 3 or x.shape[1:] != (self.seq_len, self.in_features):
            fail("TinyTransformer", "x", f"of shape (B, {self.seq_len}, {self.in_features}) "
                  f"or (B, {self.seq_len * self.in_features})", f"shape {tuple(x.shape)}")
        h = self.embed(x) + self.position.to(x.dtype)
        for block in self.blocks:
            h = block(h)
        return self.final_norm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x)[:, -1])


def make_transformer(in_features: int, num_classes: int, seq_len: int, d_model: int = 16,
                     heads: int = 2, depth: int = 2, ffn_mult: int = 2, norm: str = "ln",
                     placement: str = "pre", seed: int = 0) -> TinyTransformer:
    """Build a :class:`TinyTransformer` with seeded Linear weights (torch's default distribution).

    Raises ``ValueError``/``TypeError`` for non-positive sizes, ``d_model`` not
    a multiple of ``2 * heads``, or an unknown ``norm``/``placement``.

    >>> net = make_transformer(8, 10, seq_len=8, depth=2, norm="ln", placement="post", seed=0)
    >>> net(torch.zeros(3, 64)).shape
    torch.Size([3, 10])
    """
    func = "make_transformer"
    sizes = {name: check_int(func, name, value) for name, value in
             dict(in_features=in_features, num_classes=num_classes, seq_len=seq_len,
                  d_model=d_model, heads=heads, depth=depth, ffn_mult=ffn_mult).items()}
    if sizes["d_model"] % (2 * sizes["heads"]):
        fail(func, "d_model", f"a multiple of 2 * heads = {2 * sizes['heads']}", repr(d_model))
    if norm not in NORMS:
        fail(func, "norm", "one of " + ", ".join(map(repr, NORMS)), repr(norm))
    if placement not in PLACEMENTS:
        fail(func, "placement", "one of " + ", ".join(map(repr, PLACEMENTS)), repr(placement))
    seed = check_int(func, "seed", seed, minimum=0)
    net = TinyTransformer(norm=norm, placement=placement, **sizes)
    return init_weights_(net, seed=seed)
