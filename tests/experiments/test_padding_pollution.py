"""Tests for bncourse.experiments.padding_pollution: plain BN moves with the padding, masked BN and LN do not."""

import numpy as np
import pytest

from bncourse.experiments.padding_pollution import padding_mean_var, run_padding_pollution


def test_masked_bn_and_layer_norm_are_unaffected_and_bn_gets_worse():
    r = run_padding_pollution(lengths=(8, 5, 3), pad_to=(8, 16, 32), seed=1)
    np.testing.assert_array_equal(r.output_error["masked BN"], 0.0)
    np.testing.assert_array_equal(r.output_error["LN"], 0.0)
    err = r.output_error["BN"]
    assert err[0] > 0.1 and np.all(np.diff(err) > 0)
    np.testing.assert_allclose(r.real_fraction, 16 / np.array([24, 48, 96]))


def test_plain_bn_statistics_follow_the_zero_padding_formula():
    r = run_padding_pollution(seed=2)
    mean, var = padding_mean_var(r.real_fraction[:, None], r.true_mean, r.true_var)
    np.testing.assert_allclose(r.bn_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(r.bn_var, var, rtol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"run_padding_pollution: pad_to must be non-empty, every "
                                         r"length >= the longest sequence 12"):
        run_padding_pollution(pad_to=(10,))


def test_verdict_rule():
    import dataclasses

    from bncourse.experiments.padding_pollution import padding_verdict

    r = run_padding_pollution()
    assert padding_verdict(r) == "supported"
    assert padding_verdict(r, threshold=100.0) == "not supported"
    broken = dataclasses.replace(r, output_error=dict(r.output_error, LN=r.output_error["LN"] + 1))
    assert padding_verdict(broken) == "not supported"
    with pytest.raises(TypeError, match=r"padding_verdict: result must be a PaddingResult"):
        padding_verdict({})
