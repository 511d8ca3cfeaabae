"""Chapter 4's capstone: a small MLP with the learner's own batch norm, trained on the digits.

The learner writes a class ``DigitsMLP``: ``x @ w1 -> batch norm (gamma, beta, running
statistics) -> ReLU -> @ w2 + b2 -> logits``, with ``forward``, ``backward``, ``train``
and ``eval``. The driver ``_train_capstone`` (it runs in the sandbox, with the learner's
class) does two things with it:

1. a *probe*: one training-mode forward and backward on a small batch, then an
   evaluation-mode forward, every output and buffer compared with torch's autograd
   and ``F.batch_norm`` in float64. A subtly wrong implementation (the unbiased
   variance in the batch statistics, batch statistics in evaluation mode, the
   biased variance stored, a missing path in the backward) fails here, however
   well it trains;
2. *training*: plain SGD on softmax cross-entropy over the digits, with the
   initial weights and the batch order drawn from the case's seed (``grade
   --seed`` shifts it), then the logits of the test images in evaluation mode.
   The grading process scores them against the test labels, which never enter
   the sandbox; the test accuracy must reach :data:`TARGET_ACCURACY`.

The reference is a NumPy MLP around ``bncourse.batchnorm.BatchNorm``. Heavy
imports happen inside the functions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.compare import compare_outputs
from bncourse.exercises.core import Exercise, Mistake

__all__ = ["CAPSTONE", "TARGET_ACCURACY", "digits", "digits_test_accuracy"]

NOTEBOOK = "book/04_backprop.ipynb"
#: Test accuracy the trained network must reach (fixed before any submission is seen).
TARGET_ACCURACY = 0.93
_NAMES = ("w1", "gamma", "beta", "w2", "b2")
_RTOL = 1e-8


@lru_cache(maxsize=4)
def digits(split: int = 0):
    """``(x_train, y_train, x_test, y_test)`` of the standardized digits split, NumPy float64."""
    from bncourse.lab.data import load_digits_split

    data = load_digits_split(seed=split)
    return tuple(t.numpy().astype(np.float64 if t.is_floating_point() else np.int64)
                 for t in (data.x_train, data.y_train, data.x_test, data.y_test))


def _capstone_case(seed, hidden=32, split=0, probe_n=16, lr=0.1, epochs=6, batch_size=32):
    """Initial weights, a probe batch and the SGD schedule, all drawn from ``seed``."""
    x_train, y_train, x_test, _ = digits(split)
    rng = np.random.default_rng(seed)
    d = x_train.shape[1]
    init = {"w1": rng.standard_normal((d, hidden)) * np.sqrt(2.0 / d),
            "gamma": 1.0 + 0.1 * rng.standard_normal(hidden),
            "beta": 0.1 * rng.standard_normal(hidden),
            "w2": rng.standard_normal((hidden, 10)) / np.sqrt(hidden),
            "b2": np.zeros(10)}
    rows = rng.choice(len(x_train), size=2 * probe_n, replace=False)
    probe = {"x": x_train[rows[:probe_n]], "dlogits": rng.standard_normal((probe_n, 10)),
             "x_eval": x_train[rows[probe_n:]]}
    schedule = {"lr": lr, "epochs": int(epochs), "batch_size": int(batch_size),
                "seed": int(rng.integers(2**31))}
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "init": init,
            "probe": probe, "schedule": schedule}


def _train_capstone(impl, x_train, y_train, x_test, init, probe, schedule):
    """Probe ``impl`` once, then train a fresh one with SGD; return the probe and test logits."""
    import numpy as np

    names = ("w1", "gamma", "beta", "w2", "b2")

    def build():
        return impl(*(np.array(init[k]) for k in names))

    model = build()
    model.train()
    logits = np.array(model.forward(probe["x"]))
    grads = model.backward(probe["dlogits"])
    record = {"logits": logits, "grads": {k: np.array(grads[k]) for k in names},
              "running_mean": np.array(model.running_mean),
              "running_var": np.array(model.running_var)}
    model.eval()
    record["eval_logits"] = np.array(model.forward(probe["x_eval"]))

    model = build()
    rng = np.random.default_rng(schedule["seed"])
    n, size, lr = len(x_train), schedule["batch_size"], schedule["lr"]
    onehot = np.eye(10)[y_train]
    for _ in range(schedule["epochs"]):
        model.train()
        order = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            rows = order[start:start + size]
            z = np.array(model.forward(x_train[rows]))
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            grads = model.backward((p - onehot[rows]) / size)
            for k in names:
                setattr(model, k, getattr(model, k) - lr * np.asarray(grads[k]))
    model.eval()
    return {"probe": record, "test_logits": np.array(model.forward(x_test))}


def _capstone_torch(x_train, y_train, x_test, init, probe, schedule):
    """The probe from torch's autograd and F.batch_norm in float64 (training is scored
    against the labels in ``_capstone_compare``)."""
    import torch
    import torch.nn.functional as F

    p = {k: torch.tensor(init[k], requires_grad=True) for k in _NAMES}
    hidden = p["gamma"].shape[0]
    running_mean = torch.zeros(hidden, dtype=torch.float64)
    running_var = torch.ones(hidden, dtype=torch.float64)

    def forward(x, training):
        a = F.batch_norm(torch.from_numpy(x) @ p["w1"], running_mean, running_var,
                         p["gamma"], p["beta"], training=training, momentum=0.1, eps=1e-5)
        return torch.relu(a) @ p["w2"] + p["b2"]

    logits = forward(probe["x"], True)
    logits.backward(torch.from_numpy(probe["dlogits"]))
    with torch.no_grad():
        eval_logits = forward(probe["x_eval"], False)
    record = {"logits": logits.detach().numpy(),
              "grads": {k: p[k].grad.numpy() for k in _NAMES},
              "running_mean": running_mean.numpy(), "running_var": running_var.numpy(),
              "eval_logits": eval_logits.numpy()}
    return {"probe": record, "test_logits": None}


def digits_test_accuracy(test_logits, split: int = 0) -> float:
    """Fraction of the split's test images whose largest logit is the true class."""
    labels = digits(split)[3]
    return float(np.mean(np.argmax(test_logits, axis=1) == labels))


