"""Chapter 8 exercises: recalibrating BN's statistics without dropout, the variance shift,
the shift through a Linear layer.

The expected answers come from independent sources: pooled NumPy statistics
and torch's BatchNorm with ``momentum=None``; the exact variance of the
dropout mixture computed with ``torch.cov``; the exact moments over all
``2^h`` dropout masks, enumerated in torch. The references are
``bncourse.precise_bn`` and ``bncourse.experiments.variance_shift``. Heavy imports happen
inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/08_placement.ipynb"


# --------------------------------------------------------------------------- recalibration

def _recal_case(seed, sizes=(20, 20, 20), c=3, method="exact", dtype="float64", shape=()):
    """K calibration batches of pre-BN activations (dropout off), each (B_k, C, *shape)."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-3.0, 3.0, size=c)
    scale = np.exp(rng.uniform(np.log(0.2), np.log(5.0), size=c))
    view = (1, c) + (1,) * len(shape)
    batches = [(loc.reshape(view) + scale.reshape(view)
                * rng.standard_normal((b, c) + tuple(shape))).astype(dtype) for b in sizes]
    return {"batches": batches, "method": method}


def _recal_reference(batches, method):
    import torch

    from bncourse.precise_bn import recompute_bn_stats

    ndim = batches[0].ndim
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[ndim]
    bn = cls(batches[0].shape[1], dtype=torch.float64)
    recompute_bn_stats(bn, [torch.from_numpy(b.astype(np.float64)) for b in batches], method)
    return tuple(t.numpy().astype(batches[0].dtype) for t in (bn.running_mean, bn.running_var))


def _recal_torch(batches, method):
    """"exact": pooled statistics of every value (NumPy, float64); "cumulative": torch's
    BatchNorm with momentum=None fed the batches in training mode."""
    import torch

    dtype = batches[0].dtype
    if method == "exact":
        axes = (0, *range(2, batches[0].ndim))
        values = np.concatenate([b.astype(np.float64) for b in batches])
        return values.mean(axis=axes).astype(dtype), values.var(axis=axes, ddof=1).astype(dtype)
    ndim = batches[0].ndim
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[ndim]
    bn = cls(batches[0].shape[1], momentum=None, dtype=torch.float64).train()
    with torch.no_grad():
        for b in batches:
            bn(torch.from_numpy(b.astype(np.float64)))
    return bn.running_mean.numpy().astype(dtype), bn.running_var.numpy().astype(dtype)


def _recal_mistake(kind):
    def mistake(batches, method):
        axes = (0, *range(2, batches[0].ndim))
        dtype = batches[0].dtype
        means = np.array([b.mean(axis=axes) for b in batches])
        ddof = 0 if kind == "biased" else 1
        variances = np.array([b.var(axis=axes, ddof=ddof) for b in batches])
        values = np.concatenate(batches)
        if kind == "ema":
            mean, var = np.zeros(means.shape[1]), np.ones(means.shape[1])
            for mu, v in zip(means, variances):
                mean, var = 0.9 * mean + 0.1 * mu, 0.9 * var + 0.1 * v
        elif (method == "exact") != (kind == "swapped"):
            mean, var = values.mean(axis=axes), values.var(axis=axes, ddof=ddof)
            if kind == "unweighted":
                mean = means.mean(axis=0)
        else:
            mean, var = means.mean(axis=0), variances.mean(axis=0)
        return mean.astype(dtype), var.astype(dtype)
    return mistake


_RECAL_MISTAKES = [
    Mistake("BN's running_var holds an unbiased estimate (divide by the count minus 1), for "
            "the pooled values and for each batch alike.", _recal_mistake("biased")),
    Mistake("momentum=0.1 keeps an exponential average that still remembers the initial "
            "zeros and ones after a few batches; recalibration wants every batch weighted "
            "equally and nothing of the old statistics.", _recal_mistake("ema")),
    Mistake('"exact" pools every value of every batch into one sample; "cumulative" averages '
            "the per-batch statistics as torch's momentum=None does. The two differ: the "
            "spread of the batch means is part of the pooled variance only.",
            _recal_mistake("swapped")),
    Mistake("pooled means weight each batch by its size: with batches of different sizes the "
            "plain average of the batch means is not the mean of all values.",
            _recal_mistake("unweighted")),
]


