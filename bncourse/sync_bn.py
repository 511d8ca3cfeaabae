"""Synchronized batch normalization: one batch split over several processes, normalized as one.

With data parallelism each process (each device) holds a *shard* of the
mini-batch. Plain BatchNorm in every process normalizes each shard with its
own statistics: that is ghost batch normalization with a ghost batch of one
shard, whether or not one wants it. Synchronized BN makes every process use
the statistics of the whole batch instead, at the price of one collective
communication in the forward pass and one in the backward pass.

Shape letters: ``K`` processes (ranks), ``N_k`` samples on rank ``k``,
``C`` channels (axis 1), ``m_k = x_k.numel() // C`` values per channel on
rank ``k`` and ``m = sum_k m_k`` in the whole batch.

Forward, per channel:

1. each rank computes its count ``m_k``, mean ``mean_k`` and sum of squared
   deviations ``M2_k = sum((x_k - mean_k) ** 2)`` (two passes, locally);
2. one ``all_gather`` gives every rank all ``(m_k, mean_k, M2_k)``;
3. every rank combines them (Chan, Golub and LeVeque's parallel formula)::

       m = sum_k m_k
       mean = sum_k m_k * mean_k / m
       M2 = sum_k M2_k + sum_k m_k * (mean_k - mean) ** 2
       var = M2 / m                     # biased, to normalize

4. ``y_k = gamma * (x_k - mean) / sqrt(var + eps) + beta`` locally.

All-reducing ``(m_k, sum x_k, sum x_k ** 2)`` and computing
``var = sum x^2 / m - mean^2`` needs the same single communication but can lose
every digit when the mean is large against the spread (the two terms
cancel); the combination above only ever subtracts nearby means.

Backward: BatchNorm's closed form ``dx = gamma * inv_std / m * (m * dy -
sum(dy) - x_hat * sum(dy * x_hat))`` needs two per-channel sums over the
*whole* batch, so the backward all-reduces ``(sum dy_k, sum dy_k * x_hat_k)``.
Each rank returns the gradient of its own shard and its *local* contribution
to ``dgamma`` and ``dbeta``; summed over ranks (what data-parallel training
does with every parameter's gradient) they give the full-batch gradients.

Public API
----------
``shard_moments(x) -> (count, mean, m2)``            local statistics of one shard
``combine_moments(counts, means, m2s) -> (count, mean, var)``   Chan's combination
``combine_sums(sums, sumsqs, counts) -> (mean, var, var_unbiased)``  the naive one (NumPy)
``SyncBatchNormFunction``                            the autograd Function
``sync_batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
 momentum=0.1, eps=1e-5, group=None)``
``SyncBatchNorm(num_features, eps=1e-5, momentum=0.1, affine=True,
 track_running_stats=True, group=None)``
``free_port() -> int``
``run_distributed(worker, world_size, args=(), timeout=60.0, start_method="spawn") -> list``
``default_start_method() -> str``
``sync_bn_demo(world_size=2, ...) -> dict`` and ``python -m bncourse.sync_bn --demo``
(JSON on stdout): synchronized vs single-process BN, per-process BN vs per-shard BN.

Processes talk over the ``gloo`` backend on the loopback address
``127.0.0.1``; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import numbers
import os
import socket
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable

from bncourse._checks import fail, check_array, check_positive
from bncourse._torch_checks import (
    check_bn_tensor,
    check_batch_norm_args,
    per_channel,
    reduce_dims,
    values_per_channel,
)
from bncourse.torch_bn import BatchNormBase, batch_norm

__all__ = ["shard_moments", "combine_moments", "combine_sums", "SyncBatchNormFunction",
           "sync_batch_norm", "SyncBatchNorm", "free_port", "run_distributed",
           "default_start_method", "sync_bn_demo"]


# --------------------------------------------------------------------------- statistics

def shard_moments(x: torch.Tensor):
    """Count, mean and sum of squared deviations of each channel of one shard.

    Args:
        x: ``(N_k, C, *)`` tensor.

    Returns:
        ``(count, mean, m2)``: ``count = x.numel() // C`` (an int), ``mean`` and
        ``m2 = sum((x - mean) ** 2)`` of shape ``(C,)``, in the dtype of ``x``.
    """
    dims = reduce_dims(x)
    count = values_per_channel(x)
    mean = x.mean(dim=dims)
    m2 = ((x - per_channel(mean, x.dim())) ** 2).sum(dim=dims)
    return count, mean, m2


def combine_moments(counts, means, m2s):
    """Statistics of the union of ``K`` shards from each shard's ``(count, mean, M2)``.

    ``m = sum m_k``, ``mean = sum m_k mean_k / m``,
    ``M2 = sum M2_k + sum m_k (mean_k - mean)^2`` (Chan, Golub and LeVeque), and
    the biased variance ``var = M2 / m``. Exact in real arithmetic, and free of
    the cancellation of ``E[x^2] - E[x]^2``.

    Args:
        counts: ``(K,)`` tensor of counts (any numeric dtype).
        means, m2s: ``(K, C)`` tensors.

    Returns:
        ``(count, mean, var)``: the total count (an int), ``mean`` and biased
        ``var`` of shape ``(C,)``.
    """
    counts = counts.to(means.dtype).reshape(-1, 1)
    total = counts.sum()
    mean = (counts * means).sum(dim=0) / total
    m2 = m2s.sum(dim=0) + (counts * (means - mean) ** 2).sum(dim=0)
    return int(round(float(total))), mean, m2 / total


def combine_sums(sums, sumsqs, counts):
    """Global mean and variances from per-shard sums, sums of squares and counts (NumPy).

    ``m = sum_k counts_k``, ``mean = sum_k sums_k / m``,
    ``var = sum_k sumsqs_k / m - mean ** 2`` (biased) and
    ``var_unbiased = var * m / (m - 1)``. This is the combination an
    ``all_reduce`` of ``(sum, sum of squares, count)`` allows; it is exact in
    real arithmetic but cancels catastrophically when ``|mean|`` is large
    against the spread (see ``combine_moments`` for the safe form).

    Args:
        sums, sumsqs: ``(K, C)`` float arrays, ``sums[k, c] = sum of x`` and
            ``sumsqs[k, c] = sum of x ** 2`` over the values of channel ``c`` on
            shard ``k``.
        counts: ``(K,)`` array of values per channel on each shard (integers
            stored as int or float).

    Returns:
        ``(mean, var, var_unbiased)``, each ``(C,)`` in the dtype of ``sums``.

    Raises:
        TypeError: non-arrays or non-float ``sums``/``sumsqs``.
        ValueError: shapes that do not match, negative counts, or a total
            count below 2 (no unbiased variance).
    """
    func = "combine_sums"
    sums = check_array(func, "sums", sums, ndim=2)
    sumsqs = check_array(func, "sumsqs", sumsqs, ndim=2)
    if sumsqs.shape != sums.shape:
        fail(func, "sumsqs", f"shape {sums.shape} (the shape of sums)", f"shape {sumsqs.shape}")
    if not isinstance(counts, np.ndarray):
        fail(func, "counts", "a numpy.ndarray", type(counts).__name__, TypeError)
    if counts.shape != (sums.shape[0],):
        fail(func, "counts", f"shape ({sums.shape[0]},) (one count per row of sums)",
              f"shape {counts.shape}")
    if counts.dtype.kind not in "iuf" or np.any(counts < 0) or not np.all(np.isfinite(counts)):
        fail(func, "counts", "non-negative numbers", repr(counts))
    m = float(counts.sum())
    if m < 2:
        fail(func, "counts", "a total of at least 2 values per channel", f"total {m:g}")
    dtype = sums.dtype
    mean = sums.sum(axis=0) / dtype.type(m)
    var = sumsqs.sum(axis=0) / dtype.type(m) - mean * mean
    var_unbiased = var * dtype.type(m / (m - 1))
    return mean.astype(dtype), var.astype(dtype), var_unbiased.astype(dtype)


def _all_gather_moments(x: torch.Tensor, group):
    """Every rank's ``(count, mean, M2)``, stacked: counts ``(K,)``, means and m2s ``(K, C)``."""
    count, mean, m2 = shard_moments(x)
    packed = torch.stack([torch.full_like(mean, float(count)), mean, m2])     # (3, C)
    world = dist.get_world_size(group)
    gathered = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(gathered, packed.contiguous(), group=group)
    stacked = torch.stack(gathered)                                            # (K, 3, C)
    return stacked[:, 0, 0], stacked[:, 1], stacked[:, 2]


