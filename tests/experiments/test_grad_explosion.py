"""Tests for bncourse.experiments.grad_explosion: gradient norms vs autograd by hand, growth summaries."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bncourse.experiments.grad_explosion import (
    ANCHOR,
    bn_relu_grad_norms,
    growth_factor,
    run_growth,
    weight_gradient_norms,
)
from bncourse.lab.models import make_mlp, weight_layers


def _manual_norms(model, x, y):
    """The same gradient by hand: a functional forward from the parameters, then autograd.grad."""
    h = x
    layers = dict(model.named_children())
    weights = []
    for name, m in layers.items():
        if name.startswith(("fc", "out")):
            weights.append(m.weight)
            h = F.linear(h, m.weight, m.bias)
        elif name.startswith("norm"):
            h = F.batch_norm(h, None, None, m.weight, m.bias, training=True, eps=m.eps)
        elif name.startswith("act"):
            h = torch.relu(h)
    loss = F.cross_entropy(h, y)
    return np.array([g.norm().item() for g in torch.autograd.grad(loss, weights)])


@pytest.mark.parametrize("bn", ["before", "none"])
def test_weight_gradient_norms_match_a_manual_autograd_computation(bn):
    model = make_mlp(16, hidden=(16,) * 6, activation="relu", bn=bn, init_scale="he",
                     seed=3).double()
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(20, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (20,), generator=gen)
    np.testing.assert_allclose(weight_gradient_norms(model, x, y), _manual_norms(model, x, y),
                               rtol=1e-12)


def test_weight_gradient_norms_leave_the_model_unchanged():
    model = make_mlp(8, hidden=(8, 8), bn="before", seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    weight_gradient_norms(model, torch.randn(6, 8), torch.zeros(6, dtype=torch.long))
    assert not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())


def test_numpy_reference_agrees_with_the_torch_network_in_float64():
    # A bias-free BN-ReLU network: its weight gradients are those of bn_relu_grad_norms
    # given the same upstream gradient dlogits (the output bias does not change dW).
    model = make_mlp(12, hidden=(12,) * 5, activation="relu", bn="before", init_scale="he",
                     bias_before_bn=False, seed=5).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(9, 12, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (9,), generator=gen)
    logits = model(x)
    dlogits = torch.autograd.grad(F.cross_entropy(logits, y), logits)[0]
    weights = [m.weight.detach().numpy().T.copy() for _, m in weight_layers(model)]
    got = bn_relu_grad_norms(x.numpy(), weights, dlogits.numpy())
    np.testing.assert_allclose(got, weight_gradient_norms(model, x, y), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_reference_matches_autograd_for_any_upstream_gradient(dtype):
    rng = np.random.default_rng(0)
    sizes = [7, 5, 6, 4, 3]
    x = rng.normal(size=(10, sizes[0])).astype(dtype)
    weights = [rng.normal(size=(a, b)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    dlogits = rng.normal(size=(10, sizes[-1])).astype(dtype)
    wt = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in weights]
    h = torch.tensor(x, dtype=torch.float64)
    for w in wt[:-1]:
        h = torch.relu(F.batch_norm(h @ w, None, None, training=True, eps=1e-5))
    logits = h @ wt[-1]
    grads = torch.autograd.grad(logits, wt, grad_outputs=torch.tensor(dlogits).double())
    want = np.array([g.norm().item() for g in grads])
    got = bn_relu_grad_norms(x, weights, dlogits)
    assert got.dtype == dtype and got.shape == (4,)
    np.testing.assert_allclose(got, want, rtol=1e-10 if dtype == np.float64 else 1e-4)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.1, 10.0), st.floats(0.2, 5.0), st.integers(2, 40))
def test_growth_factor_recovers_a_geometric_rate(top, rate, n):
    norms = top * rate ** np.arange(n - 1, -1, -1)     # g_1 = top * rate^(n-1), g_n = top
    ratio, per_layer = growth_factor(norms)
    assert ratio == pytest.approx(rate ** (n - 1), rel=1e-9)
    assert per_layer == pytest.approx(rate, rel=1e-9)


def test_growth_factor_rejects_bad_norms():
    with pytest.raises(ValueError, match="growth_factor: norms must be a 1-D sequence of at least"):
        growth_factor([1.0])
    with pytest.raises(ValueError, match="positive finite"):
        growth_factor([1.0, 0.0])
    with pytest.raises(ValueError, match="positive finite"):
        growth_factor([np.nan, 1.0])


def test_measure_growth_is_seeded_and_shaped():
    a = run_growth(width=32, depth=8, batch_size=16, seed=4)
    b = run_growth(width=32, depth=8, batch_size=16, seed=4)
    c = run_growth(width=32, depth=8, batch_size=16, seed=5)
    assert a.norms.shape == (9,) and np.array_equal(a.norms, b.norms)
    assert not np.array_equal(a.norms, c.norms)
    assert a.ratio == pytest.approx(a.norms[0] / a.norms[-1])
    assert a.per_layer == pytest.approx(a.ratio ** (1 / 8))


def test_batch_norm_makes_the_input_gradient_explode_and_small_batches_more():
    # Yang et al.'s prediction at initialization, averaged over seeds: BN-ReLU grows the
    # gradient towards the input, faster for smaller batches; He-initialised ReLU without
    # BN keeps it within a factor of a few.
    def mean_rate(**kw):
        return np.mean([run_growth(width=96, depth=16, seed=s, **kw).per_layer
                        for s in range(3)])
    small, large = mean_rate(batch_size=8), mean_rate(batch_size=128)
    plain = mean_rate(batch_size=128, bn="none")
    assert small > large > 1.05
    assert 0.85 < plain < 1.05


def test_measure_growth_and_numpy_reference_validate_arguments():
    with pytest.raises(ValueError, match="run_growth: batch_size must be an int >= 2"):
        run_growth(width=8, depth=2, batch_size=1)
    with pytest.raises(TypeError, match="run_growth: depth must be an int"):
        run_growth(width=8, depth=2.5, batch_size=4)
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"bn_relu_grad_norms: weights\[1\] must be shape \(5,"):
        bn_relu_grad_norms(x, [np.ones((3, 5)), np.ones((4, 2))], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="dlogits must be shape"):
        bn_relu_grad_norms(x, [np.ones((3, 2))], np.zeros((4, 3)))
    assert ANCHOR["depth"] == 30 and ANCHOR["ratio"] ** (1 / ANCHOR["depth"]) == pytest.approx(
        ANCHOR["per_layer"], abs=0.005)