def _capstone_compare(got, want, case):
    """The probe within 1e-8 of torch, and the trained network's test accuracy on target."""
    if not isinstance(got, dict) or set(got) != {"probe", "test_logits"}:
        return ["the driver's output is malformed (expected a dict with 'probe' and "
                "'test_logits')"]
    problems = ["probe: " + p for p in
                compare_outputs(got["probe"], want["probe"], rtol=_RTOL).problems]
    split = case.params.get("split", 0)
    logits = got["test_logits"]
    n_test = len(digits(split)[3])
    if not isinstance(logits, np.ndarray) or logits.shape != (n_test, 10):
        problems.append(f"test logits have shape {np.shape(logits)}, expected ({n_test}, 10)")
    elif not np.all(np.isfinite(logits)):
        problems.append("test logits contain NaN or inf: training diverged")
    else:
        accuracy = digits_test_accuracy(logits, split)
        if accuracy < TARGET_ACCURACY:
            problems.append(f"test accuracy after training {accuracy:.3f}, below the target "
                            f"{TARGET_ACCURACY:.2f}")
    return problems


class _ReferenceMLP:
    """The network around bncourse's BatchNorm (the reference)."""

    def __init__(self, w1, gamma, beta, w2, b2, momentum=0.1, eps=1e-5):
        from bncourse.batchnorm import BatchNorm

        self.w1, self.gamma, self.beta, self.w2, self.b2 = w1, gamma, beta, w2, b2
        self._bn = BatchNorm(len(gamma), eps=eps, momentum=momentum)

    running_mean = property(lambda self: self._bn.running_mean)
    running_var = property(lambda self: self._bn.running_var)

    def train(self, mode=True):
        self._bn.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        self._bn.weight, self._bn.bias = self.gamma, self.beta
        self._x = x
        self._h = np.maximum(self._bn.forward(x @ self.w1), 0.0)
        return self._h @ self.w2 + self.b2

    def backward(self, dlogits):
        dz = self._bn.backward((dlogits @ self.w2.T) * (self._h > 0))
        return {"w1": self._x.T @ dz, "gamma": self._bn.dweight, "beta": self._bn.dbias,
                "w2": self._h.T @ dlogits, "b2": dlogits.sum(axis=0)}


