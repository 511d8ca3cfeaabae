"""Which values share one mean and variance: masks and pictures of the reduced axes.

A normalization layer computes its statistics over a *set* of values of the
activation tensor and normalizes every value of the set with them. The layers
differ only in that set. With the activations viewed as ``(N, C, S)``
(``N`` samples, ``C`` channels, ``S = H * W`` spatial positions, ``S = 1``
for an ``(N, C)`` matrix), the set that contains value ``(n, c, s)`` is:

========== ============================================ ============
mode       values that share one mean and variance      set size
========== ============================================ ============
"batch"    every sample ``n'`` and position, channel c   ``N * S``
"layer"    sample ``n``, every channel and position      ``C * S``
"instance" sample ``n``, channel ``c``, every position   ``S``
"group"    sample ``n``, the channels of c's group       ``C/G * S``
========== ============================================ ============

``"batch"`` is batch normalization: for ``(N, C)`` input one mean per
feature (a column), for ``(N, C, H, W)`` one mean per channel (a slab of the
cube). :func:`reduced_mask` returns that set as a boolean array;
:func:`draw_grid` (``(N, C)`` matrices) and :func:`draw_cube` (``(N, C, S)``
tensors, drawn like Figure 2 of Wu & He's Group Normalization paper) shade
it.

Example
-------
>>> mask = reduced_mask((4, 3, 5), "batch", channel=1)
>>> int(mask.sum())               # N * S values share channel 1's statistics
20
>>> bool(mask[:, 1].all() and not mask[:, [0, 2]].any())
True
"""

from __future__ import annotations

import numbers

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Polygon

from bncourse._checks import fail

__all__ = ["MODES", "reduced_mask", "draw_grid", "draw_cube"]

MODES = ("batch", "layer", "instance", "group")

_SHADE = "#6fa8dc"
_PLAIN = "#f3f3f3"


def _check_index(func: str, arg: str, value, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(func, arg, "an int", f"{type(value).__name__} {value!r}", TypeError)
    if not 0 <= value < size:
        fail(func, arg, f"an index in [0, {size})", repr(value))
    return int(value)


def _check_shape(func: str, shape) -> tuple[int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) not in (2, 3) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
            for v in shape):
        fail(func, "shape", "a tuple of 2 or 3 positive ints (N, C) or (N, C, S)", repr(shape))
    n, c, s = (tuple(int(v) for v in shape) + (1,))[:3]
    return n, c, s


