"""Train many small MLPs side by side: one batched matrix product per layer for all of them.

A sweep over learning rates, initial scales and seeds trains dozens of tiny
networks. Trained one after the other, each step of each network pays
PyTorch's fixed per-operation cost; stacked, K networks share every
operation: layer ``l`` of all members is one ``torch.baddbmm`` on weights of
shape ``(K, fan_out, fan_in)``. The members stay independent: member ``k``
sees only its own weights, its own batch-norm statistics, its own
mini-batches and its own learning rate, and the result is the same as
``bncourse.lab.training.train`` with plain SGD on that member alone (tested to
round-off in float64, including divergence and the per-layer gradient norms).

Shape letters: K members, B mini-batch, N evaluation samples, D input
features, H hidden units, C classes, L weight layers (hidden layers + output).

Public API
----------
``MLPStack.from_models(models)``
    Stack K ``nn.Sequential`` MLPs of one architecture, built by
    ``bncourse.lab.models.make_mlp`` (``Flatten``, ``Linear``, ``BatchNorm1d``,
    ``Sigmoid``/``Tanh``/``ReLU``/``Identity`` in any order, no dropout). The
    parameters are copied; the models are not modified.
``MLPStack.forward(x, training=True) -> logits (K, B, C)``
    ``x`` is ``(B, D)`` (the same inputs for every member) or ``(K, B, D)``
    (flatten images first).
``MLPStack.to_models() -> list[nn.Sequential]``
    The members as ordinary modules again (parameters and running statistics).
``train_stack(stack, data, steps, batch_size, lrs, seeds=0, eval_every=100, record_every=None, max_loss=None, progress=True, desc=None, num_threads=1) -> list[History]``
    Plain SGD on every member with its own learning rate ``lrs[k]`` and
    data-order seed ``seeds[k]``; one ``History`` per member, as ``train``
    returns, with the records ``"grad_norms"`` and ``"weight_norms"`` (shape
    ``(R, L)``: the Frobenius norm of each weight layer's gradient, and of the
    weights, as the probes ``training.grad_norms()`` and
    ``training.weight_norms()`` record them).

Examples
--------
>>> from bncourse.lab.data import load_digits_split
>>> from bncourse.lab.models import make_mlp
>>> data = load_digits_split(seed=0)
>>> models = [make_mlp(64, hidden=(16, 16), bn="before", init_scale=s, seed=0)
...           for s in (0.01, 0.1, 1.0)]
>>> stack = MLPStack.from_models(models)
>>> stack.forward(data.x_train[:5]).shape
torch.Size([3, 5, 10])
>>> histories = train_stack(stack, data, steps=100, batch_size=60, lrs=[0.1, 0.1, 0.1],
...                         progress=False)
>>> len(histories), histories[0].steps.tolist()
(3, [0, 100])
"""

from __future__ import annotations

import copy
import math
import numbers
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bncourse._checks import check_int, fail
from bncourse.lab.batches import epoch_batches
from bncourse.lab.data import Dataset
from bncourse.lab.training import History

__all__ = ["MLPStack", "train_stack"]

_ACTIVATIONS = {nn.Sigmoid: torch.sigmoid, nn.Tanh: torch.tanh, nn.ReLU: torch.relu,
                nn.Identity: lambda z: z}


