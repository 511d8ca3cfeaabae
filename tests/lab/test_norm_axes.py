"""Tests for bncourse.lab.norm_axes: the masks agree with torch's normalization layers; drawing."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bncourse.lab.norm_axes import MODES, draw_cube, draw_grid, reduced_mask  # noqa: E402

N, C, H, W = 3, 4, 2, 3
EPS = 1e-5


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _x():
    return torch.randn(N, C, H, W, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64) * 3 + 1


def _torch_normalized(x, mode, groups):
    if mode == "batch":
        return F.batch_norm(x, None, None, training=True, eps=EPS)
    if mode == "layer":
        return F.layer_norm(x, x.shape[1:], eps=EPS)
    if mode == "instance":
        return F.instance_norm(x, eps=EPS)
    return F.group_norm(x, groups, eps=EPS)


@pytest.mark.parametrize("mode,groups", [("batch", 1), ("layer", 1), ("instance", 1),
                                         ("group", 2)])
@pytest.mark.parametrize("channel,sample", [(0, 0), (3, 2), (1, 1)])
def test_normalizing_the_masked_values_reproduces_torch(mode, groups, channel, sample):
    # Normalizing the masked values with their own mean and biased variance must give
    # exactly what torch's layer outputs there: the mask is the set of shared statistics.
    x = _x()
    mask = reduced_mask((N, C, H * W), mode, channel=channel, sample=sample, groups=groups)
    values = x.reshape(N, C, H * W).numpy()[mask]
    ours = (values - values.mean()) / np.sqrt(values.var() + EPS)
    theirs = _torch_normalized(x, mode, groups).reshape(N, C, H * W).numpy()[mask]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_batch_mask_of_a_matrix_is_one_column():
    mask = reduced_mask((5, 3), "batch", channel=2)
    assert mask.shape == (5, 3, 1)
    assert mask[:, 2].all() and not mask[:, :2].any()


@pytest.mark.parametrize("mode,size", [("batch", N * H * W), ("layer", C * H * W),
                                       ("instance", H * W), ("group", C // 2 * H * W)])
def test_set_sizes(mode, size):
    assert reduced_mask((N, C, H * W), mode, channel=1, sample=1, groups=2).sum() == size


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(shape=(3,)), ValueError, "reduced_mask: shape must be"),
    (dict(shape=(3, 0)), ValueError, "shape must be"),
    (dict(shape=(3, 4), mode="feature"), ValueError, "mode must be one of"),
    (dict(shape=(3, 4), channel=4), ValueError, r"channel must be an index in \[0, 4\), got 4"),
    (dict(shape=(3, 4), sample=-1), ValueError, "sample must be an index"),
    (dict(shape=(3, 4), channel=1.0), TypeError, "channel must be an int"),
    (dict(shape=(3, 4), mode="group", groups=3), ValueError, "groups must be a positive divisor"),
])
def test_reduced_mask_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        reduced_mask(**kwargs)


def test_draw_grid_shades_the_mask_and_labels_axes():
    _, ax = plt.subplots()
    mask = reduced_mask((6, 4), "batch", channel=1)
    assert draw_grid(ax, mask, title="t") == 6
    assert len(ax.patches) == 24
    shaded = [p for p in ax.patches if p.get_facecolor() != ax.patches[0].get_facecolor()]
    assert len(shaded) == 6          # cell (0, 0) is not in channel 1's column
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "t"


def test_draw_cube_counts_visible_shaded_cells():
    _, ax = plt.subplots()
    n, c, s = 4, 3, 5
    # batch mode, channel 1: the front column (s cells) and the top strip (n cells) show.
    assert draw_cube(ax, reduced_mask((n, c, s), "batch", channel=1)) == s + n
    assert len(ax.patches) == c * s + n * c + n * s
    _, ax = plt.subplots()
    # the last channel also shows on the right face (n * s cells)
    assert draw_cube(ax, reduced_mask((n, c, s), "batch", channel=c - 1)) == s + n + n * s
    texts = [t.get_text() for t in ax.texts]
    assert any("samples" in t for t in texts) and any("channels" in t for t in texts)


@pytest.mark.parametrize("func", [draw_grid, draw_cube])
def test_drawing_rejects_non_boolean_masks(func):
    _, ax = plt.subplots()
    with pytest.raises(TypeError, match=f"{func.__name__}: mask must be a boolean"):
        func(ax, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match=f"{func.__name__}: mask must be a non-empty"):
        func(ax, np.ones((2,), dtype=bool))


def test_modes_constant():
    assert MODES == ("batch", "layer", "instance", "group")
