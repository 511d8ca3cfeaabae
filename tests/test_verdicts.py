"""bncourse.verdicts against scipy and statsmodels on constructed cases."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from bncourse.verdicts import COMBINED_LABELS, LABELS, Verdict, combine, decide, describe


def exact_sample(n, mean, sd):
    """n values whose sample mean and sample std (ddof=1) are exactly ``mean`` and ``sd``."""
    z = np.random.default_rng(n).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


# (effects, threshold, expected label): one constructed case per label
CASES = [
    (exact_sample(10, 0.05, 0.01), 0.02, "supported"),
    (exact_sample(10, 0.01, 0.005), 0.02, "partly supported"),
    (exact_sample(10, -0.03, 0.01), 0.02, "contradicted"),
    (exact_sample(20, 0.0, 0.005), 0.02, "no meaningful effect"),
    (exact_sample(4, 0.01, 0.05), 0.02, "inconclusive"),
]


@pytest.mark.parametrize("effects, threshold, label", CASES, ids=[c[2] for c in CASES])
def test_each_label_against_scipy_and_statsmodels(effects, threshold, label):
    v = decide(effects, threshold)
    assert v.label == label
    test = stats.ttest_1samp(effects, 0.0)
    ci = test.confidence_interval(0.95)
    assert v.mean == pytest.approx(np.mean(effects), rel=1e-12)
    assert (v.low, v.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert v.p_value == pytest.approx(test.pvalue, rel=1e-12)
    p_tost = ttost_paired(effects, np.zeros_like(effects), -threshold, threshold)[0]
    assert v.p_equivalence == pytest.approx(p_tost, rel=1e-10)
    assert v.method == "t" and v.n == len(effects) and v.high > v.low


def test_labels_cover_every_case_and_are_the_api_list():
    assert LABELS == ("supported", "partly supported", "contradicted", "no meaningful effect",
                      "inconclusive")
    assert {c[2] for c in CASES} == set(LABELS)
    assert COMBINED_LABELS[-1] == "depends"


@pytest.mark.parametrize("effects, threshold, label", CASES, ids=[c[2] for c in CASES])
def test_less_is_the_mirror_of_greater(effects, threshold, label):
    v = decide(-effects, threshold, alternative="less")
    assert v.label == label
    assert v.mean == pytest.approx(-np.mean(effects))
    assert v.low < v.mean < v.high
    assert v.direction == decide(effects, threshold).direction


def test_interval_level_follows_confidence():
    x = exact_sample(8, 0.02, 0.02)
    wide, narrow = decide(x, 0.01, confidence=0.99), decide(x, 0.01, confidence=0.8)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(0.99)
    assert (wide.low, wide.high) == pytest.approx((ci.low, ci.high))
    assert narrow.high - narrow.low < wide.high - wide.low


def test_zero_width_effect_uses_the_sign_test_and_the_resolution():
    # an effect read off a grid: every seed gains exactly one grid step of 0.25 decades
    few, many = decide([0.25] * 3, 0.2, resolution=0.25), decide([0.25] * 8, 0.2,
                                                                   resolution=0.25)
    for v in (few, many):
        assert v.method == "sign"
        assert v.high - v.low == pytest.approx(0.25)            # never a zero-width interval
        assert v.p_value == pytest.approx(stats.binomtest(v.n, v.n, 0.5).pvalue)
    assert few.label == "inconclusive" and math.isinf(few.mde)  # 2 * 0.5**3 = 0.25
    # 8 seeds agree: the direction is shown, but the interval [0.125, 0.375] reaches past 0
    # only in the claimed direction and the mean reaches the threshold
    assert many.label == "supported" and many.mde == 0.25
    assert decide([0.25] * 8, 0.5, resolution=0.25).label == "partly supported"
    assert decide([-0.25] * 8, 0.5, resolution=0.25).label == "contradicted"
    # exactly zero everywhere, with a fine resolution: equivalence by the signs
    assert decide([0.0] * 6, 0.01, resolution=0.001).label == "no meaningful effect"
    # a resolution too coarse for the bounds cannot show equivalence
    assert decide([0.0] * 6, 0.01, resolution=0.05).label == "inconclusive"


def test_zero_variance_without_resolution_is_an_error():
    with pytest.raises(ValueError, match=r"decide: resolution must be .*zero width.*got None"):
        decide([0.1, 0.1, 0.1], 0.05)


def test_three_against_twenty_seeds():
    # the same population effect (mean 0.02, sd 0.02) and threshold, two sample sizes
    three, twenty = exact_sample(3, 0.02, 0.02), exact_sample(20, 0.02, 0.02)
    v3, v20 = decide(three, 0.015), decide(twenty, 0.015)
    power = TTestPower()
    for v in (v3, v20):
        d80 = power.solve_power(nobs=v.n, alpha=0.05, power=0.8, alternative="two-sided")
        assert v.mde == pytest.approx(d80 * 0.02, rel=1e-6)
    assert v3.mde > 4 * v20.mde                          # t-factor 4.3 vs 2.1, sqrt(3) vs sqrt(20)
    assert v3.label == "inconclusive" and v3.underpowered
    assert v20.label == "supported" and not v20.underpowered
    assert "below the smallest effect 3 seeds detect" in describe(v3)
    assert "below the smallest effect" not in describe(v20)


def _with_p(v: Verdict, p: float, p_eq: float = 1.0) -> Verdict:
    return dataclasses.replace(v, p_value=p, p_equivalence=p_eq)


def test_holm_on_known_p_values():
    base = decide(exact_sample(10, 0.05, 0.01), 0.02)          # direction +1, reaches 0.02
    p = [0.01, 0.04, 0.03]
    reject, adjusted = multipletests(p, alpha=0.05, method="holm")[:2]
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])       # Holm by hand
    assert list(reject) == [True, False, False]
    # every setting alone would be supported; after Holm only the first is shown
    assert combine([_with_p(base, q) for q in p]) == "partly supported"
    assert combine([_with_p(base, 0.001), _with_p(base, 0.002)]) == "supported"
    # two settings at p = 0.03 each: shown alone, not after correction (0.06 > 0.05)
    pair = [_with_p(base, 0.03), _with_p(base, 0.03)]
    assert combine(pair[:1]) == "supported" and combine(pair) == "inconclusive"


def test_combine_depends_only_when_corrected_directions_disagree():
    up = decide(exact_sample(10, 0.05, 0.01), 0.02)
    down = decide(exact_sample(10, -0.05, 0.01), 0.02)
    assert combine([up, down]) == "depends"
    # each setting alone shown at p = 0.03, in opposite directions: after Holm (0.06) neither
    # is, so they do not disagree
    marginal = [_with_p(up, 0.03), _with_p(down, 0.03)]
    assert [combine([v]) for v in marginal] == ["supported", "contradicted"]
    assert combine(marginal) == "inconclusive"
    assert combine([up, up, _with_p(down, 0.04)]) == "depends"   # Holm's last step is at alpha
    assert combine([down, down]) == "contradicted"


def test_combine_equivalence_and_inconclusive():
    flat = decide(exact_sample(20, 0.0, 0.005), 0.02)
    unsure = decide(exact_sample(4, 0.01, 0.05), 0.02)
    assert combine([flat, flat]) == "no meaningful effect"
    assert combine([flat, unsure]) == "inconclusive"
    # equivalence p-values are corrected too
    assert combine([_with_p(flat, 0.5, 0.03), _with_p(flat, 0.5, 0.03)]) == "inconclusive"
    for case in CASES:
        v = decide(case[0], case[1])
        assert combine([v]) == v.label                          # one setting: its own label


def test_describe_in_percentage_points_and_other_units():
    v = decide(exact_sample(10, 0.05, 0.01), 0.02)
    text = describe(v)
    assert text.startswith(f"{100 * v.mean:+.2f} percentage points (95% interval "
                           f"{100 * v.low:+.2f} to {100 * v.high:+.2f}, 10 seeds")
    assert describe(v, scale=1.0, unit="decades", digits=1).startswith("+0.1 decades")
    assert "sign test" in describe(decide([0.25] * 8, 0.2, resolution=0.25), scale=1,
                                   unit="decades")


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(effects=0.1), TypeError, r"decide: effects must be a 1-D sequence"),
    (dict(effects="abc"), TypeError, r"decide: effects must be"),
    (dict(effects=[[0.1, 0.2], [0.3, 0.4]]), ValueError, r"decide: effects must be 1-D.*\(2, 2\)"),
    (dict(effects=[0.1]), ValueError, r"at least 2 paired effects.*got 1"),
    (dict(effects=[0.1, float("nan"), 0.2]), ValueError, r"finite.*1 non-finite"),
    (dict(threshold=0.0), ValueError, r"decide: threshold must be a finite number > 0, got 0.0"),
    (dict(threshold=-1), ValueError, r"threshold must be a finite number > 0"),
    (dict(threshold=True), TypeError, r"threshold must be a real number, got bool"),
    (dict(threshold="0.1"), TypeError, r"threshold must be a real number, got str"),
    (dict(alternative="two-sided"), ValueError, r"alternative must be 'greater' or 'less'"),
    (dict(confidence=1.0), ValueError, r"confidence must be a number in \(0, 1\), got 1.0"),
    (dict(resolution=-0.1), ValueError, r"resolution must be a finite number > 0"),
])
def test_bad_input_to_decide(kwargs, exc, pattern):
    args = dict(effects=[0.1, 0.2, 0.3], threshold=0.05) | kwargs
    with pytest.raises(exc, match=pattern):
        decide(**args)


def test_bad_input_to_combine_and_describe():
    v = decide([0.1, 0.2, 0.3], 0.05)
    with pytest.raises(ValueError, match="combine: verdicts must be a non-empty list"):
        combine([])
    with pytest.raises(TypeError, match="combine: verdicts must be a list or tuple"):
        combine(v)
    with pytest.raises(TypeError, match=r"combine: verdicts\[1\] must be a Verdict.*got str"):
        combine([v, "supported"])
    with pytest.raises(ValueError, match="combine: verdicts must be verdicts at one confidence"):
        combine([v, decide([0.1, 0.2, 0.3], 0.05, confidence=0.9)])
    with pytest.raises(TypeError, match="describe: verdict must be a Verdict"):
        describe("supported")
    with pytest.raises(ValueError, match="describe: digits must be an int >= 0"):
        describe(v, digits=-1)


def test_inputs_are_not_modified():
    x = exact_sample(6, 0.02, 0.01)
    before = x.copy()
    decide(x, 0.01, alternative="less")
    np.testing.assert_array_equal(x, before)
