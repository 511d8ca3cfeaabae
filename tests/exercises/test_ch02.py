"""Tests for bncourse.exercises.ch02: references pass, stubs and mistakes fail with their hints."""

import json
import pathlib

import numpy as np
import pytest

from bncourse.exercises import get_exercise
from bncourse.exercises.ch02 import EXERCISES, NOTEBOOK

IDS = [ex.id for ex in EXERCISES]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _axes(x):
    return (0, *range(2, x.ndim))


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def channel_stats(x):
    return x.mean(axis=_axes(x)), x.var(axis=_axes(x))


def bn_forward_train(x, gamma, beta, eps):
    view = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=_axes(x), keepdims=True)
    var = x.var(axis=_axes(x), keepdims=True)
    return gamma.reshape(view) * (x - mean) / np.sqrt(var + eps) + beta.reshape(view)


def undo_params(x, eps):
    return np.sqrt(x.var(axis=_axes(x)) + eps).astype(x.dtype), x.mean(axis=_axes(x))


SOLUTIONS = {"ch02-channel-stats": channel_stats, "ch02-bn-forward-train": bn_forward_train,
             "ch02-undo-params": undo_params}


@pytest.mark.parametrize("exercise_id", IDS)
def test_hidden_cases_cover_more_shapes_than_the_visible_ones(exercise_id):
    ex = get_exercise(exercise_id)
    shapes = lambda which: {c.args["x"].shape for c in ex.cases(which)}  # noqa: E731
    assert shapes("hidden") - shapes("visible")
    assert {len(s) for s in shapes("all")} == {2, 3, 4, 5}


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