# --------------------------------------------------------------------------- variance shift

def _shift_case(seed, n=200, h=5, dtype="float64", keep=0.5, kind="shifted"):
    """Dropout inputs: Gaussians with per-feature means and scales, or ReLU outputs."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-2.0, 2.0, size=h)
    scale = np.exp(rng.uniform(np.log(0.2), np.log(3.0), size=h))
    x = loc + scale * rng.standard_normal((n, h))
    if kind == "relu":
        x = np.maximum(x, 0.0)
        x[0] = np.abs(x[0]) + 0.5                  # no feature is constant zero
    return {"x": x.astype(dtype), "keep": float(keep)}


def _shift_reference(x, keep):
    from bncourse.experiments.variance_shift import predicted_std_ratio

    return predicted_std_ratio(x, keep)


def _shift_torch(x, keep):
    # The oracle: in training, dropout's output for sample i is x_i / keep with probability
    # keep and 0 otherwise. Its exact variance is the weighted covariance of that mixture.
    import torch

    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    n = xt.shape[0]
    values = torch.cat([xt / keep, torch.zeros_like(xt)])                 # (2N, H)
    weights = torch.cat([torch.full((n,), keep, dtype=torch.float64),
                         torch.full((n,), 1.0 - keep, dtype=torch.float64)])
    var_train = torch.cov(values.T, aweights=weights, correction=0).reshape(
        x.shape[1], x.shape[1]).diagonal()
    var_test = xt.var(dim=0, correction=0)
    return torch.sqrt(var_test / var_train).numpy().astype(x.dtype)


def _ratio_from(var_train_fn, var_test_fn=lambda x: x.var(axis=0), root=True, invert=False):
    def mistake(x, keep):
        var_train, var_test = var_train_fn(x, keep), var_test_fn(x)
        ratio = var_train / var_test if invert else var_test / var_train
        return (np.sqrt(ratio) if root else ratio).astype(x.dtype)
    return mistake


def _inverted(x, keep):
    return (x ** 2).mean(axis=0) / keep - x.mean(axis=0) ** 2


_SHIFT_MISTAKES = [
    Mistake("sqrt(keep) is the answer only for zero-mean input. In training the variance is "
            "E[x^2] / keep - E[x]^2 = (v + c^2) / keep - c^2: the mean c counts too.",
            lambda x, keep: np.full(x.shape[1], np.sqrt(keep), dtype=x.dtype)),
    Mistake("return the ratio of standard deviations, the square root of var_test / var_train.",
            _ratio_from(_inverted, root=False)),
    Mistake("the ratio is test over train: BN divides by the larger training-time std, so the "
            "result is at most 1.",
            _ratio_from(_inverted, invert=True)),
    Mistake("torch's dropout is inverted: in training it keeps x / keep (not x) with probability "
            "keep, so the mean is the same in both modes and E[x~^2] = E[x^2] / keep.",
            _ratio_from(lambda x, keep: keep * (x ** 2).mean(axis=0)
                        - (keep * x.mean(axis=0)) ** 2)),
    Mistake("use the population variance (ddof=0) for the test-time variance, like the "
            "training-time formula.",
            _ratio_from(_inverted, var_test_fn=lambda x: x.var(axis=0, ddof=1))),
]


# --------------------------------------------------------------------------- through a Linear

def _linear_case(seed, n=120, h=4, j=3, dtype="float64", keep=0.5):
    """ReLU outputs of correlated Gaussians (non-zero means, correlated units) and a weight."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, h)) @ rng.normal(size=(h, h)) + rng.uniform(-0.5, 1.0, size=h)
    a = np.maximum(g, 0.0)
    a[0] = np.abs(a[0]) + 0.5                     # no unit is constant zero
    weight = rng.normal(size=(j, h)) / np.sqrt(h)
    return {"a": a.astype(dtype), "weight": weight.astype(dtype), "keep": float(keep)}


