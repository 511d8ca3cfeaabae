"""Tests for bncourse.experiments.ics: Santurkar et al.'s gradient-based internal covariate shift."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from bncourse.experiments.ics import ICS_ROWS, gradient_change, ics_probe, run_ics
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_mlp
from bncourse.lab.training import train
from bncourse.noisy_bn import NoisyBatchNorm1d


def _half_mse(out, y):
    return 0.5 * ((out - y) ** 2).sum() / out.shape[0]


def test_two_layer_linear_network_matches_the_closed_form():
    # out = x W1^T W2^T, L = ||out - y||^2 / (2N):
    #   G2 = R^T H / N,  G1 = (R W2)^T x / N,  with H = x W1^T, R = H W2^T - y;
    #   G2' is G2 recomputed with W1 - lr * G1.
    rng = np.random.default_rng(0)
    n, d, h, k, lr = 12, 5, 4, 3, 0.3
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, k))
    w1, w2 = rng.normal(size=(h, d)), rng.normal(size=(k, h))

    def g2_of(w1):
        hid = x @ w1.T
        r = hid @ w2.T - y
        return r.T @ hid / n, (r @ w2).T @ x / n

    g2, g1 = g2_of(w1)
    g2_after, _ = g2_of(w1 - lr * g1)

    net = nn.Sequential(nn.Linear(d, h, bias=False), nn.Linear(h, k, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[1].weight.copy_(torch.from_numpy(w2))
    r = run_ics(net, torch.from_numpy(x), torch.from_numpy(y), lr, loss_fn=_half_mse)
    assert r.layers == ["1"]
    want_l2 = np.linalg.norm(g2 - g2_after)
    np.testing.assert_allclose(r.l2, [want_l2], rtol=1e-12)
    np.testing.assert_allclose(r.relative, [want_l2 / np.linalg.norm(g2)], rtol=1e-12)
    np.testing.assert_allclose(
        r.cosine, [np.sum(g2 * g2_after) / np.linalg.norm(g2) / np.linalg.norm(g2_after)],
        rtol=1e-12)
    np.testing.assert_allclose(r.grad_norm, [np.linalg.norm(g2)], rtol=1e-12)


def _functional_ics(model, x, y, lr):
    """Independent re-derivation with torch.func: parameter dicts, no in-place updates."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def grads(p):
        p = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        loss = F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)
        return dict(zip(p, torch.autograd.grad(loss, list(p.values()))))

    g = grads(params)
    rows = []
    weight_names = [n for n in names if n.endswith("weight") and (n.startswith("fc")
                                                                 or n.startswith("out"))]
    for wname in weight_names[1:]:
        k = names.index(wname)
        moved = {n: (params[n] - lr * g[n] if i < k else params[n]) for i, n in enumerate(names)}
        g_after = grads(moved)[wname]
        a, b = g[wname], g_after
        rows.append([float(torch.linalg.vector_norm(a - b)),
                     float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a)),
                     float(F.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1)))])
    return np.array(rows).T


@pytest.mark.parametrize("bn", ["none", "before", "after"])
def test_sigmoid_mlp_matches_a_functional_rederivation_in_float64(bn):
    net = make_mlp(10, hidden=(7, 6, 5), out_features=4, bn=bn, init_scale=0.7, seed=1).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=gen)
    r = run_ics(net, x, y, lr=0.8)
    assert r.layers == ["fc2", "fc3", "out"]
    want = _functional_ics(net, x, y, lr=0.8)
    np.testing.assert_allclose(r.as_array(), want, rtol=1e-10, atol=1e-14)
    assert np.all(r.l2 > 0)                      # the previous layers' step matters


def test_as_array_rows_follow_ics_rows():
    net = make_mlp(6, hidden=(5, 5), out_features=3, init_scale=0.5, seed=0)
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    r = run_ics(net, x, y, lr=0.5)
    arr = r.as_array()
    assert ICS_ROWS == ("l2", "relative", "cosine")
    for i, name in enumerate(ICS_ROWS):
        np.testing.assert_array_equal(arr[i], getattr(r, name))


def test_change_is_linear_in_a_small_learning_rate():
    # G' - G = -lr * (dG/dW_prev) G_prev + O(lr^2): halving lr halves l2 up to O(lr).
    net = make_mlp(6, hidden=(5, 5), out_features=3, bn="before", init_scale=0.5, seed=3).double()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.arange(16) % 3
    small, smaller = run_ics(net, x, y, lr=1e-4), run_ics(net, x, y, lr=5e-5)
    np.testing.assert_allclose(small.l2 / smaller.l2, 2.0, rtol=1e-3)
    np.testing.assert_allclose(smaller.cosine, 1.0, atol=1e-6)


