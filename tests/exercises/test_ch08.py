"""Tests for bncourse.exercises.ch08: references and plain solutions pass, mistakes get hints."""

import json
import pathlib

import numpy as np
import pytest

from bncourse.exercises import get_exercise
from bncourse.exercises.ch08 import EXERCISES, NOTEBOOK

IDS = [ex.id for ex in EXERCISES]
ROOT = pathlib.Path(__file__).resolve().parents[2]


# Independent learner-style solutions (not bncourse's code).
def recalibrate_stats(batches, method):
    axes = (0,) + tuple(range(2, batches[0].ndim))
    if method == "exact":
        values = np.concatenate(batches)
        return values.mean(axis=axes), values.var(axis=axes, ddof=1)
    means = [b.mean(axis=axes) for b in batches]
    variances = [b.var(axis=axes, ddof=1) for b in batches]
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def dropout_bn_std_ratio(x, keep):
    mean_sq = np.mean(x * x, axis=0)
    mean = np.mean(x, axis=0)
    var_test = mean_sq - mean * mean
    var_train = mean_sq / keep - mean * mean
    return np.sqrt(var_test / var_train)


def linear_std_ratio(a, weight, keep):
    z = a @ weight.T
    var_test = np.mean((z - z.mean(axis=0)) ** 2, axis=0)
    extra = sum((1.0 / keep - 1.0) * weight[:, i] ** 2 * np.mean(a[:, i] ** 2)
                for i in range(a.shape[1]))
    return np.sqrt(var_test / (var_test + extra))


SOLUTIONS = {"ch08-recalibrate-stats": recalibrate_stats, "ch08-variance-shift": dropout_bn_std_ratio,
             "ch08-shift-through-linear": linear_std_ratio}


def test_recalibration_cases_cover_both_methods_ranks_and_unequal_batches():
    ex = get_exercise("ch08-recalibrate-stats")
    cases = ex.cases("all")
    assert {c.args["method"] for c in cases} == {"exact", "cumulative"}
    assert {c.args["batches"][0].ndim for c in cases} == {2, 3, 4}
    assert any(len({len(b) for b in c.args["batches"]}) > 1 for c in ex.cases("visible"))


def test_variance_shift_oracle_reduces_to_sqrt_keep_for_centred_data():
    ex = get_exercise("ch08-variance-shift")
    case = ex.cases("visible")[0]
    x = case.args["x"] - case.args["x"].mean(axis=0)
    np.testing.assert_allclose(ex.expected(x, 0.3), np.sqrt(0.3), rtol=1e-12)


def test_enumeration_oracle_agrees_with_the_closed_form_on_uncorrelated_centred_units():
    # With independent zero-mean units the variance ratio is keep for every output unit.
    ex = get_exercise("ch08-shift-through-linear")
    rng = np.random.default_rng(0)
    a = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])   # uncorrelated, mean 0
    weight = rng.normal(size=(3, 2))
    np.testing.assert_allclose(ex.expected(a, weight, 0.4), np.sqrt(0.4), rtol=1e-12)


def test_notebook_stubs_are_the_registered_ones_without_outputs():
    # test_exercises.py runs each notebook stub through check() and checks the cell that
    # follows it; this ties those stubs to the registered ones.
    path = ROOT / NOTEBOOK
    if not path.exists():
        pytest.skip("chapter notebook not present")
    cells = json.loads(path.read_text())["cells"]
    for ex in EXERCISES:
        (stub,) = [c for c in cells if ex.tag in c.get("metadata", {}).get("tags", [])]
        assert "".join(stub["source"]).strip() == ex.default_stub().strip(), ex.id
        assert not stub.get("outputs"), ex.id
