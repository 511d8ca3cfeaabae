"""Benchmarks: the course's code against PyTorch, and the cost of BN itself, on this machine.

Run ``make bench`` (``python -m bncourse.bench``) for everything, or pick
parts: ``python -m bncourse.bench --only numpy,graph`` (``--notebooks`` is
``--only notebooks``). Results go to ``bench-results/bench.json`` and
``bench-results/bench.md``; a partial run replaces only the sections it
measured.

Sections, what each compares, and the goal it is judged on (``GOALS``):

``numpy``
    ``batchnorm_forward`` + ``batchnorm_backward`` (NumPy, float32) against
    ``torch.nn.functional.batch_norm`` + autograd backward, at ``(512, 1024)``
    and ``(32, 64, 16, 16)``. Goal: NumPy / torch at most 1.5, judged against
    torch on **one thread**: NumPy's elementwise operations and reductions run
    on one core, so one torch thread is the like-for-like comparison. Torch
    on all cores is reported next to it.
``graph``
    ``batchnorm_backward_graph`` / ``batchnorm_backward``, same shapes. Goal:
    at least 1.5 (the closed form must earn its derivation).
``training``
    One SGD step (forward, cross-entropy, backward, update) of a 4-layer MLP
    (3 hidden layers of 256 ReLU units, batch 256) with
    ``bncourse.torch_bn.BatchNorm1d`` / with ``torch.nn.BatchNorm1d``.
    Goal: at most 1.3. The same step without BN is reported (BN's own cost).
``inference``
    Prediction latency of that MLP in evaluation mode with BN folded into the
    Linear layers (``bncourse.fold.fold_sequential``) / the same architecture
    without BN, for one sample and a batch of 256. Goal: at most 1.05. The
    unfolded BN model is reported for reference.
``memory``
    Peak memory (``tracemalloc``) of the NumPy forward and forward+backward,
    as a multiple of the input's size: what the cache costs. No goal.
``notebooks``
    Wall-clock time to execute each ``book/*.ipynb`` with nbclient (kernel
    start included). Goal: at most 60 s each.

How timings are taken
---------------------
The machine is shared, so the two sides of a comparison are timed
*interleaved* (``bncourse.bench.timing.time_interleaved_all``: one call of each per
round, the order rotating), and each side is summarized by its median over
the rounds (and its minimum, the least disturbed call). A ratio is reported
three ways. The judged figure is the *paired ratio*, the median over rounds
of ``t_num[r] / t_den[r]``: both sides of a round ran within milliseconds of
each other, so their ratio cancels most of the load, and the median drops
the rounds a burst of load hit on one side only. Next to it come the
quartiles of the per-round ratios (how much noise is left), the ratio of the
medians and the ratio of the minima. Torch runs on one thread unless a row
says otherwise; the previous setting is restored afterwards.

Public API
----------
``numpy_vs_torch(shape, repeats, all_threads=True, seed=0, settle_s=0.02) -> section``
``graph_vs_closed(shape, repeats, seed=0) -> section``
``training_steps(models, x, y, repeats, lr=0.01) -> {label: per-round seconds}``
``training_figure(repeats, width=256, depth=4, batch=256, seed=0) -> section``
``prediction_latency(models, x, repeats) -> {label: per-round seconds}``
``inference_figure(repeats, batches=(1, 256), width=256, depth=4, seed=0) -> section``
``memory_figure(shapes=SHAPES, seed=0) -> section``
``notebook_times(paths, timeout=600) -> section``
``run(only=None, quick=False, book_dir="book") -> results``
``mlp_trio(in_features, hidden, seed=0)``: the same MLP with torch's BN, the course's BN, no BN.
Re-exported from ``bncourse.bench.stats``: ``ratio_summary``, ``classify_ratio``,
``torch_threads``; from ``bncourse.bench.report``: ``to_markdown(results)``,
``write_results(results, out_dir) -> (json_path, md_path)``.

A *section* is a JSON-ready dict ``{"name", "title", "experiments": [...],
"rows": [...], "measured_at", "load"}``; each row is one ratio with its goal
(or none) and whether it is met.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bncourse._checks import fail
from bncourse.batchnorm import batchnorm_backward, batchnorm_backward_graph, batchnorm_forward
from bncourse.bench.report import to_markdown, write_results
from bncourse.bench.stats import (
    check_repeats,
    classify_ratio,
    ratio_summary,
    timing_summary,
    torch_threads,
)
from bncourse.bench.study import study_section
from bncourse.bench.timing import time_interleaved_all

__all__ = ["GOALS", "SECTIONS", "SHAPES", "numpy_vs_torch", "graph_vs_closed", "training_steps",
           "training_figure", "prediction_latency", "inference_figure", "memory_figure",
           "notebook_times", "run", "to_markdown", "write_results", "ratio_summary",
           "classify_ratio", "torch_threads", "mlp_trio", "main"]

SHAPES = ((512, 1024), (32, 64, 16, 16))
SECTIONS = ("numpy", "graph", "training", "inference", "memory", "notebooks", "study")
# Goal of each judged figure: (comparison, bound). "<=": the ratio must not exceed the bound.
GOALS = {
    "numpy": ("<=", 1.5),
    "graph": (">=", 1.5),
    "training": ("<=", 1.3),
    "inference": ("<=", 1.05),
    "notebooks": ("<=", 60.0),
}
# Rounds per comparison: full (make bench) and quick (tests, a first look).
_REPEATS = {"full": {"numpy": 150, "graph": 60, "training": 150, "inference": 300},
            "quick": {"numpy": 5, "graph": 3, "training": 5, "inference": 10}}


# --------------------------------------------------------------------------- goals and rows

def _goal_met(section: str, value: float) -> bool:
    op, bound = GOALS[section]
    return bool(value <= bound) if op == "<=" else bool(value >= bound)


def _row(section: str, figure: str, config: str, timings: dict, num: str, den: str,
         judged: bool) -> dict:
    """One line of the results table: ``num / den`` and, if ``judged``, its goal."""
    summary = ratio_summary(timings[num], timings[den])
    row = {"section": section, "figure": figure, "config": config, "numerator": num,
           "denominator": den, "median_s": {k: float(np.median(timings[k])) for k in (num, den)},
           "min_s": {k: float(np.min(timings[k])) for k in (num, den)}, **summary,
           "goal": None, "met": None}
    if judged:
        op, bound = GOALS[section]
        row["goal"] = f"{op} {bound:g}"
        row["met"] = _goal_met(section, summary["ratio"])
    return row


# --------------------------------------------------------------------------- environment

def _load() -> dict:
    """The load on the machine now: 1/5/15-minute load averages and the core count."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - platforms without getloadavg
        one = five = fifteen = float("nan")
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen,
            "cpu_count": os.cpu_count()}


