"""Chapter 3 exercises: bias-corrected EWA, torch's running-statistics update, eval-mode BN,
and the whole stateful module.

The expected answers come from independent oracles: an explicit weighted sum
for the EWA, and PyTorch's ``torch.nn.functional.batch_norm`` in float64 for
the running update and the evaluation-mode forward. The references are
``bncourse.ewa`` and ``bncourse.batchnorm``. The chapter's pitfalls (the
decay convention typed into torch, the biased variance stored, ``m`` counted
as N instead of every value of a channel, batch statistics in evaluation
mode, eps outside the root) are implemented as mistakes so that the learner's
check recognises them. The module exercise asks for a class: the driver
``_run_module`` builds it and runs a script of calls (``forward`` in both
modes, ``train``, ``eval``, new ``weight``/``bias``), recording the output and
every buffer after each call; ``torch.nn.BatchNorm1d/2d/3d`` in float64 runs
the same script as the oracle. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/03_inference_running_averages.ipynb"

_RTOL = {"float32": 1e-5, "float64": 1e-10}


def _axes(x):
    return (0, *range(2, x.ndim))


def _view(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _channels(rng, channels, max_loc=5.0):
    """A mean (up to ``max_loc``) and a spread (0.1 to 10) per channel."""
    loc = rng.uniform(-max_loc, max_loc, size=channels)
    scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=channels))
    return loc, scale


def _batch(rng, shape, loc, scale):
    view = (1, shape[1]) + (1,) * (len(shape) - 2)
    return loc.reshape(view) + scale.reshape(view) * rng.standard_normal(shape)


# --------------------------------------------------------------------------- EWA

def _ewa_case(seed, shape=(20,), beta=0.9, dtype="float64", loc=3.0):
    """A noisy series around ``loc`` (per column for 2-D ``shape``), T along axis 0."""
    rng = np.random.default_rng(seed)
    values = loc + rng.standard_normal(shape) * rng.uniform(0.2, 2.0, size=shape[1:])
    return {"values": values.astype(dtype), "beta": beta}


def _ewa_reference(values, beta):
    from bncourse.ewa import ewa

    return ewa(values, beta, bias_correction=True)


def _ewa_weighted_sum(values, beta):
    # v_t = sum_{k=1..t} (1 - beta) beta^(t-k) theta_k / (1 - beta^t): a lower-triangular
    # matrix of weights applied along axis 0, computed in float64.
    t = np.arange(1, values.shape[0] + 1)
    age = t[:, None] - t[None, :]
    weights = np.where(age >= 0, (1 - beta) * float(beta) ** np.maximum(age, 0), 0.0)
    weights /= (1 - float(beta) ** t)[:, None]
    flat = values.reshape(values.shape[0], -1).astype(np.float64)
    return (weights @ flat).reshape(values.shape).astype(values.dtype)


def _ewa_mistake(kind):
    def mistake(values, beta):
        v = np.zeros(values.shape[1:])
        out = np.empty(values.shape)
        for t in range(values.shape[0]):
            if kind == "flipped":
                v = (1 - beta) * v + beta * values[t]
            else:
                v = beta * v + (1 - beta) * values[t]
            power = t + 2 if kind == "off-by-one" else t + 1
            out[t] = v if kind == "uncorrected" else v / (1 - beta ** power)
        return out.astype(values.dtype)
    return mistake


_EWA_MISTAKES = [
    Mistake("divide each v_t by 1 - beta**t: the weights of v_t sum to 1 - beta**t, not 1, "
            "because the average starts from v_0 = 0.", _ewa_mistake("uncorrected")),
    Mistake("beta is the weight of the past: v_t = beta * v_{t-1} + (1 - beta) * theta_t "
            "(with beta = 0.9, the newest value gets weight 0.1).", _ewa_mistake("flipped")),
    Mistake("t counts from 1: the first average v_1 = (1 - beta) * theta_1 is divided by "
            "1 - beta**1, which makes it theta_1 exactly.", _ewa_mistake("off-by-one")),
]


# --------------------------------------------------------------------------- running update

def _update_case(seed, shape=(8, 3), momentum=0.1, dtype="float64"):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    loc, scale = _channels(rng, channels)
    x = _batch(rng, shape, loc, scale)
    running_mean = rng.uniform(-5.0, 5.0, size=channels)
    running_var = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=channels))
    return {"running_mean": running_mean.astype(dtype), "running_var": running_var.astype(dtype),
            "x": x.astype(dtype), "momentum": momentum}


def _update_reference(running_mean, running_var, x, momentum):
    from bncourse.batchnorm import batch_norm

    mean, var = running_mean.copy(), running_var.copy()
    batch_norm(x, mean, var, training=True, momentum=momentum)
    return mean, var


def _update_torch(running_mean, running_var, x, momentum):
    import torch
    import torch.nn.functional as F

    mean = torch.from_numpy(running_mean.astype(np.float64))
    var = torch.from_numpy(running_var.astype(np.float64))
    F.batch_norm(torch.from_numpy(x.astype(np.float64)), mean, var, training=True,
                 momentum=float(momentum))
    return mean.numpy().astype(x.dtype), var.numpy().astype(x.dtype)


def _update_mistake(kind):
    def mistake(running_mean, running_var, x, momentum):
        ax = _axes(x)
        mean = x.mean(axis=ax)
        var = x.var(axis=ax)
        m = x.shape[0] if kind == "m-is-n" else x.size // x.shape[1]
        if kind != "biased":
            var = var * m / (m - 1)
        weight_new = 1 - momentum if kind == "decay" else momentum
        new_mean = (1 - weight_new) * running_mean + weight_new * mean
        new_var = (1 - weight_new) * running_var + weight_new * var
        return new_mean.astype(x.dtype), new_var.astype(x.dtype)
    return mistake


_UPDATE_MISTAKES = [
    Mistake(hints.MOMENTUM_CONVENTION, _update_mistake("decay")),
    Mistake(hints.BIASED_RUNNING_VARIANCE, _update_mistake("biased")),
    Mistake("m is the number of values of one channel, every axis but axis 1: N * L for "
            "(N, C, L), N * H * W for (N, C, H, W); not just N.", _update_mistake("m-is-n")),
]


# --------------------------------------------------------------------------- eval forward

def _eval_case(seed, shape=(8, 3), dtype="float64", eps=1e-5, tiny_var=False):
    """x drawn from other statistics than the running ones, so batch statistics differ.

    With ``tiny_var``, channel 0 has a running variance of 1e-6: eps matters there.
    """
    rng = np.random.default_rng(seed)
    channels = shape[1]
    loc, scale = _channels(rng, channels)
    x = _batch(rng, shape, loc + rng.normal(size=channels), scale * rng.uniform(0.5, 2.0))
    running_var = scale ** 2
    if tiny_var:
        running_var[0] = 1e-6
    gamma = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.5, 2.0, size=channels)
    beta = rng.normal(size=channels)
    return {"x": x.astype(dtype), "running_mean": loc.astype(dtype),
            "running_var": running_var.astype(dtype), "gamma": gamma.astype(dtype),
            "beta": beta.astype(dtype), "eps": eps}


def _eval_reference(x, running_mean, running_var, gamma, beta, eps):
    from bncourse.batchnorm import batch_norm

    return batch_norm(x, running_mean.copy(), running_var.copy(), gamma, beta, training=False,
                      eps=eps)


def _eval_torch(x, running_mean, running_var, gamma, beta, eps):
    import torch
    import torch.nn.functional as F

    args = (torch.from_numpy(np.asarray(a, dtype=np.float64))
            for a in (x, running_mean, running_var, gamma, beta))
    x_t, mean_t, var_t, gamma_t, beta_t = args
    y = F.batch_norm(x_t, mean_t, var_t, gamma_t, beta_t, training=False, eps=float(eps))
    return y.numpy().astype(x.dtype)


def _eval_mistake(kind):
    def mistake(x, running_mean, running_var, gamma, beta, eps):
        mean, var = _view(running_mean, x), _view(running_var, x)
        if kind == "batch-stats":
            mean = x.mean(axis=_axes(x), keepdims=True)
            var = x.var(axis=_axes(x), keepdims=True)
        if kind == "parentheses":
            x_hat = x - mean / np.sqrt(var + eps)
        elif kind == "eps-outside":
            x_hat = (x - mean) / (np.sqrt(var) + eps)
        else:
            x_hat = (x - mean) / np.sqrt(var + eps)
        y = x_hat if kind == "no-affine" else _view(gamma, x) * x_hat + _view(beta, x)
        return y.astype(x.dtype)
    return mistake


_EVAL_MISTAKES = [
    Mistake("in evaluation mode normalize with running_mean and running_var, not with the "
            "statistics of this x: the output for one example must not depend on the others.",
            _eval_mistake("batch-stats")),
    Mistake(hints.EPS_OUTSIDE_ROOT, _eval_mistake("eps-outside")),
    Mistake(hints.MISSING_PARENTHESES, _eval_mistake("parentheses")),
    Mistake("finish with the scale and shift: y = gamma * x_hat + beta, gamma and beta "
            "viewed as (1, C, 1, ...) so that they act on axis 1.", _eval_mistake("no-affine")),
]


# --------------------------------------------------------------------------- the module

def _module_case(seed, shapes=((8, 3), (8, 3), (5, 3)), modes="tte", momentum=0.1,
                 eps=1e-5, affine_at=None, train_false=False):
    """A script: one forward per shape, in the mode given by ``modes`` (t/e); switching
    modes calls train() or eval() (train(False) with ``train_false``); new weight and
    bias are set before forward number ``affine_at``."""
    rng = np.random.default_rng(seed)
    channels = shapes[0][1]
    loc, scale = _channels(rng, channels)
    steps, mode = [], "t"
    for i, (shape, want) in enumerate(zip(shapes, modes)):
        if i == affine_at:
            gamma = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.5, 2.0, channels)
            steps.append(("affine", gamma, rng.normal(size=channels)))
        if want != mode or (i == 0 and want == "t"):
            steps.append(("train",) if want == "t" else
                         ("train_false",) if train_false else ("eval",))
            mode = want
        # the data drift a little from batch to batch, as activations do in training
        steps.append(("forward", _batch(rng, tuple(shape), loc + 0.3 * i, scale)))
    return {"num_features": int(channels), "eps": eps, "momentum": momentum, "steps": steps}


def _run_module(impl, num_features, eps, momentum, steps):
    """Build ``impl(num_features, eps=eps, momentum=momentum)``, run the script, and record
    the state after construction and after every call."""
    import numpy as np

    bn = impl(num_features, eps=eps, momentum=momentum)

    def state(**extra):
        record = {"running_mean": np.array(bn.running_mean),
                  "running_var": np.array(bn.running_var),
                  "num_batches_tracked": int(bn.num_batches_tracked),
                  "training": bool(bn.training)}
        record.update(extra)
        return record

    records = [state(weight=np.array(bn.weight), bias=np.array(bn.bias))]
    for step in steps:
        op = step[0]
        if op == "affine":
            bn.weight, bn.bias = np.array(step[1]), np.array(step[2])
        elif op == "forward":
            records.append(state(y=np.array(bn.forward(step[1]))))
        else:
            module = bn.train() if op == "train" else \
                bn.train(False) if op == "train_false" else bn.eval()
            records.append(state(returns_self=module is bn))
    return records


def _module_torch(num_features, eps, momentum, steps):
    """The same script run on torch.nn.BatchNorm1d/2d/3d in float64."""
    import torch

    ndim = next(s[1].ndim for s in steps if s[0] == "forward")
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
           5: torch.nn.BatchNorm3d}[ndim]
    bn = cls(num_features, eps=eps, momentum=momentum, dtype=torch.float64)

    def state(**extra):
        record = {"running_mean": bn.running_mean.numpy().copy(),
                  "running_var": bn.running_var.numpy().copy(),
                  "num_batches_tracked": int(bn.num_batches_tracked),
                  "training": bool(bn.training)}
        record.update(extra)
        return record

    records = [state(weight=bn.weight.detach().numpy().copy(),
                     bias=bn.bias.detach().numpy().copy())]
    with torch.no_grad():
        for step in steps:
            op = step[0]
            if op == "affine":
                bn.weight.copy_(torch.from_numpy(step[1]))
                bn.bias.copy_(torch.from_numpy(step[2]))
            elif op == "forward":
                records.append(state(y=bn(torch.from_numpy(step[1])).numpy()))
            else:
                module = bn.train() if op == "train" else \
                    bn.train(False) if op == "train_false" else bn.eval()
                records.append(state(returns_self=module is bn))
    return records


class _PlainModule:
    """A NumPy batch-norm module with switches for the mistakes (not bncourse's code)."""

    ddof_running = 1
    eval_path = True
    count_eval = False
    update_in_eval = False
    momentum_none = "cumulative"
    reversed_momentum = False
    return_self = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.weight, self.bias = np.ones(num_features), np.zeros(num_features)
        self.running_mean, self.running_var = np.zeros(num_features), np.ones(num_features)
        self.num_batches_tracked = 0
        self.training = True

    def train(self, mode=True):
        self.training = bool(mode)
        return self if self.return_self else None

    def eval(self):
        self.training = False
        return self if self.return_self else None

    def forward(self, x):
        axes = (0, *range(2, x.ndim))
        view = (1, -1) + (1,) * (x.ndim - 2)
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        if self.training or self.update_in_eval:
            self.num_batches_tracked += 1
            if self.momentum is not None:
                momentum = self.momentum
            elif self.momentum_none == "cumulative":
                momentum = 1.0 / self.num_batches_tracked
            else:
                momentum = 0.1
            if self.reversed_momentum:
                momentum = 1.0 - momentum
            m = x.size // x.shape[1]
            unbiased = var * m / (m - self.ddof_running)
            self.running_mean = (1 - momentum) * self.running_mean + momentum * mean
            self.running_var = (1 - momentum) * self.running_var + momentum * unbiased
        elif self.count_eval:
            self.num_batches_tracked += 1
        if not self.training and self.eval_path:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + self.eps)
        return self.weight.reshape(view) * x_hat + self.bias.reshape(view)


