"""Tests for bncourse.sync_bn: single-process BatchNorm on the whole batch (float64) is the oracle.

The distributed tests start REAL processes joined by gloo on 127.0.0.1 and are
bounded in time twice: by ``run_distributed``'s own timeout and by
pytest-timeout.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from bncourse.sync_bn import (
    SyncBatchNorm,
    combine_moments,
    combine_sums,
    free_port,
    run_distributed,
    shard_moments,
    sync_batch_norm,
    sync_bn_demo,
)

FORK_OK = "fork" in mp.get_all_start_methods()
TOL = 1e-12


def max_rel(a, b):
    a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    return float((a - b).abs().max() / b.abs().max())


def make_batch(seed, n, shape, dtype=torch.float64, loc=3.0):
    """x ``(n, *shape)`` with channel-dependent mean and spread, dy, gamma, beta."""
    gen = torch.Generator().manual_seed(seed)
    c = shape[0]
    view = (1, c) + (1,) * (len(shape) - 1)
    x = (loc * torch.randn(view, generator=gen, dtype=dtype)
         + (0.5 + 2 * torch.rand(view, generator=gen, dtype=dtype))
         * torch.randn((n, *shape), generator=gen, dtype=dtype))
    dy = torch.randn((n, *shape), generator=gen, dtype=dtype)
    gamma = 1 + 0.5 * torch.randn(c, generator=gen, dtype=dtype)
    beta = torch.randn(c, generator=gen, dtype=dtype)
    return x, dy, gamma, beta


def full_batch_reference(x, dy, gamma, beta, momentum=0.1):
    """torch's BatchNorm on the whole batch in one process: y, dx, dgamma, dbeta, buffers."""
    c = x.shape[1]
    running_mean = torch.zeros(c, dtype=x.dtype)
    running_var = torch.ones(c, dtype=x.dtype)
    xs, g, b = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    y = F.batch_norm(xs, running_mean, running_var, g, b, training=True, momentum=momentum)
    y.backward(dy)
    return {"y": y.detach(), "dx": xs.grad, "dgamma": g.grad, "dbeta": b.grad,
            "running_mean": running_mean, "running_var": running_var}


# --- statistics, no processes ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4,), (3, 5), (3, 2, 4), (2, 2, 3, 2)],
                         ids=["2d", "3d", "4d", "5d"])
def test_combined_shard_moments_are_the_moments_of_the_whole_batch(shape):
    x, *_ = make_batch(0, 11, shape)
    sizes = [2, 5, 4]
    parts = [shard_moments(s) for s in x.split(sizes)]
    counts = torch.tensor([p[0] for p in parts])
    count, mean, var = combine_moments(counts, torch.stack([p[1] for p in parts]),
                                       torch.stack([p[2] for p in parts]))
    dims = [0, *range(2, x.dim())]
    var_full, mean_full = torch.var_mean(x, dim=dims, correction=0)
    assert count == x.numel() // x.shape[1]
    assert max_rel(mean, mean_full) < TOL and max_rel(var, var_full) < TOL


def test_shard_moments_of_one_shard():
    x, *_ = make_batch(1, 6, (3, 4))
    count, mean, m2 = shard_moments(x)
    assert count == 24
    xs = x.transpose(0, 1).reshape(3, -1)
    assert max_rel(mean, xs.mean(dim=1)) < TOL
    assert max_rel(m2, ((xs - xs.mean(dim=1, keepdim=True)) ** 2).sum(dim=1)) < TOL


def test_combine_sums_matches_numpy_on_the_concatenated_data(rng):
    shards = [rng.normal(2.0, 3.0, size=(n, 4)) for n in (3, 7, 1)]
    sums = np.stack([s.sum(axis=0) for s in shards])
    sumsqs = np.stack([(s ** 2).sum(axis=0) for s in shards])
    counts = np.array([3, 7, 1])
    mean, var, var_unbiased = combine_sums(sums, sumsqs, counts)
    whole = np.concatenate(shards)
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, whole.var(axis=0), rtol=1e-11)
    np.testing.assert_allclose(var_unbiased, whole.var(axis=0, ddof=1), rtol=1e-11)
    m32 = combine_sums(sums.astype(np.float32), sumsqs.astype(np.float32), counts)
    assert all(a.dtype == np.float32 for a in m32)


