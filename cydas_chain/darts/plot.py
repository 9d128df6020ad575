"""Drawings of cells with matplotlib (no graphviz): inputs on the left, nodes in the middle, output right."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

OP_COLORS = {"sep_conv_3x3": "#1f77b4", "sep_conv_5x5": "#17becf", "dil_conv_3x3": "#2ca02c",
             "dil_conv_5x5": "#98df8a", "max_pool_3x3": "#d62728", "avg_pool_3x3": "#ff7f0e",
             "skip_connect": "#7f7f7f", "nor_conv_1x1": "#9467bd", "nor_conv_3x3": "#1f77b4", "none": "#dddddd",
             "": "#000000"}


def draw_dag(nodes: Dict[str, Tuple[float, float]], edges: Sequence[Tuple[str, str, str]], path: Path,
             title: str = "") -> Path:
    """Draw ``edges`` (src, dst, op label) between ``nodes`` (name -> (x, y)) into a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for src, dst, op in edges:
        (x0, y0), (x1, y1) = nodes[src], nodes[dst]
        bend = 0.15 if x1 - x0 > 1.5 else 0.0
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=OP_COLORS.get(op, "#444444"), lw=1.6,
                                    shrinkA=16, shrinkB=16, connectionstyle=f"arc3,rad={bend}"))
        if op:
            ax.text(0.55 * x0 + 0.45 * x1, 0.55 * y0 + 0.45 * y1 + 0.08, op, fontsize=7, ha="center",
                    color=OP_COLORS.get(op, "#444444"), bbox=dict(fc="white", ec="none", alpha=0.7, pad=0.5))
    for name, (x, y) in nodes.items():
        io = not name.isdigit()
        ax.scatter([x], [y], s=900, c="#fdd49e" if io else "#c6dbef", edgecolors="black", zorder=3)
        ax.text(x, y, name, ha="center", va="center", fontsize=8, zorder=4)
    ax.set_title(title)
    ax.axis("off")
    ax.margins(0.08)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_darts_cell(edges: Sequence[Tuple[str, int]], concat: Sequence[int], path: Path, title: str = "") -> Path:
    """A DARTS cell: inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output c_{k} (concat of ``concat`` states)."""
    steps = len(edges) // 2
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(steps)]
    nodes = {"c_{k-2}": (0.0, 0.5), "c_{k-1}": (0.0, -0.5), "c_{k}": (steps + 1.5, 0.0)}
    for i in range(steps):
        nodes[str(i)] = (1.0 + i, 0.9 if i % 2 == 0 else -0.9)
    dag: List[Tuple[str, str, str]] = [(names[inp], str(i // 2), op) for i, (op, inp) in enumerate(edges)]
    dag += [(names[s], "c_{k}", "") for s in concat]
    return draw_dag(nodes, dag, path, title)


def draw_nb201_cell(ops: Sequence[str], edge_list: Sequence[Tuple[int, int]], path: Path, title: str = "") -> Path:
    nodes = {"in": (0.0, 0.0), "1": (1.0, 0.8), "2": (2.0, -0.8), "out": (3.0, 0.0)}
    label = {0: "in", 1: "1", 2: "2", 3: "out"}
    dag = [(label[inp], label[node], op) for op, (node, inp) in zip(ops, edge_list) if op != "none"]
    return draw_dag(nodes, dag, path, title)
