"""Tests for bncourse.experiments.drift: percentiles on a fixed batch and their step-to-step drift."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.experiments.drift import percentile_drift, reference_percentiles, unit_percentiles
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_cnn, make_mlp
from bncourse.lab.training import train


def test_unit_percentiles_match_torch_quantile(rng):
    z = rng.normal(size=(37, 5))
    q = (15, 50, 85)
    want = torch.quantile(torch.from_numpy(z), torch.tensor(q, dtype=torch.float64) / 100, dim=0)
    np.testing.assert_allclose(unit_percentiles(z, q), want.numpy(), rtol=1e-13, atol=1e-14)
    assert unit_percentiles(z[:, 0], q).shape == (3,)


def test_percentile_drift_matches_an_explicit_loop(rng):
    p = rng.normal(size=(6, 3, 4))
    total, count = 0.0, 0
    for t in range(5):
        for i in range(3):
            for c in range(4):
                total += abs(p[t + 1, i, c] - p[t, i, c])
                count += 1
    assert percentile_drift(p) == pytest.approx(total / count, rel=1e-14)
    one_unit = np.mean(np.abs(np.diff(p[:, :, 0], axis=0)))
    assert percentile_drift(p[:, :, 0]) == pytest.approx(one_unit, rel=1e-14)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(-5, 5), st.floats(0.1, 10))
def test_drift_ignores_a_constant_offset_and_scales_with_the_values(seed, offset, scale):
    p = np.random.default_rng(seed).normal(size=(5, 3, 2))
    d = percentile_drift(p)
    assert percentile_drift(p + offset) == pytest.approx(d, rel=1e-9, abs=1e-12)
    assert percentile_drift(scale * p) == pytest.approx(scale * d, rel=1e-9, abs=1e-12)
    assert percentile_drift(np.repeat(p[:1], 4, axis=0)) == 0.0


def _manual_act3_input(net, x):
    """Forward by hand to the input of act3 (training mode, BN with the batch's statistics)."""
    h = x
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                   # as train() does, so the sums agree bitwise
    try:
        return _forward_to_act3(net, h)
    finally:
        torch.set_num_threads(threads)


def _forward_to_act3(net, h):
    with torch.no_grad():
        for name, module in net.named_children():
            if name == "act3":
                return h
            h = module(h)
    raise AssertionError("no act3")


@pytest.mark.parametrize("bn", ["none", "before"])
def test_probe_at_step_zero_equals_a_manual_forward_and_leaves_training_unchanged(bn):
    data = load_digits_split(seed=0)
    x_ref = data.x_train[:100]
    kw = dict(steps=12, batch_size=32, lr=0.5, seed=1, eval_every=6, progress=False)
    fresh = make_mlp(64, hidden=(8, 8, 8), bn=bn, init_scale=0.3, seed=0)
    want = unit_percentiles(_manual_act3_input(fresh, x_ref).double().numpy(), (15, 50, 85))
    plain = train(make_mlp(64, hidden=(8, 8, 8), bn=bn, init_scale=0.3, seed=0), data, **kw)
    probed = train(make_mlp(64, hidden=(8, 8, 8), bn=bn, init_scale=0.3, seed=0), data,
                   probes={"p": reference_percentiles("act3", x_ref)}, record_every=3, **kw)
    np.testing.assert_array_equal(plain.loss, probed.loss)
    assert probed.records["p"].shape == (4, 3, 8)
    np.testing.assert_array_equal(probed.records["p"][0], want)
    assert not np.allclose(probed.records["p"][0], probed.records["p"][-1])


def test_probe_called_directly_leaves_buffers_and_random_state_alone():
    net = make_mlp(64, hidden=(8, 8, 8), bn="before", init_scale=0.3, seed=0, dropout=0.2)
    probe = reference_percentiles("act3", torch.randn(20, 64))
    buffers = [b.clone() for b in net.buffers()]
    rng = torch.get_rng_state()
    first = probe(net, None)
    assert torch.equal(torch.get_rng_state(), rng)
    for b, before in zip(net.buffers(), buffers):
        assert torch.equal(b, before)
    assert first.shape == (3, 8)


def test_probe_pools_the_positions_of_each_channel_of_a_conv_output():
    net = make_cnn(channels=(4,), seed=0)
    x_ref = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    probe = reference_percentiles(net.conv1, x_ref, q=(10, 90), where="output")
    got = probe(net, None)
    with torch.no_grad():
        z = net.conv1(x_ref)                                    # (5, 4, 8, 8)
    want = np.stack([np.percentile(z[:, c].reshape(-1).numpy().astype(np.float64), (10, 90))
                     for c in range(4)], axis=1)
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: unit_percentiles(np.zeros((0, 3))), ValueError, "z must be a non-empty"),
    (lambda: unit_percentiles(np.zeros((2, 3, 4))), ValueError, "z must be"),
    (lambda: unit_percentiles(np.array([[np.nan]])), ValueError, "z must be finite"),
    (lambda: unit_percentiles(np.zeros((2, 3)), q=(50, 101)), ValueError,
     r"q must be .*\[0, 100\]"),
    (lambda: percentile_drift(np.zeros((1, 3))), ValueError, "T >= 2 records"),
    (lambda: percentile_drift(np.zeros(5)), ValueError, "p must be an array"),
    (lambda: percentile_drift(np.array([[0.0], [np.nan]])), ValueError, "p must be finite"),
    (lambda: reference_percentiles("act3", np.zeros((3, 64))), TypeError, "x_ref must be"),
    (lambda: reference_percentiles("act3", torch.zeros(3, 64), where="middle"), ValueError,
     "where must be 'input' or 'output'"),
    (lambda: reference_percentiles(3, torch.zeros(3, 64)), TypeError, "module must be"),
    (lambda: reference_percentiles("act9", torch.zeros(3, 64))(make_mlp(64), None), ValueError,
     "module must be a submodule name"),
])
def test_bad_input_raises_with_a_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
