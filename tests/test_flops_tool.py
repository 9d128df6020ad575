"""tools/flops.py: the numbers it prints are the core counter's; bad input is one line."""
import json

import pytest
import timm

import cydas_chain  # noqa: F401
from conftest import assert_one_line_error, run_tool
from cydas_chain.core import count_macs
from cydas_chain.models import ChainArch


def test_flops_tool_prints_the_core_counts(tmp_path):
    arch = ChainArch(((0,), (0,), (0,), (0,), (0,)))
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    proc = run_tool("tools/flops.py", path, "--input-size", "96", "--json", check=True)
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = count_macs(timm.create_model("cydas_chain", arch=arch), 96)
    assert printed["params"] == expected.params
    assert printed["fvcore_macs"] == expected.fvcore_macs and printed["thop_macs"] == expected.thop_macs
    text = run_tool("tools/flops.py", "cydas_a", check=True).stdout
    assert "parameters" in text and "MACs fvcore" in text and "MACs thop" in text


def test_flops_tool_bad_input(tmp_path):
    assert_one_line_error(run_tool("tools/flops.py", "no_such_model"), "unknown model 'no_such_model'")
    assert_one_line_error(run_tool("tools/flops.py", tmp_path / "missing.json"), "not found")
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"space": "darts", "normal": []}))
    assert_one_line_error(run_tool("tools/flops.py", bad), "'darts' space")


@pytest.mark.mm
def test_flops_tool_on_an_mm_config(repo_root):
    from cydas_chain.mm.flops import mm_config_macs

    config = repo_root / "mm_configs" / "fpn_cydas_b_ade20k.py"
    proc = run_tool("tools/flops.py", config, "--input-size", "128", "--json", check=True,
                    env={"OMP_NUM_THREADS": "1"})
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = mm_config_macs(config, input_size=(128, 128))
    assert printed["input_size"] == [128, 128]
    assert printed["backbone"] == expected["backbone"] and printed["model"] == expected["model"]
    backbone = count_macs(timm.create_model("cydas_b", features_only=True), 128)
    assert printed["backbone"]["fvcore_macs"] == backbone.fvcore_macs
    assert printed["model"]["fvcore_macs"] > backbone.fvcore_macs