def test_sums_of_squares_cancel_where_the_moment_combination_does_not():
    """Mean 1e4, spread 0.1, float32: E[x^2] - E[x]^2 keeps no digit; Chan's combination does."""
    gen = torch.Generator().manual_seed(2)
    x = (1e4 + 0.1 * torch.randn(64, 2, generator=gen, dtype=torch.float64)).float()
    shards = x.split([16, 16, 32])
    truth = x.double().var(dim=0, correction=0)
    sums = np.stack([s.sum(dim=0).numpy() for s in shards])
    sumsqs = np.stack([(s * s).sum(dim=0).numpy() for s in shards])
    _, var_naive, _ = combine_sums(sums, sumsqs, np.array([16, 16, 32]))
    parts = [shard_moments(s) for s in shards]
    _, _, var_safe = combine_moments(torch.tensor([p[0] for p in parts]),
                                     torch.stack([p[1] for p in parts]),
                                     torch.stack([p[2] for p in parts]))
    assert max_rel(var_safe.double(), truth) < 1e-3
    assert max_rel(torch.from_numpy(var_naive).double(), truth) > 0.5


@pytest.mark.parametrize("args,exc,match", [
    (([[1.0]], np.ones((1, 1)), np.array([2])), TypeError, r"combine_sums: sums must be a numpy"),
    ((np.ones(3), np.ones(3), np.array([2])), ValueError, r"combine_sums: sums must be 2-D"),
    ((np.ones((2, 3)), np.ones((2, 2)), np.array([2, 2])), ValueError,
     r"sumsqs must be shape \(2, 3\) \(the shape of sums\), got shape \(2, 2\)"),
    ((np.ones((2, 3)), np.ones((2, 3)), np.array([2])), ValueError,
     r"counts must be shape \(2,\) \(one count per row of sums\)"),
    ((np.ones((2, 3)), np.ones((2, 3)), [2, 2]), TypeError, r"counts must be a numpy.ndarray, got list"),
    ((np.ones((2, 3)), np.ones((2, 3)), np.array([2, -1])), ValueError, r"counts must be non-negative"),
    ((np.ones((1, 3)), np.ones((1, 3)), np.array([1])), ValueError,
     r"counts must be a total of at least 2 values per channel, got total 1"),
])
def test_combine_sums_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        combine_sums(*args)


# --- one process: no group needed in eval; a group of one equals BatchNorm ---------------------

def test_eval_mode_needs_no_process_group_and_is_batchnorm_eval():
    x, *_ = make_batch(3, 5, (3, 4))
    mean, var = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64), torch.tensor(
        [2.0, 0.5, 3.0], dtype=torch.float64)
    y = sync_batch_norm(x, mean, var, training=False)
    assert max_rel(y, F.batch_norm(x, mean, var, training=False)) < TOL


@pytest.mark.skipif(dist.is_initialized(), reason="a process group already exists")
def test_training_without_a_process_group_is_an_error():
    with pytest.raises(RuntimeError, match=r"sync_batch_norm: torch.distributed must be initialized"):
        SyncBatchNorm(3)(torch.randn(4, 3))


@pytest.fixture
def group_of_one():
    """A real gloo process group of one rank, in this process, on 127.0.0.1."""
    if dist.is_initialized():
        pytest.skip("a process group already exists")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", [(4,), (3, 5), (3, 2, 4), (2, 2, 3, 2)],
                         ids=["2d", "3d", "4d", "5d"])
