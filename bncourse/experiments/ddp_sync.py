"""``DistributedDataParallel`` with BN on gloo processes: per-process, torch's and the course's sync BN.

Data parallelism splits a batch of N samples over K processes. With ordinary
BN every process normalizes with the statistics of its own N/K samples (ghost
BN, chapter 10), and DDP, which averages the *gradients*, does not make one
step on K shards equal one step on the whole batch. ``DDP`` also broadcasts
rank 0's buffers to every rank at each forward (``broadcast_buffers=True``),
so the running statistics are those of rank 0's shard only.
``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` swaps every BN for torch's
synchronized one, which supports only GPU tensors; the course's
``bncourse.sync_bn.SyncBatchNorm`` runs on CPU processes, and
:func:`convert_to_course_sync` swaps it in the same way.

Everything is float64 so that an exact match shows as round-off.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bncourse.lab.models import make_mlp
from bncourse.sync_bn import SyncBatchNorm, default_start_method, run_distributed

__all__ = ["convert_to_course_sync", "run_ddp_sync"]


def convert_to_course_sync(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BN replaced by ``bncourse.sync_bn.SyncBatchNorm`` (same state)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                sync = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
                ref = child.weight if child.weight is not None else child.running_mean
                if ref is not None:          # the dtype first, so loading loses no digit
                    sync = sync.to(ref.dtype)
                sync.load_state_dict(child.state_dict())
                setattr(parent, name, sync)
    return model


def _problem(seed: int, n: int, features: int):
    gen = torch.Generator().manual_seed(seed)
    x = 2.0 + 3.0 * torch.randn(n, features, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    model = make_mlp(features, hidden=(8, 8), out_features=3, activation="relu", bn="before",
                     bias_before_bn=False, seed=seed).double()
    return model, x, y


def _step(model, x, y, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def _state(model):
    module = getattr(model, "module", model)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _worker(rank, world_size, seed, n, features, lr):
    from torch.nn.parallel import DistributedDataParallel as DDP

    model, x, y = _problem(seed, n, features)
    shard = slice(rank * n // world_size, (rank + 1) * n // world_size)
    out = {}
    for arm, build in (("local", lambda m: m), ("course_sync", convert_to_course_sync)):
        ddp = DDP(build(copy.deepcopy(model)))
        _step(ddp, x[shard], y[shard], lr)
        out[arm] = _state(ddp)
    try:
        ddp = DDP(nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)))
        _step(ddp, x[shard], y[shard], lr)
        out["torch_error"] = ""
    except (ValueError, RuntimeError) as exc:
        out["torch_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return out


def run_ddp_sync(world_size: int = 2, n: int = 16, features: int = 6, lr: float = 0.5,
                 seed: int = 0, timeout: float = 120.0) -> dict:
    """One SGD step with DDP on ``world_size`` gloo processes against one step on the whole batch.

    Returns:
        dict with ``torch_error`` (what torch's SyncBatchNorm raises on CPU
        tensors), and for ``"local"`` (plain BN) and ``"course_sync"``:
        ``weights[arm]`` (largest relative difference of any weight after the
        step from the single-process step), ``running[arm]`` (the same for the
        running means and variances of rank 0), ``ranks_agree[arm]`` (equal
        running statistics on every rank).
    """
    model, x, y = _problem(seed, n, features)
    reference = copy.deepcopy(model)
    _step(reference, x, y, lr)
    want = _state(reference)
    results = run_distributed(_worker, world_size, args=(seed, n, features, lr),
                              timeout=timeout, start_method=default_start_method())
    out = dict(torch_error=results[0]["torch_error"], weights={}, running={}, ranks_agree={})
    for arm in ("local", "course_sync"):
        got = results[0][arm]

        def worst(keys):
            return max(float((got[k] - want[k]).abs().max() / want[k].abs().max()) for k in keys)

        out["weights"][arm] = worst([k for k in want if k.endswith("weight")])
        out["running"][arm] = worst([k for k in want if "running" in k])
        out["ranks_agree"][arm] = all(
            torch.equal(r[arm][k], got[k]) for r in results for k in got if "running" in k)
    return out