def test_state_gradients_buffers_and_random_state_are_left_unchanged():
    net = make_mlp(6, hidden=(5, 5), out_features=3, bn="before", init_scale=0.5, seed=0,
                   dropout=0.3)
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    F.cross_entropy(net(x), y).backward()
    params = [p.detach().clone() for p in net.parameters()]
    grads = [p.grad.clone() for p in net.parameters()]
    buffers = [b.clone() for b in net.buffers()]
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    run_ics(net, x, y, lr=0.5)
    assert torch.equal(torch.get_rng_state(), rng)
    for p, before, g in zip(net.parameters(), params, grads):
        assert torch.equal(p, before) and torch.equal(p.grad, g)
    for b, before in zip(net.buffers(), buffers):
        assert torch.equal(b, before)
    assert net.training


@pytest.mark.parametrize("random_layer", ["dropout", "noisy"])
def test_random_layers_see_the_same_noise_in_both_gradients(random_layer):
    # With a vanishing step the two gradients must agree; fresh noise in the second
    # forward would make them differ by O(1).
    kw = dict(dropout=0.5) if random_layer == "dropout" else dict(
        bn="before", bn_layer=functools.partial(NoisyBatchNorm1d, shift=1.0, scale=(1.0, 3.0)))
    net = make_mlp(6, hidden=(8, 8), out_features=3, init_scale=0.5, seed=0, **kw).double()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(16) % 3
    r = run_ics(net, x, y, lr=1e-10)
    assert np.all(r.relative < 1e-7)


def test_probe_records_every_layer_and_leaves_training_unchanged():
    data = load_digits_split(seed=0)
    kw = dict(steps=20, batch_size=32, lr=0.5, seed=1, eval_every=10, progress=False)
    plain = train(make_mlp(64, hidden=(8, 8), bn="before", init_scale=0.1, seed=0), data, **kw)
    probed = train(make_mlp(64, hidden=(8, 8), bn="before", init_scale=0.1, seed=0), data,
                   probes={"ics": ics_probe(0.5)}, record_every=5, **kw)
    np.testing.assert_array_equal(plain.loss, probed.loss)
    assert probed.records["ics"].shape == (4, 3, 2)          # (records, rows, layers fc2, out)
    assert np.all(np.isfinite(probed.records["ics"]))


def test_gradient_change_matches_torch_and_a_worked_example():
    rng = np.random.default_rng(3)
    g, g2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    l2, rel, cos = gradient_change(g, g2)
    tg, tg2 = torch.from_numpy(g), torch.from_numpy(g2)
    assert l2 == pytest.approx(float(torch.linalg.matrix_norm(tg - tg2)), rel=1e-14)
    assert rel == pytest.approx(float(torch.linalg.matrix_norm(tg - tg2)
                                      / torch.linalg.matrix_norm(tg)), rel=1e-14)
    assert cos == pytest.approx(float(F.cosine_similarity(tg.reshape(1, -1),
                                                          tg2.reshape(1, -1))), rel=1e-12)
    assert gradient_change(tg, tg2) == pytest.approx((l2, rel, cos), rel=1e-15)
    assert gradient_change(np.zeros(3), np.ones(3))[1:] == pytest.approx((np.nan, np.nan),
                                                                         nan_ok=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=6, max_size=6),
       st.lists(st.floats(-10, 10), min_size=6, max_size=6),
       st.floats(0.1, 100))
def test_gradient_change_properties(a, b, scale):
    g, g2 = np.array(a), np.array(b)
    l2, rel, cos = gradient_change(g, g2)
    assert l2 >= 0 and l2 == pytest.approx(gradient_change(g2, g)[0])
    if np.linalg.norm(g) > 1e-3 and np.linalg.norm(g2) > 1e-3:
        assert -1 - 1e-12 <= cos <= 1 + 1e-12
        l2s, rels, coss = gradient_change(scale * g, scale * g2)
        assert l2s == pytest.approx(scale * l2, rel=1e-9, abs=1e-12)
        assert rels == pytest.approx(rel, rel=1e-9, abs=1e-12)
        assert coss == pytest.approx(cos, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("call,exc,match", [
    (lambda net, x, y: run_ics(net, x, y, lr=0.0), ValueError, "lr must be a positive"),
    (lambda net, x, y: run_ics(net, x, y, lr=True), TypeError, "lr must be"),
    (lambda net, x, y: run_ics(net, x, y[:3], lr=0.1), ValueError, "y must be a non-empty"),
    (lambda net, x, y: run_ics(net, x.numpy(), y, lr=0.1), TypeError, "x must be a torch"),
    (lambda net, x, y: run_ics("net", x, y, lr=0.1), TypeError, "model must be"),
    (lambda net, x, y: run_ics(nn.Linear(6, 3), x, y, lr=0.1), ValueError,
     "at least two Linear/Conv layers"),
    (lambda net, x, y: ics_probe(-1.0), ValueError, "ics_probe: lr must be"),
    (lambda net, x, y: gradient_change(np.ones(3), np.ones(4)), ValueError,
     r"g_after must be the shape of g \(3,\)"),
    (lambda net, x, y: gradient_change([1.0], np.ones(1)), TypeError, "g must be"),
])
def test_bad_input_raises_with_a_message(call, exc, match):
    net = make_mlp(6, hidden=(5,), out_features=3, seed=0)
    x, y = torch.randn(8, 6), torch.arange(8) % 3
    with pytest.raises(exc, match=match):
        call(net, x, y)
