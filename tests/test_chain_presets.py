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


def test_a_default_holdout_count_takes_at_most_a_tenth_of_a_small_set():
    """--data's default 5,000 held-out images would empty a small set's classes: the preset caps a default
    count at 10% of train/ (stratified); a --holdout given is used as given."""
    from cydas_chain.core.data import holdout_counts
    from cydas_chain.core.errors import DataError

    targets = np.repeat(np.arange(10), [110] * 9 + [60])  # 1,050 images, one smaller class
    classes = [str(c) for c in range(10)]
    capped = holdout_counts(targets, 5000, classes, max_share=0.1)
    assert capped == {**{c: 11 for c in range(9)}, 9: 6}
    assert holdout_counts(np.repeat(np.arange(10), 10_000), 5000, classes, max_share=0.1) == {c: 500 for c in range(10)}
    with pytest.raises(DataError, match="without training images"):
        holdout_counts(targets, 5000, classes)  # as given
    t = tool()
    for given, expect in (([], 0.1), (["--holdout", "300"], None)):
        args = t.build_parser().parse_args(["--flops", "400", "--data", "x", *given])
        assert t.search_config(args, world_size=1, accum=1).holdout_max_share == expect
    embedded = t.search_config(t.build_parser().parse_args(["--flops", "400"]), world_size=1, accum=1)
    assert (embedded.holdout, embedded.holdout_max_share) == (0.2, None)


@pytest.mark.parametrize("batch, lr", [(1024, 0.5), (256, 0.25), (50, 0.5 * (50 / 1024) ** 0.5)])
def test_the_default_preset_scales_lr_with_the_square_root_of_the_batch(batch, lr):
    """Linear scaling starves small batches (0.024 at 50, measured in docs/chain.md); the paper's preset
    keeps it."""
    t = tool()
    args = t.build_parser().parse_args(["--flops", "400", "--data", "x", "--batch-size", str(batch)])
    assert t.search_config(args, world_size=1, accum=1).base_lr == pytest.approx(lr)
    args = t.build_parser().parse_args(["--flops", "400", "--data", "x", "--batch-size", str(batch), "--preset", "paper"])
    assert t.search_config(args, world_size=1, accum=1).base_lr == pytest.approx(0.5 * batch / 1024)
