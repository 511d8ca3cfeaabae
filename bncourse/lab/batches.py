"""The order in which a seeded generator deals out mini-batches.

One rule serves every training loop of the course and the chapters that
replay its batches: each epoch draws a fresh permutation of the ``n``
training samples from a ``torch.Generator`` and cuts it into ``n // B``
full batches of ``B`` samples; the last ``n % B`` samples of the
permutation are dropped, so every batch has exactly ``B`` samples (the BN
statistics of a short last batch would be noisier than the others).
"""

from __future__ import annotations

import torch

from bncourse._checks import check_int, fail

__all__ = ["batch_order", "epoch_batches"]


def _check(func: str, n, batch_size) -> tuple[int, int]:
    n = check_int(func, "n", n)
    batch_size = check_int(func, "batch_size", batch_size)
    if batch_size > n:
        fail(func, "batch_size", f"at most n={n}", repr(batch_size))
    return n, batch_size


def epoch_batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless mini-batch indices: shape ``(batch_size,)`` int64 tensors, epoch after epoch.

    >>> gen = torch.Generator().manual_seed(0)
    >>> batches = epoch_batches(10, 4, gen)
    >>> [tuple(next(batches).shape) for _ in range(3)]   # 2 batches per epoch, 2 samples dropped
    [(4,), (4,), (4,)]
    """
    n, batch_size = _check("epoch_batches", n, batch_size)
    if not isinstance(generator, torch.Generator):
        fail("epoch_batches", "generator", "a torch.Generator", type(generator).__name__,
             TypeError)
    return _endless(n, batch_size, generator)


def _endless(n: int, batch_size: int, generator: torch.Generator):
    per_epoch = n // batch_size
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(per_epoch):
            yield perm[i * batch_size:(i + 1) * batch_size]


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """The first ``steps`` batches of :func:`epoch_batches` from ``Generator(seed)``: ``(steps, B)``.

    The batches that ``bncourse.lab.training.train(..., seed=seed)`` sees when its
    generator is used for nothing else before the first batch.
    """
    func = "batch_order"
    n, batch_size = _check(func, n, batch_size)
    steps = check_int(func, "steps", steps)
    seed = check_int(func, "seed", seed, minimum=0)
    batches = _endless(n, batch_size, torch.Generator().manual_seed(seed))
    return torch.stack([next(batches) for _ in range(steps)])
