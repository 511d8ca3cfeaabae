"""Tests for bncourse.lab.probes: thinning an expensive probe to every n-th record."""

import numpy as np
import pytest

from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_mlp
from bncourse.lab.probes import every, measured
from bncourse.lab.training import grad_norms, train


def test_every_calls_the_probe_on_every_nth_call_only():
    calls = []

    def probe(model, batch):
        calls.append(batch)
        return np.array([[float(batch)]])

    wrapped = every(probe, 3)
    out = [wrapped(None, k) for k in range(7)]
    assert calls == [0, 3, 6]
    for k, v in enumerate(out):
        assert v.shape == (1, 1)
        assert (v[0, 0] == k) if k % 3 == 0 else np.isnan(v[0, 0])


def test_every_one_is_the_probe_itself():
    wrapped = every(lambda m, b: b * 2.0, 1)
    assert [float(wrapped(None, k)) for k in range(3)] == [0.0, 2.0, 4.0]


def test_in_training_the_thinned_probe_measures_at_multiples_of_n_times_record_every():
    data = load_digits_split(seed=0)
    kw = dict(steps=40, batch_size=32, lr=0.5, seed=0, eval_every=20, record_every=5,
              progress=False)
    dense = train(make_mlp(64, hidden=(8,), seed=0), data, probes={"g": grad_norms()}, **kw)
    thin = train(make_mlp(64, hidden=(8,), seed=0), data, probes={"g": every(grad_norms(), 4)},
                 **kw)
    steps, values = measured(thin.record_steps, thin.records["g"])
    assert steps.tolist() == [0, 20]
    np.testing.assert_array_equal(values, dense.records["g"][[0, 4]])
    np.testing.assert_array_equal(thin.loss, dense.loss)


def test_measured_keeps_rows_with_any_finite_value():
    v = np.array([[1.0, np.nan], [np.nan, np.nan], [np.nan, 2.0]])
    steps, rows = measured([0, 5, 10], v)
    assert steps.tolist() == [0, 10]
    np.testing.assert_array_equal(rows, v[[0, 2]])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: every(3, 2), TypeError, "every: probe must be a callable"),
    (lambda: every(lambda m, b: 0.0, 0), ValueError, "every: n must be a positive int, got 0"),
    (lambda: every(lambda m, b: 0.0, 2.0), TypeError, "every: n must be a positive int"),
    (lambda: measured([0, 1], np.zeros((3, 2))), ValueError, "values must be an array with 2 rows"),
])
def test_bad_input_raises_with_a_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
