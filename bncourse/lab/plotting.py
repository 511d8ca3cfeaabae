"""Plots for the experiments: curves with a 95% band over seeds, percentile bands, error bars.

Every figure function requires its axis labels (write the unit in them:
``"training step"``, ``"test accuracy (fraction)"``, ``"learning rate (log scale)"``),
draws a legend when there is more than one series, and returns a
``CourseFigure`` (a ``matplotlib.figure.Figure`` with a PNG ``_repr_png_``)
created *without* pyplot. Such a figure is not registered with pyplot, so
nothing shows it behind your back: it is displayed exactly once when it is
the last value of a notebook cell (``fig``) or passed to ``myst_nb.glue``,
it never leaks into later cells, and it needs no ``plt.close``. Nothing here
calls ``plt.show()``; any backend works, Agg included. Save with
``fig.savefig(path)``.

Shape letters: S seeds (runs), T points along the x axis, C categories.

Public API
----------
Figure level (return a ``Figure``):

``plot_curves(x, curves, xlabel, ylabel, title=None, logx=False, logy=False, confidence=0.95, ylim=None)``
    ``curves = {label: runs}`` with ``runs`` of shape ``(S, T)`` (or ``(T,)``
    for one run): the mean over seeds as a line and the t-interval as a band.
``plot_percentiles(x, panels, xlabel, ylabel, title=None, q=(15, 50, 85), sharey=True)``
    ``panels = {panel title: p}`` with ``p`` of shape ``(T, 3)`` (low,
    median, high percentiles, e.g. ``History.records``): one subplot per
    panel, shared y axis, median line and a band between the outer
    percentiles (Ioffe & Szegedy's Figure 1b/c).
``plot_points(categories, series, xlabel, ylabel, title=None, kind="point", confidence=0.95, show_runs=True, ylim=None, dodge=True)``
    ``series = {label: values}`` with ``values`` of shape ``(S, C)``: mean
    and t-interval error bars per category, series side by side (``dodge``)
    so their error bars do not overlap, individual runs as small dots;
    ``kind="bar"`` draws bars.

Axes level (draw into an existing ``ax``, return the line):

``mean_band(ax, x, runs, label=None, color=None, confidence=0.95)``
``percentile_band(ax, x, p, label=None, color=None)``
``new_figure(nrows=1, ncols=1, figsize=None, sharey=False, dpi=DPI) -> (fig, axes)``
    A pyplot-free figure with constrained layout at ``DPI`` (150) dots per
    inch, so that its PNG stays sharp in the book; ``axes`` is a 2-D array.

Examples
--------
>>> import numpy as np
>>> from bncourse.lab.plotting import plot_curves
>>> steps = np.arange(0, 301, 100)
>>> runs = np.array([[0.1, 0.8, 0.9, 0.95], [0.1, 0.7, 0.9, 0.93]])   # (S=2, T=4)
>>> fig = plot_curves(steps, {"with BN": runs}, xlabel="training step",
...                   ylabel="test accuracy (fraction)")
>>> fig.axes[0].get_xlabel()
'training step'
"""

from __future__ import annotations

import io
import numbers

import numpy as np
from matplotlib.figure import Figure

from bncourse._checks import fail
from bncourse.lab.sweeps import mean_ci

__all__ = ["plot_curves", "plot_percentiles", "plot_points", "mean_band", "percentile_band",
           "new_figure", "CourseFigure", "DPI"]

# Resolution of every figure made here (matplotlib's default of 100 looks soft in the book).
DPI = 150


def _check_label(func: str, arg: str, label) -> str:
    if not isinstance(label, str) or not label.strip():
        fail(func, arg, "a non-empty string (with the unit, e.g. 'training step')",
              repr(label), TypeError if not isinstance(label, str) else ValueError)
    return label


def _check_dict(func: str, arg: str, value) -> dict:
    if not isinstance(value, dict) or not value:
        fail(func, arg, "a non-empty dict label -> array", repr(type(value).__name__),
              TypeError if not isinstance(value, dict) else ValueError)
    return value


