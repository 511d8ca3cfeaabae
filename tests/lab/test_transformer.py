"""Tests for bncourse.lab.transformer: shapes, seeding, placements, exact causality."""

import pytest
import torch

from bncourse.lab.transformer import NORMS, TokenBatchNorm, make_transformer


def test_shapes_and_flat_input():
    net = make_transformer(8, 10, seq_len=8, depth=2, seed=0)
    x = torch.randn(5, 8, 8)
    assert net(x).shape == (5, 10) and net.hidden(x).shape == (5, 8, 16)
    torch.testing.assert_close(net(x.reshape(5, 64)), net(x), rtol=0, atol=0)


def test_same_seed_same_linear_weights_whatever_norm_and_placement():
    nets = [make_transformer(8, 10, 8, norm=n, placement=p, seed=3)
            for n in NORMS for p in ("pre", "post")]
    first = dict(nets[0].named_parameters())
    for net in nets[1:]:
        for name, param in net.named_parameters():
            if name in first and "norm" not in name:
                assert torch.equal(param, first[name]), name
    assert not torch.equal(make_transformer(8, 10, 8, seed=4).embed.weight, nets[0].embed.weight)


def test_placements_differ_as_documented():
    pre = make_transformer(4, 3, 5, placement="pre", seed=0)
    post = make_transformer(4, 3, 5, placement="post", seed=0)
    assert isinstance(pre.final_norm, torch.nn.LayerNorm)
    assert isinstance(post.final_norm, torch.nn.Identity)
    x = torch.randn(2, 5, 4)
    assert not torch.allclose(pre(x), post(x))
    # post-LN: every position of the output is layer-normalized (mean 0 over features)
    torch.testing.assert_close(post.hidden(x).mean(dim=-1), torch.zeros(2, 5), atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm", ["ln", "rms", "none"])
def test_later_positions_never_change_earlier_states(norm):
    net = make_transformer(4, 3, 6, norm=norm, depth=3, seed=1).double()
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    later = x.clone()
    later[:, 4:] += 10.0
    assert torch.equal(net.hidden(later)[:, :4], net.hidden(x)[:, :4])


def test_token_batch_norm_pools_batch_and_time():
    bn = TokenBatchNorm(3).double()
    x = 2.0 + torch.randn(4, 5, 3, dtype=torch.float64)
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 1)), torch.zeros(3, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"make_transformer: norm must be one of 'ln', 'rms', "
                                         r"'bn', 'none', got 'gn'"):
        make_transformer(4, 3, 5, norm="gn")
    with pytest.raises(ValueError, match=r"make_transformer: placement must be one of"):
        make_transformer(4, 3, 5, placement="middle")
    with pytest.raises(ValueError, match=r"make_transformer: d_model must be a multiple of "
                                         r"2 \* heads = 4, got 6"):
        make_transformer(4, 3, 5, d_model=6, heads=2)
    with pytest.raises(TypeError, match=r"make_transformer: depth must be an int >= 1"):
        make_transformer(4, 3, 5, depth=2.0)
    net = make_transformer(4, 3, 5)
    with pytest.raises(ValueError, match=r"TinyTransformer: x must be of shape \(B, 5, 4\) or "
                                         r"\(B, 20\), got shape \(2, 6, 4\)"):
        net(torch.zeros(2, 6, 4))
