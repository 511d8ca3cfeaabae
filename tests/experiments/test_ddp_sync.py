"""Tests for bncourse.experiments.ddp_sync (real gloo processes)."""

import torch
from torch import nn

from bncourse.experiments.ddp_sync import convert_to_course_sync, run_ddp_sync
from bncourse.sync_bn import SyncBatchNorm


def test_convert_keeps_state_and_dtype():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    with torch.no_grad():
        model(torch.randn(8, 3, dtype=torch.float64))
    sync = convert_to_course_sync(model)
    assert isinstance(sync[1], SyncBatchNorm) and isinstance(model[1], nn.BatchNorm1d)
    for key, value in model.state_dict().items():
        assert torch.equal(sync.state_dict()[key], value), key
    assert sync[1].weight.dtype == torch.float64


def test_ddp_with_sync_bn_equals_one_step_on_the_whole_batch():
    out = run_ddp_sync(world_size=2, n=16, features=6, seed=0)
    assert "GPU" in out["torch_error"]
    assert out["weights"]["course_sync"] < 1e-12 and out["running"]["course_sync"] < 1e-12
    assert out["weights"]["local"] > 1e-3 and out["running"]["local"] > 1e-3
    assert out["ranks_agree"]["course_sync"] and not out["ranks_agree"]["local"]
