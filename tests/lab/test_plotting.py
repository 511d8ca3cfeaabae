"""Tests for bncourse.lab.plotting: labelled axes, legends, drawn values, pyplot left alone."""

import io
import struct

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from bncourse.lab.plotting import (
    DPI,
    CourseFigure,
    mean_band,
    new_figure,
    percentile_band,
    plot_curves,
    plot_percentiles,
    plot_points,
)
from bncourse.lab.sweeps import mean_ci

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _renders(fig: Figure) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == PNG_MAGIC
    # What Jupyter and myst_nb.glue display, with or without pyplot's inline backend.
    assert isinstance(fig, CourseFigure) and fig._repr_png_()[:8] == PNG_MAGIC


def _legend_texts(ax):
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_plot_curves_labels_legend_and_values():
    before = plt.get_fignums()
    x = np.array([0, 100, 200, 300])
    rng = np.random.default_rng(0)
    runs_a, runs_b = rng.uniform(size=(4, 4)), rng.uniform(size=(3, 4))
    fig = plot_curves(x, {"without BN": runs_a, "with BN": runs_b}, xlabel="training step",
                      ylabel="test accuracy (fraction)", title="Figure 1a", ylim=(0, 1))
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "test accuracy (fraction)"
    assert ax.get_title() == "Figure 1a" and ax.get_ylim() == (0, 1)
    assert _legend_texts(ax) == ["without BN", "with BN"]
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    np.testing.assert_allclose(lines[0].get_ydata(), runs_a.mean(axis=0))
    # The band spans the t-interval: its vertical extent at each x is [low, high].
    band = ax.collections[0].get_paths()[0].vertices
    ci = mean_ci(runs_a)
    for j, xj in enumerate(x):
        ys = band[np.isclose(band[:, 0], xj), 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [ci.low[j], ci.high[j]], rtol=1e-12)
    _renders(fig)


def test_plot_curves_log_axes_and_single_run():
    fig = plot_curves([1e-3, 1e-2, 1e-1], {"one run": [0.2, 0.5, 0.4]},
                      xlabel="learning rate (log scale)", ylabel="final accuracy (fraction)",
                      logx=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.collections) == 0
    assert _legend_texts(ax) == ["one run"]


def test_plot_percentiles_panels():
    steps = np.array([0, 10, 20])
    p = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.5, 2.0], [-3.0, 1.0, 3.0]])
    fig = plot_percentiles(steps, {"without BN": p, "with BN": p / 2}, xlabel="training step",
                           ylabel="sigmoid input (a.u.)", title="Figure 1b, c")
    assert len(fig.axes) == 2 and fig.get_suptitle() == "Figure 1b, c"
    for ax, name, scale in zip(fig.axes, ["without BN", "with BN"], [1, 2]):
        assert ax.get_title() == name
        assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "sigmoid input (a.u.)"
        assert _legend_texts(ax) == ["50th percentile", "15th to 85th percentile"]
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), p[:, 1] / scale)
    _renders(fig)


@pytest.mark.parametrize("kind", ["point", "bar"])
def test_plot_points(kind):
    rng = np.random.default_rng(1)
    series = {"BN before": rng.uniform(size=(5, 3)), "BN after": rng.uniform(size=(5, 3))}
    fig = plot_points(["sigmoid", "tanh", "relu"], series, xlabel="activation",
                      ylabel="test accuracy (fraction)", kind=kind, title="placement")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "activation" and ax.get_ylabel() == "test accuracy (fraction)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sigmoid", "tanh", "relu"]
    assert _legend_texts(ax) == ["BN before", "BN after"]
    if kind == "bar":
        heights = [p.get_height() for p in ax.patches[:3]]
        np.testing.assert_allclose(heights, series["BN before"].mean(axis=0))
    _renders(fig)


def test_axes_level_helpers():
    fig, axes = new_figure(1, 2)
    assert axes.shape == (1, 2) and isinstance(fig, Figure)
    line = mean_band(axes[0, 0], [0, 1], [[1.0, 2.0], [3.0, 4.0]], label="m")
    np.testing.assert_allclose(line.get_ydata(), [2.0, 3.0])
    line = percentile_band(axes[0, 1], [0, 1], [[0, 1, 2], [1, 2, 3]])
    np.testing.assert_allclose(line.get_ydata(), [1, 2])