def _linear_reference(a, weight, keep):
    from bncourse.experiments.variance_shift import predicted_linear_std_ratio

    return predicted_linear_std_ratio(a, weight, keep)


def _linear_enumeration(a, weight, keep):
    # The oracle: enumerate all 2^h dropout masks with their probabilities and take the
    # exact mean and variance of z = W (m * a / keep) over masks and samples, in torch.
    import itertools

    import torch

    at = torch.from_numpy(np.asarray(a, dtype=np.float64))
    wt = torch.from_numpy(np.asarray(weight, dtype=np.float64))
    n, h = at.shape
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=h)), dtype=torch.float64)
    probs = torch.prod(torch.where(masks == 1.0, torch.tensor(keep, dtype=torch.float64),
                                   torch.tensor(1.0 - keep, dtype=torch.float64)), dim=1)
    z = (at[None] * masks[:, None, :] / keep) @ wt.T                  # (2^h, n, j)
    w = (probs / n)[:, None, None]
    mean = (w * z).sum(dim=(0, 1))
    var_train = (w * (z - mean) ** 2).sum(dim=(0, 1))
    var_test = (at @ wt.T).var(dim=0, correction=0)
    return torch.sqrt(var_test / var_train).numpy().astype(a.dtype)


def _linear_with(independent=False, centred_drop=False, root=True):
    def mistake(a, weight, keep):
        z = a @ weight.T
        var_test = (weight ** 2) @ a.var(axis=0) if independent else z.var(axis=0)
        second = a.var(axis=0) if centred_drop else (a ** 2).mean(axis=0)
        var_train = var_test + (1.0 / keep - 1.0) * (weight ** 2) @ second
        ratio = var_test / var_train
        return (np.sqrt(ratio) if root else ratio).astype(a.dtype)
    return mistake