class _PlainMLP:
    """A NumPy version with switches for the mistakes (not bncourse's code)."""

    ddof_batch = 0
    ddof_running = 1
    eval_path = True
    reversed_momentum = False
    bn_paths = True
    relu_mask = True

    def __init__(self, w1, gamma, beta, w2, b2, momentum=0.1, eps=1e-5):
        self.w1, self.gamma, self.beta, self.w2, self.b2 = w1, gamma, beta, w2, b2
        self.momentum, self.eps = momentum, eps
        self.running_mean, self.running_var = np.zeros(len(gamma)), np.ones(len(gamma))
        self.training = True

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        z = x @ self.w1
        m = len(z)
        if self.training or not self.eval_path:
            mean, var = z.mean(axis=0), z.var(axis=0, ddof=self.ddof_batch)
            if self.training:
                w = 1 - self.momentum if self.reversed_momentum else self.momentum
                var_run = z.var(axis=0) * m / (m - self.ddof_running)
                self.running_mean = (1 - w) * self.running_mean + w * mean
                self.running_var = (1 - w) * self.running_var + w * var_run
        else:
            mean, var = self.running_mean, self.running_var
        self._x, self._inv_std = x, 1.0 / np.sqrt(var + self.eps)
        self._x_hat = (z - mean) * self._inv_std
        self._h = np.maximum(self.gamma * self._x_hat + self.beta, 0.0)
        return self._h @ self.w2 + self.b2

    def backward(self, dlogits):
        da = dlogits @ self.w2.T
        if self.relu_mask:
            da = da * (self._h > 0)
        dgamma, dbeta = (da * self._x_hat).sum(axis=0), da.sum(axis=0)
        m = len(da)
        if self.bn_paths:
            dz = self.gamma * self._inv_std / m * (m * da - dbeta - self._x_hat * dgamma)
        else:
            dz = self.gamma * self._inv_std * da
        return {"w1": self._x.T @ dz, "gamma": dgamma, "beta": dbeta,
                "w2": self._h.T @ dlogits, "b2": dlogits.sum(axis=0)}


def _mistake(**switches):
    return type("MistakenMLP", (_PlainMLP,), switches)


_MISTAKES = [
    Mistake(hints.UNBIASED_VARIANCE, _mistake(ddof_batch=1)),
    Mistake("in eval() mode normalize with the running statistics, not with the test "
            "batch's own: a prediction must not depend on the other images in the batch.",
            _mistake(eval_path=False)),
    Mistake(hints.BIASED_RUNNING_VARIANCE, _mistake(ddof_running=0)),
    Mistake(hints.MOMENTUM_CONVENTION, _mistake(reversed_momentum=True)),
    Mistake("the gradient reaching w1 must pass through the batch statistics too: the mean "
            "and the variance of z depend on w1 (chapter 4's closed form).",
            _mistake(bn_paths=False)),
    Mistake("ReLU passes the gradient only where its output is positive: multiply by the "
            "mask (h > 0) on the way back.", _mistake(relu_mask=False)),
]

CAPSTONE = Exercise(
    id="ch04-capstone-digits-mlp",
    notebook=NOTEBOOK,
    function="DigitsMLP",
    points=5,
    reference=_ReferenceMLP,
    expected=_capstone_torch,
    make_case=_capstone_case,
    driver=_train_capstone,
    compare=_capstone_compare,
    visible=[dict(seed=0, note="32 hidden units")],
    hidden=[dict(seed=441, hidden=48, split=1, probe_n=12, note="48 hidden units"),
            dict(seed=442, hidden=24, split=2, probe_n=8, batch_size=24)],
    rtol=_RTOL,
    mistakes=_MISTAKES,
    stub='''import numpy as np


class DigitsMLP:
    """x @ w1 -> batch norm (gamma, beta) -> ReLU -> @ w2 + b2: the logits of 10 digits.

    x: (N, 64) float64 images. w1: (64, H), gamma and beta: (H,), w2: (H, 10),
    b2: (10,). Batch norm acts on each of the H units over the batch, like
    torch.nn.BatchNorm1d(H, eps, momentum): batch statistics and an update of
    running_mean (zeros at first) and running_var (ones) in training mode, the
    running statistics in evaluation mode.

    The grader calls train(), eval(), forward(x) -> logits (N, 10), and
    backward(dlogits) -> a dict of the gradients of the loss with respect to
    "w1", "gamma", "beta", "w2" and "b2" for the last forward call (dlogits is the
    gradient with respect to its logits). Between calls it replaces the five
    parameter attributes with updated arrays (plain SGD), so read them anew in
    every forward.
    """

    def __init__(self, w1, gamma, beta, w2, b2, momentum=0.1, eps=1e-5):
        self.w1, self.gamma, self.beta, self.w2, self.b2 = w1, gamma, beta, w2, b2
        self.momentum, self.eps = momentum, eps
        # Your code here: the running statistics and the mode; then the methods below.
        raise NotImplementedError

    def train(self):
        raise NotImplementedError

    def eval(self):
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dlogits):
        raise NotImplementedError
''',
)