def test_group_of_one_is_batchnorm(group_of_one, shape):
    x, dy, gamma, beta = make_batch(4, 6, shape)
    want = full_batch_reference(x, dy, gamma, beta)
    layer = SyncBatchNorm(shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    xs = x.clone().requires_grad_(True)
    y = layer(xs)
    y.backward(dy)
    got = {"y": y, "dx": xs.grad, "dgamma": layer.weight.grad, "dbeta": layer.bias.grad,
           "running_mean": layer.running_mean, "running_var": layer.running_var}
    for key in want:
        assert max_rel(got[key], want[key]) < TOL, key
    assert int(layer.num_batches_tracked) == 1


@pytest.mark.timeout(60)
def test_module_options_match_batchnorm(group_of_one):
    x, *_ = make_batch(5, 8, (3,))
    for kwargs in (dict(momentum=None), dict(affine=False), dict(track_running_stats=False)):
        ours, ref = SyncBatchNorm(3, **kwargs).double(), nn.BatchNorm1d(3, **kwargs).double()
        for _ in range(3):
            assert max_rel(ours(x), ref(x)) < TOL, kwargs
        ours.eval(), ref.eval()
        assert max_rel(ours(x), ref(x)) < TOL, kwargs
        assert set(ours.state_dict()) == set(ref.state_dict())
    with pytest.raises(ValueError, match=r"more than 1 value per channel over all ranks"):
        SyncBatchNorm(3)(torch.randn(1, 3))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: sync_batch_norm(np.ones((4, 3)), None, None, training=True), TypeError,
     r"sync_batch_norm: x must be a torch.Tensor, got ndarray"),
    (lambda: sync_batch_norm(torch.ones(4), None, None), ValueError, r"x must be 2-D to 5-D"),
    (lambda: sync_batch_norm(torch.ones(0, 3), None, None), ValueError,
     r"x must be at least one sample on every rank"),
    (lambda: sync_batch_norm(torch.ones(4, 3), torch.zeros(2), torch.ones(2)), ValueError,
     r"running_mean must be shape \(3,\)"),
    (lambda: sync_batch_norm(torch.ones(4, 3), torch.zeros(3), None), ValueError,
     r"running_mean and running_var must be both tensors or both None"),
    (lambda: sync_batch_norm(torch.ones(4, 3), None, None, training=False), ValueError,
     r"must be tensors when training=False"),
    (lambda: sync_batch_norm(torch.ones(4, 3), None, None, training=True, eps=-1.0), ValueError,
     r"eps must be a positive float"),
    (lambda: SyncBatchNorm(3)(torch.ones(4, 2)), ValueError,
     r"SyncBatchNorm: input must be 3 channels on axis 1"),
    (lambda: SyncBatchNorm(0), ValueError, r"SyncBatchNorm: num_features must be a positive int"),
    (lambda: run_distributed(print, 0), ValueError, r"run_distributed: world_size must be an int >= 1"),
    (lambda: run_distributed(print, 2, start_method="thread"), ValueError,
     r"run_distributed: start_method must be"),
    (lambda: run_distributed(print, 2, timeout=0), ValueError, r"timeout must be a positive float"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_free_port_can_be_bound():
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# --- real processes ---------------------------------------------------------------------------

CASES = [  # (seed, per-rank sizes for 2 ranks, per-sample shape, mean offset)
    (10, [4, 4], (5,), 3.0),
    (11, [3, 5], (3, 7), 3.0),
    (12, [2, 2], (3, 4, 4), 3.0),
    (13, [1, 3], (2, 2, 3, 2), 3.0),
    (14, [4, 4], (3, 6), 1e4),         # large mean: the combination must not cancel
]


def _sync_worker(rank, world_size, cases, momentum):
    """Synchronized and per-process BN on this rank's shard of each case."""
    out = []
    for seed, sizes, shape, loc in cases:
        x, dy, gamma, beta = make_batch(seed, sum(sizes), shape, loc=loc)
        start = sum(sizes[:rank])
        x_k, dy_k = x[start:start + sizes[rank]], dy[start:start + sizes[rank]]
        result = {}
        for label in ("sync", "local"):
            running_mean = torch.zeros(shape[0], dtype=x.dtype)
            running_var = torch.ones(shape[0], dtype=x.dtype)
            xs, g, b = (t.clone().requires_grad_(True) for t in (x_k, gamma, beta))
            if label == "sync":
                y = sync_batch_norm(xs, running_mean, running_var, g, b, training=True,
                                    momentum=momentum)
            else:
                y = F.batch_norm(xs, running_mean, running_var, g, b, training=True,
                                 momentum=momentum)
            y.backward(dy_k)
            result[label] = {"y": y.detach(), "dx": xs.grad, "dgamma": g.grad, "dbeta": b.grad,
                             "running_mean": running_mean, "running_var": running_var}
        out.append(result)
    return out


def _sleeping_worker(rank, world_size, seconds):
    time.sleep(seconds)
    return rank


def _failing_worker(rank, world_size):
    if rank == 1:
        raise ValueError("rank 1 failed on purpose")
    return rank


@pytest.fixture(scope="module")
def two_process_results():
    """One launch of 2 spawned processes (the portable start method) for every case."""
    start = time.perf_counter()
    results = run_distributed(_sync_worker, 2, args=(CASES, 0.3), timeout=90.0,
                              start_method="spawn")
    return results, time.perf_counter() - start


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(CASES)), ids=["2d", "3d-unequal", "4d", "5d-unequal",
                                                          "offset-1e4"])