# --------------------------------------------------------------------------- autograd

class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode BN with statistics over the batches of all ranks of ``group``.

    ``SyncBatchNormFunction.apply(x, weight, bias, eps, group)`` returns
    ``(y, mean, var, count)``: the output of this rank's shard and the global
    per-channel mean, biased variance and count (the last three carry no
    gradient; the caller uses them for the running statistics).

    Every rank of the group must call ``forward`` and then ``backward``
    (each contains a collective operation).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):
        counts, means, m2s = _all_gather_moments(x, group)
        count, mean, var = combine_moments(counts, means, m2s)
        inv_std = torch.rsqrt(var + eps)
        x_hat = (x - per_channel(mean, x.dim())) * per_channel(inv_std, x.dim())
        y = x_hat
        if weight is not None:
            y = y * per_channel(weight, x.dim())
        if bias is not None:
            y = y + per_channel(bias, x.dim())
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.count, ctx.group = count, group
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var, torch.tensor(count)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _dmean, _dvar, _dcount):
        x_hat, inv_std, weight = ctx.saved_tensors
        dims = reduce_dims(dy)
        local_dbeta = dy.sum(dim=dims)
        local_dgamma = (dy * x_hat).sum(dim=dims)
        dx = None
        if ctx.needs_input_grad[0]:
            sums = torch.stack([local_dbeta, local_dgamma])      # (2, C): one message
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.group)
            sum_dy, sum_dy_x_hat = (per_channel(s, dy.dim()) for s in sums)
            m = ctx.count
            scale = per_channel(inv_std, dy.dim()) / m
            if weight is not None:
                scale = scale * per_channel(weight, dy.dim())
            dx = scale * (m * dy - sum_dy - x_hat * sum_dy_x_hat)
        dgamma = local_dgamma if ctx.needs_input_grad[1] else None
        dbeta = local_dbeta if ctx.needs_input_grad[2] else None
        return dx, dgamma, dbeta, None, None


