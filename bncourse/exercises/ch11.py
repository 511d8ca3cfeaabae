"""Chapter 11 exercises: statistics recomputed on new data, biases BN cancels, angular updates.

``ch11-recompute-stats`` is checked against ``torch.nn.BatchNorm1d`` with
``momentum=None`` run over the batches in float64 (what
``torch.optim.swa_utils.update_bn`` does); ``ch11-biases-before-bn`` against
the BN doctor (``bncourse.doctor.diagnose``) on a ``torch.fx`` graph built from
the learner's table; ``ch11-angular-update`` against the angle computed with
``atan2`` from the parts of ``w_{t+1}`` across and along ``w_t``, a formula that
stays accurate for tiny angles. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/11_bn_in_practice.ipynb"


# --------------------------------------------------------------------------- recompute stats

def _stats_case(seed, shape=(50, 3), batch_size=16, dtype="float64", drift=2.0):
    """Data whose mean drifts from batch to batch (so pooled and averaged statistics differ)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    view = (1, shape[1]) + (1,) * (len(shape) - 2)
    loc = rng.uniform(-3.0, 3.0, size=view)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(3.0), size=view))
    trend = drift * np.linspace(-1.0, 1.0, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    x = loc + trend + scale * rng.standard_normal(shape)
    return {"x": x.astype(dtype), "batch_size": int(batch_size)}


def _batches(x, batch_size):
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def _stats_reference(x, batch_size):
    from bncourse.batchnorm import batch_norm

    c = x.shape[1]
    mean, var = np.zeros(c, dtype=x.dtype), np.ones(c, dtype=x.dtype)
    batches = _batches(x, batch_size)
    for k, batch in enumerate(batches, start=1):
        batch_norm(batch, mean, var, training=True, momentum=1.0 / k)
    return mean, var, len(batches)


def _stats_torch(x, batch_size):
    import torch

    bn = torch.nn.BatchNorm1d(x.shape[1], momentum=None).double()
    bn.train()
    with torch.no_grad():
        for batch in _batches(x, batch_size):
            t = torch.from_numpy(batch.astype(np.float64))
            bn(t.reshape(t.shape[0], t.shape[1], -1))
    return (bn.running_mean.numpy().astype(x.dtype), bn.running_var.numpy().astype(x.dtype),
            int(bn.num_batches_tracked))


def _stats_mistake(kind):
    def mistake(x, batch_size):
        axes = (0,) + tuple(range(2, x.ndim))
        batches = _batches(x, batch_size)
        if kind == "pooled":
            m = x.size // x.shape[1]
            return (x.mean(axis=axes), x.var(axis=axes) * m / (m - 1), len(batches))
        mean, var = np.zeros(x.shape[1]), np.ones(x.shape[1])
        for k, batch in enumerate(batches, start=1):
            m = batch.size // batch.shape[1]
            v = batch.var(axis=axes)
            if kind != "biased":
                v = v * m / (m - 1)
            w = 0.1 if kind == "momentum" else 1.0 / k
            mean = (1 - w) * mean + w * batch.mean(axis=axes)
            var = (1 - w) * var + w * v
        return mean.astype(x.dtype), var.astype(x.dtype), len(batches)
    return mistake


_STATS_MISTAKES = [
    Mistake("update_bn sets momentum=None: each batch's statistic enters the cumulative average "
            "with weight 1/k (k = 1, 2, ...), replacing the old buffers; momentum 0.1 would keep "
            "part of the initial mean 0 and variance 1.", _stats_mistake("momentum")),
    Mistake("the cumulative average is taken over the per-BATCH statistics, each batch weighing "
            "the same, not the mean and variance of all the values pooled together (they differ "
            "when the batches have different means, or the last one is shorter).",
            _stats_mistake("pooled")),
    Mistake(hints.BIASED_RUNNING_VARIANCE, _stats_mistake("biased")),
]


# --------------------------------------------------------------------------- biases before BN

_WEIGHTED = ("Linear", "Conv2d")
_NORMS = ("BatchNorm1d", "BatchNorm2d")


def _table(rows, seed, biased=(), unbiased=()):
    """Columns from ``(name, kind, sources)`` rows; each Linear/Conv2d biased with prob. 1/2,
    those named in ``biased`` / ``unbiased`` always / never."""
    rng = np.random.default_rng(seed)
    names = [r[0] for r in rows]
    kinds = [r[1] for r in rows]
    biases = np.array([k in _WEIGHTED and bool(rng.integers(2)) for k in kinds])
    for i, name in enumerate(names):
        if name in biased or name in unbiased:
            biases[i] = name in biased
    return {"names": names, "kinds": kinds, "biases": biases, "sources": [r[2] for r in rows]}


def _mlp_rows(depth, bn_after=False):
    rows, prev = [("x", "Input", "")], "x"
    for i in range(1, depth + 1):
        layer = [(f"fc{i}", "Linear", prev)]
        if bn_after:
            layer += [(f"act{i}", "ReLU", f"fc{i}"), (f"bn{i}", "BatchNorm1d", f"act{i}")]
        else:
            layer += [(f"bn{i}", "BatchNorm1d", f"fc{i}"), (f"act{i}", "ReLU", f"bn{i}")]
        rows += layer
        prev = layer[-1][0]
    return rows + [("out", "Linear", prev)]


def _resnet_rows(blocks, shared_bias=False):
    """Residual blocks; the rows of the two branches interleaved (the shortcut's conv listed
    between the main branch's last conv and its BN); with ``shared_bias`` the shortcut conv
    of the first block also feeds the sum directly."""
    rows = [("x", "Input", ""), ("conv1", "Conv2d", "x"), ("bn1", "BatchNorm2d", "conv1"),
            ("relu1", "ReLU", "bn1")]
    prev = "relu1"
    for b in range(1, blocks + 1):
        p = f"b{b}_"
        rows += [(p + "conv1", "Conv2d", prev), (p + "bn1", "BatchNorm2d", p + "conv1"),
                 (p + "relu", "ReLU", p + "bn1"), (p + "conv2", "Conv2d", p + "relu"),
                 (p + "down_conv", "Conv2d", prev), (p + "bn2", "BatchNorm2d", p + "conv2"),
                 (p + "down_bn", "BatchNorm2d", p + "down_conv")]
        if shared_bias and b == 1:
            rows += [(p + "add", "Add", p + "bn2+" + p + "down_conv")]
        else:
            rows += [(p + "add", "Add", p + "bn2+" + p + "down_bn")]
        rows += [(p + "out", "ReLU", p + "add")]
        prev = p + "out"
    return rows + [("pool", "MaxPool2d", prev), ("flatten", "Flatten", "pool"),
                   ("fc", "Linear", "flatten")]


def _bias_case(seed, arch="mlp", depth=3):
    if arch == "mlp":
        return _table(_mlp_rows(depth), seed, unbiased=("fc1",))
    if arch == "mlp-after":
        return _table(_mlp_rows(depth, bn_after=True) + [("bn_out", "BatchNorm1d", "out")], seed)
    if arch == "resnet":
        return _table(_resnet_rows(depth), seed, biased=("b1_conv2",))
    return _table(_resnet_rows(depth, shared_bias=True), seed, biased=("b1_down_conv",))


def _bias_reference(names, kinds, biases, sources):
    users = {}
    for name, src in zip(names, sources):
        for s in filter(None, src.split("+")):
            users.setdefault(s, []).append(name)
    index = {name: i for i, name in enumerate(names)}
    found = []
    for i, name in enumerate(names):
        if kinds[i] in _WEIGHTED and biases[i]:
            consumers = users.get(name, [])
            if len(consumers) == 1 and kinds[index[consumers[0]]] in _NORMS:
                found.append(name)
    return found


def _bias_doctor(names, kinds, biases, sources):
    """Build the table as a torch.fx graph of real modules and ask the BN doctor."""
    import operator

    import torch.fx
    from torch import nn

    from bncourse.doctor import diagnose

    make = {"Linear": lambda b: nn.Linear(4, 4, bias=b), "Conv2d": lambda b: nn.Conv2d(4, 4, 1, bias=b),
            "BatchNorm1d": lambda b: nn.BatchNorm1d(4), "BatchNorm2d": lambda b: nn.BatchNorm2d(4),
            "ReLU": lambda b: nn.ReLU(), "MaxPool2d": lambda b: nn.MaxPool2d(2),
            "Flatten": lambda b: nn.Flatten()}
    root, graph, nodes = nn.Module(), torch.fx.Graph(), {}
    for name, kind, bias, src in zip(names, kinds, biases, sources):
        inputs = [nodes[s] for s in src.split("+") if s]
        if kind == "Input":
            nodes[name] = graph.placeholder(name)
        elif kind == "Add":
            nodes[name] = graph.call_function(operator.add, tuple(inputs))
        else:
            root.add_module(name, make[kind](bool(bias)))
            nodes[name] = graph.call_module(name, tuple(inputs))
    graph.output(nodes[names[-1]])
    model = torch.fx.GraphModule(root, graph)
    return [f.module for f in diagnose(model) if f.code == "bias-before-bn"]


def _bias_mistake(kind):
    def mistake(names, kinds, biases, sources):
        found = []
        for i, name in enumerate(names):
            if kinds[i] not in _WEIGHTED or (not biases[i] and kind != "ignore-bias"):
                continue
            if kind == "previous-row":
                if i + 1 < len(names) and kinds[i + 1] in _NORMS:
                    found.append(name)
                continue
            consumers = [n for n, s in zip(names, sources) if name in s.split("+")]
            if kind != "any-user":
                consumers = consumers[:1] if len(consumers) == 1 else []
            if any(kinds[names.index(c)] in _NORMS for c in consumers):
                found.append(name)
        return found
    return mistake


_BIAS_MISTAKES = [
    Mistake("follow the sources column, not the order of the rows: a layer's output goes to "
            "the rows that name it as a source (a shortcut branch may be listed after the "
            "main one, and the next row need not read the previous one).",
            _bias_mistake("previous-row")),
    Mistake("only a layer WITH a bias (biases[i] True) has a bias for BN to cancel.",
            _bias_mistake("ignore-bias")),
    Mistake("the bias is cancelled only when BN is the ONLY user of the layer's output: an "
            "output that also feeds a sum (a skip connection) carries its bias there.",
            _bias_mistake("any-user")),
]


# --------------------------------------------------------------------------- angular update

def _angle_case(seed, steps=20, size=30, dtype="float64", turn=0.05, grow=0.02):
    """Weight snapshots ``(T, D)`` that turn by about ``turn`` radians and grow each step."""
    rng = np.random.default_rng(seed)
    w = [rng.standard_normal(size)]
    for _ in range(steps - 1):
        g = rng.standard_normal(size)
        g -= (g @ w[-1]) / (w[-1] @ w[-1]) * w[-1]                   # orthogonal, as for BN
        step = turn * np.linalg.norm(w[-1]) * g / np.linalg.norm(g)
        w.append((w[-1] + step) * (1 + grow * rng.uniform(-1, 1)))
    return {"weights": np.stack(w).astype(dtype), "lr": float(rng.uniform(0.01, 0.5))}


def _angle_reference(weights, lr):
    from bncourse.experiments.weight_decay import angular_updates

    w = weights.astype(np.float64)
    eff = lr / np.sum(w * w, axis=1)
    return angular_updates(w).astype(weights.dtype), eff.astype(weights.dtype)


def _angle_exact(weights, lr):
    """atan2 of the parts of w_{t+1} across and along w_t: accurate for any angle."""
    w = weights.astype(np.float64)
    norms = np.linalg.norm(w, axis=1)
    along = np.sum(w[:-1] * w[1:], axis=1) / norms[:-1]
    across = np.linalg.norm(w[1:] - (along / norms[:-1])[:, None] * w[:-1], axis=1)
    angle = np.arctan2(across, along)
    return angle.astype(weights.dtype), (lr / norms ** 2).astype(weights.dtype)


def _angle_mistake(kind):
    def mistake(weights, lr):
        w = weights.astype(np.float64)
        norms = np.linalg.norm(w, axis=1)
        ref = np.repeat(w[:1], len(w) - 1, axis=0) if kind == "from-start" else w[:-1]
        ref_norm = np.linalg.norm(ref, axis=1)
        cos = np.sum(ref * w[1:], axis=1) / (ref_norm * norms[1:])
        angle = np.arccos(np.clip(cos, -1, 1))
        if kind == "degrees":
            angle = np.degrees(angle)
        eff = lr / norms if kind == "norm-not-squared" else lr / norms ** 2
        return angle.astype(weights.dtype), eff.astype(weights.dtype)
    return mistake


_ANGLE_MISTAKES = [
    Mistake("the angle of step t is between w_t and w_{t+1}, consecutive snapshots, not between "
            "w_0 and w_{t+1}.", _angle_mistake("from-start")),
    Mistake("return radians: np.arccos gives radians already; np.degrees multiplies by 180/pi.",
            _angle_mistake("degrees")),
    Mistake("the effective learning rate of a scale-invariant weight is lr / ||w||^2 (the "
            "gradient shrinks as 1/||w||, and the angle turned is step / ||w||), not lr / ||w||.",
            _angle_mistake("norm-not-squared")),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch11-recompute-stats",
        notebook=NOTEBOOK,
        function="recompute_stats",
        points=2,
        reference=_stats_reference,
        expected=_stats_torch,
        make_case=_stats_case,
        visible=[dict(seed=0, note="(N, C), 4 batches, the last one shorter"),
                 dict(seed=1, shape=(24, 2, 5), batch_size=8, dtype="float32",
                      note="(N, C, L)"),
                 dict(seed=2, shape=(40, 4), batch_size=40, note="a single batch")],
        hidden=[dict(seed=501, shape=(66, 3), batch_size=8),
                dict(seed=502, shape=(12, 2, 3, 3), batch_size=5, note="(N, C, H, W)"),
                dict(seed=503, shape=(30, 5), batch_size=4, drift=0.0, dtype="float32"),
                dict(seed=504, shape=(9, 3, 2, 2, 2), batch_size=2, note="5-D, one sample left")],
        outputs=("running_mean", "running_var", "num_batches_tracked"),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_STATS_MISTAKES,
        stub='''import numpy as np


def recompute_stats(x, batch_size):
    """BN's running statistics recomputed on new data, as torch.optim.swa_utils.update_bn does.

    x: array of shape (M, C), (M, C, L), (M, C, H, W) or (M, C, D, H, W): the values
    that reach one BN layer, channels on axis 1. They are fed in consecutive batches
    x[0:batch_size], x[batch_size:2 * batch_size], ... (the last may be shorter).
    update_bn resets the buffers (mean 0, variance 1) and runs BN in training mode
    with momentum=None: a cumulative average, batch k entering with weight 1/k. The
    variance that enters is each batch's unbiased one (divide by m - 1, m the
    values per channel in that batch).
    Returns (running_mean, running_var, num_batches_tracked): two arrays (C,) in the
    dtype of x, and the number of batches (an int).
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch11-biases-before-bn",
        notebook=NOTEBOOK,
        function="biases_before_bn",
        points=2,
        reference=_bias_reference,
        expected=_bias_doctor,
        make_case=_bias_case,
        visible=[dict(seed=0, arch="resnet", depth=1, note="a residual block"),
                 dict(seed=1, arch="mlp", depth=3, note="BN before the activations"),
                 dict(seed=2, arch="resnet-shared", depth=1,
                      note="a conv output that also feeds the sum")],
        hidden=[dict(seed=601, arch="mlp-after", depth=2, note="BN after the activations"),
                dict(seed=602, arch="resnet", depth=3),
                dict(seed=603, arch="mlp", depth=5),
                dict(seed=604, arch="resnet-shared", depth=2)],
        outputs=("names",),
        mistakes=_BIAS_MISTAKES,
        stub='''import numpy as np


def biases_before_bn(names, kinds, biases, sources):
    """The layers whose bias a following BN cancels, read off a model's graph as a table.

    Row i of the table is one node of the graph, in the order the modules are listed:
    names[i] its name (str); kinds[i] its type: "Input", "Linear", "Conv2d",
    "BatchNorm1d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten" or "Add";
    biases[i] (a bool array) whether a Linear/Conv2d has a bias (False for the rest);
    sources[i] the name of the node whose output it reads ("" for the input, and the
    two names joined by "+" for an Add).
    A bias is cancelled when a Linear or Conv2d with a bias sends its output to a
    BatchNorm1d/2d and to nothing else. Return the names of those layers, in row order.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch11-angular-update",
        notebook=NOTEBOOK,
        function="angular_update",
        points=1,
        reference=_angle_reference,
        expected=_angle_exact,
        make_case=_angle_case,
        visible=[dict(seed=0, note="20 snapshots of 30 weights"),
                 dict(seed=1, steps=8, size=100, dtype="float32", turn=0.2),
                 dict(seed=2, steps=5, size=12, turn=0.5, grow=0.2)],
        hidden=[dict(seed=701, steps=50, size=64, turn=0.01),
                dict(seed=702, steps=2, size=3, turn=1.0, note="one step"),
                dict(seed=703, steps=30, size=200, dtype="float32", turn=0.03)],
        outputs=("angles", "effective_lr"),
        rtol={"float32": 1e-4, "float64": 1e-8},
        mistakes=_ANGLE_MISTAKES,
        stub='''import numpy as np


def angular_update(weights, lr):
    """How far each step turns a scale-invariant weight, and its effective learning rate.

    weights: array (T, D), row t the weights w_t of one layer after t steps (flattened).
    lr: the learning rate (float).
    Returns (angles, effective_lr) in the dtype of weights: angles of shape (T - 1,),
    angle t the angle in radians between w_t and w_{t+1}; effective_lr of shape (T,),
    lr / ||w_t||^2 for each snapshot.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
