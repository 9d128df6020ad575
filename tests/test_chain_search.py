"""tools/search_chain.py end to end: outputs, exact resume, bad input, 2-process DDP."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, kill_at_first_checkpoint, run_tool
from cydas_chain.core.data import make_shapes_folder

pytestmark = pytest.mark.slow
TOOL = "tools/search_chain.py"
ENV = {"OMP_NUM_THREADS": "1"}  # one thread per process: the suite runs with xdist on a shared CPU
# 80 train images of 16x16, 20 held out to score paths (2 a class), batch 12: 5 steps an epoch, 10 steps, the rule
# applied every 2 steps from step 2 (distillation after epochs/6 = 1.7 steps)
# 10 steps: too few to learn, so the rule starts at --distill-start whatever the loss (the mechanics under test)
TINY = ["--flops", "400", "--epochs", "2", "--batch-size", "12", "--img-size", "16", "--eval-interval", "2",
        "--holdout", "0.25", "--save-interval", "3", "--workers", "0", "--distill-onset", "fixed"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("shapes"), train_per_class=8, val_per_class=4, image_size=16)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """An uninterrupted search."""
    out = tmp_path_factory.mktemp("search") / "run"
    run_tool(TOOL, "--data", data, "--out", out, *TINY, env=ENV, check=True)
    return out


def read(out, name):
    return (out / name).read_text()


def test_outputs(finished):
    import timm

    import cydas_chain  # noqa: F401
    from cydas_chain.core.flops import count_macs
    from cydas_chain.models import ChainArch

    arch = json.loads(read(finished, "arch.json"))
    assert arch["space"] == "cydas_chain" and len(arch["path"]) == 21 and arch["slots"] == [4, 4, 5, 4, 4]
    assert arch["counter"] == "thop" and arch["budget"]["counter"] == "thop" and arch["preset"] == "default"
    assert arch["budget"]["macs"] == arch["thop_macs"] <= 400e6 and arch["params"] > 0
    assert arch["search"]["max_macs"] == 400_000_000 and arch["search"]["steps"] == 10
    model = timm.create_model("cydas_chain", arch=str(finished / "arch.json"), num_classes=arch["num_classes"])
    cost = count_macs(model, 224)
    assert (cost.fvcore_macs, cost.thop_macs, cost.params) == (arch["fvcore_macs"], arch["thop_macs"], arch["params"])
    # scored on 20 images held out of train/ (2 a class); the final score is the result's on val/ (40 images)
    assert arch["selection"]["images"] == 20 and arch["report"]["images"] == 40 and arch["report"]["set"] == "val/"
    assert arch["score"] == arch["report"]["top1"] and "never used" in arch["score_metric"]
    assert set(arch["learning"]) >= {"ce_at_distill_start", "ce_at_end", "chance_ce", "learned", "at_chance"}
    assert (finished / "weights.pth").is_file() and arch["weights"] == "weights.pth"

    history = json.loads(read(finished, "teacher_history.json"))
    assert history[0]["event"] == "init" and history[0]["score"] is None
    teachers = [h for h in history if h["event"] in ("init", "teacher")]
    assert teachers[-1]["path"] == arch["path"] == list(ChainArch.from_path(arch["path"]).to_path())  # canonical
    assert all(b["step"] > a["step"] for a, b in zip(teachers, teachers[1:]))
    evals = read(finished, "evaluations.csv").splitlines()
    assert len(evals) == 1 + 5  # header + steps 2, 4, 6, 8, 10
    gap = arch["search"]["replace_gap"]
    for e in csv.DictReader(evals):  # every replacement: a higher score at no more MACs, or > gap higher
        score, teacher, macs, teacher_macs = (float(e[k]) for k in ("score", "teacher_score", "macs", "teacher_macs"))
        if int(e["entered"]):
            assert score > teacher and (macs <= teacher_macs or score > teacher + gap)
        else:
            assert score <= teacher or (macs > teacher_macs and score <= teacher + gap) or int(e["wins"]) <= int(
                e["losses"]) or float(e["p_value"]) >= arch["search"]["replace_alpha"]
    rows = list(csv.DictReader(io.StringIO(read(finished, "metrics.csv"))))
    # one row at every application of the rule (and every --log-interval steps): the means since the last row
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10] and {r["steps"] for r in rows} == {"2"}
    assert "teacher_macs" in rows[0] and all(r["score"] for r in rows)
    assert (finished / "search.png").stat().st_size > 10_000
    ckpt = torch.load(finished / "checkpoints" / "last.pth", weights_only=True)
    assert ckpt["step"] == 10 and ckpt["version"] == 2


def test_resume_after_a_kill_equals_an_uninterrupted_run(data, finished, tmp_path):
    """SIGKILL the search as soon as its first checkpoint is on disk (step 3 of 10), resume, and get
    byte-identical results."""
    out = tmp_path / "run"
    step = kill_at_first_checkpoint([TOOL, "--data", data, "--out", out, *TINY], out / "checkpoints" / "last.pth",
                                    env=ENV)["step"]
    assert step in (3, 6, 9) and not (out / "arch.json").exists()
    run_tool(TOOL, "--data", data, "--out", out, *TINY, "--resume", env=ENV, check=True)
    assert torch.load(out / "weights.pth", weights_only=True)["state_dict"].keys() == \
        torch.load(finished / "weights.pth", weights_only=True)["state_dict"].keys()
    for name in ("arch.json", "teacher_history.json", "evaluations.csv", "metrics.csv"):
        assert read(out, name) == read(finished, name), name  # the re-done steps logged once, alike


def test_resume_from_the_final_checkpoint_gives_the_same_result(data, finished, tmp_path):
    """A --resume from the last checkpoint of a finished search (e.g. after a kill while writing the outputs)
    chooses, recalibrates and reports exactly as the uninterrupted run.  The data are augmented (random
    crops and flips of the shapes): the calibration batches are drawn from a fixed augmentation epoch, not
    from wherever the resumed loader stands (issue 26: they restarted at epoch 0)."""
    out = tmp_path / "again"
    shutil.copytree(finished, out)
    for name in ("arch.json", "weights.pth"):
        (out / name).unlink()
    assert torch.load(out / "checkpoints" / "last.pth", weights_only=True)["step"] == 10  # the final one
    run_tool(TOOL, "--data", data, "--out", out, *TINY, "--resume", env=ENV, check=True)
    assert read(out, "arch.json") == read(finished, "arch.json")
    again = torch.load(out / "weights.pth", weights_only=True)["state_dict"]
    first = torch.load(finished / "weights.pth", weights_only=True)["state_dict"]
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)
    assert any("running_mean" in k and first[k].abs().sum() > 0 for k in first)  # recalibrated statistics


def error_line(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def test_bad_data(tmp_path, data):
    out = ["--out", tmp_path / "o"]  # not the default folder, which a user's own search may hold
    assert "not found" in error_line(run_tool(TOOL, "--data", tmp_path / "nope", *out, *TINY, env=ENV))
    (tmp_path / "empty").mkdir()
    assert "no class sub-folders" in error_line(run_tool(TOOL, "--data", tmp_path / "empty", *out, *TINY,
                                                         env=ENV))
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    shutil.rmtree(broken / "val" / "ring")
    assert "absent from val: ring" in error_line(run_tool(TOOL, "--data", broken, "--out", tmp_path / "o", *TINY,
                                                          env=ENV))


def test_infeasible_budget(tmp_path, data):
    line = error_line(run_tool(TOOL, "--data", data, "--out", tmp_path / "o", *TINY[2:], "--flops", "50", env=ENV))
    assert "outside the feasible range 81.7M..576.5M" in line  # thop's, the default counter
    line = error_line(run_tool(TOOL, "--data", data, "--out", tmp_path / "o", *TINY[2:], "--flops", "50",
                               "--counter", "fvcore", env=ENV))
    assert "outside the feasible range 86.8M..595.5M" in line
    assert not (tmp_path / "o").exists()  # nothing written


def test_bad_checkpoints(tmp_path, data, finished):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    ckpt = out / "checkpoints" / "last.pth"
    good = ckpt.read_bytes()
    # a search already there is never overwritten without --resume
    assert "--resume" in error_line(run_tool(TOOL, "--data", data, "--out", out, *TINY, env=ENV))
    # another configuration
    other = [*TINY[2:], "--flops", "300"]
    assert "max_macs=400000000" in error_line(run_tool(TOOL, "--data", data, "--out", out, *other, "--resume", env=ENV))
    # a checkpoint of something else (e.g. the DARTS space)
    foreign = tmp_path / "foreign.pth"
    torch.save({"kind": "cydas_chain/darts_search", "state_dict": {}}, foreign)
    line = error_line(run_tool(TOOL, "--data", data, "--out", out, *TINY, "--resume", foreign, env=ENV))
    assert "not a chain-space search checkpoint" in line
    assert ckpt.read_bytes() == good  # nothing written was lost
    # a corrupt (truncated) checkpoint
    ckpt.write_bytes(good[: len(good) // 2])
    assert "cannot read checkpoint" in error_line(run_tool(TOOL, "--data", data, "--out", out, *TINY, "--resume",
                                                           env=ENV))
    assert (out / "arch.json").read_text() == read(finished, "arch.json")


def test_arch_file_of_another_space(tmp_path):
    import timm

    import cydas_chain  # noqa: F401
    from cydas_chain.core.errors import ArchError
    from cydas_chain.models import resolve_arch

    f = tmp_path / "genotype.json"
    f.write_text(json.dumps({"space": "darts", "normal": [], "reduce": []}))
    with pytest.raises(ArchError, match="'darts' space"):
        resolve_arch(f)
    with pytest.raises(ArchError, match="'darts' space"):
        timm.create_model("cydas_chain", arch=str(f))


def test_ddp_two_processes_train_the_same_paths(data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TOOL,
           "--data", str(data), "--out", str(out), *TINY, "--device", "cpu"]  # auto would refuse: no CUDA
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every checkpoint compares the ranks' sampled paths and their weights (a mismatch stops the run)
    assert proc.stderr.count("the 2 processes trained the same path at every step and held the same weights at "
                             "every checkpoint") == 1
    rows = list(csv.DictReader(io.StringIO(read(out, "metrics.csv"))))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10] and all(r["path"].count("|") == 4 for r in rows)
    arch = json.loads(read(out, "arch.json"))
    assert arch["search"]["world_size"] == 2 and arch["thop_macs"] <= 400e6
    assert proc.stderr.count("searched architecture") == 1  # written and reported once
    assert proc.stderr.count("has not learned by the end") <= 1  # the learning check speaks once, not per rank
    assert arch["report"]["images"] == 40  # both ranks' shares of val/, counted once


def test_distill_start_then_distillation_and_the_rule(data, tmp_path):
    """--distill-onset fixed: no distillation and no teacher replacement before --distill-start; both from then
    on, whether or not the supernet has learned."""
    import csv

    out = tmp_path / "warm"
    # 5 steps an epoch: warm-up of 1.2 epochs = 6 steps; the bare rule, so replacements can happen; a row a step
    run_tool(TOOL, "--data", data, "--out", out, *TINY[:2], "--epochs", "4", *TINY[4:], "--distill-start", "1.2",
             "--replace-test", "none", "--log-interval", "1", env=ENV, check=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 21)) and {r["steps"] for r in rows} == {"1"}
    warm = [r for r in rows if int(r["step"]) <= 6]
    after = [r for r in rows if int(r["step"]) > 6]
    assert all(float(r["kd"]) == 0.0 for r in warm)
    assert all(float(r["kd"]) > 0.0 for r in after)
    evals = list(csv.DictReader(open(out / "evaluations.csv")))
    assert [int(e["step"]) for e in evals] == [6, 8, 10, 12, 14, 16, 18, 20]  # the rule from step 6 on
    history = json.loads(read(out, "teacher_history.json"))
    assert all(h["step"] >= 6 for h in history if h["event"] != "init")
    arch = json.loads(read(out, "arch.json"))
    assert arch["search"]["distill_start"] == 1.2 and arch["budget"]["macs"] <= 400e6


def digits_folder(root, classes=4, train=60, val=20):
    """A small ImageFolder a user could have: the first images of some classes of the real digits."""
    import numpy as np
    from PIL import Image

    from cydas_chain.core.data import load_digits_array

    images, labels = load_digits_array()
    for c in range(classes):
        idx = np.flatnonzero(labels == c)[:train + val]
        for split, part in (("train", idx[:train]), ("val", idx[train:])):
            d = root / split / str(c)
            d.mkdir(parents=True)
            for i in part:
                Image.fromarray(images[i], mode="L").save(d / f"{i}.png")
    return root


# a schedule a CPU user would pick for a small folder: 100 steps at 32 px (the rest: the --data defaults)
USER_SCHEDULE = ["--flops", "400", "--epochs", "10", "--batch-size", "24", "--img-size", "32", "--eval-interval",
                 "10", "--holdout", "0.25", "--save-interval", "1000", "--workers", "0", "--log-interval", "1"]


def test_the_search_learns_on_user_data(tmp_path):
    """--data with a CPU-sized schedule (100 steps at 32 px, the --data transforms: random-resized crops
    and flips): the supernet's loss falls well below chance, no warning, and the result scores far above it
    on val/."""
    import math

    data = digits_folder(tmp_path / "digits4", train=80)
    out = tmp_path / "learn"
    proc = run_tool(TOOL, "--data", data, "--out", out, *USER_SCHEDULE, env=ENV, check=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    chance = math.log(4)
    first = sum(float(r["ce"]) for r in rows[:10]) / 10
    last = sum(float(r["ce"]) for r in rows[-10:]) / 10
    assert len(rows) == 100 and first > 0.9 * chance and last < 0.6 * chance, (first, last)
    assert "WARNING" not in proc.stderr
    arch = json.loads(read(out, "arch.json"))
    assert arch["learning"]["learned"] and not arch["at_chance"] and arch["chosen_by"] == "teacher"
    assert arch["chance"] == 25.0 and arch["score"] > 2 * arch["chance"], arch["score"]
    # the defaults for 32 px and a batch of 24: whole-image crops, lr 0.5 x sqrt(24/1024), a 1-epoch warm-up
    assert arch["search"]["crop_scale"] is None and "lr 0.07655" in proc.stderr and "warm-up 10 steps" in proc.stderr
    # distillation started once the supernet had learned: after the planned step 17, by the latest 50
    start = arch["learning"]["distill_step"]
    assert 17 <= start < 50 and arch["learning"]["ce_at_distill_start"] < 0.9 * chance
    started = [r for r in rows if float(r["kd"]) > 0]
    assert int(started[0]["step"]) == start + 1, (started[0]["step"], start)


@pytest.mark.parametrize("flags, message", [
    (["--distill-start", "2"], "--distill-start must be in [0, --epochs=2)"),
    (["--warmup-epochs", "2"], "--warmup-epochs must be in [0, --epochs=2)"),
    (["--preset", "cream"], "argument --preset: invalid choice: 'cream'"),
    (["--counter", "ptflops"], "argument --counter: invalid choice: 'ptflops'"),
    (["--holdout", "0.01"], "--holdout 0.01 holds out no image of class"),
    (["--holdout", "0.95"], "leaves class"),
    (["--slots", "4,4,x"], "--slots takes comma-separated integers"),
    (["--slots", "4,4,5"], "slots must be 5 positive integers"),
    (["--replace-alpha", "0"], "alpha must be in (0, 1]"),
    (["--replace-gap", "-1"], "gap must be >= 0 points"),
])
def test_bad_search_options(tmp_path, data, flags, message):
    assert message in error_line(run_tool(TOOL, "--data", data, "--out", tmp_path / "o", *TINY, *flags, env=ENV))
    assert not (tmp_path / "o").exists()  # nothing written


def test_final_evolution(data, tmp_path):
    """--final evolution: its best path, scored after BN recalibration, becomes arch.json; every path
    it scored is within the budget, and evolution.json keeps the teacher's score beside it."""
    out = tmp_path / "evo"
    run_tool(TOOL, "--data", data, "--out", out, *TINY[2:], "--flops", "350", "--final", "evolution",
             "--population", "6", "--generations", "3", "--parents", "2", "--calib-batches", "2", env=ENV, check=True)
    evo = json.loads(read(out, "evolution.json"))
    arch = json.loads(read(out, "arch.json"))
    best = [g["best_score"] for g in evo["history"]]
    assert len(best) == 3 and best == sorted(best)
    assert arch["chosen_by"] == "evolution" and arch["selection"]["score"] == best[-1] == evo["top"][0]["score"]
    assert arch["path"] == list(ChainArchFromPath(evo["top"][0]["path"]).to_path())
    assert all(t["macs"] <= 350e6 for t in evo["top"]) and arch["thop_macs"] <= 350e6
    assert evo["teacher"]["recalibrated_score"] is not None and arch["teacher"]["path"] == evo["teacher"]["path"]


