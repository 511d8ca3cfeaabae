"""Chapter 8 exercises: an MLP's layer list, the variance shift, the shift through a Linear layer.

The expected answers come from independent sources: the layers of a model
actually built by ``bncourse.lab.models.make_mlp``; the exact variance of the
dropout mixture computed with ``torch.cov``; the exact moments over all
``2^h`` dropout masks, enumerated in torch. The references are
``bncourse.experiments.placement`` and ``bncourse.experiments.variance_shift``. Heavy imports happen
inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/08_placement.ipynb"


# --------------------------------------------------------------------------- layer list

def _spec_case(seed, depth=2, activation="relu", bn="before", dropout=0.0):
    """Sizes drawn from the seed; the architecture from the parameters."""
    rng = np.random.default_rng(seed)
    return {"in_features": int(rng.integers(2, 80)),
            "hidden": tuple(int(h) for h in rng.integers(1, 130, size=depth)),
            "out_features": int(rng.integers(2, 12)),
            "activation": activation, "bn": bn, "dropout": float(dropout)}


def _spec_reference(in_features, hidden, out_features, activation, bn, dropout):
    from bncourse.experiments.placement import layer_spec

    return layer_spec(in_features, hidden, out_features, activation, bn, dropout)


def _spec_from_torch(in_features, hidden, out_features, activation, bn, dropout):
    # The oracle: build the model with torch modules and read its layers back.
    from bncourse.lab.models import make_mlp
    from bncourse.experiments.placement import model_spec

    return model_spec(make_mlp(in_features, hidden=tuple(hidden), out_features=out_features,
                               activation=activation, bn=bn, dropout=dropout))


def _spec_with(bn_side=None, bn_on_output=False, dropout_first=False, keep_not_drop=False):
    """A mistaken layer list: BN always on one side, BN on the logits, dropout too early,
    or the keep probability where the drop probability belongs."""
    def mistake(in_features, hidden, out_features, activation, bn, dropout):
        side = bn if bn_side is None or bn == "none" else bn_side
        layers, width = [], in_features
        for h in hidden:
            block = [("linear", width, h)]
            if side == "before":
                block.append(("bn", h))
            block.append((activation,))
            if side == "after":
                block.append(("bn", h))
            if dropout > 0:
                drop = ("dropout", 1.0 - dropout if keep_not_drop else dropout)
                if dropout_first:
                    block.insert(1, drop)
                else:
                    block.append(drop)
            layers += block
            width = h
        layers.append(("linear", width, out_features))
        if bn_on_output and bn != "none":
            layers.append(("bn", out_features))
        return layers
    return mistake


_SPEC_MISTAKES = [
    Mistake('with bn="after" the BN layer comes AFTER the activation: linear, activation, bn.',
            _spec_with(bn_side="before")),
    Mistake("the output layer is a plain linear layer: no BN on the logits (and no activation).",
            _spec_with(bn_on_output=True)),
    Mistake("dropout closes each hidden block: it comes after the activation (and after the BN "
            "when bn='after'), right before the next linear layer.",
            _spec_with(dropout_first=True)),
    Mistake("dropout is given as the DROP probability p of torch's nn.Dropout(p), the argument "
            "itself, not the keep probability 1 - p.",
            _spec_with(keep_not_drop=True)),
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
        id="ch08-layer-spec",
        notebook=NOTEBOOK,
        function="mlp_layer_spec",
        points=1,
        reference=_spec_reference,
        expected=_spec_from_torch,
        make_case=_spec_case,
        visible=[dict(seed=0, depth=2, activation="relu", bn="before"),
                 dict(seed=1, depth=2, activation="sigmoid", bn="after", dropout=0.2),
                 dict(seed=2, depth=1, activation="tanh", bn="before", dropout=0.3)],
        hidden=[dict(seed=100, depth=0, activation="relu", bn="after"),
                dict(seed=101, depth=3, activation="relu", bn="after", dropout=0.1),
                dict(seed=102, depth=4, activation="tanh", bn="none", dropout=0.25),
                dict(seed=103, depth=3, activation="sigmoid", bn="before", dropout=0.4),
                dict(seed=104, depth=1, activation="identity", bn="after")],
        outputs=("layers",),
        rtol=1e-12,
        mistakes=_SPEC_MISTAKES,
        stub='''def mlp_layer_spec(in_features, hidden, out_features, activation, bn, dropout):
    """The layers of an MLP, in order, as a list of tuples.

    in_features, out_features: ints; hidden: a tuple of ints (the hidden widths, maybe
    empty); activation: "relu", "sigmoid", "tanh" or "identity"; bn: "none", "before"
    or "after" (BN before or after each activation); dropout: the drop probability p
    of torch's nn.Dropout(p), 0.0 for none.
    Each hidden block is a linear layer, BN and the activation in the order bn says,
    then dropout if dropout > 0. The output layer is a plain linear layer.
    Tuples: ("linear", fan_in, fan_out), ("bn", width), (activation,), ("dropout", p).
    Example: mlp_layer_spec(64, (32,), 10, "relu", "after", 0.5) returns
    [("linear", 64, 32), ("relu",), ("bn", 32), ("dropout", 0.5), ("linear", 32, 10)]
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