def _module_reference(num_features, eps=1e-5, momentum=0.1):
    from bncourse.batchnorm import BatchNorm

    return BatchNorm(num_features, eps=eps, momentum=momentum)


def _module_mistake(**switches):
    return type("MistakenBatchNorm", (_PlainModule,), switches)


_MODULE_MISTAKES = [
    Mistake("in eval() mode normalize with running_mean and running_var, not with the "
            "statistics of the batch: evaluation must not depend on which other inputs are "
            "in the batch.", _module_mistake(eval_path=False)),
    Mistake(hints.BIASED_RUNNING_VARIANCE, _module_mistake(ddof_running=0)),
    Mistake(hints.MOMENTUM_CONVENTION, _module_mistake(reversed_momentum=True)),
    Mistake("momentum=None is not a default of 0.1: it asks for the cumulative average of "
            "every batch seen so far, each batch weighted equally (torch counts the batches "
            "in num_batches_tracked).", _module_mistake(momentum_none="fixed")),
    Mistake("num_batches_tracked counts the training-mode forward calls only; an eval() "
            "forward leaves every buffer alone.", _module_mistake(count_eval=True)),
    Mistake("in eval() mode the running statistics are read, never updated.",
            _module_mistake(update_in_eval=True, eval_path=True)),
    Mistake("train() and eval() return the module itself, as torch's do "
            "(so that bn.eval().forward(x) works).", _module_mistake(return_self=False)),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch03-ewa-bias-corrected",
        notebook=NOTEBOOK,
        function="ewa_bias_corrected",
        points=1,
        reference=_ewa_reference,
        expected=_ewa_weighted_sum,
        make_case=_ewa_case,
        visible=[dict(seed=0, note="beta = 0.9"),
                 dict(seed=1, shape=(40,), beta=0.98, dtype="float32"),
                 dict(seed=2, shape=(15, 3), beta=0.5, note="three series side by side")],
        hidden=[dict(seed=301, shape=(1,), note="a single value"),
                dict(seed=302, shape=(30, 2, 2), beta=0.99),
                dict(seed=303, shape=(25,), beta=0.0, note="beta = 0: no averaging"),
                dict(seed=304, shape=(60, 4), beta=0.9, dtype="float32", loc=-20.0),
                dict(seed=305, shape=(8,), beta=0.75)],
        outputs=("v",),
        rtol=_RTOL,
        mistakes=_EWA_MISTAKES,
        stub='''import numpy as np


def ewa_bias_corrected(values, beta):
    """Bias-corrected exponentially weighted averages along axis 0.

    values: float array (T,) or (T, ...): theta_1, ..., theta_T along axis 0.
    beta: the decay, a float in [0, 1) (torch's momentum is 1 - beta).
    v_0 = 0, v_t = beta * v_{t-1} + (1 - beta) * theta_t, and the result at step t
    is v_t / (1 - beta**t). Returns an array with the shape and dtype of values.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch03-update-running-stats",
        notebook=NOTEBOOK,
        function="update_running_stats",
        points=2,
        reference=_update_reference,
        expected=_update_torch,
        make_case=_update_case,
        visible=[dict(seed=0, note="(N, C), momentum 0.1"),
                 dict(seed=1, shape=(4, 3, 5), momentum=0.3, note="(N, C, L)"),
                 dict(seed=2, shape=(16, 2), momentum=0.01, dtype="float32")],
        hidden=[dict(seed=311, shape=(2, 4), note="two values per channel"),
                dict(seed=312, shape=(3, 2, 4, 4), momentum=0.5),
                dict(seed=313, shape=(1, 3, 6), momentum=0.2, note="N = 1, L = 6"),
                dict(seed=314, shape=(8, 5), momentum=1.0, note="momentum 1: the batch only"),
                dict(seed=315, shape=(6, 2), momentum=0.0, note="momentum 0: no change"),
                dict(seed=316, shape=(2, 3, 2, 2, 2), momentum=0.1, dtype="float32")],
        outputs=("new_running_mean", "new_running_var"),
        rtol=_RTOL,
        mistakes=_UPDATE_MISTAKES,
        stub='''import numpy as np


def update_running_stats(running_mean, running_var, x, momentum):
    """One training-mode update of batch norm's running statistics, as PyTorch does it.

    running_mean, running_var: arrays (C,). x: a batch of shape (N, C), (N, C, L),
    (N, C, H, W) or (N, C, D, H, W), channels on axis 1; each channel has
    m = x.size // C values. momentum: torch's, the weight of the NEW batch, in [0, 1].
    running = (1 - momentum) * running + momentum * batch_statistic, where the
    variance that enters running_var is the unbiased one (divide by m - 1).
    Returns (new_running_mean, new_running_var) as new arrays in the dtype of x;
    the inputs must not be modified.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch03-bn-forward-eval",
        notebook=NOTEBOOK,
        function="bn_forward_eval",
        points=1,
        reference=_eval_reference,
        expected=_eval_torch,
        make_case=_eval_case,
        visible=[dict(seed=0, note="(N, C)"),
                 dict(seed=1, shape=(4, 3, 5, 5), note="(N, C, H, W)"),
                 dict(seed=2, shape=(6, 2, 7), dtype="float32", eps=1e-3),
                 dict(seed=3, shape=(5, 3), eps=1e-2, tiny_var=True,
                      note="running_var of channel 0 is 1e-6")],
        hidden=[dict(seed=321, shape=(1, 4), note="a single example"),
                dict(seed=322, shape=(3, 2, 2, 3, 2)),
                dict(seed=323, shape=(2, 5, 3), dtype="float32", tiny_var=True, eps=1e-5),
                dict(seed=324, shape=(16, 6, 2, 2), eps=0.1),
                dict(seed=325, shape=(1, 3, 4, 4), note="one image")],
        outputs=("y",),
        rtol=_RTOL,
        mistakes=_EVAL_MISTAKES,
        stub='''import numpy as np


def bn_forward_eval(x, running_mean, running_var, gamma, beta, eps):
    """Evaluation-mode batch norm: normalize with the running statistics.

    x: array of shape (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W), channels
    on axis 1 (N may be 1). running_mean, running_var, gamma, beta: arrays (C,).
    y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta, channel by channel.
    Returns y, the shape and dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch03-batchnorm-module",
        notebook=NOTEBOOK,
        function="BatchNorm",
        points=3,
        reference=_module_reference,
        expected=_module_torch,
        make_case=_module_case,
        driver=_run_module,
        visible=[dict(seed=0, note="train, train, eval; momentum 0.1"),
                 dict(seed=1, shapes=((6, 2, 3, 3),) * 4, modes="ttet", momentum=None,
                      note="(N, C, H, W), momentum=None, back to train"),
                 dict(seed=2, shapes=((4, 3, 5), (4, 3, 5), (2, 3, 5)), modes="tee",
                      momentum=0.3, affine_at=1, note="(N, C, L), new weight and bias")],
        hidden=[dict(seed=331, shapes=((2, 4), (2, 4), (1, 4)), note="two values per channel"),
                dict(seed=332, shapes=((3, 2, 2, 3, 2),) * 3, modes="tet", momentum=None),
                dict(seed=333, shapes=((5, 6),) * 6, modes="tttett", momentum=None,
                     train_false=True, note="train(False)"),
                dict(seed=334, shapes=((7, 3, 4),) * 3, momentum=1.0, eps=1e-3,
                     affine_at=0),
                dict(seed=335, shapes=((4, 2, 3, 3),) * 3, modes="ett",
                     note="eval before any training")],
        rtol=1e-10,
        mistakes=_MODULE_MISTAKES,
        stub='''import numpy as np


class BatchNorm:
    """Batch normalization as a module with state, for input (N, C) to (N, C, D, H, W).

    It must behave like torch.nn.BatchNorm1d/2d/3d(num_features, eps, momentum)
    in float64, over any sequence of calls:

    - attributes: weight (ones) and bias (zeros), the learnable scale and shift;
      the buffers running_mean (zeros), running_var (ones) and num_batches_tracked
      (0); training (True). All arrays of shape (C,), float64. The grader may
      assign new arrays to weight and bias between calls.
    - train(mode=True) and eval() set the mode and return the module itself.
    - forward(x): x of shape (N, C, ...) with channels on axis 1; returns y, the
      shape of x. In training mode it normalizes with the statistics of the batch
      and updates the buffers as torch does; in evaluation mode it uses the
      buffers and changes nothing. momentum is the weight of the new batch in
      the running averages, or None for torch's cumulative average.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        # Your code here: replace the line below.
        raise NotImplementedError

    def train(self, mode=True):
        raise NotImplementedError

    def eval(self):
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError
''',
    ),
]
