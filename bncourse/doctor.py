"""The BN doctor: inspect a PyTorch model for the batch-norm mistakes of chapter 11.

``diagnose(model, optimizer=None, example=None)`` looks at a model (and, when
given, the optimizer that trains it and an example input batch) and returns a
list of :class:`Finding`, each with a ``code``, the dotted ``module`` path of the
layer concerned (as in ``model.named_modules()``; ``""`` is the model itself)
and a ``message`` of one sentence or two. ``report(findings)`` formats them.

Shape letters: N batch, C channels, L sequence length, m values per channel
(``m = x.numel() // C`` for the input ``x`` of one BN layer).

What is found, by code:

``bias-before-bn``
    A Linear or convolution with a bias whose output goes straight into a BN
    layer. BN subtracts the batch mean per channel, so ``b`` cancels exactly
    and its gradient is zero; beta is the shift.
``train-mode-in-eval``
    A BN layer in training mode inside a model in evaluation mode: it
    normalizes with batch statistics and updates its running buffers.
``train-mode-no-grad``
    A model in training mode while gradients are disabled (the way
    evaluation code runs under ``torch.no_grad()``): its BN layers use batch
    statistics and still overwrite their running buffers.
``stats-never-updated``
    A BN layer that will use running statistics (evaluation mode) which are
    still at their initial values (mean 0, variance 1, no batch tracked), or
    whose ``momentum`` is 0 so that they never change.
``one-value-per-channel`` / ``few-values-per-channel``
    With ``example``: the batch shape leaves ``m = 1`` (training raises) or
    ``m < FEW_VALUES`` values per channel for a BN layer.
``bn1d-sequence-axis``
    With ``example``: a ``BatchNorm1d`` receives ``(N, L, C)`` (channels last;
    torch raises) or ``(N, C, C)`` (the channel count equals the length, so an
    ``(N, L, C)`` tensor is normalized per position, silently).
``weight-decay-on-bn``
    With ``optimizer``: BN's gamma and beta sit in a group with
    ``weight_decay > 0``.
``bn-after-last-layer``
    The model's output comes straight out of a BN layer.
``forward-failed``
    With ``example``: the forward pass raised; the message quotes the error.

The structure (which layer feeds which) is read from the graph that
``torch.fx`` traces; for a model it cannot trace, from a forward pass on
``example`` (forward hooks), else from the order of the children of every
``nn.Sequential``. The shapes come from a forward pass on ``example``, run on a
copy of the model in evaluation mode, so the model and its buffers are untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bncourse import torch_bn
from bncourse._checks import fail

__all__ = ["Finding", "diagnose", "report", "CODES", "FEW_VALUES"]

#: Fewer values per channel than this in one batch is reported as too few.
FEW_VALUES = 8

#: Every code the doctor can report, with a short title.
CODES = {
    "bias-before-bn": "bias right before BN",
    "train-mode-in-eval": "BN layer in training mode in an evaluated model",
    "train-mode-no-grad": "model in training mode with gradients off",
    "stats-never-updated": "running statistics never updated",
    "one-value-per-channel": "one value per channel",
    "few-values-per-channel": "few values per channel",
    "bn1d-sequence-axis": "BatchNorm1d on a sequence laid out (N, L, C)",
    "weight-decay-on-bn": "weight decay on gamma and beta",
    "bn-after-last-layer": "BN on the model's output",
    "forward-failed": "the example forward pass failed",
}

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
             nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class Finding:
    """One problem: its ``code`` (a key of ``CODES``), the ``module`` path, a ``message``."""

    code: str
    module: str
    message: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.module or '(model)'}: {self.message}"


_BATCHNORMS = (_BatchNorm, torch_bn.BatchNorm1d, torch_bn.BatchNorm2d, torch_bn.BatchNorm3d)
_BATCHNORM1D = (nn.BatchNorm1d, torch_bn.BatchNorm1d)


def _is_bn(module) -> bool:
    """torch's batch norms (SyncBatchNorm included) and the course's drop-ins."""
    return isinstance(module, _BATCHNORMS)


def _display(name: str) -> str:
    return f"'{name}'" if name else "the model"


# --------------------------------------------------------------------------- structure

@dataclass
class _Structure:
    producer: dict          # BN name -> name of the module whose output it reads (or None)
    output_module: str | None
    inputs: dict            # BN name -> input shape (only from an example pass)
    error: str | None = None


def _from_example(model: nn.Module, args: tuple) -> _Structure:
    """Run a copy in eval mode with hooks: who made each BN's input, and its shape."""
    clone = copy.deepcopy(model).eval()
    made_by: dict[int, str] = {}
    keep: list = []                    # outputs stay alive so that their ids stay unique
    producer, inputs = {}, {}
    handles = []

    def record(name):
        def hook(module, inp, out):
            if isinstance(out, torch.Tensor):
                made_by[id(out)] = name
                keep.append(out)
        return hook

    def before_bn(name):
        def hook(module, inp):
            if inp and isinstance(inp[0], torch.Tensor):
                producer[name] = made_by.get(id(inp[0]))
                inputs[name] = tuple(inp[0].shape)
        return hook

    for name, module in clone.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(record(name)))
        if _is_bn(module):
            handles.append(module.register_forward_pre_hook(before_bn(name)))
    error, output_module = None, None
    try:
        with torch.no_grad():
            out = clone(*args)
        if isinstance(out, torch.Tensor):
            output_module = made_by.get(id(out))
    except Exception as exc:           # the doctor reports it instead of failing
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        for h in handles:
            h.remove()
    return _Structure(producer, output_module, inputs, error)


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping every BN module (the course's own too) as one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_bn(m) or super().is_leaf_module(m, module_qualified_name)


def _from_fx(model: nn.Module) -> _Structure | None:
    """The producer of each BN's input from the traced graph; a producer counts only when
    BN is the one user of its output (with a skip connection too, its bias matters)."""
    try:
        graph = _Tracer().trace(model)
    except Exception:                  # data-dependent control flow, unsupported ops
        return None
    modules = dict(model.named_modules())
    producer, output_module = {}, None
    for node in graph.nodes:
        if node.op == "call_module" and _is_bn(modules.get(node.target)):
            src = node.args[0] if node.args else None
            producer[node.target] = (src.target if isinstance(src, torch.fx.Node)
                                     and src.op == "call_module" and len(src.users) == 1
                                     else None)
        if node.op == "output":
            src = node.args[0]
            if isinstance(src, torch.fx.Node) and src.op == "call_module":
                output_module = src.target
    return _Structure(producer, output_module, {})


def _from_sequentials(model: nn.Module) -> _Structure:
    producer = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            names = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_children()]
            children = list(module.children())
            for i, child in enumerate(children):
                if _is_bn(child):
                    producer[names[i]] = names[i - 1] if i else None
    output_module = None
    if isinstance(model, nn.Sequential) and len(model):
        output_module = next(reversed([n for n, _ in model.named_children()]))
    return _Structure(producer, output_module, {})


