"""Tests for bncourse.experiments.landscape: loss and gradient along the gradient direction."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bncourse.experiments.landscape import SMOOTHNESS_ROWS, gradient_path, smoothness_probe
from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_mlp
from bncourse.lab.training import train
from bncourse.noisy_bn import NoisyBatchNorm1d


class Quadratic(nn.Module):
    """f(w) = w^T H w / 2 (the input is ignored): every quantity has a closed form."""

    def __init__(self, h, w):
        super().__init__()
        self.register_buffer("h", torch.as_tensor(h, dtype=torch.float64))
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64).clone())

    def forward(self, x):
        return 0.5 * self.w @ self.h @ self.w


def _identity_loss(out, y):
    return out


def _closed_form(h, w, eta):
    g = h @ w
    path = w[None, :] - eta[:, None] * g[None, :]
    loss = 0.5 * np.einsum("ki,ij,kj->k", path, h, path)
    change = eta * np.linalg.norm(h @ g)                    # grad(w - eta g) - g = -eta H g
    return 0.5 * w @ h @ w, np.linalg.norm(g), loss, change


def _spd(seed, d):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q @ np.diag(10.0 ** rng.uniform(-1, 1, size=d)) @ q.T, rng.normal(size=d)


def _dummy_batch():
    return torch.zeros(1, 1), torch.zeros(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadratic_matches_the_closed_form(seed):
    h, w = _spd(seed, 4)
    eta = np.array([0.01, 0.1, 0.5, 1.0, 3.0])
    path = gradient_path(Quadratic(h, w), *_dummy_batch(), eta, loss_fn=_identity_loss)
    loss0, gnorm, loss, change = _closed_form(h, w, eta)
    assert path.loss0 == pytest.approx(loss0, rel=1e-13)
    assert path.grad_norm == pytest.approx(gnorm, rel=1e-13)
    np.testing.assert_allclose(path.loss, loss, rtol=1e-12)
    np.testing.assert_allclose(path.grad_change, change, rtol=1e-12)
    np.testing.assert_array_equal(path.step_sizes, eta)
    assert path.loss_variation == pytest.approx(max(loss.max(), loss0) - min(loss.min(), loss0),
                                                rel=1e-12)
    assert path.gradient_change == pytest.approx(change.max(), rel=1e-12)
    # along the gradient of a quadratic, change / (eta ||g||) = ||H g|| / ||g|| for every eta
    assert path.effective_smoothness == pytest.approx(np.linalg.norm(h @ h @ w)
                                                      / np.linalg.norm(h @ w), rel=1e-12)
    np.testing.assert_array_equal(path.summary(), [path.loss_variation, path.gradient_change,
                                                   path.effective_smoothness, path.grad_norm])
    assert SMOOTHNESS_ROWS == ("loss_variation", "gradient_change", "effective_smoothness",
                               "grad_norm")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6))
def test_effective_smoothness_of_a_quadratic_lies_in_its_eigenvalue_range(seed, d):
    h, w = _spd(seed, d)
    if np.linalg.norm(h @ w) < 1e-8:
        return
    path = gradient_path(Quadratic(h, w), *_dummy_batch(), [0.2, 1.0], loss_fn=_identity_loss)
    lam = np.linalg.eigvalsh(h)
    assert lam[0] * (1 - 1e-9) <= path.effective_smoothness <= lam[-1] * (1 + 1e-9)


def test_mlp_matches_a_manual_computation_in_float64():
    net = make_mlp(10, hidden=(7, 6), out_features=4, bn="before", init_scale=0.7,
                   seed=1).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=gen)
    eta = [0.1, 1.0]
    path = gradient_path(net, x, y, eta)

    clone = make_mlp(10, hidden=(7, 6), out_features=4, bn="before", init_scale=0.7,
                     seed=1).double()
    loss = F.cross_entropy(clone(x), y)
    g = torch.autograd.grad(loss, list(clone.parameters()))
    for k, e in enumerate(eta):
        moved = make_mlp(10, hidden=(7, 6), out_features=4, bn="before", init_scale=0.7,
                         seed=1).double()
        with torch.no_grad():
            for p, gp in zip(moved.parameters(), g):
                p -= e * gp
        loss_k = F.cross_entropy(moved(x), y)
        g_k = torch.autograd.grad(loss_k, list(moved.parameters()))
        change = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(g_k, g)))
        assert path.loss[k] == pytest.approx(loss_k.item(), rel=1e-12)
        assert path.grad_change[k] == pytest.approx(float(change), rel=1e-10)
    assert path.loss0 == pytest.approx(loss.item(), rel=1e-12)


def test_state_gradients_buffers_and_random_state_are_left_unchanged():
    net = make_mlp(6, hidden=(5, 5), out_features=3, bn="before", init_scale=0.5, seed=0,
                   dropout=0.3)
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    F.cross_entropy(net(x), y).backward()
    params = [p.detach().clone() for p in net.parameters()]
    grads = [p.grad.clone() for p in net.parameters()]
    buffers = [b.clone() for b in net.buffers()]
    rng = torch.get_rng_state()
    gradient_path(net, x, y, [0.5, 1.0])
    assert torch.equal(torch.get_rng_state(), rng)
    for p, before, g in zip(net.parameters(), params, grads):
        assert torch.equal(p, before) and torch.equal(p.grad, g)
    for b, before in zip(net.buffers(), buffers):
        assert torch.equal(b, before)


def test_noisy_bn_sees_the_same_noise_along_the_path():
    net = make_mlp(6, hidden=(8,), out_features=3, init_scale=0.5, seed=0, bn="before",
                   bn_layer=functools.partial(NoisyBatchNorm1d, shift=1.0,
                                              scale=(1.0, 3.0))).double()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = gradient_path(net, x, torch.arange(16) % 3, [1e-9])
    assert path.grad_change[0] < 1e-6 * path.grad_norm
    assert abs(path.loss[0] - path.loss0) < 1e-6


def test_probe_records_the_summary_and_leaves_training_unchanged():
    data = load_digits_split(seed=0)
    kw = dict(steps=20, batch_size=32, lr=0.5, seed=1, eval_every=10, progress=False)
    plain = train(make_mlp(64, hidden=(8, 8), init_scale=0.1, seed=0), data, **kw)
    probed = train(make_mlp(64, hidden=(8, 8), init_scale=0.1, seed=0), data,
                   probes={"s": smoothness_probe([0.25, 0.5, 1.0])}, record_every=5, **kw)
    np.testing.assert_array_equal(plain.loss, probed.loss)
    assert probed.records["s"].shape == (4, 4)
    assert np.all(probed.records["s"] >= 0)


@pytest.mark.parametrize("call,exc,match", [
    (lambda net, x, y: gradient_path(net, x, y, []), ValueError, "step_sizes must be"),
    (lambda net, x, y: gradient_path(net, x, y, [0.1, -1.0]), ValueError, "positive finite"),
    (lambda net, x, y: gradient_path(net, x, y, [[0.1]]), ValueError, "1-D"),
    (lambda net, x, y: gradient_path(net, x, y, [np.nan]), ValueError, "step_sizes must be"),
    (lambda net, x, y: gradient_path(net, x, y, ["a"]), TypeError, "step_sizes must be"),
    (lambda net, x, y: gradient_path(net, x, y[:2], [0.1]), ValueError, "y must be a non-empty"),
    (lambda net, x, y: gradient_path(None, x, y, [0.1]), TypeError, "model must be"),
    (lambda net, x, y: gradient_path(nn.Flatten(), x, y, [0.1]), ValueError,
     "trainable parameters"),
    (lambda net, x, y: smoothness_probe([0.0]), ValueError, "smoothness_probe: step_sizes"),
])
def test_bad_input_raises_with_a_message(call, exc, match):
    net = make_mlp(6, hidden=(5,), out_features=3, seed=0)
    x, y = torch.randn(8, 6), torch.arange(8) % 3
    with pytest.raises(exc, match=match):
        call(net, x, y)
