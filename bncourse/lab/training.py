"""A seeded training loop that records loss, accuracy and any per-layer statistic you ask for.

One call trains a classifier with cross-entropy and returns a ``History``.
Two runs with the same model seed and the same ``seed`` here are bitwise
identical; two *different* models trained with the same ``seed`` see exactly
the same mini-batches in the same order, because the data order comes from a
private ``torch.Generator(seed)`` that the model never touches. Dropout (and
any other use of torch's global generator inside the model) is seeded too,
inside ``torch.random.fork_rng`` so the caller's global RNG state is left as
it was.

Step ``t`` (``t = 0 .. steps-1``, the number of updates made so far):
forward the mini-batch in training mode, backward, [probes], optimizer step.
Evaluation (full train and test sets, ``model.eval()``, ``torch.no_grad``)
happens before the first step and after every ``eval_every`` updates and the
last one, so ``History.steps`` is ``0, eval_every, 2 * eval_every, ..., steps``.

Public API
----------
``train(model, data, steps, batch_size, lr, optimizer="sgd", momentum=0.0, weight_decay=0.0, seed=0, eval_every=100, probes=None, record_every=None, max_loss=None, progress=True, desc=None, num_threads=1) -> History``
    Trains ``model`` in place (see the function docstring). Runs on one
    torch thread by default (restored afterwards): fastest for small models.
``History``
    Dataclass: ``steps (E,)``, ``train_loss (E,)``, ``train_accuracy (E,)``,
    ``test_loss (E,)``, ``test_accuracy (E,)`` at the evaluation points;
    ``loss (steps,)`` the mini-batch loss of every step; ``record_steps (R,)``
    and ``records[name] (R, ...)`` from the probes; ``diverged``,
    ``diverged_at``, ``seconds``, ``config``. After a divergence the remaining
    entries are NaN, so histories of one configuration always stack.
    ``final_test_accuracy`` / ``final_train_accuracy`` (NaN when diverged),
    ``equals(other)`` (bitwise, ignoring ``seconds``).
``evaluate(model, x, y) -> (loss, accuracy)``
    Mean cross-entropy and accuracy in eval mode without gradients.

Probes (``probes={"name": probe}``)
------------------------------------
A probe is any callable ``probe(model, batch) -> float | array`` where
``batch = (x, y)`` is the current training mini-batch. It is called every
``record_every`` steps (``t % record_every == 0``) after the backward pass and
before the optimizer step, so the ``.grad`` of every parameter holds this
batch's gradient and the weights are those after ``t`` updates. Whatever a
probe does to the parameters, gradients, buffers (BN running statistics),
train/eval mode or the global RNG is undone before training continues, so
probes never change the training run. Subclasses of ``Probe`` may also
implement ``attach(model)`` / ``detach()`` (called once around training) and
``before_forward()`` (called just before the training forward of a record
step), which is how the forward-hook probes see the activations of the
training forward itself, with batch statistics, at no extra forward cost.

Built-in probes:

``percentiles(module, q=(15, 50, 85), where="input", unit=None)``
    Percentiles over the mini-batch of the input (or output) of a module, e.g.
    ``percentiles("act3")`` = the pre-activations of the third sigmoid layer
    (Ioffe & Szegedy's Figure 1 uses one unit: ``unit=0``). Shape ``(len(q),)``.
``moments(module, where="output", unit=None)``
    ``[mean, std]`` (population std) of a module's input/output. Shape ``(2,)``.
``ActivationProbe(module, fn, where="input")``
    The general form: ``fn(tensor) -> float | array`` on the captured tensor.
``grad_norms(param="weight")``
    Frobenius norm of the gradient of every Linear/Conv layer's weight, in
    module order. Shape ``(number of layers,)``.
``weight_norms(param="weight")``
    The same for the weights themselves.

Examples
--------
>>> from bncourse.lab.data import load_digits_split
>>> from bncourse.lab.models import make_mlp
>>> from bncourse.lab.training import train, percentiles, grad_norms
>>> data = load_digits_split(seed=0)
>>> net = make_mlp(64, activation="sigmoid", bn="before", init_scale=0.1, seed=0)
>>> hist = train(net, data, steps=200, batch_size=60, lr=0.5, seed=0, eval_every=100,
...              probes={"p": percentiles("act3", unit=0), "g": grad_norms()},
...              record_every=50, progress=False)
>>> hist.steps.tolist(), hist.record_steps.tolist()
([0, 100, 200], [0, 50, 100, 150])
>>> hist.records["p"].shape, hist.records["g"].shape
((4, 3), (4, 4))
>>> bool(hist.final_test_accuracy > 0.8)
True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bncourse._checks import check_int, fail
from bncourse.lab.batches import epoch_batches
from bncourse.lab.data import Dataset
from bncourse.lab.models import weight_layers
from bncourse.lab.probes import Preserved

__all__ = ["train", "History", "evaluate", "eval_forward", "Probe", "ActivationProbe", "percentiles",
           "moments", "grad_norms", "weight_norms"]


# --------------------------------------------------------------------------- history

@dataclasses.dataclass
class History:
    """What one training run produced.

    Attributes
    ----------
    steps : ndarray of int, shape (E,)
        Number of updates made at each evaluation point (0 = before training).
    train_loss, train_accuracy, test_loss, test_accuracy : ndarray, shape (E,)
        Mean cross-entropy (nats) and accuracy (fraction) over the whole
        training/test set in eval mode. NaN after a divergence.
    loss : ndarray, shape (steps,)
        Mini-batch cross-entropy of every step, in training mode (the value the
        optimizer saw). NaN after the divergence step.
    record_steps : ndarray of int, shape (R,)
        Number of updates made when the probes ran.
    records : dict name -> ndarray, shape (R, ...)
        Probe outputs stacked over ``record_steps`` (NaN rows after a divergence).
    diverged : bool
        True when the loss became NaN/inf (or exceeded ``max_loss``).
    diverged_at : int or None
        The step ``t`` whose loss was non-finite (or too large).
    seconds : float
        Wall-clock time of the run, evaluations included.
    config : dict
        The training arguments (steps, batch_size, lr, optimizer, seed, ...).
    """

    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    loss: np.ndarray
    record_steps: np.ndarray
    records: dict
    diverged: bool
    diverged_at: int | None
    seconds: float
    config: dict

    @property
    def final_test_accuracy(self) -> float:
        """Test accuracy after the last step; NaN when the run diverged."""
        return float("nan") if self.diverged else float(self.test_accuracy[-1])

    @property
    def final_train_accuracy(self) -> float:
        """Training-set accuracy after the last step; NaN when the run diverged."""
        return float("nan") if self.diverged else float(self.train_accuracy[-1])

    def equals(self, other: "History") -> bool:
        """Bitwise equality of every array, record and flag (``seconds`` ignored)."""
        fields = ("steps", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                  "loss", "record_steps")
        same = all(np.array_equal(getattr(self, f), getattr(other, f), equal_nan=True)
                   for f in fields)
        same = same and self.records.keys() == other.records.keys() and all(
            np.array_equal(self.records[k], other.records[k], equal_nan=True)
            for k in self.records)
        return bool(same and self.diverged == other.diverged
                    and self.diverged_at == other.diverged_at and self.config == other.config)


# --------------------------------------------------------------------------- probes

class Probe:
    """Base class of probes with optional set-up hooks; subclasses implement ``__call__``.

    ``attach(model)`` runs once before training, ``detach()`` once after (also
    after an error), ``before_forward()`` just before the training forward of
    each record step, and ``__call__(model, batch)`` after that step's backward.
    """

    def attach(self, model: nn.Module) -> None:
        """Called once before training (register hooks here)."""

    def detach(self) -> None:
        """Called once after training (remove hooks here)."""

    def before_forward(self) -> None:
        """Called just before the training forward of a record step."""

    def __call__(self, model: nn.Module, batch):
        raise NotImplementedError


def _resolve(model: nn.Module, module, func: str) -> nn.Module:
    if isinstance(module, nn.Module):
        if not any(m is module for m in model.modules()):
            fail(func, "module", "a submodule of the trained model",
                  f"a {type(module).__name__} that is not part of it")
        return module
    if isinstance(module, str):
        try:
            return model.get_submodule(module)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            fail(func, "module", f"the name of a submodule (one of {names})", repr(module))
    fail(func, "module", "an nn.Module or a submodule name",
          f"{type(module).__name__}", TypeError)


class ActivationProbe(Probe):
    """Apply ``fn`` to the input or output of ``module`` in the training forward of a record step.

    Parameters
    ----------
    module : str or nn.Module
        A submodule name (``"act3"``, ``"norm2"``) or the module itself.
    fn : callable(torch.Tensor) -> float | array
        Receives the detached tensor, shape ``(N, ...)`` (the mini-batch).
    where : {"input", "output"}
        ``"input"`` is the module's first positional input.

    Examples
    --------
    >>> mean_abs = ActivationProbe("act1", lambda z: z.abs().mean().item(), where="output")
    """

    def __init__(self, module, fn: Callable, where: str = "input"):
        if where not in ("input", "output"):
            fail("ActivationProbe", "where", "'input' or 'output'", repr(where))
        if not callable(fn):
            fail("ActivationProbe", "fn", "a callable tensor -> float | array",
                  type(fn).__name__, TypeError)
        self.module, self.fn, self.where = module, fn, where
        self._handle = None
        self._armed = False
        self._value = None

    def _hook(self, module, inputs, output):
        if self._armed:
            self._value = (inputs[0] if self.where == "input" else output).detach()
            self._armed = False

    def attach(self, model: nn.Module) -> None:
        target = _resolve(model, self.module, "ActivationProbe")
        self._handle = target.register_forward_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def before_forward(self) -> None:
        self._armed = True
        self._value = None

    def __call__(self, model: nn.Module, batch):
        if self._value is None:
            raise RuntimeError(f"ActivationProbe: module {self.module!r} was not called in the "
                               "training forward of this step")
        return self.fn(self._value)


def _select_unit(z: torch.Tensor, unit):
    """Values of one unit/channel (axis 1) or of all, as a float64 NumPy vector."""
    if unit is not None:
        z = z[:, unit]
    return z.reshape(-1).double().numpy()


def percentiles(module, q=(15, 50, 85), where: str = "input", unit: int | None = None):
    """Probe: percentiles ``q`` (in %) of a module's input/output over the mini-batch.

    With ``unit=None`` all values of the tensor are pooled (every unit, every
    sample); with ``unit=k`` only unit/channel ``k`` (axis 1) is used, as in
    Ioffe & Szegedy's Figure 1. Uses ``numpy.percentile`` (linear
    interpolation). Returns shape ``(len(q),)``.

    >>> probe = percentiles("act3", q=(15, 50, 85), unit=0)
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 100)):
        fail("percentiles", "q", "a non-empty sequence of numbers in [0, 100]", repr(q.tolist()))
    return ActivationProbe(module, lambda z: np.percentile(_select_unit(z, unit), q), where)