# --------------------------------------------------------------------------- the checks

def _bias_before_bn(modules, structure):
    for bn_name, src in structure.producer.items():
        layer = modules.get(src) if src is not None else None
        if isinstance(layer, _WEIGHTED) and layer.bias is not None:
            yield Finding("bias-before-bn", src,
                          f"{type(layer).__name__} {_display(src)} has a bias and feeds "
                          f"{_display(bn_name)} directly: BN subtracts the batch mean, so the "
                          f"bias cancels and its gradient is zero; build the layer with "
                          f"bias=False (BN's beta is the shift).")


def _modes(model, modules):
    bns = [(n, m) for n, m in modules.items() if _is_bn(m)]
    if not model.training:
        for name, bn in bns:
            if bn.training:
                yield Finding("train-mode-in-eval", name,
                              f"{_display(name)} is in training mode while the model is in "
                              f"evaluation mode: it normalizes each batch with its own "
                              f"statistics and overwrites its running statistics; call "
                              f"model.eval() after the code that switched it to training.")
    elif not torch.is_grad_enabled() and any(bn.training for _, bn in bns):
        count = sum(bn.training for _, bn in bns)
        yield Finding("train-mode-no-grad", "",
                      f"the model is in training mode while gradients are disabled, as in "
                      f"evaluation code under torch.no_grad(): its {count} BN layer(s) use "
                      f"batch statistics and still update their running statistics; call "
                      f"model.eval() before evaluating.")


def _stale_stats(modules):
    for name, bn in modules.items():
        if not _is_bn(bn) or not bn.track_running_stats or bn.running_mean is None:
            continue
        if bn.momentum == 0:
            yield Finding("stats-never-updated", name,
                          f"{_display(name)} has momentum 0, so its running statistics never "
                          f"change from {int(bn.num_batches_tracked)} tracked batches; use "
                          f"momentum > 0 (or None for a cumulative average).")
        elif not bn.training and int(bn.num_batches_tracked) == 0 \
                and bool((bn.running_mean == 0).all()) and bool((bn.running_var == 1).all()):
            yield Finding("stats-never-updated", name,
                          f"{_display(name)} is in evaluation mode with the running "
                          f"statistics it was built with (mean 0, variance 1, no batch "
                          f"tracked), so it does not normalize at all; train the model or "
                          f"recompute the statistics on training data "
                          f"(torch.optim.swa_utils.update_bn).")