class CourseFigure(Figure):
    """A ``matplotlib.figure.Figure`` that Jupyter displays as a PNG on its own.

    Figures made without pyplot have no display hook unless pyplot's inline
    backend happens to be active; ``_repr_png_`` makes them show (once) as a
    cell's value or through ``myst_nb.glue`` in every case.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(nrows: int = 1, ncols: int = 1, figsize=None, sharey: bool = False,
               dpi: float = DPI):
    """A figure not managed by pyplot, with constrained layout; ``axes`` is ``(nrows, ncols)``.

    ``dpi`` (default ``DPI`` = 150) sets the resolution of the figure and of
    its PNG (``_repr_png_``, ``savefig`` without a ``dpi``).
    """
    if figsize is None:
        figsize = (4.2 * ncols + 0.8, 3.2 * nrows + 0.4)
    fig = CourseFigure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False)
    return fig, axes


def _runs(func: str, arg: str, runs, t: int) -> np.ndarray:
    r = np.asarray(runs, dtype=np.float64)
    if r.ndim == 1:
        r = r[None, :]
    if r.ndim != 2 or r.shape[1] != t:
        fail(func, arg, f"shape (S, {t}) or ({t},) to match x", f"shape {np.shape(runs)}")
    return r


def mean_band(ax, x, runs, label=None, color=None, confidence: float = 0.95):
    """Draw the mean of ``runs (S, T)`` against ``x (T,)`` with its t-interval as a band.

    With one run (or one finite value at a point) only the line is drawn there.
    """
    x = np.asarray(x)
    r = _runs("mean_band", "runs", runs, x.shape[0])
    ci = mean_ci(r, axis=0, confidence=confidence)
    (line,) = ax.plot(x, ci.mean, label=label, color=color, lw=1.8)
    if r.shape[0] > 1:
        ax.fill_between(x, ci.low, ci.high, color=line.get_color(), alpha=0.2, lw=0)
    return line


def percentile_band(ax, x, p, label=None, color=None):
    """Draw the median ``p[:, 1]`` as a line and the band ``p[:, 0] .. p[:, 2]``."""
    x = np.asarray(x)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape != (x.shape[0], 3):
        fail("percentile_band", "p", f"shape ({x.shape[0]}, 3) (low, median, high per x)",
              f"shape {p.shape}")
    (line,) = ax.plot(x, p[:, 1], label=label, color=color, lw=1.8)
    ax.fill_between(x, p[:, 0], p[:, 2], color=line.get_color(), alpha=0.25, lw=0)
    return line


def _finish(ax, xlabel, ylabel, title, n_series):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if n_series > 1 or any(not h.get_label().startswith("_") for h in ax.get_lines()):
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)


def plot_curves(x, curves: dict, xlabel: str, ylabel: str, title: str | None = None,
                logx: bool = False, logy: bool = False, confidence: float = 0.95,
                ylim=None) -> Figure:
    """Mean curve with a ``confidence`` t-interval band over seeds, one per entry of ``curves``.

    Parameters
    ----------
    x : array, shape (T,)
        E.g. ``History.steps`` or a grid of learning rates.
    curves : dict label -> array (S, T) or (T,)
    xlabel, ylabel : str
        Required, with units.
    title : str, optional
    logx, logy : bool
        Log-scaled axes (say so in the label).
    confidence : float
    ylim : (low, high), optional

    Returns
    -------
    Figure

    Examples
    --------
    >>> fig = plot_curves([1, 2, 3], {"no BN": [[0.1, 0.5, 0.6], [0.2, 0.4, 0.7]],
    ...                               "BN": [[0.5, 0.9, 0.95], [0.6, 0.9, 0.96]]},
    ...                   xlabel="training step", ylabel="test accuracy (fraction)")
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['no BN', 'BN']
    """
    func = "plot_curves"
    xlabel = _check_label(func, "xlabel", xlabel)
    ylabel = _check_label(func, "ylabel", ylabel)
    curves = _check_dict(func, "curves", curves)
    fig, axes = new_figure()
    ax = axes[0, 0]
    for label, runs in curves.items():
        mean_band(ax, x, runs, label=str(label), confidence=confidence)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    _finish(ax, xlabel, ylabel, title, len(curves))
    return fig


def plot_percentiles(x, panels: dict, xlabel: str, ylabel: str, title: str | None = None,
                     q=(15, 50, 85), sharey: bool = True) -> Figure:
    """One subplot per panel: the median and the band between the outer percentiles over ``x``.

    Parameters
    ----------
    x : array, shape (T,)
        E.g. ``History.record_steps``.
    panels : dict panel title -> array (T, 3)
        Low, median, high percentiles at each x (the output of
        ``training.percentiles`` stacked by ``train``).
    xlabel, ylabel : str
        Required, with units (``"input of a sigmoid (pre-activation, a.u.)"``).
    title : str, optional
        Figure title (``suptitle``).
    q : three numbers
        The percentiles, used in the legend.
    sharey : bool
        One y scale for all panels (default), so their spreads compare directly.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[-1.0, 0.0, 1.0], [-1.5, 0.2, 1.4]])
    >>> fig = plot_percentiles([0, 100], {"without BN": p, "with BN": p},
    ...                        xlabel="training step", ylabel="sigmoid input (a.u.)")
    >>> len(fig.axes)
    2
    """
    func = "plot_percentiles"
    xlabel = _check_label(func, "xlabel", xlabel)
    ylabel = _check_label(func, "ylabel", ylabel)
    panels = _check_dict(func, "panels", panels)
    fig, axes = new_figure(1, len(panels), sharey=sharey)
    for ax, (name, p) in zip(axes[0], panels.items()):
        percentile_band(ax, x, p, label=f"{q[1]}th percentile")
        ax.plot([], [], lw=6, alpha=0.25, color=ax.get_lines()[0].get_color(),
                label=f"{q[0]}th to {q[2]}th percentile")
        _finish(ax, xlabel, ylabel, str(name), 2)
    if title:
        fig.suptitle(title)
    return fig


def _check_dodge(func: str, dodge) -> float:
    """The span of the series within a category: ``True`` -> 0.8, ``False`` -> 0, else ``dodge``."""
    if isinstance(dodge, bool):
        return 0.8 if dodge else 0.0
    if not isinstance(dodge, numbers.Real):
        fail(func, "dodge", "a bool or a float in [0, 1]", f"{type(dodge).__name__} {dodge!r}",
              TypeError)
    if not 0.0 <= dodge <= 1.0:
        fail(func, "dodge", "a bool or a float in [0, 1]", repr(dodge))
    return float(dodge)


def plot_points(categories, series: dict, xlabel: str, ylabel: str, title: str | None = None,
                kind: str = "point", confidence: float = 0.95, show_runs: bool = True,
                ylim=None, dodge: bool | float = True) -> Figure:
    """Mean with t-interval error bars per category, for one or several series.

    Parameters
    ----------
    categories : sequence of str, length C
        Tick labels (e.g. ``["sigmoid", "tanh", "relu"]``).
    series : dict label -> array (S, C) or (S,) when C == 1
        Per-run values (e.g. final test accuracy per seed).
    xlabel, ylabel : str
        Required, with units.
    kind : {"point", "bar"}
    show_runs : bool
        Also draw every run as a small dot.
    ylim : (low, high), optional
    dodge : bool or float in [0, 1]
        How far apart the series of one category stand, so that their error
        bars do not overlap: the series are spread evenly over this fraction
        of the distance between two categories. ``True`` (default) is 0.8,
        ``False`` (or 0) draws every series at the category's centre. One
        series always stands at the centre. Bars are ``0.8 / len(series)``
        wide in every case.

    Examples
    --------
    >>> fig = plot_points(["before", "after"], {"BN": [[0.95, 0.96], [0.94, 0.97]]},
    ...                   xlabel="BN placement", ylabel="test accuracy (fraction)")
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['before', 'after']
    """
    func = "plot_points"
    xlabel = _check_label(func, "xlabel", xlabel)
    ylabel = _check_label(func, "ylabel", ylabel)
    series = _check_dict(func, "series", series)
    if kind not in ("point", "bar"):
        fail(func, "kind", "'point' or 'bar'", repr(kind))
    span = _check_dodge(func, dodge)
    categories = [str(c) for c in categories]
    c = len(categories)
    fig, axes = new_figure()
    ax = axes[0, 0]
    width = 0.8 / len(series)
    step = span / len(series)       # distance between neighbouring series of one category
    for k, (label, values) in enumerate(series.items()):
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1 and c == 1:
            v = v[:, None]
        if v.ndim != 2 or v.shape[1] != c:
            fail(func, f"series[{label!r}]", f"shape (S, {c}) (runs x categories)",
                  f"shape {np.shape(values)}")
        ci = mean_ci(v, axis=0, confidence=confidence)
        pos = np.arange(c) + (k - (len(series) - 1) / 2) * step
        err = np.vstack([ci.mean - ci.low, ci.high - ci.mean])
        err = np.where(np.isfinite(err), err, 0.0)
        if kind == "bar":
            bars = ax.bar(pos, ci.mean, width=width * 0.9, yerr=err, capsize=4,
                          label=str(label), alpha=0.8)
            color = bars.patches[0].get_facecolor()
        else:
            eb = ax.errorbar(pos, ci.mean, yerr=err, fmt="o", capsize=4, label=str(label))
            color = eb.lines[0].get_color()
        if show_runs:
            for j in range(c):
                ax.plot(np.full(v.shape[0], pos[j]) + width * 0.12, v[:, j], ".", ms=4,
                        color=color, alpha=0.5)
    ax.set_xticks(np.arange(c), categories)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1 or any(str(label) for label in series):
        ax.legend(frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return fig
