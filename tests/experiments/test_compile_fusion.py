"""Tests for bncourse.experiments.compile_fusion."""

import torch

from bncourse.experiments.compile_fusion import fuse_with_torch, run_compile_fusion
from bncourse.lab.models import make_cnn


def _net():
    net = make_cnn(norm="bn", channels=(4, 8), bias_before_norm=False, seed=0)
    with torch.no_grad():
        net(torch.randn(64, 1, 8, 8))
    return net.eval()


def test_captured_graph_keeps_bn_and_folding_removes_it():
    out = run_compile_fusion(_net(), torch.randn(2, 1, 8, 8))
    assert out["bn_layers"] == out["bn_in_graph"] == 2 and out["bn_after_fold"] == 0
    assert out["err_fold"] < 1e-5 and out["err_torch"] < 1e-5
    assert set(out["models"]) == {"bn", "fold_sequential", "fuse_conv_bn_eval"}
    assert not out["models"]["bn"].training


def test_fuse_with_torch_leaves_identities():
    fused = fuse_with_torch(_net())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