def test_two_processes_equal_one_process_on_the_whole_batch(two_process_results, index):
    results, _ = two_process_results
    seed, sizes, shape, loc = CASES[index]
    x, dy, gamma, beta = make_batch(seed, sum(sizes), shape, loc=loc)
    want = full_batch_reference(x, dy, gamma, beta, momentum=0.3)
    ranks = [r[index]["sync"] for r in results]
    got = {"y": torch.cat([r["y"] for r in ranks]), "dx": torch.cat([r["dx"] for r in ranks]),
           "dgamma": sum(r["dgamma"] for r in ranks), "dbeta": sum(r["dbeta"] for r in ranks)}
    for key in ("y", "dx", "dgamma", "dbeta"):
        assert max_rel(got[key], want[key]) < TOL, key
    for key in ("running_mean", "running_var"):
        assert torch.equal(ranks[0][key], ranks[1][key])         # every rank holds the same
        assert max_rel(ranks[0][key], want[key]) < TOL, key
    # Each rank's dgamma is only its shard's share: alone it is NOT the full-batch gradient.
    assert max_rel(ranks[0]["dgamma"], want["dgamma"]) > 1e-3


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(CASES)))
def test_per_process_batchnorm_is_batchnorm_of_each_shard(two_process_results, index):
    """Plain BN in each process == BN applied separately to each shard (ghost BN), != whole batch."""
    results, _ = two_process_results
    seed, sizes, shape, loc = CASES[index]
    x, dy, gamma, beta = make_batch(seed, sum(sizes), shape, loc=loc)
    whole = full_batch_reference(x, dy, gamma, beta)
    for rank, (xs, ds) in enumerate(zip(x.split(sizes), dy.split(sizes))):
        shard = full_batch_reference(xs, ds, gamma, beta, momentum=0.3)
        local = results[rank][index]["local"]
        for key in ("y", "dx", "dgamma", "dbeta", "running_mean", "running_var"):
            assert max_rel(local[key], shard[key]) < TOL, (rank, key)
    y_local = torch.cat([r[index]["local"]["y"] for r in results])
    assert max_rel(y_local, whole["y"]) > 1e-3


@pytest.mark.timeout(120)
def test_the_two_process_launch_is_fast(two_process_results):
    _, seconds = two_process_results
    assert seconds < 60