def _shapes(modules, structure):
    for name, shape in structure.inputs.items():
        bn = modules[name]
        c = bn.num_features
        if isinstance(bn, _BATCHNORM1D) and len(shape) == 3 and shape[2] == c:
            if shape[1] != c:
                what = (f"receives {shape}, the channels on the last axis (N, L, C): "
                        f"BatchNorm1d expects (N, C, L) and fails; ")
            else:
                what = (f"receives {shape}: its {c} channels equal the length of the last "
                        f"axis, so if this tensor is (N, L, C) BN normalizes each position "
                        f"instead of each channel, silently; ")
            yield Finding("bn1d-sequence-axis", name,
                          f"{_display(name)} {what}transpose to (N, C, L) with "
                          f"x.transpose(1, 2) before the layer and back after it.")
            continue
        if len(shape) < 2 or shape[1] != c or shape[0] == 0:
            continue
        m = 1
        for s in shape[:1] + shape[2:]:
            m *= s
        if m == 1:
            yield Finding("one-value-per-channel", name,
                          f"{_display(name)} receives {shape}: one value per channel, so "
                          f"training raises (and any batch statistic is meaningless); use "
                          f"a larger batch, GroupNorm or LayerNorm.")
        elif m < FEW_VALUES:
            yield Finding("few-values-per-channel", name,
                          f"{_display(name)} receives {shape}: {m} values per channel, too "
                          f"few for stable batch statistics (chapter 10); use a larger "
                          f"batch, synchronized BN, GroupNorm or LayerNorm.")


def _weight_decay(modules, optimizer):
    owner = {}
    for name, module in modules.items():
        if _is_bn(module):
            for p in module.parameters(recurse=False):
                owner[id(p)] = name
    flagged = {}
    for group in optimizer.param_groups:
        wd = float(group.get("weight_decay", 0.0) or 0.0)
        if wd > 0:
            for p in group["params"]:
                if id(p) in owner:
                    flagged.setdefault(owner[id(p)], wd)
    for name, wd in flagged.items():
        yield Finding("weight-decay-on-bn", name,
                      f"the gamma and beta of {_display(name)} are decayed (weight_decay="
                      f"{wd:g}), which pulls the layer's output scale and shift towards 0; "
                      f"most recipes put BN parameters in a group with weight_decay=0.")


def _output_bn(modules, structure):
    name = structure.output_module
    if name is not None and _is_bn(modules.get(name)):
        yield Finding("bn-after-last-layer", name,
                      f"the model's output comes straight out of {_display(name)}: every "
                      f"output is standardized over the batch, so its scale is fixed by "
                      f"gamma and a prediction depends on the other samples of the batch; "
                      f"end with the Linear layer (chapter 8).")


# --------------------------------------------------------------------------- public API

def diagnose(model: nn.Module, optimizer=None, example=None) -> list[Finding]:
    """Inspect ``model`` for batch-norm mistakes; return the findings (empty: none found).

    Parameters
    ----------
    model : nn.Module
        The model, in the mode it is about to be used in (``model.eval()``
        before evaluation). Neither it nor its buffers are modified.
    optimizer : torch.optim.Optimizer, optional
        Its parameter groups are checked for weight decay on BN parameters.
    example : Tensor or tuple of Tensors, optional
        An input batch of the shape used in training (``model(*example)``).
        Enables the shape checks (values per channel, ``(N, L, C)`` input to
        ``BatchNorm1d``) and reads the structure from a real forward pass.

    Returns
    -------
    list of Finding, in the order: structure, modes, statistics, shapes,
    optimizer, output, forward errors.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``, ``optimizer`` not a
        ``torch.optim.Optimizer``, or ``example`` not a tensor or a tuple of tensors.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    >>> [f.code for f in diagnose(net)]
    ['bias-before-bn']
    """
    func = "diagnose"
    if not isinstance(model, nn.Module):
        fail(func, "model", "a torch.nn.Module", type(model).__name__, TypeError)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        fail(func, "optimizer", "a torch.optim.Optimizer or None", type(optimizer).__name__,
              TypeError)
    args = None
    if example is not None:
        args = (example,) if isinstance(example, torch.Tensor) else example
        if not isinstance(args, (tuple, list)) or not args \
                or not all(isinstance(a, torch.Tensor) for a in args):
            fail(func, "example", "a torch.Tensor, a non-empty tuple of tensors or None",
                  type(example).__name__, TypeError)
    modules = dict(model.named_modules())
    structure = _from_fx(model)
    if args is not None:
        run = _from_example(model, tuple(args))
        structure = run if structure is None else \
            _Structure(structure.producer, structure.output_module, run.inputs, run.error)
    elif structure is None:
        structure = _from_sequentials(model)
    findings = list(_bias_before_bn(modules, structure))
    findings += _modes(model, modules)
    findings += _stale_stats(modules)
    findings += _shapes(modules, structure)
    if optimizer is not None:
        findings += _weight_decay(modules, optimizer)
    findings += _output_bn(modules, structure)
    if structure.error is not None:
        findings.append(Finding("forward-failed", "",
                                f"the forward pass on the example raised {structure.error}"))
    return findings


def report(findings) -> str:
    """A printable report: a count, then one line per finding (``[code] module: message``)."""
    findings = list(findings)
    if not all(isinstance(f, Finding) for f in findings):
        fail("report", "findings", "a list of Finding (from diagnose)",
              repr([type(f).__name__ for f in findings][:3]), TypeError)
    if not findings:
        return "BN doctor: no problem found."
    lines = [f"BN doctor: {len(findings)} finding{'s' if len(findings) > 1 else ''}"]
    lines += [f"  {f}" for f in findings]
    return "\n".join(lines)
