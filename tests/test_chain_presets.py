"""The chain search's presets: docs/chain.md's table is the presets' values with their sources, the tool
applies a preset and lets options override it, and the released sampler draws as the released code does."""
from pathlib import Path
import importlib.util

import numpy as np
import pytest

from cydas_chain.chain.presets import PRE_PROB, PRESET_NAMES, PRESETS, SIZES, SOURCES, preset_table, preset_values
from cydas_chain.chain.searcher import SearchConfig

ROOT = Path(__file__).resolve().parents[1]


def tool():
    spec = importlib.util.spec_from_file_location("search_chain_tool", ROOT / "tools" / "search_chain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_table_is_the_presets():
    docs = (ROOT / "docs" / "chain.md").read_text()
    assert preset_table() in docs
    assert set(SOURCES) == set(PRESETS["default"]) | set(SIZES["default"])  # every value has its sources
    for name in PRESET_NAMES:
        SearchConfig(max_macs=int(400e6), **preset_values(name))  # each makes a valid configuration


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_tool_applies_a_preset_and_options_override_it(name):
    t = tool()
    args = t.build_parser().parse_args(["--flops", "400", "--data", "x", "--preset", name])
    cfg = t.search_config(args, world_size=8, accum=1)
    for key, value in PRESETS[name].items():
        got = getattr(cfg, key)
        assert (tuple(got) if isinstance(got, (list, tuple)) else got) == value or (
            name == "default" and key in ("distill_start", "warmup_epochs")), key  # default: relative to --epochs
    assert (cfg.epochs, cfg.batch_size, cfg.img_size, cfg.eval_interval) == (120, 1024, 224, SIZES[name]["eval_interval"])
    assert cfg.base_lr == pytest.approx(PRESETS[name]["lr_per_1024"])  # for the total batch of 1024
    if name == "default":
        assert (cfg.distill_start, cfg.warmup_epochs) == (20, 3)
    given = t.build_parser().parse_args(["--flops", "400", "--data", "x", "--preset", name, "--board-size", "3",
                                         "--smoothing", "0.2", "--replace-gap", "none", "--slots", "4,4,5,4,4"])
    cfg = t.search_config(given, world_size=1, accum=1)
    assert (cfg.board_size, cfg.label_smoothing, cfg.replace_gap, cfg.slots) == (3, 0.2, None, (4, 4, 5, 4, 4))
    assert cfg.preset == name


def test_the_released_sampler_draws_pre_prob_without_skip():
    from cydas_chain.chain import PathSampler, build_cost_table
    from cydas_chain.models import ChainSpace

    space = ChainSpace((4, 4, 4, 4, 4))
    table = build_cost_table(space, 1000, 224, counter="thop")
    lo, hi = table.macs_range()
    paths = PathSampler(table, hi, seed=0, op_probs=PRE_PROB).sample(20_000)  # no budget cut: the raw draw
    freq = np.bincount(paths.ravel(), minlength=7) / paths.size
    np.testing.assert_allclose(freq, PRE_PROB, atol=0.01)
    assert (paths != 6).all()  # never a skip: 20 blocks, as the released supernet runs
    within = PathSampler(table, int(500e6), seed=0, op_probs=PRE_PROB).sample(500)
    assert (table.path_macs(within) <= 500e6).all()  # and the budget the method filters with
