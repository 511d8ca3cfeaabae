"""Tests for bncourse.experiments.precision."""

import torch

from bncourse.experiments.precision import layer_dtypes, run_precision


def test_bn_runs_in_bfloat16_under_autocast_with_float32_accumulation(trained, source):
    net = trained[0]
    out = run_precision(net, source.x_test[:64])
    assert out["dtypes"]["norm1"] == (torch.bfloat16, torch.bfloat16)
    assert out["buffer_dtype"] == torch.float32
    assert out["bn_bf16"] < 4e-3 < out["one_pass_bf16"]
    assert out["two_pass_bf16"] > out["bn_bf16"]
    assert out["logits_bf16"] < 0.05 and out["agree_bf16"] > 0.9
    assert out["logits_cl"] < 1e-5 and out["out_cl"]
    assert layer_dtypes(net, source.x_test[:4], autocast=False)["norm1"] == \
        (torch.float32, torch.float32)
