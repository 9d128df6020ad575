"""Genotypes: the published cells by name, JSON round trip, the official text forms, bad input."""
import json

import pytest

from cydas_chain.core.errors import ArchError
from cydas_chain.models.darts.genotypes import (PUBLISHED_NAMES, parse_genotype_text, published,
                                         resolve_genotype)

DARTS_V2_NORMAL = (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                   ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2))


@pytest.mark.parametrize("name", sorted(PUBLISHED_NAMES))
def test_published_load_and_round_trip(name, tmp_path):
    g = published(name)
    assert g.steps == 4 and len(g.normal) == len(g.reduce) == 8
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    path = tmp_path / "g.json"
    path.write_text(g.to_json())
    assert json.loads(path.read_text())["space"] == "darts"
    assert resolve_genotype(str(path)) == g
    assert parse_genotype_text(str(g)) == g  # our text form is the official DARTS one


def test_dartsv2_cells_as_published():
    g = resolve_genotype("dartsv2")
    assert g.normal == DARTS_V2_NORMAL
    assert g.reduce[0] == ("max_pool_3x3", 0) and g.reduce[2] == ("skip_connect", 2)


def test_official_text_variants_parse_alike():
    grouped = ("Genotype(normal=[[('sep_conv_3x3', 0),('sep_conv_3x3', 1)], [('sep_conv_3x3', 0), "
               "('sep_conv_3x3', 1)], [('sep_conv_3x3', 1), ('skip_connect', 0)], [('skip_connect', 0), "
               "('dil_conv_3x3', 2)]], normal_concat=range(2, 6), reduce=[[('max_pool_3x3', 0), "
               "('max_pool_3x3', 1)], [('skip_connect', 2), ('max_pool_3x3', 1)], [('max_pool_3x3', 0), "
               "('skip_connect', 2)], [('skip_connect', 2), ('max_pool_3x3', 1)]], reduce_concat=range(2,6))")
    flat = ("Genotype(normal=" + repr(list(DARTS_V2_NORMAL)) + ", normal_concat=[2, 3, 4, 5], reduce="
            + repr(list(published("dartsv2").reduce)) + ", reduce_concat=[2, 3, 4, 5])")
    assert parse_genotype_text(grouped) == parse_genotype_text(flat) == published("dartsv2")


def test_official_per_stage_file(tmp_path):
    text = str(published("pdarts"))
    path = tmp_path / "official.json"
    path.write_text(json.dumps({"0": text, "1": text, "2": text}))
    assert resolve_genotype(path) == published("pdarts")


def test_text_is_not_evaluated():
    with pytest.raises(ArchError, match="not a literal"):
        parse_genotype_text("Genotype(normal=__import__('os').system('true'), normal_concat=[2], "
                            "reduce=[], reduce_concat=[2])")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"space": "nb201", "arch": "x"}', "'nb201' space"),
    ('{"space": "darts", "normal": [["sep_conv_3x3", 0]]}', "missing key"),
    ('{"normal": [["conv_9x9", 0], ["sep_conv_3x3", 1]], "normal_concat": [2], '
     '"reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}', "unknown op 'conv_9x9'"),
    ('{"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 5]], "normal_concat": [2], '
     '"reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "reduce_concat": [2]}', "cannot take input 5"),
])
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ArchError, match=message) as e:
        resolve_genotype(str(path))
    assert "\n" not in str(e.value)


def test_unknown_name():
    with pytest.raises(ArchError, match="unknown genotype 'dartsv3'.*dartsv2"):
        resolve_genotype("dartsv3")


@pytest.mark.parametrize("name, kind", [("cydas_cifar", "normal"), ("cydas_cifar", "reduce"), ("dartsv2", "reduce")])
def test_cell_picture_is_readable(name, kind):
    """Node names typeset and inside their circles; every op label on its own drawn edge, in view;
    inputs left, intermediate nodes in order, output right."""
    import math

    import matplotlib.pyplot as plt
    import numpy as np

    from cydas_chain.darts.plot import darts_cell_graph, layout_dag

    edges, concat = published(name).cell(kind == "reduce")
    nodes, dag, labels, kinds = darts_cell_graph(edges, concat)
    xs = {n: x for n, (x, _) in nodes.items()}
    assert xs["c_{k-2}"] == xs["c_{k-1}"] < xs["0"] < xs["1"] < xs["2"] < xs["3"] < xs["c_{k}"]
    fig, ax, node_texts, edge_items = layout_dag(nodes, dag, labels, kinds)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_display = ax.transData.transform
    for n, text in node_texts.items():
        assert text.get_text() == (f"${n}$" if n.startswith("c_") else n)
        box = text.get_window_extent(renderer)
        center = to_display(nodes[n])
        radius = to_display((nodes[n][0] + 0.42, nodes[n][1]))[0] - center[0]
        corners = [(box.x0, box.y0), (box.x0, box.y1), (box.x1, box.y0), (box.x1, box.y1)]
        assert all(math.dist(c, center) < radius for c in corners), n  # the name fits in its circle
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    labelled = [(arrow, text, mid) for arrow, text, mid in edge_items if text is not None]
    assert len(labelled) == len(edges)
    for arrow, text, mid in labelled:
        assert x_lo < mid[0] < x_hi and y_lo < mid[1] < y_hi
        # the label's centre lies on the edge matplotlib drew (its flattened path, data units)
        ts = np.linspace(0, 1, 400)
        points = np.concatenate([segment.point_at_t(ts) for segment, _ in arrow.get_path().iter_bezier()])
        assert np.hypot(*(points - mid).T).min() < 0.03, text.get_text()
    plt.close(fig)