def _check_shard(func: str, x, arg: str = "x") -> None:
    """A batch-norm tensor (``check_bn_tensor``) holding at least one sample of the batch."""
    check_bn_tensor(func, x, arg)
    if x.shape[0] == 0:
        fail(func, arg, "at least one sample on every rank", f"shape {tuple(x.shape)}")


def sync_batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5, group=None):
    """Batch norm whose training statistics cover the shards of every rank in ``group``.

    Same arguments and behaviour as ``torch.nn.functional.batch_norm``, plus
    ``group`` (None: the default process group). In training the running
    buffers (when given) are updated with the *global* mean and unbiased
    variance ``var * m / (m - 1)``, identically on every rank. In evaluation
    no communication happens: each rank normalizes with the running buffers.

    Raises:
        TypeError: non-tensor input.
        ValueError: bad rank or shapes, eps/momentum out of range, an empty
            shard, one value per channel in the whole batch.
        RuntimeError: training while ``torch.distributed`` is not initialized.
    """
    func = "sync_batch_norm"
    _check_shard(func, x)
    eps, momentum = check_batch_norm_args(func, x, running_mean, running_var, weight, bias,
                                          training, momentum, eps)
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{func}: torch.distributed must be initialized "
                           "(dist.init_process_group) for training-mode synchronized BN, "
                           "got no process group")
    y, mean, var, count = SyncBatchNormFunction.apply(x, weight, bias, eps, group)
    m = int(count)
    if m <= 1:
        fail(func, "x", "more than 1 value per channel over all ranks in training mode",
              f"{m} value per channel")
    if running_mean is not None:
        with torch.no_grad():
            running_mean.mul_(1.0 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1.0 - momentum).add_((var * (m / (m - 1))).to(running_var.dtype),
                                                  alpha=momentum)
    return y


