"""Small computational-graph diagrams drawn with matplotlib (no Graphviz needed).

A graph is a mapping ``name -> Node`` (label, position, kind) and a list of
directed edges ``(source, target)``: an edge means "target is computed from
source". :func:`draw_graph` draws the nodes as rounded boxes and the edges as
arrows; with ``backward=True`` it also draws, for every edge, a dashed arrow
in the opposite direction: the path a gradient takes during backpropagation.
:func:`topological_order` lists the nodes so that every node comes after
everything it is computed from; the backward pass visits them in reverse.

``BATCHNORM_NODES`` / ``BATCHNORM_EDGES`` describe the training-mode forward
of batch normalization with one node per elementary operation, numbered as in
``bncourse.batchnorm.batchnorm_backward_graph`` (sums run over the ``m``
values of a channel)::

    1  mean    = sum(x) / m
    2  xc      = x - mean
    3  sq      = xc ** 2
    4  var     = sum(sq) / m
    5  std     = sqrt(var + eps)
    6  inv_std = 1 / std
    7  x_hat   = xc * inv_std
    8  gx      = gamma * x_hat
    9  y       = gx + beta

Example
-------
>>> order = topological_order(BATCHNORM_NODES, BATCHNORM_EDGES)
>>> order.index("mean") < order.index("xc") < order.index("x_hat") < order.index("y")
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

__all__ = ["Node", "NODE_COLORS", "BATCHNORM_NODES", "BATCHNORM_EDGES", "topological_order",
           "draw_graph", "draw_batchnorm_graph"]


class Node(NamedTuple):
    """One box of a diagram: its text (matplotlib mathtext allowed), centre and kind."""

    label: str
    x: float
    y: float
    kind: str = "op"


#: Face colour of each kind of node; the legend shows the kinds that occur.
NODE_COLORS = {
    "input": "#cfe2f3",
    "param": "#fce5cd",
    "op": "#eeeeee",
    "output": "#d9ead3",
}

_KIND_NAMES = {"input": "input", "param": "parameter", "op": "intermediate value",
               "output": "output"}

BATCHNORM_NODES: dict[str, Node] = {
    "x": Node("$x$\ninput", 0.0, 0.0, "input"),
    "mean": Node("$\\mu = \\frac{1}{m}\\sum_i x_i$\n1: mean", 1.4, 1.7),
    "xc": Node("$c = x - \\mu$\n2: xc", 2.8, 0.0),
    "sq": Node("$q = c^2$\n3: sq", 3.2, -1.7),
    "var": Node("$\\sigma^2 = \\frac{1}{m}\\sum_i q_i$\n4: var", 4.8, -1.7),
    "std": Node("$s = \\sqrt{\\sigma^2 + \\epsilon}$\n5: std", 6.6, -1.7),
    "inv_std": Node("$r = 1 / s$\n6: inv_std", 8.3, -1.7),
    "x_hat": Node("$\\hat{x} = c\\,r$\n7: x_hat", 8.3, 0.0),
    "gamma": Node("$\\gamma$\ngamma", 8.3, 1.7, "param"),
    "gx": Node("$u = \\gamma\\,\\hat{x}$\n8: gx", 10.0, 0.0),
    "beta": Node("$\\beta$\nbeta", 10.0, 1.7, "param"),
    "y": Node("$y = u + \\beta$\n9: output", 11.7, 0.0, "output"),
}

BATCHNORM_EDGES: list[tuple[str, str]] = [
    ("x", "mean"),
    ("x", "xc"),
    ("mean", "xc"),
    ("xc", "sq"),
    ("sq", "var"),
    ("var", "std"),
    ("std", "inv_std"),
    ("xc", "x_hat"),
    ("inv_std", "x_hat"),
    ("x_hat", "gx"),
    ("gamma", "gx"),
    ("gx", "y"),
    ("beta", "y"),
]


def _check_graph(func: str, nodes, edges) -> None:
    if not isinstance(nodes, Mapping):
        raise TypeError(f"{func}: nodes must be a mapping name -> Node, "
                        f"got {type(nodes).__name__}")
    if not nodes:
        raise ValueError(f"{func}: nodes must hold at least one Node, got an empty mapping")
    for name, node in nodes.items():
        if not isinstance(node, Node):
            raise TypeError(f"{func}: nodes[{name!r}] must be a Node, got {type(node).__name__}")
        if node.kind not in NODE_COLORS:
            raise ValueError(f"{func}: nodes[{name!r}].kind must be one of "
                             f"{', '.join(map(repr, NODE_COLORS))}, got {node.kind!r}")
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
        raise TypeError(f"{func}: edges must be a sequence of (source, target) pairs, "
                        f"got {type(edges).__name__}")
    for edge in edges:
        if not (isinstance(edge, tuple) and len(edge) == 2):
            raise ValueError(f"{func}: edges must hold (source, target) pairs, got {edge!r}")
        for end in edge:
            if end not in nodes:
                raise ValueError(f"{func}: edge {edge!r} must join names of nodes, "
                                 f"got unknown node {end!r}")


def topological_order(nodes: Mapping[str, Node], edges: Sequence[tuple[str, str]]) -> list[str]:
    """Node names ordered so that each node follows every node it is computed from.

    Kahn's algorithm; among nodes that are ready at the same time the order of
    ``nodes`` is kept, so the result is deterministic. Reversed, it is an order
    in which backpropagation can visit the nodes: a node's gradient is
    complete once every node computed from it has been visited.

    Raises:
        TypeError, ValueError: malformed ``nodes``/``edges`` (unknown node names).
        ValueError: the edges contain a cycle (not a computational graph).
    """
    func = "topological_order"
    _check_graph(func, nodes, edges)
    indegree = {name: 0 for name in nodes}
    for _, target in edges:
        indegree[target] += 1
    order: list[str] = []
    ready = [name for name in nodes if indegree[name] == 0]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for source, target in edges:
            if source == name:
                indegree[target] -= 1
                if indegree[target] == 0:
                    ready.append(target)
    if len(order) != len(nodes):
        stuck = sorted(set(nodes) - set(order))
        raise ValueError(f"{func}: edges must form an acyclic graph, "
                         f"got a cycle through {', '.join(stuck)}")
    return order


def draw_graph(nodes: Mapping[str, Node], edges: Sequence[tuple[str, str]], ax: Axes | None = None,
               *, backward: bool = False, fontsize: float = 10.0) -> Axes:
    """Draw a computational graph: boxes for ``nodes``, solid arrows for ``edges``.

    With ``backward=True`` each edge also gets a dashed red arrow from target
    to source, bent to one side so it does not hide the forward arrow: the
    gradient of the loss flows back along every edge.

    Args:
        nodes: name -> :class:`Node`; coordinates are data units of ``ax``.
        edges: ``(source, target)`` pairs of node names.
        ax: axes to draw into; a new 12 x 4.5 inch figure when None.
        backward: also draw the gradient arrows.
        fontsize: size of the node labels.

    Returns:
        The axes (axis lines hidden, limits fitted to the nodes, legend of
        the node kinds and arrow styles).

    Raises:
        TypeError, ValueError: malformed ``nodes`` or ``edges``.
    """
    _check_graph("draw_graph", nodes, edges)
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 4.5))
    texts = {}
    for name, node in nodes.items():
        texts[name] = ax.text(
            node.x, node.y, node.label, ha="center", va="center", fontsize=fontsize, zorder=3,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": NODE_COLORS[node.kind],
                  "edgecolor": "0.3"})
    for source, target in edges:
        ax.annotate("", xy=(nodes[target].x, nodes[target].y),
                    xytext=(nodes[source].x, nodes[source].y),
                    arrowprops={"arrowstyle": "-|>", "color": "0.15", "lw": 1.4,
                                "shrinkA": 0, "shrinkB": 0,
                                "patchA": texts[source].get_bbox_patch(),
                                "patchB": texts[target].get_bbox_patch()},
                    zorder=4)
        if backward:
            ax.annotate("", xy=(nodes[source].x, nodes[source].y),
                        xytext=(nodes[target].x, nodes[target].y),
                        arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 1.2,
                                    "linestyle": "--", "connectionstyle": "arc3,rad=0.35",
                                    "shrinkA": 0, "shrinkB": 0,
                                    "patchA": texts[target].get_bbox_patch(),
                                    "patchB": texts[source].get_bbox_patch()},
                        zorder=4)
    xs = [node.x for node in nodes.values()]
    ys = [node.y for node in nodes.values()]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_axis_off()
    handles = [Patch(facecolor=NODE_COLORS[kind], edgecolor="0.3", label=_KIND_NAMES[kind])
               for kind in NODE_COLORS if any(n.kind == kind for n in nodes.values())]
    handles.append(plt.Line2D([], [], color="0.15", lw=1.4, label="forward: computed from"))
    if backward:
        handles.append(plt.Line2D([], [], color="tab:red", lw=1.2, linestyle="--",
                                  label="backward: gradient flows back"))
    ax.legend(handles=handles, loc="lower left", fontsize=fontsize - 1, frameon=False)
    return ax


def draw_batchnorm_graph(ax: Axes | None = None, *, backward: bool = False) -> Axes:
    """Draw batch normalization's forward graph (``BATCHNORM_NODES``/``BATCHNORM_EDGES``)."""
    return draw_graph(BATCHNORM_NODES, BATCHNORM_EDGES, ax, backward=backward)
