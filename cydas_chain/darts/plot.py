"""Drawings of cells with matplotlib (no graphviz), laid out like the cell figures of the DARTS and
CyDAS papers: the two inputs on the left, the intermediate nodes in order, the output on the right,
every op written on its edge.

Node names are typeset (``c_{k-2}`` as math, inside a circle sized for it); an edge that would run
through another node is bent around it, and its op label sits on the middle of the edge, turned
along it, on a white box that interrupts the line.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

OP_COLORS = {"sep_conv_3x3": "#1f77b4", "sep_conv_5x5": "#17becf", "dil_conv_3x3": "#2ca02c",
             "dil_conv_5x5": "#8c6d31", "max_pool_3x3": "#d62728", "avg_pool_3x3": "#ff7f0e",
             "skip_connect": "#7f7f7f", "nor_conv_1x1": "#9467bd", "nor_conv_3x3": "#1f77b4", "none": "#bbbbbb",
             "": "#555555"}
NODE_RADIUS = 0.42  # data units; nodes are 2 units apart
INPUT_COLOR, INNER_COLOR, OUTPUT_COLOR = "#a1d99b", "#c6dbef", "#fdd49e"
BENDS = (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45)  # arc3 curvatures tried, straight first
LABEL_CLEARANCE = 1.1  # data units between the middles of two labelled edges


def _bezier(p0, p1, rad: float, t: float) -> Tuple[float, float]:
    """The point at ``t`` of matplotlib's arc3 connection from ``p0`` to ``p1`` (a quadratic Bezier
    whose control point is the midpoint moved by ``rad`` x the perpendicular of p1 - p0)."""
    (x0, y0), (x1, y1) = p0, p1
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t ** 2
    return a * x0 + b * cx + c * x1, a * y0 + b * cy + c * y1


def _clear_bend(src: str, dst: str, nodes: Dict[str, Tuple[float, float]], taken: List, routed: List) -> float:
    """The first curvature whose edge keeps clear of every other node and of earlier edges' labels
    (else the one with the fewest clashes)."""
    p0, p1 = nodes[src], nodes[dst]
    others = [xy for name, xy in nodes.items() if name not in (src, dst)]
    best, best_clashes = BENDS[0], None
    for rad in BENDS:
        samples = [_bezier(p0, p1, rad, t / 20) for t in range(1, 20)]
        # through a node is worst, a label on a node or on another label next
        clashes = 100 * sum(math.dist(s, o) < 1.35 * NODE_RADIUS for s in samples for o in others)
        mid = _bezier(p0, p1, rad, 0.5)
        clashes += 10 * sum(math.dist(mid, o) < NODE_RADIUS + 0.4 for o in others)
        clashes += sum(math.dist(mid, m) < LABEL_CLEARANCE for m in taken)
        # a label on an earlier edge, or this edge through an earlier label
        clashes += 3 * sum(any(math.dist(mid, p) < 0.35 for p in path) for path in routed)
        clashes += 3 * sum(any(math.dist(m, p) < 0.35 for p in samples) for m in taken)
        if clashes == 0:
            return rad
        if best_clashes is None or clashes < best_clashes:
            best, best_clashes = rad, clashes
    return best


def layout_dag(nodes: Dict[str, Tuple[float, float]], edges: Sequence[Tuple[str, str, str]],
               labels: Dict[str, str], kinds: Dict[str, str], title: str = ""):
    """Draw onto a new figure; returns ``(fig, ax, node_texts, edge_items)`` where ``edge_items`` are
    ``(arrow patch, label text or None, label point)`` (the tests check the geometry)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch

    bends, taken, routed = [], [], []
    for src, dst, op in edges:  # route every edge first: the view must hold the bent ones
        bends.append(_clear_bend(src, dst, nodes, taken, routed))
        routed.append([_bezier(nodes[src], nodes[dst], bends[-1], t / 20) for t in range(2, 19)])
        if op:
            taken.append(_bezier(nodes[src], nodes[dst], bends[-1], 0.5))
    points = list(nodes.values()) + [_bezier(nodes[a], nodes[b], rad, t / 10)
                                     for (a, b, _), rad in zip(edges, bends) for t in range(11)]
    x_lo, x_hi = min(x for x, _ in points) - 0.8, max(x for x, _ in points) + 0.8
    y_lo, y_hi = min(y for _, y in points) - 0.8, max(y for _, y in points) + 0.8
    fig, ax = plt.subplots(figsize=(0.9 * (x_hi - x_lo), 0.9 * (y_hi - y_lo) + 0.4))
    ax.set_aspect("equal")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    circles, node_texts = {}, {}
    fill = {"input": INPUT_COLOR, "output": OUTPUT_COLOR, "inner": INNER_COLOR}
    for name, (x, y) in nodes.items():
        circles[name] = Circle((x, y), NODE_RADIUS, facecolor=fill[kinds[name]], edgecolor="black", lw=1.2, zorder=3)
        ax.add_patch(circles[name])
        node_texts[name] = ax.text(x, y, labels[name], ha="center", va="center", fontsize=13, zorder=4)
    edge_items = []
    for (src, dst, op), rad in zip(edges, bends):
        color = OP_COLORS.get(op, "#444444")
        arrow = FancyArrowPatch(nodes[src], nodes[dst], patchA=circles[src], patchB=circles[dst],
                                arrowstyle="-|>", mutation_scale=14, color=color, lw=1.6,
                                connectionstyle=f"arc3,rad={rad}", zorder=1)
        ax.add_patch(arrow)
        mid = _bezier(nodes[src], nodes[dst], rad, 0.5)
        text = None
        if op:
            (x0, y0), (x1, y1) = nodes[src], nodes[dst]
            angle = math.degrees(math.atan2(y1 - y0, x1 - x0))  # the arc's tangent at its middle
            if angle > 90:
                angle -= 180
            elif angle < -90:
                angle += 180
            text = ax.text(*mid, op, fontsize=8.5, ha="center", va="center", rotation=angle,
                           rotation_mode="anchor", color=color, zorder=2,
                           bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
        edge_items.append((arrow, text, mid))
    if title:
        ax.set_title(title)
    ax.axis("off")
    return fig, ax, node_texts, edge_items


def draw_dag(nodes: Dict[str, Tuple[float, float]], edges: Sequence[Tuple[str, str, str]], path: Path,
             title: str = "", labels: Dict[str, str] = None, kinds: Dict[str, str] = None) -> Path:
    """Draw ``edges`` (src, dst, op label) between ``nodes`` (name -> (x, y)) into a PNG at ``path``."""
    import matplotlib.pyplot as plt

    labels = labels or {n: n for n in nodes}
    kinds = kinds or {n: "inner" for n in nodes}
    fig, *_ = layout_dag(nodes, edges, labels, kinds, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def darts_cell_graph(edges: Sequence[Tuple[str, int]], concat: Sequence[int]):
    """Nodes, edges, labels and kinds of a DARTS cell: inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output
    c_{k} (the concat of ``concat``)."""
    steps = len(edges) // 2
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(steps)]
    step = 2.6
    nodes = {"c_{k-2}": (0.0, 1.5), "c_{k-1}": (0.0, -1.5), "c_{k}": (step * (steps + 1), 0.0)}
    for i in range(steps):  # in order, left to right, alternately above and below the middle
        nodes[str(i)] = (step * (i + 1), 1.1 if i % 2 == 0 else -1.1)
    dag: List[Tuple[str, str, str]] = [(names[inp], str(i // 2), op) for i, (op, inp) in enumerate(edges)]
    dag += [(names[s], "c_{k}", "") for s in concat]
    labels = {n: (f"${n}$" if n.startswith("c_") else n) for n in nodes}
    kinds = {n: ("input" if n in ("c_{k-2}", "c_{k-1}") else "output" if n == "c_{k}" else "inner") for n in nodes}
    return nodes, dag, labels, kinds


def draw_darts_cell(edges: Sequence[Tuple[str, int]], concat: Sequence[int], path: Path, title: str = "") -> Path:
    """A DARTS cell: inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output c_{k} (concat of ``concat`` states)."""
    nodes, dag, labels, kinds = darts_cell_graph(edges, concat)
    return draw_dag(nodes, dag, path, title, labels, kinds)


def nb201_cell_graph(ops: Sequence[str], edge_list: Sequence[Tuple[int, int]]):
    nodes = {"in": (0.0, 0.0), "1": (2.6, 1.3), "2": (5.2, -1.3), "out": (7.8, 0.0)}
    name = {0: "in", 1: "1", 2: "2", 3: "out"}
    dag = [(name[inp], name[node], op) for op, (node, inp) in zip(ops, edge_list) if op != "none"]
    labels = {"in": "$x_0$", "1": "$x_1$", "2": "$x_2$", "out": "$x_3$"}
    kinds = {"in": "input", "1": "inner", "2": "inner", "out": "output"}
    return nodes, dag, labels, kinds


def draw_nb201_cell(ops: Sequence[str], edge_list: Sequence[Tuple[int, int]], path: Path, title: str = "") -> Path:
    """A NAS-Bench-201 cell: node 0 (input) to node 3 (output); ``none`` edges are not drawn."""
    nodes, dag, labels, kinds = nb201_cell_graph(ops, edge_list)
    return draw_dag(nodes, dag, path, title, labels, kinds)