@pytest.mark.parametrize("call, exc, match", [
    (lambda: plot_curves([0, 1], {"a": [0, 1]}, xlabel="", ylabel="y (a.u.)"), ValueError,
     "plot_curves: xlabel must be a non-empty string"),
    (lambda: plot_curves([0, 1], {"a": [0, 1]}, xlabel="x", ylabel=None), TypeError,
     "plot_curves: ylabel must be a non-empty string"),
    (lambda: plot_curves([0, 1], {}, xlabel="x", ylabel="y"), ValueError,
     "plot_curves: curves must be a non-empty dict"),
    (lambda: plot_curves([0, 1, 2], {"a": [[0, 1]]}, xlabel="x", ylabel="y"), ValueError,
     "mean_band: runs must be shape \\(S, 3\\)"),
    (lambda: plot_percentiles([0, 1], {"a": np.zeros((2, 2))}, xlabel="x", ylabel="y"),
     ValueError, "percentile_band: p must be shape \\(2, 3\\)"),
    (lambda: plot_points(["a", "b"], {"s": np.zeros((3, 3))}, xlabel="x", ylabel="y"),
     ValueError, "plot_points: series\\['s'\\] must be shape \\(S, 2\\)"),
    (lambda: plot_points(["a"], {"s": [1.0, 2.0]}, xlabel="x", ylabel="y", kind="pie"),
     ValueError, "plot_points: kind must be"),
    (lambda: plot_points(["a"], {"s": [1.0, 2.0]}, xlabel="x", ylabel="y", dodge=1.5),
     ValueError, r"plot_points: dodge must be a bool or a float in \[0, 1\], got 1.5"),
    (lambda: plot_points(["a"], {"s": [1.0, 2.0]}, xlabel="x", ylabel="y", dodge="wide"),
     TypeError, "plot_points: dodge must be a bool or a float in"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------- resolution


def _png_size(fig: Figure) -> tuple[int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")          # no dpi given: the figure's own
    width, height = struct.unpack(">II", buf.getvalue()[16:24])     # the IHDR chunk
    return width, height


@pytest.mark.parametrize("make", [
    lambda: new_figure(1, 2)[0],
    lambda: plot_curves([0, 1], {"a": [[0.0, 1.0], [1.0, 2.0]]}, xlabel="x (a.u.)",
                        ylabel="y (a.u.)"),
    lambda: plot_percentiles([0, 1], {"a": [[0, 1, 2], [1, 2, 3]]}, xlabel="x (a.u.)",
                             ylabel="y (a.u.)"),
    lambda: plot_points(["a", "b"], {"s": [[0.0, 1.0], [1.0, 2.0]]}, xlabel="x (a.u.)",
                        ylabel="y (a.u.)"),
], ids=["new_figure", "plot_curves", "plot_percentiles", "plot_points"])
def test_figures_render_at_150_dpi(make):
    fig = make()
    assert DPI == 150 and fig.get_dpi() == DPI
    width_in, height_in = fig.get_size_inches()
    assert _png_size(fig) == (round(width_in * DPI), round(height_in * DPI))


def test_new_figure_takes_another_dpi():
    fig, _ = new_figure(dpi=72)
    width_in, height_in = fig.get_size_inches()
    assert fig.get_dpi() == 72 and _png_size(fig) == (round(width_in * 72), round(height_in * 72))


# --------------------------------------------------------------------------- dodge


def _series_x(ax) -> list[np.ndarray]:
    """x positions of each series' error bars (their vertical segments), in series order."""
    return [np.array([seg[0, 0] for seg in c.lines[2][0].get_segments()])
            for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _three_series(rng):
    return {name: rng.uniform(size=(4, 3)) for name in ("no BN", "BN before", "BN after")}


def test_plot_points_dodges_series_so_error_bars_do_not_overlap_by_default(rng):
    series = _three_series(rng)
    kwargs = dict(xlabel="activation", ylabel="test accuracy (fraction)")
    default = _series_x(plot_points(["a", "b", "c"], series, **kwargs).axes[0])
    assert len(default) == 3
    # Backward compatible: dodge=True is what plot_points always did.
    for x, x_true in zip(default, _series_x(plot_points(["a", "b", "c"], series, dodge=True,
                                                        **kwargs).axes[0])):
        np.testing.assert_array_equal(x, x_true)
    centres = np.arange(3)
    np.testing.assert_allclose(np.mean(default, axis=0), centres)       # centred on the tick
    gaps = np.diff(np.array(default), axis=0)                           # (series - 1, C)
    np.testing.assert_allclose(gaps, 0.8 / 3)                           # even, in series order
    assert np.all(np.abs(np.array(default) - centres) < 0.5)            # within its category


@pytest.mark.parametrize("dodge", [0.3, 1.0, False, 0])
def test_plot_points_dodge_sets_the_spread_of_the_series(dodge, rng):
    series = _three_series(rng)
    ax = plot_points(["a", "b", "c"], series, xlabel="activation", dodge=dodge,
                     ylabel="test accuracy (fraction)").axes[0]
    xs = np.array(_series_x(ax))
    np.testing.assert_allclose(xs.mean(axis=0), np.arange(3))
    np.testing.assert_allclose(np.diff(xs, axis=0), float(dodge) / 3, atol=1e-15)


def test_plot_points_keeps_one_series_centred_and_bars_dodged(rng):
    one = plot_points(["a", "b"], {"BN": rng.uniform(size=(3, 2))}, xlabel="placement",
                      ylabel="test accuracy (fraction)", dodge=0.5).axes[0]
    np.testing.assert_allclose(_series_x(one)[0], [0.0, 1.0])
    series = _three_series(rng)
    bars = plot_points(["a", "b", "c"], series, xlabel="activation", kind="bar",
                       ylabel="test accuracy (fraction)").axes[0]
    xs = np.array(_series_x(bars))
    centres = np.array([p.get_x() + p.get_width() / 2 for p in bars.patches]).reshape(3, 3)
    np.testing.assert_allclose(centres, xs)                  # each bar carries its error bar
    widths = np.array([p.get_width() for p in bars.patches])
    assert np.all(np.diff(xs, axis=0) >= widths.max())      # neighbouring bars do not overlap