class SyncBatchNorm(BatchNormBase):
    """BatchNorm for 2-D to 5-D input whose training statistics span every rank of ``group``.

    A ``bncourse.torch_bn.BatchNormBase`` (so torch's ``_BatchNorm``):
    parameters, buffers, state dicts, ``momentum=None`` (a cumulative
    average) and the choice between batch and running statistics are
    BatchNorm's; only the normalization with batch statistics is replaced by
    ``sync_batch_norm`` over ``group`` (None: the default process group).
    Evaluation needs no process group. Arguments as torch's
    ``nn.SyncBatchNorm``: ``num_features``, ``eps``, ``momentum``, ``affine``,
    ``track_running_stats``, ``group``, ``device``, ``dtype``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.group = group

    @torch.jit.ignore
    def _normalize(self, x, running_mean, running_var, training, momentum):
        return sync_batch_norm(x, running_mean, running_var, self.weight, self.bias, training,
                               momentum, self.eps, self.group)


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, worker, world_size, port, outdir, args, timeout):
    """Body of each process: join the group, run ``worker``, save its result, leave."""
    torch.set_num_threads(1)      # K processes on a few cores: one thread each
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout))
    try:
        result = worker(rank, world_size, *args)
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_distributed(worker, world_size, args=(), timeout=60.0, start_method="spawn"):
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` processes, gloo on 127.0.0.1.

    Args:
        worker: a function defined at module level (processes import it by
            name); it returns tensors, numbers, or lists/dicts of them.
        world_size: number of processes (>= 1).
        args: extra positional arguments for ``worker`` (picklable).
        timeout: seconds for the whole run, start-up included, and for every
            collective operation; the processes are killed when it runs out.
        start_method: ``"spawn"`` (portable: each process starts a fresh
            interpreter and imports torch) or ``"fork"`` (POSIX only; much
            faster to start, since the children share the parent's imports).

    Returns:
        The workers' results, in rank order.

    Raises:
        TimeoutError: the processes did not finish within ``timeout`` seconds.
        torch.multiprocessing.ProcessRaisedException: a worker raised (the
            message holds its traceback).
    """
    func = "run_distributed"
    if not callable(worker):
        fail(func, "worker", "a module-level function", type(worker).__name__, TypeError)
    if isinstance(world_size, bool) or not isinstance(world_size, numbers.Integral) \
            or world_size < 1:
        fail(func, "world_size", "an int >= 1", repr(world_size))
    timeout = check_positive(func, "timeout", timeout)
    if start_method not in ("spawn", "fork", "forkserver"):
        fail(func, "start_method", '"spawn", "fork" or "forkserver"', repr(start_method))
    import torch.multiprocessing as mp

    deadline = time.monotonic() + timeout
    for attempt in range(_PORT_ATTEMPTS):
        try:
            return _launch(worker, world_size, tuple(args), timeout, deadline, start_method)
        except mp.ProcessRaisedException as error:
            # free_port() only says the port WAS free: another program can take it
            # before rank 0 binds it. Then try again on a new port.
            if "address already in use" not in str(error).lower() \
                    or attempt == _PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


_PORT_ATTEMPTS = 3


def _launch(worker, world_size, args, timeout, deadline, start_method):
    """One start of the processes on a fresh port; see ``run_distributed``."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="bncourse-sync-") as outdir:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a multi-threaded process may deadlock the
            # child (a lock held by another thread stays locked there). The children run
            # only the worker, which takes no such lock; "spawn" avoids the question.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message=r".*fork\(\) may lead to deadlocks.*")
            context = mp.start_processes(_entry, args=(worker, world_size, free_port(), outdir,
                                                       args, timeout),
                                         nprocs=world_size, join=False,
                                         start_method=start_method)
        try:
            while not context.join(timeout=max(0.05, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run_distributed: {world_size} processes did not "
                                       f"finish within {timeout:g} s")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join(5)
        return [torch.load(os.path.join(outdir, f"rank{r}.pt"), weights_only=True)
                for r in range(world_size)]


# --------------------------------------------------------------------------- the demonstration

def _demo_batch(seed, sizes, channels, length, dtype=torch.float64):
    """The whole batch (``sum(sizes)`` samples, ``(N, C, L)``), its ``dy``, gamma and beta."""
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    loc = 3.0 * torch.randn(1, channels, 1, generator=gen, dtype=dtype)
    scale = 0.5 + 2.0 * torch.rand(1, channels, 1, generator=gen, dtype=dtype)
    x = loc + scale * torch.randn(n, channels, length, generator=gen, dtype=dtype)
    dy = torch.randn(n, channels, length, generator=gen, dtype=dtype)
    gamma = 1.0 + 0.5 * torch.randn(channels, generator=gen, dtype=dtype)
    beta = torch.randn(channels, generator=gen, dtype=dtype)
    return x, dy, gamma, beta


def _demo_worker(rank, world_size, seed, sizes, channels, length):
    """One rank: synchronized BN and plain BN on this rank's shard, forward and backward."""
    x, dy, gamma, beta = _demo_batch(seed, sizes, channels, length)
    start = sum(sizes[:rank])
    x_k, dy_k = x[start:start + sizes[rank]], dy[start:start + sizes[rank]]
    out = {}
    for label, layer in (("sync", SyncBatchNorm(channels)), ("local", nn.BatchNorm1d(channels))):
        layer = layer.double()
        with torch.no_grad():
            layer.weight.copy_(gamma)
            layer.bias.copy_(beta)
        x_in = x_k.clone().requires_grad_(True)
        y_k = layer(x_in)
        y_k.backward(dy_k)
        out[label] = {"y": y_k.detach(), "dx": x_in.grad, "dgamma": layer.weight.grad,
                      "dbeta": layer.bias.grad, "running_mean": layer.running_mean,
                      "running_var": layer.running_var}
    return out


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|``."""
    return float((a - b).abs().max() / b.abs().max())


def default_start_method() -> str:
    """``"fork"`` on Linux (processes start in a fraction of a second), ``"spawn"`` elsewhere.

    A forked child shares the parent's imported modules, so it need not import
    torch again (seconds per process); ``spawn`` is the portable choice, and
    the safe one on macOS, where forking a process that has loaded system
    frameworks can crash.
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


