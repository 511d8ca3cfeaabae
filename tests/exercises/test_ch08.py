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
def mlp_layer_spec(in_features, hidden, out_features, activation, bn, dropout):
    layers = []
    sizes = [in_features, *hidden]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        block = {"none": [(activation,)],
                 "before": [("bn", fan_out), (activation,)],
                 "after": [(activation,), ("bn", fan_out)]}[bn]
        layers += [("linear", fan_in, fan_out), *block]
        if dropout:
            layers.append(("dropout", dropout))
    return layers + [("linear", sizes[-1], out_features)]


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


SOLUTIONS = {"ch08-layer-spec": mlp_layer_spec, "ch08-variance-shift": dropout_bn_std_ratio,
             "ch08-shift-through-linear": linear_std_ratio}


def test_layer_spec_cases_include_every_placement_and_no_hidden_layer():
    ex = get_exercise("ch08-layer-spec")
    cases = ex.cases("all")
    assert {c.args["bn"] for c in cases} == {"none", "before", "after"}
    assert any(c.args["hidden"] == () for c in ex.cases("hidden"))
    assert any(c.args["dropout"] > 0 for c in ex.cases("visible"))


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
