"""The run skeleton (cydas_chain/core/run.py): run folder, --resume [CKPT], config check, the "run" group.

Through the real tools: tests/test_darts_tools.py (test_run_folder_rules_of_search_cell), and the resume
tests of every tool (a SIGKILL after the first checkpoint, then --resume).
"""
import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cydas_chain.core.errors import CheckpointError, ConfigError, CydasError
from cydas_chain.core.run import RunDir, add_run_arguments, config_diff, load_states, parse_run_args

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("search_chain", "search_cell", "train_cls", "train_cell")


def parser():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--eval-only", action="store_true")
    add_run_arguments(p, "runs/x")
    return p


def finished_run(out: Path, **args) -> RunDir:
    run = RunDir(out, args={"epochs": 3, "data": "somewhere", "seed": 5, **args})
    run.start({"epochs": 3, "lr": 0.1, "recipe": {"smoothing": 0.1}})
    run.last.parent.mkdir(parents=True)
    torch.save({"step": 1}, run.last)
    return run


def test_a_new_run_refuses_a_folder_holding_one(tmp_path):
    finished_run(tmp_path / "a")
    with pytest.raises(CydasError, match=r"a already holds a run .*last.pth.: continue it with --resume"):
        RunDir.open(tmp_path / "a")
    for legacy in ("last.pth", "checkpoint.pt"):  # the layout before: found, never overwritten
        (tmp_path / legacy).mkdir()
        (tmp_path / legacy / legacy).write_bytes(b"x")
        with pytest.raises(CydasError, match="--resume"):
            RunDir.open(tmp_path / legacy)
        assert RunDir.open(tmp_path / legacy, "").resume == tmp_path / legacy / legacy
    assert RunDir.open(tmp_path / "new").resume is None  # an empty or absent folder is a new run


def test_resume_alone_with_a_path_and_missing(tmp_path):
    run = finished_run(tmp_path / "a")
    assert RunDir.open(tmp_path / "a", "").resume == run.last == tmp_path / "a" / "checkpoints" / "last.pth"
    assert RunDir.open(tmp_path / "b", str(run.last)).resume == run.last
    with pytest.raises(CydasError, match=r"nothing to resume: no checkpoint in .*b \(looked for .*last.pth\)"):
        RunDir.open(tmp_path / "b", "")
    with pytest.raises(CydasError, match="nothing to resume: checkpoint not found: .*none.pth"):
        RunDir.open(tmp_path / "a", str(tmp_path / "none.pth"))


def test_resume_takes_the_settings_not_given_and_checks_the_given_ones(tmp_path):
    out = tmp_path / "a"
    finished_run(out)
    args, run = parse_run_args(parser(), ["--out", str(out), "--resume", "--workers", "2"])
    assert (args.epochs, args.data, args.seed, args.workers) == (3, Path("somewhere"), 5, 2)
    run.start({"epochs": 3, "lr": 0.1, "recipe": {"smoothing": 0.1}})  # the same settings: accepted
    args, run = parse_run_args(parser(), ["--out", str(out), "--resume", "--epochs", "4", "--seed", "6"])
    with pytest.raises(ConfigError) as e:
        run.start({"epochs": 4, "lr": 0.2, "recipe": {"smoothing": 0.0}})
    assert "epochs=3 (now 4)" in str(e.value) and "lr=0.1 (now 0.2)" in str(e.value)
    assert "recipe.smoothing=0.1 (now 0.0)" in str(e.value) and "\n" not in str(e.value)
    run.start({"epochs": 4, "lr": 0.1, "recipe": {"smoothing": 0.1}}, may_change=("epochs",))  # declared free
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 4 and saved["args"]["epochs"] == 4 and saved["args"]["seed"] == 6


def test_the_checkpoints_config_is_checked_when_given():
    assert config_diff({"a": 1, "out": "x", "workers": 2}, {"a": 1, "out": "y", "workers": 4, "new": 0}) == []
    assert config_diff({"a": [1, 2]}, {"a": (1, 2)}) == []  # as JSON stores it
    run = RunDir("unused", resume=Path("unused/ck.pth"))  # refused before anything is written
    with pytest.raises(ConfigError, match=r"checkpoint c was made with other settings: max_macs=4 \(now 3\)"):
        run.start({"max_macs": 3}, {"max_macs": 4}, source="checkpoint c")


def test_load_states_gives_one_line():
    net = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="^ck does not match this run: .*size mismatch"):
        load_states({"model": net}, {"model": torch.nn.Linear(3, 2).state_dict()}, "ck")
    with pytest.raises(CheckpointError, match="^ck does not match this run: model"):
        load_states({"model": net}, {}, "ck")


def tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tool_has_the_same_run_group():
    for name in TOOLS:
        group = next(g for g in tool(name).build_parser()._action_groups if g.title == "run")
        flags = [a.option_strings[0] for a in group._group_actions]
        assert flags[:5] == ["--out", "--resume", "--seed", "--workers", "--device"], (name, flags)
        assert {"--amp", "--channels-last", "--compile", "--log-interval"} <= set(flags), (name, flags)
        amp = next(a for a in group._group_actions if a.dest == "amp" and a.option_strings == ["--amp"])
        assert (amp.default, amp.const) == ("auto", "auto"), name
        resume = next(a for a in group._group_actions if a.dest == "resume")
        assert (resume.nargs, resume.const, resume.default, resume.metavar) == ("?", "", None, "CKPT"), name
        p = tool(name).build_parser()
        assert "--stop-after" not in p.format_help(), name
        batch = next(a for a in p._actions if a.dest == "batch_size")
        assert "total batch over all processes" in batch.help, name
