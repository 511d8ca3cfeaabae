"""Tests for bncourse.experiments.causal_leakage: exactly zero for LN/RMSNorm/eval BN, not for train BN."""

import numpy as np
import pytest

from bncourse.experiments.causal_leakage import SETTINGS, run_causal_leakage


@pytest.fixture(scope="module")
def result():
    return run_causal_leakage(batch_size=4, seq_len=6, seed=0)


def test_layer_and_rms_norm_leak_exactly_nothing(result):
    assert list(result.cuts) == [1, 2, 3, 4, 5]
    for name in ("LN", "RMSNorm", "BN, eval mode"):
        assert np.all(result.leakage[name] == 0.0), name       # exact, not approximately


def test_batch_norm_in_training_mode_leaks_at_every_cut(result):
    leak = result.leakage["BN, train mode"]
    assert leak.shape == (5,)
    assert np.all(leak > 1e-3 * result.scale["BN, train mode"])


def test_other_seeds_and_sizes_agree():
    r = run_causal_leakage(settings={"LN": SETTINGS["LN"], "BN": ("bn", True)}, batch_size=2,
                           seq_len=4, depth=1, seed=5)
    assert np.all(r.leakage["LN"] == 0.0) and np.all(r.leakage["BN"] > 0.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"run_causal_leakage: seq_len must be an int >= 2"):
        run_causal_leakage(seq_len=1)
    with pytest.raises(ValueError, match=r"run_causal_leakage: settings must be a non-empty dict"):
        run_causal_leakage(settings={})


def test_verdict_rule(result):
    from bncourse.experiments.causal_leakage import LeakageResult, leakage_verdict

    assert leakage_verdict(result) == "supported"
    leaky_ln = dict(result.leakage, LN=result.leakage["LN"] + 1e-300)
    assert leakage_verdict(LeakageResult(result.cuts, leaky_ln, result.scale)) == "not supported"
    with pytest.raises(ValueError, match=r"leakage_verdict: leaking must be one of"):
        leakage_verdict(result, leaking="GN")
