"""Tests for bncourse.experiments.running_averages: every branch of the claim-9 rule."""

import pytest

from bncourse.experiments.running_averages import claim9_verdict

NS, PS, S = "not supported", "partly supported", "supported"


@pytest.mark.parametrize("ewa, cumulative, gains, expected", [
    (False, True, [PS, S], NS),          # not EWAs: whatever else holds
    (True, False, [NS, NS], S),          # EWAs and nothing better
    (True, True, [NS, NS], PS),          # another rule exists
    (True, False, [NS, S], PS),          # recomputed statistics are better somewhere
    (True, False, [PS], PS),
])
def test_claim9_rule(ewa, cumulative, gains, expected):
    assert claim9_verdict(ewa, cumulative, gains) == expected


@pytest.mark.parametrize("args, exc, match", [
    ((1, False, [NS]), TypeError, "claim9_verdict: default_is_ewa must be a bool"),
    ((True, None, [NS]), TypeError, "claim9_verdict: cumulative_available must be a bool"),
    ((True, False, []), ValueError, "claim9_verdict: gain_verdicts must be a non-empty list"),
    ((True, False, ["maybe"]), ValueError, "claim9_verdict: gain_verdicts must be"),
])
def test_claim9_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        claim9_verdict(*args)