def ChainArchFromPath(path):
    from cydas_chain.models import ChainArch

    return ChainArch.from_path(path)


def test_paper_rule_round_trips_through_resume(data, tmp_path):
    """--replace-gap none (the paper's text) is stored as null in config.json and arch.json, and a
    --resume that does not repeat it continues with it (it was read back as None and crashed once)."""
    out = tmp_path / "paper"
    run_tool(TOOL, "--data", data, "--out", out, *TINY, "--replace-gap", "none", env=ENV, check=True)
    first = json.loads(read(out, "arch.json"))
    assert first["search"]["replace_gap"] is None
    assert json.loads(read(out, "config.json"))["args"]["replace_gap"] is None
    run_tool(TOOL, "--data", data, "--out", out, "--flops", "400", "--resume", env=ENV, check=True)
    again = json.loads(read(out, "arch.json"))
    assert again["search"]["replace_gap"] is None and again["path"] == first["path"]


def test_selection_never_reads_val(data, finished, tmp_path):
    """val/ only reports: a search given a val/ whose labels are permuted (its class folders renamed in a
    cycle) selects exactly what one given the true val/ selects; only the reported score differs."""
    permuted = tmp_path / "permuted"
    shutil.copytree(data, permuted)
    classes = sorted(p.name for p in (permuted / "val").iterdir())
    for c in classes:
        (permuted / "val" / c).rename(permuted / "val" / f"tmp_{c}")
    for c, new in zip(classes, classes[1:] + classes[:1]):
        (permuted / "val" / f"tmp_{c}").rename(permuted / "val" / new)
    out = tmp_path / "run"
    run_tool(TOOL, "--data", permuted, "--out", out, *TINY, env=ENV, check=True)
    for name in ("teacher_history.json", "evaluations.csv"):
        assert read(out, name) == read(finished, name), name
    got, ref = json.loads(read(out, "arch.json")), json.loads(read(finished, "arch.json"))
    assert got["path"] == ref["path"] and got["selection"] == ref["selection"]
    assert got["report"]["images"] == ref["report"]["images"] and got["report"]["top1"] != ref["report"]["top1"]