def moments(module, where: str = "output", unit: int | None = None):
    """Probe: ``[mean, std]`` (population std, ddof=0) of a module's input/output over the batch.

    >>> probe = moments("norm1", where="output")   # ~[0, 1] for BatchNorm at init
    """
    def mean_std(z):
        v = _select_unit(z, unit)
        return np.array([v.mean(), v.std()])

    return ActivationProbe(module, mean_std, where)


class _ParamNorms(Probe):
    def __init__(self, param: str, use_grad: bool):
        if param not in ("weight", "bias"):
            fail("grad_norms", "param", "'weight' or 'bias'", repr(param))
        self.param, self.use_grad = param, use_grad

    def __call__(self, model: nn.Module, batch):
        norms = []
        for _, layer in weight_layers(model):
            p = getattr(layer, self.param)
            t = None if p is None else (p.grad if self.use_grad else p)
            norms.append(float("nan") if t is None else float(torch.linalg.vector_norm(t.detach())))
        return np.array(norms)


def grad_norms(param: str = "weight") -> Probe:
    """Probe: ``||dL/dW_l||_F`` for every Linear/Conv layer ``l`` in module order.

    ``L`` is the mean mini-batch cross-entropy of the step. A layer without the
    parameter (``param="bias"`` on a bias-free layer) gives NaN. Shape
    ``(number of Linear/Conv layers,)``, order as ``models.weight_layers``.
    """
    return _ParamNorms(param, use_grad=True)