def sync_bn_demo(world_size=2, per_rank=4, channels=3, length=5, seed=0, timeout=60.0,
                 start_method=None) -> dict:
    """Run synchronized and per-process BN on ``world_size`` processes and compare (float64).

    The batch ``(world_size * per_rank, channels, length)`` is split into
    equal shards, one per process. Returns a JSON-ready dict:

    - ``sync_vs_full``: the largest relative difference between synchronized
      BN (outputs and ``dx`` concatenated over ranks, ``dgamma``/``dbeta``
      summed over ranks, running buffers of rank 0) and torch's BatchNorm on
      the whole batch in one process, per quantity;
    - ``ranks_agree``: whether every rank ended with the same running buffers;
    - ``local_vs_shards``: per-process BN against BN applied separately to
      each shard in one process (ghost BN with one ghost batch per shard);
    - ``local_vs_full``: per-process BN against BN on the whole batch;
    - ``seconds``: wall-clock time, process start-up included;
    - ``start_method``: ``None`` picks ``default_start_method()``;
    - the configuration.
    """
    sizes = [int(per_rank)] * int(world_size)
    if start_method is None:
        start_method = default_start_method()
    start = time.perf_counter()
    results = run_distributed(_demo_worker, world_size, args=(seed, sizes, channels, length),
                              timeout=timeout, start_method=start_method)
    seconds = time.perf_counter() - start
    x, dy, gamma, beta = _demo_batch(seed, sizes, channels, length)

    def reference(inputs, dys):
        bn = nn.BatchNorm1d(channels).double()
        with torch.no_grad():
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)
        x_in = inputs.clone().requires_grad_(True)
        y = bn(x_in)
        y.backward(dys)
        return {"y": y.detach(), "dx": x_in.grad, "dgamma": bn.weight.grad,
                "dbeta": bn.bias.grad, "running_mean": bn.running_mean,
                "running_var": bn.running_var}

    full = reference(x, dy)
    shards = [reference(xs, ds) for xs, ds in zip(x.split(sizes), dy.split(sizes))]

    def gathered(label, key):
        if key in ("y", "dx"):
            return torch.cat([r[label][key] for r in results])
        return sum(r[label][key] for r in results)

    keys = ("y", "dx", "dgamma", "dbeta")
    sync_vs_full = {k: _max_rel(gathered("sync", k), full[k]) for k in keys}
    for k in ("running_mean", "running_var"):
        sync_vs_full[k] = _max_rel(results[0]["sync"][k], full[k])
    ranks_agree = all(torch.equal(r["sync"][k], results[0]["sync"][k])
                      for r in results for k in ("running_mean", "running_var"))
    per_shard = {k: torch.cat([s[k] for s in shards]) for k in ("y", "dx")}
    local_vs_shards = {k: _max_rel(gathered("local", k), per_shard[k]) for k in ("y", "dx")}
    local_vs_full = {k: _max_rel(gathered("local", k), full[k]) for k in ("y", "dx")}
    return {"world_size": int(world_size), "per_rank": int(per_rank), "channels": int(channels),
            "length": int(length), "seed": int(seed), "start_method": start_method,
            "sync_vs_full": sync_vs_full, "ranks_agree": bool(ranks_agree),
            "local_vs_shards": local_vs_shards, "local_vs_full": local_vs_full,
            "seconds": seconds}


def main(argv=None) -> int:
    """``python -m bncourse.sync_bn --demo [--world-size K] [--per-rank N] [--seed S]``."""
    parser = argparse.ArgumentParser(prog="python -m bncourse.sync_bn",
                                     description="Synchronized BN over local processes (gloo).")
    parser.add_argument("--demo", action="store_true", help="run the comparison, print JSON")
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--per-rank", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--start-method", default=None, choices=("spawn", "fork", "forkserver"),
                        help="default: fork on Linux, spawn elsewhere")
    options = parser.parse_args(argv)
    if not options.demo:
        parser.print_help()
        return 2
    result = sync_bn_demo(world_size=options.world_size, per_rank=options.per_rank,
                          seed=options.seed, timeout=options.timeout,
                          start_method=options.start_method)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