def _plan(func: str, model) -> list:
    """The model as a list of steps ``("linear", out, in, bias?)``, ``("bn", H, eps, momentum)``,
    ``("act", type)``; raises ``ValueError`` for a layer the stack cannot run."""
    if not isinstance(model, nn.Sequential):
        fail(func, "models", "nn.Sequential MLPs (bncourse.lab.models.make_mlp)",
              f"a {type(model).__name__}", TypeError)
    plan = []
    for name, m in model.named_children():
        if isinstance(m, nn.Flatten):
            if plan:
                fail(func, "models", "a Flatten only as the first layer", f"one at {name!r}")
        elif isinstance(m, nn.Linear):
            plan.append(("linear", m.out_features, m.in_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            if not (m.affine and m.track_running_stats) or m.momentum is None:
                fail(func, "models", "BatchNorm1d with affine=True, track_running_stats=True "
                      "and a float momentum", f"{m!r} at {name!r}")
            plan.append(("bn", m.num_features, float(m.eps), float(m.momentum)))
        elif type(m) in _ACTIVATIONS:
            plan.append(("act", type(m)))
        else:
            fail(func, "models", "Linear, BatchNorm1d, Sigmoid, Tanh, ReLU or Identity layers",
                  f"a {type(m).__name__} at {name!r}")
    if not plan or plan[-1][0] != "linear":
        fail(func, "models", "an MLP ending with a Linear layer", repr(model))
    return plan


class MLPStack:
    """K MLPs of one architecture whose parameters are stacked along a leading axis K.

    Activations are kept feature-major, ``(K, H, B)``: a linear layer is one
    batched product ``W @ a`` with the weights as ``nn.Linear`` stores them,
    and batch norm normalizes each row over the contiguous batch axis.

    Attributes
    ----------
    weights : list of tensors (K, fan_out, fan_in)
        ``weights[l][k]`` is member k's ``nn.Linear.weight``.
    biases : list of tensors (K, fan_out, 1) or None
    gammas, betas, running_means, running_vars : list of tensors (K, H)
        One entry per batch-norm layer.
    plan : list
        The sequence of layers (see ``from_models``).
    """

    def __init__(self, plan, weights, biases, gammas, betas, running_means, running_vars,
                 template):
        self.plan, self.template = plan, template
        self.weights, self.biases = weights, biases
        self.gammas, self.betas = gammas, betas
        self.running_means, self.running_vars = running_means, running_vars

    @property
    def num_members(self) -> int:
        """K, the number of stacked networks."""
        return int(self.weights[0].shape[0])

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors: weights, biases, then batch-norm gammas and betas."""
        return [p for p in self.weights + self.biases + self.gammas + self.betas
                if p is not None]

    @classmethod
    def from_models(cls, models) -> "MLPStack":
        """Copy the parameters and buffers of K MLPs with identical layers into one stack.

        Raises
        ------
        ValueError / TypeError
            Empty ``models``, a layer other than Flatten/Linear/BatchNorm1d/
            Sigmoid/Tanh/ReLU/Identity (dropout included), or members whose
            layers or sizes differ.
        """
        func = "MLPStack.from_models"
        models = list(models)
        if not models:
            fail(func, "models", "a non-empty sequence of nn.Sequential", "an empty one")
        plan = _plan(func, models[0])
        for k, m in enumerate(models[1:], start=1):
            if _plan(func, m) != plan:
                fail(func, f"models[{k}]", "the same layers and sizes as models[0]",
                      f"{m!r}")
        layers = [[m for m in model.children() if not isinstance(m, nn.Flatten)]
                  for model in models]

        def stacked(get):
            return torch.stack([get(model_layers).detach().clone() for model_layers in layers])

        weights, biases, gammas, betas, means, variances = [], [], [], [], [], []
        for i, step in enumerate(plan):
            if step[0] == "linear":
                weights.append(stacked(lambda ls: ls[i].weight))
                biases.append(stacked(lambda ls: ls[i].bias[:, None]) if step[3] else None)
            elif step[0] == "bn":
                gammas.append(stacked(lambda ls: ls[i].weight))
                betas.append(stacked(lambda ls: ls[i].bias))
                means.append(stacked(lambda ls: ls[i].running_mean))
                variances.append(stacked(lambda ls: ls[i].running_var))
        for p in weights + biases + gammas + betas:
            if p is not None:
                p.requires_grad_(True)
        return cls(plan, weights, biases, gammas, betas, means, variances,
                   copy.deepcopy(models[0]))

    def forward(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        """Logits ``(K, B, C)`` of every member for inputs ``x`` (``(B, D)`` or ``(K, B, D)``).

        In training mode each batch-norm layer normalizes with the member's own
        mini-batch mean and biased variance and updates its running statistics
        exactly as ``nn.BatchNorm1d`` does (running variance unbiased,
        ``running = (1 - momentum) * running + momentum * batch``); in eval
        mode it uses the running statistics.
        """
        return self._forward(x, training).transpose(1, 2)

    def _forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Logits in the internal layout ``(K, C, B)``."""
        k = self.num_members
        if x.dim() == 2:
            a = x.T                                            # (D, B), shared by all members
        elif x.dim() == 3 and x.shape[0] == k:
            a = x.transpose(1, 2)                              # (K, D, B)
        else:
            fail("MLPStack.forward", "x", f"shape (B, D) or ({k}, B, D)",
                  f"shape {tuple(x.shape)}")
        li = bi = 0
        for step in self.plan:
            if step[0] == "linear":
                w, b = self.weights[li], self.biases[li]
                if a.dim() == 2:                               # one (K * out, D) @ (D, B) product
                    a = torch.matmul(w, a) if b is None else torch.matmul(w, a) + b
                else:
                    a = torch.bmm(w, a) if b is None else torch.baddbmm(b, w, a)
                li += 1
            elif step[0] == "bn":
                a = self._batch_norm(a, bi, step[2], step[3], training)
                bi += 1
            else:
                a = _ACTIVATIONS[step[1]](a)
        return a

    def _batch_norm(self, z, i, eps, momentum, training):
        # One fused torch.nn.functional.batch_norm call for all members: the
        # (K, H, B) values are read as one sample of K * H channels of length
        # B, so each channel (one unit of one member) is normalized over its
        # own contiguous row of B batch values.
        k, h, b = z.shape
        y = F.batch_norm(z.reshape(1, k * h, b),
                         self.running_means[i].view(k * h), self.running_vars[i].view(k * h),
                         self.gammas[i].view(k * h), self.betas[i].view(k * h),
                         training=training, momentum=momentum, eps=eps)
        return y.view(k, h, b)

    def to_models(self) -> list[nn.Sequential]:
        """The K members as ``nn.Sequential`` modules (copies of the stacked values)."""
        models = []
        for k in range(self.num_members):
            model = copy.deepcopy(self.template)
            layers = [m for m in model.children() if not isinstance(m, nn.Flatten)]
            li = bi = 0
            with torch.no_grad():
                for m in layers:
                    if isinstance(m, nn.Linear):
                        m.weight.copy_(self.weights[li][k])
                        if m.bias is not None:
                            m.bias.copy_(self.biases[li][k, :, 0])
                        li += 1
                    elif isinstance(m, nn.BatchNorm1d):
                        m.weight.copy_(self.gammas[bi][k])
                        m.bias.copy_(self.betas[bi][k])
                        m.running_mean.copy_(self.running_means[bi][k])
                        m.running_var.copy_(self.running_vars[bi][k])
                        bi += 1
            models.append(model)
        return models


# --------------------------------------------------------------------------- training

def _per_member(func: str, arg: str, value, k: int, kind) -> list:
    values = list(value) if isinstance(value, (list, tuple, np.ndarray, torch.Tensor)) \
        else [value] * k
    if len(values) != k:
        fail(func, arg, f"one value per member ({k})", f"{len(values)} values")
    out = []
    for v in values:
        v = v.item() if isinstance(v, (np.generic, torch.Tensor)) else v
        if kind is float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or v <= 0:
                fail(func, arg, "positive finite floats", repr(v))
            out.append(float(v))
        else:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                fail(func, arg, "non-negative ints", repr(v))
            out.append(int(v))
    return out


@torch.no_grad()
def _evaluate(stack: MLPStack, x: torch.Tensor, y: torch.Tensor):
    """Per-member mean cross-entropy and accuracy in eval mode; NaN where a logit is not finite."""
    logits = stack._forward(x, training=False)                       # (K, C, N)
    k = logits.shape[0]
    finite = torch.isfinite(logits).reshape(k, -1).all(dim=1)
    loss = F.cross_entropy(logits, y.expand(k, -1), reduction="none").mean(dim=1)
    acc = (logits.argmax(dim=1) == y).double().mean(dim=1)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return (torch.where(finite, loss.double(), nan).numpy(),
            torch.where(finite, acc, nan).numpy())


def train_stack(stack: MLPStack, data: Dataset, steps: int, batch_size: int, lrs,
                seeds=0, eval_every: int | None = 100, record_every: int | None = None,
                max_loss: float | None = None, progress: bool = True, desc: str | None = None,
                num_threads: int | None = 1) -> list[History]:
    """Train every member of ``stack`` with plain SGD; return one ``History`` per member.

    Member ``k`` is trained exactly as ``training.train`` would train it alone
    with plain SGD (no momentum, no weight decay)::

        train(model_k, data, steps, batch_size, lr=lrs[k], seed=seeds[k],
              eval_every=..., record_every=..., max_loss=...,
              probes={"grad_norms": grad_norms(), "weight_norms": weight_norms()})

    the same mini-batches in the same order, the same evaluation points, the
    same divergence rule. A member that diverges stops
    changing (its later entries are NaN) while the others go on.

    Parameters
    ----------
    stack : MLPStack
        Trained in place.
    data : Dataset
    steps, batch_size : int
    lrs : float or sequence of K floats
        Learning rate of each member.
    seeds : int or sequence of K ints
        Data-order seed of each member (``train``'s ``seed``).
    eval_every : int or None
        Evaluate every this many updates and at 0 and ``steps`` (None: only then).
    record_every : int or None
        Record ``"grad_norms"`` (``||dL/dW_l||_F`` for each weight layer, the
        gradient of the step's mini-batch loss) and ``"weight_norms"``
        (``||W_l||_F``, before the step) when ``t % record_every == 0``;
        default ``eval_every``.
    max_loss : float, optional
        A mini-batch loss above this also counts as divergence.
    progress : bool
    desc : str, optional
    num_threads : int or None
        torch threads during the run (restored afterwards).

    Returns
    -------
    list of K ``History``; ``config`` holds each member's ``lr`` and ``seed``.

    Raises
    ------
    ValueError / TypeError
        Bad ``steps``, ``batch_size``, ``lrs``, ``seeds`` or intervals.
    """
    func = "train_stack"
    if not isinstance(stack, MLPStack):
        fail(func, "stack", "an MLPStack", type(stack).__name__, TypeError)
    if not isinstance(data, Dataset):
        fail(func, "data", "a bncourse.lab.data.Dataset", type(data).__name__, TypeError)
    k = stack.num_members
    steps = check_int(func, "steps", steps)
    batch_size = check_int(func, "batch_size", batch_size, minimum=2)
    if batch_size > data.n_train:
        fail(func, "batch_size", f"at most the {data.n_train} training samples",
              repr(batch_size))
    lr_list = _per_member(func, "lrs", lrs, k, float)
    seed_list = _per_member(func, "seeds", seeds, k, int)
    eval_every = steps if eval_every is None else check_int(func, "eval_every", eval_every)
    record_every = eval_every if record_every is None else \
        check_int(func, "record_every", record_every)
    if max_loss is not None and (isinstance(max_loss, bool) or not isinstance(
            max_loss, numbers.Real) or not max_loss > 0):
        fail(func, "max_loss", "a positive float or None", repr(max_loss))

    eval_steps = sorted(set(range(0, steps + 1, eval_every)) | {steps})
    record_steps = list(range(0, steps, record_every))
    eval_index = {s: i for i, s in enumerate(eval_steps)}
    record_index = {s: i for i, s in enumerate(record_steps)}
    n_layers = len(stack.weights)
    evals = np.full((k, len(eval_steps), 4), np.nan)
    losses = np.full((k, steps), np.nan)
    grads = np.full((k, len(record_steps), n_layers), np.nan)
    wnorms = np.full((k, len(record_steps), n_layers), np.nan)
    diverged_at = np.full(k, -1)              # -1: still training

    unique_seeds = sorted(set(seed_list))
    streams = [epoch_batches(data.n_train, batch_size, torch.Generator().manual_seed(s))
               for s in unique_seeds]
    member_stream = torch.tensor([unique_seeds.index(s) for s in seed_list])
    dtype = stack.weights[0].dtype
    params = stack.parameters()
    views = [(k,) + (1,) * (p.dim() - 1) for p in params]
    lr = torch.tensor(lr_list, dtype=dtype)
    lr_views = [lr.view(v) for v in views]
    active = np.ones(k, dtype=bool)

    x_train_flat = data.x_train.reshape(data.n_train, -1)
    x_test_flat = data.x_test.reshape(data.n_test, -1)

    def do_eval(index: int):
        tr_loss, tr_acc = _evaluate(stack, x_train_flat, data.y_train)
        te_loss, te_acc = _evaluate(stack, x_test_flat, data.y_test)
        if index > 0:                  # as train(): a non-finite evaluation ends the run
            bad = active & ~np.isfinite(tr_loss)
            diverged_at[bad] = eval_steps[index]
            active[bad] = False
        evals[active, index] = np.stack([tr_loss, tr_acc, te_loss, te_acc], axis=1)[active]

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(check_int(func, "num_threads", num_threads))
    try:
        do_eval(0)
        for t in tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5):
            idx = torch.stack([next(s) for s in streams])[member_stream]    # (K, B)
            x, y = data.x_train[idx].reshape(k, batch_size, -1), data.y_train[idx]
            logits = stack._forward(x, training=True)                        # (K, C, B)
            loss = F.cross_entropy(logits, y, reduction="none").mean(dim=1)  # (K,)
            for p in params:
                p.grad = None
            loss.sum().backward()              # members are independent: d(sum)/d(loss_k) = 1
            value = loss.detach().double().numpy()
            losses[active, t] = value[active]
            bad = ~np.isfinite(value) if max_loss is None else \
                ~(np.isfinite(value) & (value <= max_loss))
            bad &= active
            diverged_at[bad] = t
            active &= ~bad
            if t in record_index:
                with torch.no_grad():
                    for store, tensors in ((grads, [w.grad for w in stack.weights]),
                                           (wnorms, stack.weights)):
                        norms = torch.stack([torch.linalg.vector_norm(v, dim=(1, 2))
                                             for v in tensors], dim=1).double().numpy()
                        store[active, record_index[t]] = norms[active]
            with torch.no_grad():
                stopped = None if active.all() else torch.from_numpy(~active)
                for p, view, lr_view in zip(params, views, lr_views):
                    if stopped is not None:       # a diverged member is not updated again
                        p.grad.masked_fill_(stopped.view(view), 0.0)
                    p.addcmul_(lr_view, p.grad, value=-1.0)
            if t + 1 in eval_index:
                do_eval(eval_index[t + 1])
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - start

    histories = []
    for j in range(k):
        config = dict(steps=steps, batch_size=batch_size, lr=lr_list[j], optimizer="sgd",
                      momentum=0.0, weight_decay=0.0, seed=seed_list[j], eval_every=eval_every,
                      record_every=record_every,
                      max_loss=None if max_loss is None else float(max_loss))
        records = {"grad_norms": grads[j], "weight_norms": wnorms[j]}
        histories.append(History(
            steps=np.array(eval_steps), train_loss=evals[j, :, 0], train_accuracy=evals[j, :, 1],
            test_loss=evals[j, :, 2], test_accuracy=evals[j, :, 3], loss=losses[j],
            record_steps=np.array(record_steps, dtype=np.int64), records=records,
            diverged=bool(diverged_at[j] >= 0),
            diverged_at=int(diverged_at[j]) if diverged_at[j] >= 0 else None,
            seconds=seconds / k, config=config))
    return histories
