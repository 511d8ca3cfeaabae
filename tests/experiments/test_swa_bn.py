"""Tests for bncourse.experiments.swa_bn."""

from bncourse.experiments.swa_bn import run_swa_bn


def test_averaged_weights_need_update_bn(digits):
    out = run_swa_bn(digits, steps=300, lr=0.3, decay=0.995, seed=0)
    assert out["ema_update_bn"] > out["ema_last"] + 0.1
    assert out["swa_update_bn"] > out["swa_last"]
    assert out["var_error"]["ema_last"] > out["var_error"]["ema_buffers"] > 0
