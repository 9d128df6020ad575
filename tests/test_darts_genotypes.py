"""Genotypes: the published cells by name, JSON round trip, the official text forms, bad input."""
import json

import pytest

from cydas_chain.core.errors import ArchError
from cydas_chain.darts.genotypes import (PUBLISHED_NAMES, parse_genotype_text, published,
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