def weight_norms(param: str = "weight") -> Probe:
    """Probe: ``||W_l||_F`` for every Linear/Conv layer, in module order."""
    return _ParamNorms(param, use_grad=False)


class _FunctionProbe(Probe):
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, model, batch):
        return self.fn(model, batch)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in evaluation mode without gradients; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` on ``(x, y)`` in eval mode.

    The model's train/eval mode is restored afterwards. A non-finite output
    gives NaN loss and accuracy (a diverged model has no meaningful prediction).

    >>> from bncourse.lab.models import make_mlp
    >>> loss, acc = evaluate(make_mlp(4, hidden=(3,), out_features=2),
    ...                      torch.zeros(5, 4), torch.zeros(5, dtype=torch.long))
    """
    logits = eval_forward(model, x)
    if not bool(torch.isfinite(logits).all()):
        return float("nan"), float("nan")
    loss = float(F.cross_entropy(logits, y))
    acc = float((logits.argmax(dim=1) == y).double().mean())
    return loss, acc


# --------------------------------------------------------------------------- training

def _check_float(func: str, arg: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(func, arg, "a finite float", f"{type(value).__name__} {value!r}", TypeError)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        fail(func, arg, "a finite float >= 0" if allow_zero else "a positive finite float",
              repr(value))
    return float(value)


def _make_optimizer(func: str, optimizer, params, lr: float, momentum: float,
                    weight_decay: float):
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    fail(func, "optimizer", "'sgd', 'adam' or a callable params -> torch.optim.Optimizer",
          repr(optimizer))


def train(model: nn.Module, data: Dataset, steps: int, batch_size: int, lr: float,
          optimizer="sgd", momentum: float = 0.0, weight_decay: float = 0.0, seed: int = 0,
          eval_every: int | None = 100, probes: dict | None = None,
          record_every: int | None = None, max_loss: float | None = None,
          progress: bool = True, desc: str | None = None,
          num_threads: int | None = 1) -> History:
    """Train ``model`` with mini-batch cross-entropy for ``steps`` updates; return its ``History``.

    Parameters
    ----------
    model : nn.Module
        Maps ``data.x_train[idx]`` (shape ``(batch_size, ...)``) to logits
        ``(batch_size, K)``. Trained in place; left in training mode.
    data : Dataset
        ``x_train, y_train, x_test, y_test`` (see ``bncourse.lab.data``).
    steps : int
        Number of optimizer updates.
    batch_size : int
        Mini-batch size B; batches are drawn without replacement, a fresh
        permutation per epoch, and the last ``n_train % B`` samples of each
        epoch are skipped so every batch has B samples.
    lr : float
        Learning rate (> 0).
    optimizer : "sgd" | "adam" | callable(params) -> torch.optim.Optimizer
        ``"sgd"`` uses ``momentum`` and ``weight_decay``; ``"adam"`` uses
        ``weight_decay``. A callable gets ``model.parameters()`` and ignores
        ``lr``/``momentum``/``weight_decay``.
    momentum, weight_decay : float >= 0
    seed : int
        Seeds the data order (private ``torch.Generator``) and, inside a forked
        RNG, torch's global generator (dropout masks).
    eval_every : int or None
        Evaluate every this many updates (and at 0 and ``steps``); None: only
        at 0 and ``steps``.
    probes : dict name -> callable(model, batch) or Probe, optional
        See the module docstring.
    record_every : int, optional
        Run the probes when ``t % record_every == 0``; default ``eval_every``
        (or ``steps`` when that is None).
    max_loss : float, optional
        Also count the run as diverged when a mini-batch loss exceeds this
        (default: only NaN/inf loss counts).
    progress : bool
        Show a ``tqdm`` progress bar on stderr.
    desc : str, optional
        Label of the progress bar.
    num_threads : int or None
        torch's intra-op threads *during this run* (``torch.set_num_threads``,
        restored afterwards); None keeps the current setting. The default 1 is
        the fastest for the small models of the course, and on a busy machine
        two threads were measured 4 to 50 times slower than one (threads spin
        waiting for each other on tiny matrix products).

    Returns
    -------
    History

    Raises
    ------
    ValueError / TypeError
        For a non-positive ``steps``/``batch_size``/``lr``/``eval_every``, a batch
        larger than the training set, or an unknown optimizer.
    """
    func = "train"
    if not isinstance(model, nn.Module):
        fail(func, "model", "a torch.nn.Module", type(model).__name__, TypeError)
    if not isinstance(data, Dataset):
        fail(func, "data", "a bncourse.lab.data.Dataset", type(data).__name__, TypeError)
    steps = check_int(func, "steps", steps)
    batch_size = check_int(func, "batch_size", batch_size)
    if batch_size > data.n_train:
        fail(func, "batch_size", f"at most the {data.n_train} training samples",
              repr(batch_size))
    lr = _check_float(func, "lr", lr)
    momentum = _check_float(func, "momentum", momentum, allow_zero=True)
    weight_decay = _check_float(func, "weight_decay", weight_decay, allow_zero=True)
    seed = check_int(func, "seed", seed, minimum=0)
    eval_every = steps if eval_every is None else check_int(func, "eval_every", eval_every)
    record_every = eval_every if record_every is None else \
        check_int(func, "record_every", record_every)
    if max_loss is not None:
        max_loss = _check_float(func, "max_loss", max_loss)
    if num_threads is not None:
        num_threads = check_int(func, "num_threads", num_threads)
    probes = dict(probes or {})
    for name, p in probes.items():
        if not callable(p):
            fail(func, f"probes[{name!r}]", "a callable (model, batch) -> value or a Probe",
                  type(p).__name__, TypeError)
    probes = {k: p if isinstance(p, Probe) else _FunctionProbe(p) for k, p in probes.items()}

    eval_steps = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    record_steps = list(range(0, steps, record_every))
    config = dict(steps=steps, batch_size=batch_size, lr=lr,
                  optimizer=optimizer if isinstance(optimizer, str) else repr(optimizer),
                  momentum=momentum, weight_decay=weight_decay, seed=seed,
                  eval_every=eval_every, record_every=record_every, max_loss=max_loss)

    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    evals: list[tuple[float, float, float, float]] = []
    losses = np.full(steps, np.nan)
    recorded: dict[str, list] = {k: [] for k in probes}
    diverged_at = None
    opt = _make_optimizer(func, optimizer, model.parameters(), lr, momentum, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    batches = epoch_batches(data.n_train, batch_size, gen)
    record_set, eval_set = set(record_steps), set(eval_steps)

    def do_eval():
        evals.append(evaluate(model, x_train, y_train) + evaluate(model, x_test, y_test))

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    for p in probes.values():
        p.attach(model)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.train()
            do_eval()
            bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5)
            for t in bar:
                idx = next(batches)
                x, y = x_train[idx], y_train[idx]
                record = t in record_set
                if record:
                    for p in probes.values():
                        p.before_forward()
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                value = loss.item()
                losses[t] = value
                if not math.isfinite(value) or (max_loss is not None and value > max_loss):
                    diverged_at = t
                    break
                if record:
                    for name, p in probes.items():
                        with Preserved(model):
                            recorded[name].append(np.asarray(p(model, (x, y)), dtype=np.float64))
                opt.step()
                if t + 1 in eval_set:
                    do_eval()
                    if not math.isfinite(evals[-1][0]):
                        diverged_at = t + 1
                        evals.pop()
                        break
                    bar.set_postfix(test_acc=f"{evals[-1][3]:.3f}", refresh=False)
            bar.close()
    finally:
        for p in probes.values():
            p.detach()
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - start

    table = np.full((len(eval_steps), 4), np.nan)
    table[:len(evals)] = np.array(evals, dtype=np.float64).reshape(-1, 4)
    records = {}
    for name, values in recorded.items():
        shape = values[0].shape if values else ()
        arr = np.full((len(record_steps),) + shape, np.nan)
        if values:
            arr[:len(values)] = np.stack(values)
        records[name] = arr
    return History(steps=np.array(eval_steps), train_loss=table[:, 0],
                   train_accuracy=table[:, 1], test_loss=table[:, 2], test_accuracy=table[:, 3],
                   loss=losses, record_steps=np.array(record_steps, dtype=np.int64),
                   records=records, diverged=diverged_at is not None, diverged_at=diverged_at,
                   seconds=seconds, config=config)