@pytest.mark.timeout(120)
@pytest.mark.skipif(not FORK_OK, reason="fork start method not available")
def test_three_forked_processes_with_unequal_shards():
    sizes = [2, 3, 5]
    cases = [(20, sizes, (3, 4), 3.0)]
    results = run_distributed(_sync_worker, 3, args=(cases, 0.1), timeout=60.0,
                              start_method="fork")
    x, dy, gamma, beta = make_batch(20, sum(sizes), (3, 4))
    want = full_batch_reference(x, dy, gamma, beta)
    ranks = [r[0]["sync"] for r in results]
    assert max_rel(torch.cat([r["y"] for r in ranks]), want["y"]) < TOL
    assert max_rel(torch.cat([r["dx"] for r in ranks]), want["dx"]) < TOL
    assert max_rel(sum(r["dgamma"] for r in ranks), want["dgamma"]) < TOL
    assert max_rel(ranks[2]["running_var"], want["running_var"]) < TOL


@pytest.mark.timeout(120)
@pytest.mark.skipif(not FORK_OK, reason="fork start method not available")
def test_a_hanging_run_is_stopped_at_the_timeout():
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"run_distributed: 2 processes did not finish within 3 s"):
        run_distributed(_sleeping_worker, 2, args=(60.0,), timeout=3.0, start_method="fork")
    assert time.perf_counter() - start < 20


@pytest.mark.timeout(120)
@pytest.mark.skipif(not FORK_OK, reason="fork start method not available")
def test_a_failing_worker_is_reported_with_its_message():
    with pytest.raises(mp.ProcessRaisedException, match="rank 1 failed on purpose"):
        run_distributed(_failing_worker, 2, timeout=30.0, start_method="fork")


def _port_taken_once_worker(rank, world_size, marker):
    """Fails like a lost race for the port on the first launch only."""
    if not os.path.exists(marker):
        if rank == 0:
            with open(marker, "w"):
                pass
        raise RuntimeError("bind: Address already in use (simulated)")
    return rank


@pytest.mark.timeout(120)
@pytest.mark.skipif(not FORK_OK, reason="fork start method not available")
def test_a_port_taken_by_someone_else_is_retried_on_a_new_port(tmp_path):
    marker = str(tmp_path / "launched")
    assert run_distributed(_port_taken_once_worker, 2, args=(marker,), timeout=30.0,
                           start_method="fork") == [0, 1]


@pytest.mark.timeout(120)
def test_demo_entry_point_prints_json_and_matches():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start_method = "fork" if FORK_OK else "spawn"
    done = subprocess.run([sys.executable, "-m", "bncourse.sync_bn", "--demo", "--per-rank", "3",
                           "--start-method", start_method, "--timeout", "60"],
                          capture_output=True, text=True, timeout=100, env=env, check=True)
    report = json.loads(done.stdout)
    assert report["world_size"] == 2 and report["per_rank"] == 3
    assert max(report["sync_vs_full"].values()) < TOL
    assert report["ranks_agree"] is True
    assert max(report["local_vs_shards"].values()) < TOL
    assert min(report["local_vs_full"].values()) > 1e-3


@pytest.mark.timeout(120)
@pytest.mark.skipif(not FORK_OK, reason="fork start method not available")
def test_demo_function_in_process():
    report = sync_bn_demo(world_size=2, per_rank=2, start_method="fork", timeout=60.0)
    assert max(report["sync_vs_full"].values()) < TOL
    assert report["local_vs_shards"]["y"] < TOL and report["local_vs_full"]["y"] > 1e-3


def test_default_start_method():
    from bncourse.sync_bn import default_start_method

    assert default_start_method() == ("fork" if sys.platform.startswith("linux") else "spawn")


def test_entry_point_without_demo_prints_help():
    done = subprocess.run([sys.executable, "-m", "bncourse.sync_bn"], capture_output=True,
                          text=True, timeout=100)
    assert done.returncode == 2 and "--demo" in done.stdout