_LINEAR_MISTAKES = [
    Mistake("sqrt(keep) holds for dropout directly before BN on zero-mean input. Here a Linear "
            "layer mixes the units: compute the variances of z = a @ weight.T.",
            lambda a, weight, keep: np.full(weight.shape[0], np.sqrt(keep), dtype=a.dtype)),
    Mistake("the ratio is per unit of the BN layer, i.e. per output of the Linear layer "
            "(weight.shape[0] values), not per input unit.",
            lambda a, weight, keep: _shift_reference(a, keep)),
    Mistake("the dropout term uses E[a^2] (the second moment, mean included): "
            "(1/keep - 1) * (weight**2) @ np.mean(a**2, axis=0).",
            _linear_with(centred_drop=True)),
    Mistake("the test-time variance of z is var(a @ weight.T) over the samples, with every "
            "covariance between the units; (weight**2) @ var(a) assumes independent units.",
            _linear_with(independent=True)),
    Mistake("return the ratio of standard deviations, the square root of var_test / var_train.",
            _linear_with(root=False)),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch08-recalibrate-stats",
        notebook=NOTEBOOK,
        function="recalibrate_stats",
        points=2,
        reference=_recal_reference,
        expected=_recal_torch,
        make_case=_recal_case,
        visible=[dict(seed=0, note="3 batches of 20, pooled"),
                 dict(seed=1, sizes=(12, 12, 12, 12), method="cumulative"),
                 dict(seed=2, sizes=(30, 5, 14), c=2, dtype="float32", shape=(3, 3),
                      note="(B, C, H, W) batches of different sizes, pooled")],
        hidden=[dict(seed=821, sizes=(2,), c=1, note="one batch of two"),
                dict(seed=822, sizes=(9, 3, 40), c=4, method="cumulative", shape=(5,)),
                dict(seed=823, sizes=(64,) * 6, c=5, dtype="float32"),
                dict(seed=824, sizes=(7, 25), c=3, method="exact", shape=(2, 2))],
        outputs=("running_mean", "running_var"),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_RECAL_MISTAKES,
        stub='''import numpy as np


def recalibrate_stats(batches, method):
    """New running statistics for a BN layer, measured with dropout switched off.

    batches: a list of K arrays, batch k of shape (B_k, C) or (B_k, C, *S): the BN
    layer's inputs on K calibration batches, channels on axis 1 (every other axis
    holds values of the channel). method: "exact" for the statistics of all the
    values pooled together, or "cumulative" for what torch's BatchNorm with
    momentum=None holds after these K training-mode batches, starting from reset
    buffers.

    Returns (running_mean, running_var), each (C,) in the dtype of the batches,
    with running_var in torch's convention for that buffer.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch08-variance-shift",
        notebook=NOTEBOOK,
        function="dropout_bn_std_ratio",
        points=2,
        reference=_shift_reference,
        expected=_shift_torch,
        make_case=_shift_case,
        visible=[dict(seed=0), dict(seed=1, keep=0.9, kind="relu", note="ReLU outputs"),
                 dict(seed=2, n=100, h=3, dtype="float32", keep=0.7)],
        hidden=[dict(seed=200, n=7, h=1, keep=0.3), dict(seed=201, n=500, h=8, kind="relu"),
                dict(seed=202, n=50, h=2, dtype="float32", keep=0.95),
                dict(seed=203, n=30, h=6, keep=1.0, note="no dropout"),
                dict(seed=204, n=64, h=4, keep=0.1, kind="relu")],
        outputs=("ratio",),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_SHIFT_MISTAKES,
        stub='''import numpy as np


def dropout_bn_std_ratio(x, keep):
    """Test-time std of BN's normalized output when inverted dropout sits right before BN.

    x: (n, h) float array, the dropout's input over a data set (n samples, h features).
    keep: the keep probability p (torch's nn.Dropout(1 - p)); in training each value
    becomes x / p with probability p and 0 otherwise.
    BN normalizes with the variance its input has in training; at test time the input
    has the variance of x. Return, per feature, sqrt(var_test / var_train), shape (h,),
    same dtype as x. Use population variances (ddof=0) over the n samples.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch08-shift-through-linear",
        notebook=NOTEBOOK,
        function="linear_std_ratio",
        points=2,
        reference=_linear_reference,
        expected=_linear_enumeration,
        make_case=_linear_case,
        visible=[dict(seed=0), dict(seed=1, h=3, j=3, keep=0.9, note="square weight"),
                 dict(seed=2, n=80, h=5, j=2, dtype="float32", keep=0.7)],
        hidden=[dict(seed=400, n=10, h=1, j=1, keep=0.3), dict(seed=401, n=200, h=8, j=5),
                dict(seed=402, n=60, h=6, j=4, dtype="float32", keep=0.95),
                dict(seed=403, n=30, h=2, j=6, keep=1.0, note="no dropout"),
                dict(seed=404, n=50, h=7, j=1, keep=0.1)],
        outputs=("ratio",),
        rtol={"float32": 1e-5, "float64": 1e-10},
        mistakes=_LINEAR_MISTAKES,
        stub='''import numpy as np


def linear_std_ratio(a, weight, keep):
    """Test-time std of BN's normalized output for dropout -> Linear -> BN.

    a: (n, h) float array, the dropout's input over a data set (n samples, h units).
    weight: (j, h) weight of the Linear layer (torch's layout); its bias does not matter.
    keep: keep probability p; in training each a_i becomes m_i * a_i / p with independent
    m_i ~ Bernoulli(p), at test time it stays a_i. The BN layer sees z = weight @ (...).
    Return, per output unit of the Linear layer, sqrt(var_test(z) / var_train(z)),
    shape (j,), same dtype as a. Use population variances (ddof=0) over the n samples.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