def test_a_search_that_cannot_learn_says_so(tmp_path):
    """The user-data search of the test above, its labels shuffled (they no longer follow the images): one
    warning line at the end of the distillation warm-up and at the end naming the options, and arch.json
    labels the result as chosen at chance."""
    import random

    data = digits_folder(tmp_path / "digits4", train=80)
    files = sorted((data / "train").rglob("*.png"))
    random.Random(0).shuffle(files)
    for i, f in enumerate(files):  # every image into a class folder unrelated to its digit
        f.rename(data / "train" / str(i % 4) / f"s{i}_{f.name}")
    out = tmp_path / "learn"
    proc = run_tool(TOOL, "--data", data, "--out", out, *USER_SCHEDULE, env=ENV, check=True)
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert sum("has not learned" in w and "--lr" in w and "--crop-scale" in w for w in warnings) == 2, proc.stderr
    assert any("indistinguishable from chance" in w for w in warnings), proc.stderr[-2000:]
    arch = json.loads(read(out, "arch.json"))
    assert arch["at_chance"] and arch["learning"]["at_chance"] and not arch["learning"]["learned"]
    assert arch["score_metric"].startswith("AT CHANCE, not a search result")
    # distillation waited for the supernet to learn, up to half-way, then started anyway (the first warning)
    assert arch["learning"]["distill_planned_step"] == 17 and arch["learning"]["distill_step"] == 50
