"""Tests for bncourse.lab.diagrams: graph order, drawing, errors."""

import inspect
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from bncourse.batchnorm import batchnorm_backward_graph  # noqa: E402
from bncourse.lab.diagrams import (  # noqa: E402
    BATCHNORM_EDGES,
    BATCHNORM_NODES,
    Node,
    draw_batchnorm_graph,
    draw_graph,
    topological_order,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _annotations(ax):
    return [child for child in ax.get_children() if isinstance(child, Annotation)]


def test_topological_order_respects_every_edge():
    order = topological_order(BATCHNORM_NODES, BATCHNORM_EDGES)
    assert sorted(order) == sorted(BATCHNORM_NODES)
    for source, target in BATCHNORM_EDGES:
        assert order.index(source) < order.index(target), (source, target)


def test_topological_order_is_deterministic_and_keeps_node_order_among_ties():
    nodes = {name: Node(name, 0.0, 0.0) for name in ["c", "a", "b", "d"]}
    edges = [("a", "d"), ("b", "d"), ("c", "d")]
    assert topological_order(nodes, edges) == ["c", "a", "b", "d"]


def test_batchnorm_graph_matches_the_forward_equations():
    # Each intermediate value is computed from exactly the values in its formula.
    parents = {name: sorted(s for s, t in BATCHNORM_EDGES if t == name) for name in BATCHNORM_NODES}
    assert parents == {
        "x": [], "gamma": [], "beta": [],
        "mean": ["x"],
        "xc": ["mean", "x"],
        "sq": ["xc"],
        "var": ["sq"],
        "std": ["var"],
        "inv_std": ["std"],
        "x_hat": ["inv_std", "xc"],
        "gx": ["gamma", "x_hat"],
        "y": ["beta", "gx"],
    }


def test_batchnorm_nodes_are_numbered_in_forward_order():
    # The labels carry the step numbers of batchnorm_backward_graph's comments.
    numbered = {name: int(node.label.split("\n")[1].split(":")[0])
                for name, node in BATCHNORM_NODES.items() if node.kind != "input"
                and node.kind != "param"}
    assert sorted(numbered.values()) == list(range(1, 10))
    order = [n for n in topological_order(BATCHNORM_NODES, BATCHNORM_EDGES) if n in numbered]
    assert [numbered[n] for n in order] == list(range(1, 10))


def test_batchnorm_nodes_match_the_steps_of_the_graph_backward():
    # The figure and the code the chapter walks through must number the same steps.
    steps = dict(re.findall(r"^\s*(\d)\s+(\w+)\s+=", inspect.getdoc(batchnorm_backward_graph),
                            flags=re.MULTILINE))
    numbered = {node.label.split("\n")[1].split(": ")[0]: name
                for name, node in BATCHNORM_NODES.items() if node.kind in ("op", "output")}
    assert len(steps) == 9
    assert {int(k): v for k, v in steps.items()} == {int(k): v for k, v in numbered.items()}


@pytest.mark.parametrize("backward", [False, True])
def test_draw_graph_draws_one_box_per_node_and_arrows_per_edge(backward):
    ax = draw_batchnorm_graph(backward=backward)
    labels = [t.get_text() for t in ax.texts if not isinstance(t, Annotation)]
    assert sorted(labels) == sorted(node.label for node in BATCHNORM_NODES.values())
    assert len(_annotations(ax)) == len(BATCHNORM_EDGES) * (2 if backward else 1)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert ("backward: gradient flows back" in legend) == backward
    assert "parameter" in legend and "input" in legend
    ax.figure.canvas.draw()   # mathtext labels must render


def test_draw_graph_uses_given_axes_and_fits_limits():
    fig, ax = plt.subplots()
    nodes = {"a": Node("a", 0.0, 0.0, "input"), "b": Node("b", 5.0, 2.0, "output")}
    assert draw_graph(nodes, [("a", "b")], ax) is ax
    assert ax.get_xlim() == (-1.0, 6.0) and ax.get_ylim() == (-1.0, 3.0)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "parameter" not in legend   # only the kinds present


@pytest.mark.parametrize(
    "nodes, edges, exc, match",
    [
        ([], [], TypeError, r"draw_graph: nodes must be a mapping name -> Node, got list"),
        ({}, [], ValueError, r"draw_graph: nodes must hold at least one Node, got an empty"),
        ({"a": (0, 0)}, [], TypeError, r"nodes\['a'\] must be a Node, got tuple"),
        ({"a": Node("a", 0, 0, "box")}, [], ValueError, r"nodes\['a'\].kind must be one of.*'box'"),
        ({"a": Node("a", 0, 0)}, "ab", TypeError, r"edges must be a sequence.*got str"),
        ({"a": Node("a", 0, 0)}, [("a",)], ValueError, r"edges must hold \(source, target\)"),
        ({"a": Node("a", 0, 0)}, [("a", "z")], ValueError, r"unknown node 'z'"),
    ],
)
def test_bad_graphs_raise(nodes, edges, exc, match):
    with pytest.raises(exc, match=match):
        draw_graph(nodes, edges)


def test_cycle_raises():
    nodes = {name: Node(name, 0.0, 0.0) for name in "abc"}
    with pytest.raises(ValueError, match=r"topological_order: edges must form an acyclic graph, "
                                         r"got a cycle through b, c"):
        topological_order(nodes, [("a", "b"), ("b", "c"), ("c", "b")])