def reduced_mask(shape, mode: str = "batch", channel: int = 0, sample: int = 0,
                 groups: int = 1) -> np.ndarray:
    """Boolean mask of the values normalized with the same statistics as ``(sample, channel)``.

    Args:
        shape: ``(N, C)`` or ``(N, C, S)`` with ``S`` the number of spatial
            positions (``H * W`` of an image).
        mode: ``"batch"``, ``"layer"``, ``"instance"`` or ``"group"`` (see the
            module docstring).
        channel: the channel ``c`` whose set is wanted.
        sample: the sample ``n`` (ignored by ``"batch"``, which pools all samples).
        groups: number of channel groups ``G`` for ``"group"``; must divide ``C``.

    Returns:
        ``bool`` array of shape ``(N, C, S)`` (``S = 1`` for ``(N, C)``):
        True where a value belongs to the set.

    Raises:
        TypeError, ValueError: a malformed shape, unknown mode, index out of
        range, or ``groups`` that does not divide ``C``.
    """
    func = "reduced_mask"
    n, c, s = _check_shape(func, shape)
    if mode not in MODES:
        fail(func, "mode", f"one of {', '.join(map(repr, MODES))}", repr(mode))
    channel = _check_index(func, "channel", channel, c)
    sample = _check_index(func, "sample", sample, n)
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        fail(func, "groups", "an int", f"{type(groups).__name__} {groups!r}", TypeError)
    if groups <= 0 or c % groups:
        fail(func, "groups", f"a positive divisor of the {c} channels", repr(groups))
    mask = np.zeros((n, c, s), dtype=bool)
    if mode == "batch":
        mask[:, channel, :] = True
    elif mode == "layer":
        mask[sample, :, :] = True
    elif mode == "instance":
        mask[sample, channel, :] = True
    else:
        size = c // groups
        first = (channel // size) * size
        mask[sample, first:first + size, :] = True
    return mask


def _check_mask(func: str, mask, ndim: int) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.dtype != bool:
        fail(func, "mask", "a boolean numpy.ndarray",
              f"{type(mask).__name__}" + (f" of dtype {mask.dtype}"
                                          if isinstance(mask, np.ndarray) else ""), TypeError)
    if mask.ndim != ndim or 0 in mask.shape:
        fail(func, "mask", f"a non-empty {ndim}-D array", f"shape {mask.shape}")
    return mask


def draw_grid(ax: Axes, mask: np.ndarray, *, title: str | None = None,
              row_label: str = "N: samples in the batch",
              col_label: str = "C: features") -> int:
    """Draw an ``(N, C)`` matrix as a grid of cells, shading the cells where ``mask`` is True.

    Rows are samples (top row = sample 0), columns are features. The axis
    labels name the two axes; ticks number the samples and features.

    Args:
        ax: the axes to draw into.
        mask: ``bool`` array of shape ``(N, C)`` or ``(N, C, 1)``.
        title: optional axes title.
        row_label, col_label: the y and x axis labels.

    Returns:
        The number of shaded cells.

    Raises:
        TypeError, ValueError: ``mask`` is not a boolean 2-D array (or 3-D with S = 1).
    """
    func = "draw_grid"
    if isinstance(mask, np.ndarray) and mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    mask = _check_mask(func, mask, 2)
    n, c = mask.shape
    for i in range(n):
        for j in range(c):
            ax.add_patch(Polygon([(j, n - i - 1), (j + 1, n - i - 1), (j + 1, n - i), (j, n - i)],
                                 closed=True, facecolor=_SHADE if mask[i, j] else _PLAIN,
                                 edgecolor="0.35", lw=0.8))
    ax.set_xlim(0, c)
    ax.set_ylim(0, n)
    ax.set_aspect("equal")
    ax.set_xticks(np.arange(c) + 0.5, [str(j) for j in range(c)])
    ax.set_yticks(np.arange(n) + 0.5, [str(n - 1 - i) for i in range(n)])
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    if title:
        ax.set_title(title)
    return int(mask.sum())


def _cell(a0: float, b0: float, da: tuple[float, float], db: tuple[float, float]):
    """Corners of the parallelogram spanned by unit steps ``da`` and ``db`` from ``(a0, b0)``."""
    return [(a0, b0), (a0 + da[0], b0 + da[1]),
            (a0 + da[0] + db[0], b0 + da[1] + db[1]), (a0 + db[0], b0 + db[1])]


def draw_cube(ax: Axes, mask: np.ndarray, *, title: str | None = None, depth: float = 0.45,
              labels: tuple[str, str, str] = ("N: samples", "C: channels",
                                              "H, W: positions")) -> int:
    """Draw an ``(N, C, S)`` tensor as a cube in oblique projection, shading ``mask``.

    Channels run to the right, spatial positions (``H * W`` flattened) run up,
    and samples run into the page (sample 0 in front). Three faces are
    visible: the front face (sample 0, every channel and position), the top
    face (the last position, every sample and channel) and the right face (the
    last channel, every sample and position). A visible cell is shaded when
    its value is in ``mask``. The three directions are labelled with arrows.

    Args:
        ax: the axes to draw into (its axis lines are hidden: the arrows label
            the cube's axes).
        mask: ``bool`` array of shape ``(N, C, S)``.
        title: optional axes title.
        depth: drawn length of one sample along the receding axis (cell units).
        labels: texts for the sample, channel and position directions.

    Returns:
        The number of shaded *visible* cells (faces share no cell).

    Raises:
        TypeError, ValueError: ``mask`` is not a boolean 3-D array.
    """
    mask = _check_mask("draw_cube", mask, 3)
    n, c, s = mask.shape
    back = (depth * 0.8, depth * 0.6)       # one step into the page
    shaded = 0

    def face(corners, on):
        nonlocal shaded
        shaded += int(on)
        ax.add_patch(Polygon(corners, closed=True, facecolor=_SHADE if on else _PLAIN,
                             edgecolor="0.35", lw=0.7))

    for j in range(c):                      # front face: sample 0
        for k in range(s):
            face(_cell(j, k, (1, 0), (0, 1)), mask[0, j, k])
    for i in range(n):                      # top face: position s - 1
        for j in range(c):
            face(_cell(j + i * back[0], s + i * back[1], (1, 0), back), mask[i, j, s - 1])
    for i in range(n):                      # right face: channel c - 1
        for k in range(s):
            face(_cell(c + i * back[0], k + i * back[1], back, (0, 1)), mask[i, c - 1, k])

    arrow = {"arrowstyle": "-|>", "color": "0.2", "lw": 1.2}
    ax.annotate("", xy=(c, -0.6), xytext=(0, -0.6), arrowprops=arrow)
    ax.text(c / 2, -0.9, labels[1], ha="center", va="top")
    ax.annotate("", xy=(-0.6, s), xytext=(-0.6, 0), arrowprops=arrow)
    ax.text(-0.9, s / 2, labels[2], ha="right", va="center", rotation=90)
    tip = (c + n * back[0] + 0.3, n * back[1] - 0.3)
    ax.annotate("", xy=tip, xytext=(c + 0.3, -0.3), arrowprops=arrow)
    ax.text(tip[0] + 0.15, tip[1], labels[0], ha="left", va="center")
    ax.set_xlim(-1.8, c + n * back[0] + 3.2)
    ax.set_ylim(-1.8, s + n * back[1] + 0.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return shaded
