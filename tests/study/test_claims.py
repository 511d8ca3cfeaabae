"""The claims registry: the ledger as data, consistent with the experiment registry."""

import numpy as np
import pytest

from bncourse.study.claims import CLAIMS, KINDS, Claim, get_claim, paired_effects
from bncourse.study.experiments import SCALES, registry
from bncourse.verdicts import decide


def test_ids_are_the_ledger_numbers_with_positive_thresholds():
    assert sorted(CLAIMS) == list(range(1, 16))
    for cid, claim in CLAIMS.items():
        assert claim.id == cid and isinstance(claim, Claim)
        assert claim.statement.endswith((".", "?)", "a."))
        assert claim.threshold > 0 and np.isfinite(claim.threshold)
        assert claim.alternative in ("greater", "less") and claim.kind in KINDS
        assert claim.experiments and claim.metric and claim.settings
        assert claim.resolution is None or claim.resolution > 0
        if claim.contrast is not None:
            key, claimed, baseline = claim.contrast
            assert key not in claim.settings and claimed != baseline
    assert {c.id for c in CLAIMS.values() if c.kind == "demonstration"} == {8, 10}


def test_statements_follow_the_outline():
    assert get_claim(14).statement == "Normalizing the inputs speeds up gradient descent."
    assert get_claim("6").statement == "BN works by reducing internal covariate shift."


def test_registered_experiments_and_claims_point_at_each_other():
    reg = registry()
    named = {n for c in CLAIMS.values() for n in c.experiments}
    for name, exp in reg.items():
        if not exp.claims:
            continue                                   # toy experiments of the tests
        assert name in named
        for cid in exp.claims:
            assert name in CLAIMS[cid].experiments
            claim = CLAIMS[cid]
            for scale in SCALES:
                keys = set().union(*(s.keys() for s in exp.settings[scale]))
                assert set(claim.settings) <= keys, (name, scale)
                if claim.contrast:
                    arms = {s[claim.contrast[0]] for s in exp.settings[scale]}
                    assert set(claim.contrast[1:]) <= arms
    # the claims whose experiments are registered; the others are added with the study runs
    covered = {cid for cid, c in CLAIMS.items() if all(n in reg for n in c.experiments)}
    assert {8, 10, 13, 14, 15} <= covered


def test_study_scale_has_at_least_ten_seeds():
    for exp in registry().values():
        if exp.claims:
            assert len(exp.seeds["study"]) >= 10, exp.name


def test_paired_effects_pairs_by_seed_and_setting():
    claim = get_claim(13)
    rows = []
    for act, seed, before, after in [("relu", 0, 0.90, 0.88), ("relu", 1, 0.91, 0.90),
                                     ("tanh", 0, 0.80, 0.85), ("relu", 2, 0.5, None)]:
        for bn, v in (("before", before), ("after", after)):
            if v is not None:
                rows.append(dict(setting={"activation": act, "bn": bn, "lr": 0.1},
                                 seed=seed, metric="test_accuracy", value=v))
    rows.append(dict(setting={"activation": "relu", "bn": "none", "lr": 0.1}, seed=0,
                     metric="test_accuracy", value=0.0))        # not an arm of the contrast
    rows.append(dict(setting={"activation": "gelu", "bn": "before", "lr": 0.1}, seed=0,
                     metric="test_accuracy", value=0.0))        # not a setting of the claim
    effects = paired_effects(claim, rows)
    assert set(effects) == {'{"activation":"relu","lr":0.1}', '{"activation":"tanh","lr":0.1}'}
    np.testing.assert_allclose(effects['{"activation":"relu","lr":0.1}'], [0.02, 0.01])
    np.testing.assert_allclose(effects['{"activation":"tanh","lr":0.1}'], [-0.05])


def test_paired_effects_without_contrast_and_a_decision():
    claim = get_claim(14)
    rows = [dict(setting={"dataset": "wine", "fraction": 0.8}, seed=s, metric="log10_speedup",
                 value=2.0 + 0.1 * s) for s in range(5)]
    (effects,) = paired_effects(claim, rows).values()
    v = decide(effects, claim.threshold, claim.alternative)
    assert v.label == "supported" and v.n == 5


def test_bad_input():
    with pytest.raises(ValueError, match=r"get_claim: claim_id must be one of \[1, 2"):
        get_claim(16)
    with pytest.raises(TypeError, match="get_claim: claim_id must be a ledger number"):
        get_claim("four")
    with pytest.raises(TypeError, match="paired_effects: claim must be a Claim"):
        paired_effects(14, [])
