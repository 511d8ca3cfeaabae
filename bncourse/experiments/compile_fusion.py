"""``torch.compile`` of a BN model in evaluation mode, against folding BN by hand.

In evaluation mode BN is a fixed affine map per channel and can be folded into
the convolution before it (chapter 9: ``bncourse.fold.fold_sequential``;
PyTorch's own ``torch.nn.utils.fusion.fuse_conv_bn_eval`` does the same for
one pair). ``torch.compile`` first captures the model as a graph
(TorchDynamo) and hands that graph to a backend; this experiment looks at the
captured graph with a backend that only records it, counts the batch-norm
calls left in it, and builds the two folded models, checked against the BN
model, for timing side by side (``bncourse.bench.timing.time_interleaved``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from bncourse.fold import fold_sequential
from bncourse.gradcheck import relative_error

__all__ = ["captured_graph", "fuse_with_torch", "run_compile_fusion"]


def captured_graph(model: nn.Module, x: torch.Tensor) -> torch.fx.GraphModule:
    """The graph ``torch.compile`` captures for ``model(x)`` (no gradient), as given to a backend."""
    import torch._dynamo

    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=record)
    with torch.no_grad():
        compiled(x)
    torch._dynamo.reset()
    return graphs[0]


def _count_batch_norm(gm: torch.fx.GraphModule) -> int:
    return sum(1 for node in gm.graph.nodes
               if "batch_norm" in str(node.target) or (
                   node.op == "call_module"
                   and isinstance(gm.get_submodule(node.target), nn.modules.batchnorm._BatchNorm)))


def fuse_with_torch(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` with every Conv2d-BatchNorm2d pair fused by ``fuse_conv_bn_eval``."""
    model = copy.deepcopy(model).eval()
    names = [n for n, _ in model.named_children()]
    for a, b in zip(names, names[1:]):
        conv, bn = getattr(model, a), getattr(model, b)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(model, a, fuse_conv_bn_eval(conv, bn))
            setattr(model, b, nn.Identity())
    return model


@torch.no_grad()
def run_compile_fusion(model: nn.Sequential, x: torch.Tensor) -> dict:
    """Batch-norm calls in the captured graph; the folded models and their output differences.

    Returns:
        dict with ``bn_layers`` (BN modules in ``model``), ``bn_in_graph``
        (batch-norm calls in the graph ``torch.compile`` captures),
        ``bn_after_fold`` (BN modules left after ``fold_sequential``),
        ``err_fold`` / ``err_torch`` (relative difference of the folded models'
        outputs from the BN model's on ``x``), and ``models``: the evaluation-mode
        ``"bn"`` model (a copy), ``"fold_sequential"`` and ``"fuse_conv_bn_eval"``.
    """
    model = copy.deepcopy(model).eval()
    folded = fold_sequential(model).eval()
    fused = fuse_with_torch(model)
    gm = captured_graph(model, x)
    y = model(x)
    bn_types = nn.modules.batchnorm._BatchNorm
    return dict(bn_layers=sum(isinstance(m, bn_types) for m in model.modules()),
                bn_in_graph=_count_batch_norm(gm),
                bn_after_fold=sum(isinstance(m, bn_types) for m in folded.modules()),
                err_fold=relative_error(folded(x).numpy(), y.numpy()),
                err_torch=relative_error(fused(x).numpy(), y.numpy()),
                models={"bn": model, "fold_sequential": folded, "fuse_conv_bn_eval": fused})