def _section(name: str, title: str, body) -> dict:
    """Run ``body() -> (experiments, rows)`` and stamp the section with time and load."""
    before = _load()
    start = time.perf_counter()
    experiments, rows = body()
    return {"name": name, "title": title, "experiments": experiments, "rows": rows,
            "seconds": time.perf_counter() - start,
            "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "load": {"before": before, "after": _load()}}


def _check_shape(func: str, shape) -> tuple:
    if not isinstance(shape, (tuple, list)) or not 2 <= len(shape) <= 5 or \
            not all(isinstance(s, int) and s >= 1 for s in shape):
        fail(func, "shape", "a tuple of 2 to 5 positive ints (N, C, ...)", repr(shape))
    if math.prod(shape) // shape[1] < 2:
        fail(func, "shape", "at least 2 values per channel", repr(tuple(shape)))
    return tuple(shape)


def _shape_label(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _bn_arrays(shape, seed: int):
    """float32 x, gamma, beta, dy for a shape: per-channel means and spreads, as BN sees."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    x = (rng.normal(0.0, 2.0, size=channels).reshape(view)
         + rng.uniform(0.5, 2.0, size=channels).reshape(view) * rng.standard_normal(shape))
    gamma = rng.normal(1.0, 0.2, size=channels)
    beta = rng.normal(0.0, 0.2, size=channels)
    dy = rng.standard_normal(shape)
    return tuple(a.astype(np.float32) for a in (x, gamma, beta, dy))


# --------------------------------------------------------------------------- NumPy vs torch

def numpy_vs_torch(shape=(512, 1024), repeats: int = 60, all_threads: bool = True,
                   seed: int = 0, settle_s: float = 0.02) -> dict:
    """Time NumPy forward+backward against torch's ``F.batch_norm`` + autograd, float32.

    The NumPy side is ``batchnorm_forward`` then ``batchnorm_backward``
    (``dx``, ``dgamma``, ``dbeta``); the torch side is ``F.batch_norm`` in
    training mode on leaf tensors ``x``, ``weight``, ``bias`` and
    ``y.backward(dy)``, which computes the same three gradients. The forward's
    output stays alive until the backward on both sides, as in a network.

    Args:
        shape: ``(N, C, ...)`` input shape.
        repeats: interleaved rounds.
        all_threads: also time torch on ``os.cpu_count()`` threads, in a second
            comparison (see ``time_interleaved_all``).
        seed: seeds the data.
        settle_s: idle seconds before each call of that second comparison.

    Returns:
        A section with one experiment and the rows ``numpy / torch 1 thread``
        (judged, goal ``<= 1.5``) and, with ``all_threads``, ``numpy / torch
        all threads`` (reported).
    """
    func = "numpy_vs_torch"
    shape = _check_shape(func, shape)
    repeats = check_repeats(func, repeats)
    x, gamma, beta, dy = _bn_arrays(shape, seed)
    x_t = torch.from_numpy(x).requires_grad_()
    gamma_t = torch.from_numpy(gamma).requires_grad_()
    beta_t = torch.from_numpy(beta).requires_grad_()
    dy_t = torch.from_numpy(dy)
    n_all = os.cpu_count() or 1

    def numpy_side():
        y, cache = batchnorm_forward(x, gamma, beta)
        grads = batchnorm_backward(dy, cache)
        return y, grads

    def torch_side():
        x_t.grad = gamma_t.grad = beta_t.grad = None
        y = F.batch_norm(x_t, None, None, gamma_t, beta_t, training=True)
        y.backward(dy_t)
        return y

    def torch_all_side():
        torch.set_num_threads(n_all)
        try:
            return torch_side()
        finally:
            torch.set_num_threads(1)

    labels = {"numpy": "NumPy", "torch_1": "torch, 1 thread",
              "numpy_2": "NumPy (timed next to torch on all cores)",
              "torch_all": f"torch, {n_all} threads (all cores)"}

    def body():
        config = f"{_shape_label(shape)} float32"
        with torch_threads(1):
            times = time_interleaved_all({"numpy": numpy_side, "torch_1": torch_side},
                                         repeats, warmup=2)
            rows = [_row("numpy", "NumPy forward+backward / torch (1 thread)", config, times,
                         "numpy", "torch_1", judged=True)]
            if all_threads:
                # After a parallel region torch's OpenMP workers keep spinning for a
                # while; a call timed right after would share the cores with them.
                # So this comparison idles between calls (untimed), and runs after
                # the judged one.
                more = time_interleaved_all({"numpy_2": numpy_side, "torch_all": torch_all_side},
                                            repeats, settle_s=settle_s)
                rows.append(_row("numpy", f"NumPy forward+backward / torch ({n_all} threads)",
                                 config, more, "numpy_2", "torch_all", judged=False))
                times.update(more)
        experiment = {"id": f"numpy_vs_torch {_shape_label(shape)}", "shape": list(shape),
                      "dtype": "float32", "labels": {k: labels[k] for k in times},
                      "timings": {k: timing_summary(v) for k, v in times.items()}}
        return [experiment], rows

    return _section("numpy", "NumPy reference vs torch, forward + backward", body)


# --------------------------------------------------------------------------- graph vs closed

def graph_vs_closed(shape=(512, 1024), repeats: int = 30, seed: int = 0) -> dict:
    """Time ``batchnorm_backward_graph`` against ``batchnorm_backward`` on one float32 cache.

    Returns a section whose row ``graph / closed form`` is judged (goal ``>= 1.5``).
    """
    func = "graph_vs_closed"
    shape = _check_shape(func, shape)
    repeats = check_repeats(func, repeats)
    x, gamma, beta, dy = _bn_arrays(shape, seed)
    _, cache = batchnorm_forward(x, gamma, beta)
    fns = {"graph": lambda: batchnorm_backward_graph(dy, cache),
           "closed": lambda: batchnorm_backward(dy, cache)}

    def body():
        times = time_interleaved_all(fns, repeats, warmup=1)
        config = f"{_shape_label(shape)} float32"
        rows = [_row("graph", "graph backward / closed-form backward", config, times,
                     "graph", "closed", judged=True)]
        experiment = {"id": f"graph_vs_closed {_shape_label(shape)}", "shape": list(shape),
                      "dtype": "float32",
                      "labels": {"graph": "batchnorm_backward_graph",
                                 "closed": "batchnorm_backward"},
                      "timings": {k: timing_summary(v) for k, v in times.items()}}
        return [experiment], rows

    return _section("graph", "Graph backward vs closed-form backward (NumPy)", body)


# --------------------------------------------------------------------------- training step

def _sgd_step(model, x, y, opt):
    """One training step as ``bncourse.lab.training.train`` takes it."""
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def training_steps(models: dict, x: torch.Tensor, y: torch.Tensor, repeats: int = 60,
                   lr: float = 0.01) -> dict:
    """Median time of one SGD step (forward, cross-entropy, backward, update) per model.

    Each model gets its own ``torch.optim.SGD(lr)`` and is trained in place
    for ``warmup + repeats`` steps on the same batch ``(x, y)``; one thread.

    Args:
        models: label -> ``nn.Module`` in training mode, mapping ``x`` to logits.
        x: ``(B, D)`` inputs; y: ``(B,)`` int64 labels.
        repeats: interleaved rounds.
        lr: small, so that many steps on one batch stay finite.

    Returns:
        label -> per-round durations in seconds (array of shape ``(repeats,)``).
    """
    func = "training_steps"
    if not isinstance(models, dict) or not models:
        fail(func, "models", "a non-empty dict label -> nn.Module", repr(type(models).__name__))
    repeats = check_repeats(func, repeats)
    opts = {k: torch.optim.SGD(m.parameters(), lr=lr) for k, m in models.items()}
    for m in models.values():
        m.train()
    fns = {k: (lambda m=m, o=opts[k]: _sgd_step(m, x, y, o)) for k, m in models.items()}
    with torch_threads(1):
        return time_interleaved_all(fns, repeats, warmup=3)


def mlp_trio(in_features: int, hidden, seed: int = 0, activation: str = "relu") -> dict:
    """The same MLP three ways: ``nn.BatchNorm1d``, ``bncourse.torch_bn.BatchNorm1d``, no BN.

    Built by ``bncourse.lab.models.make_mlp`` with one seed, so the Linear layers
    are identical; BN sits before each hidden activation.
    """
    from torch import nn

    from bncourse.lab.models import make_mlp
    from bncourse.torch_bn import BatchNorm1d

    common = dict(hidden=tuple(hidden), activation=activation, seed=seed)
    return {"nn_bn": make_mlp(in_features, bn="before", bn_layer=nn.BatchNorm1d, **common),
            "course_bn": make_mlp(in_features, bn="before", bn_layer=BatchNorm1d, **common),
            "no_bn": make_mlp(in_features, bn="none", **common)}


def training_figure(repeats: int = 60, width: int = 256, depth: int = 4, batch: int = 256,
                    seed: int = 0) -> dict:
    """Training step of a ``depth``-layer MLP (``depth - 1`` hidden layers of ``width``).

    Rows: ``bncourse.torch_bn.BatchNorm1d / nn.BatchNorm1d`` (judged, ``<= 1.3``)
    and ``nn.BatchNorm1d / no BN`` (reported: what BN costs per step).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    models = mlp_trio(width, [width] * (depth - 1), seed=seed)
    labels = {"nn_bn": "nn.BatchNorm1d", "course_bn": "bncourse.torch_bn.BatchNorm1d",
              "no_bn": "no BN"}

    def body():
        times = training_steps(models, x, y, repeats)
        config = f"MLP {depth} layers, width {width}, batch {batch}"
        rows = [_row("training", "training step, bncourse BatchNorm1d / nn.BatchNorm1d",
                     config, times, "course_bn", "nn_bn", judged=True),
                _row("training", "training step, nn.BatchNorm1d / no BN", config, times,
                     "nn_bn", "no_bn", judged=False)]
        experiment = {"id": "training_step", "config": config, "labels": labels,
                      "timings": {k: timing_summary(v) for k, v in times.items()}}
        return [experiment], rows

    return _section("training", "Training step with and without BN", body)


# --------------------------------------------------------------------------- prediction

def prediction_latency(models: dict, x: torch.Tensor, repeats: int = 200) -> dict:
    """Per-round seconds of ``model(x)`` in evaluation mode, without autograd, one thread.

    Args:
        models: label -> ``nn.Module`` (put in evaluation mode here).
        x: the input batch, e.g. ``(1, D)`` for the latency of one sample.

    Returns:
        label -> per-round durations in seconds, shape ``(repeats,)``.
    """
    func = "prediction_latency"
    if not isinstance(models, dict) or not models:
        fail(func, "models", "a non-empty dict label -> nn.Module", repr(type(models).__name__))
    repeats = check_repeats(func, repeats)
    for m in models.values():
        m.eval()

    def predict(m):
        with torch.no_grad():
            return m(x)

    fns = {k: (lambda m=m: predict(m)) for k, m in models.items()}
    with torch_threads(1):
        return time_interleaved_all(fns, repeats, warmup=5)


def _calibrated_bn_models(width: int, depth: int, seed: int):
    """BN model with non-trivial statistics and affine parameters, its fold, and the no-BN twin."""
    from bncourse.fold import fold_sequential
    from bncourse.lab.models import make_mlp

    hidden = (width,) * (depth - 1)
    bn_model = make_mlp(width, hidden=hidden, activation="relu", bn="before", seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in bn_model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(0.3 * torch.randn(width, generator=gen))
                module.running_var.copy_(torch.rand(width, generator=gen) + 0.5)
                module.weight.copy_(1 + 0.2 * torch.randn(width, generator=gen))
                module.bias.copy_(0.2 * torch.randn(width, generator=gen))
    bn_model.eval()
    no_bn = make_mlp(width, hidden=hidden, activation="relu", bn="none", seed=seed).eval()
    return {"bn": bn_model, "folded": fold_sequential(bn_model), "no_bn": no_bn}


def inference_figure(repeats: int = 200, batches=(1, 256), width: int = 256, depth: int = 4,
                     seed: int = 0) -> dict:
    """Prediction latency: BN model, BN folded, no BN, for each batch size.

    Rows per batch size: ``folded / no BN`` (judged, ``<= 1.05``) and
    ``BN unfolded / no BN`` (reported). The experiment also records the
    largest absolute difference between the folded and the unfolded outputs.
    """
    models = _calibrated_bn_models(width, depth, seed)
    labels = {"bn": "BN (evaluation mode)", "folded": "BN folded", "no_bn": "no BN"}
    gen = torch.Generator().manual_seed(seed + 2)

    def body():
        experiments, rows = [], []
        for batch in batches:
            x = torch.randn(batch, width, generator=gen)
            times = prediction_latency(models, x, repeats)
            with torch.no_grad():
                err = float((models["folded"](x) - models["bn"](x)).abs().max())
            config = f"MLP {depth} layers, width {width}, batch {batch}"
            rows.append(_row("inference", "prediction, BN folded / no BN", config, times,
                             "folded", "no_bn", judged=True))
            rows.append(_row("inference", "prediction, BN unfolded / no BN", config, times,
                             "bn", "no_bn", judged=False))
            experiments.append({"id": f"prediction batch {batch}", "config": config,
                                "labels": labels, "max_abs_error_folded": err,
                                "timings": {k: timing_summary(v) for k, v in times.items()}})
        return experiments, rows

    return _section("inference", "Prediction latency: BN, folded, no BN", body)


# --------------------------------------------------------------------------- memory

def _peak_bytes(fn) -> int:
    """Peak bytes traced by ``tracemalloc`` while ``fn()`` runs (its result is dropped after)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def memory_figure(shapes=SHAPES, seed: int = 0) -> dict:
    """Peak memory of the NumPy forward and forward+backward, in multiples of ``x.nbytes``.

    Measured with ``tracemalloc`` (NumPy reports its buffers to it); the
    inputs ``x`` and ``dy`` exist before the measurement and are not counted.
    Also reports the size of the cache the forward keeps for the backward.
    """
    def body():
        experiments = []
        for shape in shapes:
            shape = _check_shape("memory_figure", shape)
            x, gamma, beta, dy = _bn_arrays(shape, seed)
            holder = {}

            def forward():
                holder["out"] = batchnorm_forward(x, gamma, beta)

            def forward_backward():
                y, cache = batchnorm_forward(x, gamma, beta)
                return y, batchnorm_backward(dy, cache)

            peak_fwd = _peak_bytes(forward)
            y, cache = holder.pop("out")
            cache_bytes = cache.x_hat.nbytes + cache.inv_std.nbytes + cache.gamma.nbytes
            peak_total = _peak_bytes(forward_backward)
            experiments.append({
                "id": f"memory {_shape_label(shape)}", "shape": list(shape), "dtype": "float32",
                "input_bytes": int(x.nbytes), "cache_bytes": int(cache_bytes),
                "peak_forward_bytes": peak_fwd, "peak_forward_backward_bytes": peak_total,
                "cache_over_input": cache_bytes / x.nbytes,
                "peak_forward_over_input": peak_fwd / x.nbytes,
                "peak_forward_backward_over_input": peak_total / x.nbytes})
            del y, cache
        return experiments, []

    return _section("memory", "Peak memory of the NumPy forward and backward", body)


# --------------------------------------------------------------------------- notebooks

def notebook_times(paths, timeout: int = 600, kernel_name: str = "python3") -> dict:
    """Execute each notebook with nbclient and time it (kernel start included).

    The notebook runs in its own folder, outputs are discarded (the file is
    not changed). A notebook that raises is reported with its error and
    counts as a missed goal.

    Returns a section with one row per notebook (goal ``<= 60`` s).
    """
    import nbformat
    from nbclient import NotebookClient

    paths = [Path(p) for p in paths]

    def body():
        experiments, rows = [], []
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                    resources={"metadata": {"path": str(path.parent)}})
            start = time.perf_counter()
            error = None
            try:
                client.execute()
            except Exception as exc:  # report any failure, go on with the next notebook
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}" \
                    if str(exc).strip() else type(exc).__name__
            seconds = time.perf_counter() - start
            cells = _cells_seconds(nb)
            met = error is None and _goal_met("notebooks", seconds)
            op, bound = GOALS["notebooks"]
            rows.append({"section": "notebooks", "figure": "notebook execution time (s)",
                         "config": path.name, "seconds": seconds, "cells_seconds": cells,
                         "error": error, "goal": f"{op} {bound:g}", "met": met})
            experiments.append({"id": path.name, "seconds": seconds, "cells_seconds": cells,
                                "error": error})
        return experiments, rows

    return _section("notebooks", "Chapter notebooks: execution time", body)


def _cells_seconds(nb) -> float | None:
    """Seconds from the first cell's start to the last cell's reply (nbclient's timestamps)."""
    starts, ends = [], []
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            starts.append(timing["iopub.execute_input"])
            ends.append(timing["shell.execute_reply"])
    if not starts:
        return None
    parse = datetime.datetime.fromisoformat
    return (parse(max(ends).replace("Z", "+00:00"))
            - parse(min(starts).replace("Z", "+00:00"))).total_seconds()


# --------------------------------------------------------------------------- the whole run

def _merge(sections: list[dict]) -> dict:
    """Several sections of one name (e.g. one per shape) as one section."""
    first = dict(sections[0])
    first["experiments"] = [e for s in sections for e in s["experiments"]]
    first["rows"] = [r for s in sections for r in s["rows"]]
    first["seconds"] = sum(s["seconds"] for s in sections)
    first["load"] = {"before": sections[0]["load"]["before"],
                     "after": sections[-1]["load"]["after"]}
    return first


def _meta(only) -> dict:
    return {"generated_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "sections_run": list(only)}


def run(only=None, quick: bool = False, book_dir="book", progress=print) -> dict:
    """Measure the selected sections (default: all of ``SECTIONS``) and return the results.

    Args:
        only: names from ``SECTIONS``; None for all.
        quick: a few rounds per comparison instead of the full count (a
            first look; medians from a handful of rounds are noisy).
        book_dir: where the chapter notebooks are.
        progress: called with a line of text before each section (None: silent).

    Returns:
        ``{"meta": {...}, "sections": {name: section}}``.
    """
    only = list(SECTIONS) if only is None else list(only)
    for name in only:
        if name not in SECTIONS:
            fail("run", "only", f"names from {SECTIONS}", repr(name))
    reps = _REPEATS["quick" if quick else "full"]
    say = progress or (lambda line: None)
    sections = {}
    for name in only:
        say(f"bench: {name} ...")
        if name == "numpy":
            sections[name] = _merge([numpy_vs_torch(s, reps["numpy"]) for s in SHAPES])
        elif name == "graph":
            sections[name] = _merge([graph_vs_closed(s, reps["graph"]) for s in SHAPES])
        elif name == "training":
            sections[name] = training_figure(reps["training"])
        elif name == "inference":
            sections[name] = inference_figure(reps["inference"])
        elif name == "memory":
            sections[name] = memory_figure()
        elif name == "notebooks":
            paths = sorted(Path(book_dir).glob("*.ipynb"))
            sections[name] = notebook_times(paths)
        elif name == "study":
            sections[name] = study_section(quick=quick)
    return {"meta": _meta(only), "sections": sections}


# --------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    """Command line: ``python -m bncourse.bench [--only a,b] [--notebooks] [--quick] [--out D]``."""
    parser = argparse.ArgumentParser(prog="python -m bncourse.bench", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--only", default=None,
                        help=f"comma-separated sections to run, from {', '.join(SECTIONS)}")
    parser.add_argument("--notebooks", action="store_true",
                        help="time the chapter notebooks only (same as --only notebooks)")
    parser.add_argument("--quick", action="store_true", help="a few rounds per comparison")
    parser.add_argument("--out", default="bench-results", help="output folder")
    parser.add_argument("--book", default="book", help="folder of the chapter notebooks")
    args = parser.parse_args(argv)
    if args.notebooks and args.only:
        parser.error("--notebooks and --only exclude each other")
    only = ["notebooks"] if args.notebooks else (
        [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None)
    if only is not None:
        unknown = [s for s in only if s not in SECTIONS]
        if unknown:
            parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    start = time.perf_counter()
    results = run(only, quick=args.quick, book_dir=args.book,
                  progress=lambda line: print(line, file=sys.stderr, flush=True))
    json_path, md_path = write_results(results, args.out)
    print(to_markdown(results))
    print(f"wrote {json_path} and {md_path} in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover  (python -m bncourse.bench runs __main__.py)
    raise SystemExit(main())
