"""Tests for bncourse.noisy_bn: BN plus a random per-feature affine map redrawn every step."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from bncourse.lab.data import load_digits_split
from bncourse.lab.models import make_mlp
from bncourse.noisy_bn import NoisyBatchNorm1d
from bncourse.lab.training import train


def _pair(c=5, **kw):
    """A NoisyBatchNorm1d and a plain BatchNorm1d with the same (random) gamma and beta."""
    noisy = NoisyBatchNorm1d(c, **kw).double()
    plain = nn.BatchNorm1d(c).double()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in (noisy, plain):
            m.weight.copy_(torch.linspace(0.5, 2.0, c, dtype=torch.float64))
            m.bias.copy_(torch.linspace(-1.0, 1.0, c, dtype=torch.float64))
    x = torch.randn(16, c, generator=gen, dtype=torch.float64) * 3 + 2
    return noisy, plain, x


def test_is_a_batchnorm1d_and_reports_its_noise():
    bn = NoisyBatchNorm1d(4, shift=0.25, scale=(0.5, 3.0))
    assert isinstance(bn, nn.BatchNorm1d)
    assert "shift=0.25" in repr(bn) and "scale=(0.5, 3.0)" in repr(bn)


def test_training_output_is_the_drawn_affine_map_of_plain_bn():
    noisy, plain, x = _pair(shift=0.8, scale=(1.0, 2.5),
                            generator=torch.Generator().manual_seed(0))
    y = noisy(x)
    want = noisy.last_scale * plain(x) + noisy.last_shift        # (C,) broadcasts over N
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    # running statistics are those of x, as in plain BN (the noise comes after them)
    torch.testing.assert_close(noisy.running_mean, plain.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(noisy.running_var, plain.running_var, rtol=0, atol=0)


def test_zero_noise_is_plain_bn_in_both_modes():
    noisy, plain, x = _pair(shift=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(noisy(x), plain(x), rtol=0, atol=0)
    noisy.eval()
    plain.eval()
    torch.testing.assert_close(noisy(x), plain(x), rtol=0, atol=0)


def test_eval_mode_uses_the_expected_scale_and_no_shift():
    noisy, plain, x = _pair(shift=1.0, scale=(1.0, 2.0))
    noisy(x)
    plain(x)                                      # same running statistics in both
    noisy.eval()
    plain.eval()
    y1, y2 = noisy(x), noisy(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)             # deterministic
    torch.testing.assert_close(y1, 1.5 * plain(x), rtol=1e-12, atol=1e-12)


def test_noise_is_redrawn_at_every_training_forward_and_stays_in_range():
    c, n_draws = 50, 400
    bn = NoisyBatchNorm1d(c, shift=0.7, scale=(1.2, 1.8),
                          generator=torch.Generator().manual_seed(1))
    x = torch.randn(8, c, generator=torch.Generator().manual_seed(2))
    shifts, scales = [], []
    for _ in range(n_draws):
        bn(x)
        shifts.append(bn.last_shift.clone())
        scales.append(bn.last_scale.clone())
    m, s = torch.stack(shifts), torch.stack(scales)
    assert not torch.equal(m[0], m[1]) and not torch.equal(s[0], s[1])
    assert float(m.abs().max()) <= 0.7 and 1.2 <= float(s.min()) and float(s.max()) <= 1.8
    # uniform distributions: means 0 and 1.5, variances (2*0.7)^2/12 and 0.6^2/12;
    # 20000 draws put the sample means within 4 standard errors of them
    n = m.numel()
    assert abs(float(m.mean())) < 4 * (1.4 / np.sqrt(12)) / np.sqrt(n)
    assert abs(float(s.mean()) - 1.5) < 4 * (0.6 / np.sqrt(12)) / np.sqrt(n)
    assert float(m.var()) == pytest.approx(1.4**2 / 12, rel=0.05)
    assert float(s.var()) == pytest.approx(0.6**2 / 12, rel=0.05)
    # the whole range is used
    assert float(m.min()) < -0.65 and float(m.max()) > 0.65


def test_seeded_generator_and_global_seed_are_reproducible():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    a = NoisyBatchNorm1d(3, generator=torch.Generator().manual_seed(9))(x)
    b = NoisyBatchNorm1d(3, generator=torch.Generator().manual_seed(9))(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(11)
    c = NoisyBatchNorm1d(3)(x)
    torch.manual_seed(11)
    d = NoisyBatchNorm1d(3)(x)
    torch.testing.assert_close(c, d, rtol=0, atol=0)


def test_three_dimensional_input_gets_one_draw_per_channel():
    noisy, plain, _ = _pair(c=3, generator=torch.Generator().manual_seed(4))
    x = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = noisy(x)
    want = noisy.last_scale[None, :, None] * plain(x) + noisy.last_shift[None, :, None]
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)


def test_gradient_is_the_scaled_bn_gradient():
    # With the noise fixed by re-seeding, the layer is s * BN(x) + m: autograd must
    # agree with finite differences (gradcheck, float64).
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64,
                    requires_grad=True)
    bn = NoisyBatchNorm1d(3, shift=0.5, scale=(1.0, 3.0)).double()

    def f(inp):
        bn.generator = torch.Generator().manual_seed(8)
        return bn(inp)

    assert torch.autograd.gradcheck(f, (x,))
    y = f(x)
    (dx,) = torch.autograd.grad(y.sum(dim=0) @ torch.arange(3.0, dtype=torch.float64), x)
    plain = nn.BatchNorm1d(3).double()
    y_plain = plain(x)
    (dx_plain,) = torch.autograd.grad(
        y_plain.sum(dim=0) @ (torch.arange(3.0, dtype=torch.float64) * bn.last_scale), x)
    torch.testing.assert_close(dx, dx_plain, rtol=1e-10, atol=1e-12)


def test_training_with_noisy_bn_is_seeded_and_differs_from_plain_bn():
    data = load_digits_split(seed=0)
    factory = functools.partial(NoisyBatchNorm1d, shift=1.0, scale=(1.0, 2.0))

    def run(bn_layer):
        net = make_mlp(64, hidden=(16, 16), bn="before", init_scale=0.1, seed=2,
                       bn_layer=bn_layer)
        return train(net, data, steps=30, batch_size=32, lr=0.5, seed=3, eval_every=10,
                     progress=False)

    h1, h2, h_plain = run(factory), run(factory), run(None)
    assert h1.equals(h2)
    assert not np.array_equal(h1.loss, h_plain.loss)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(shift=-0.1), ValueError, "shift must be a finite float >= 0"),
    (dict(shift=float("nan")), ValueError, "shift must be"),
    (dict(shift="1"), TypeError, "shift must be"),
    (dict(scale=(2.0, 1.0)), ValueError, r"scale must be a pair \(scale_low, scale_high\)"),
    (dict(scale=(0.0, 1.0)), ValueError, r"scale must be .* 0 < low <= high, got \(0.0, 1.0\)"),
    (dict(scale=1.5), TypeError, "scale must be a pair"),
    (dict(scale=(1.0, float("inf"))), ValueError, r"scale must be .*got \(1.0, inf\)"),
    (dict(scale=(1.0, "2")), TypeError, "scale must be a pair of finite floats"),
    (dict(generator=3), TypeError, "generator must be a torch.Generator or None"),
])
def test_bad_arguments_raise_with_a_message(kwargs, exc, match):
    with pytest.raises(exc, match="NoisyBatchNorm1d: " + match):
        NoisyBatchNorm1d(4, **kwargs)
