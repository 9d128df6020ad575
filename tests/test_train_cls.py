"""tools/train_cls.py: the recipe, training, exact resume, evaluation, timm loading, bad input.

Runs are tiny (16 px images, 3 classes, a few steps) so that the file takes about a minute on CPU.
"""
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "train_cls.py"
# Small and fast: no warmup, no AutoAugment (16 px images), EMA and everything else as shipped.
FAST = ["--img-size", "16", "--batch-size", "8", "--warmup-epochs", "0", "--aa", "none", "--device", "cpu"]


def write_folder(root: Path, classes=3, train_per_class=8, val_per_class=4, size=16, seed=0) -> Path:
    """An ImageNet-style folder of PNGs: each class is a noisy image of its own colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 255, size=(classes, 3))
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.clip(colours[c] + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def run_tool(*args, env_extra=None, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"train_cls failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def read_metrics(out: Path):
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data):
    """Two uninterrupted epochs: the reference of resume, evaluation and loading tests."""
    out = tmp_path_factory.mktemp("ref")
    run_tool("--data", data, "--out", out, "--epochs", 2, "--workers", 1, "--seed", 3, *FAST)
    return out


# ------------------------------------------------------------------------------------------------
def test_scaled_lr_rule():
    from cydas_chain.train import BASE_BATCH, BASE_LR, scaled_lr

    assert (BASE_LR, BASE_BATCH) == (0.04, 1024)
    assert scaled_lr(1024) == pytest.approx(0.04)
    assert scaled_lr(8 * 128) == pytest.approx(0.04)
    assert scaled_lr(256) == pytest.approx(0.01)
    assert scaled_lr(4 * 96) == pytest.approx(0.04 * 384 / 1024)
    with pytest.raises(ValueError):
        scaled_lr(0)


@pytest.mark.slow
def test_outputs_and_lr_of_a_run(reference_run, data):
    out = reference_run
    for name in ("checkpoints/last.pth", "checkpoints/best.pth", "metrics.csv", "log.txt", "config.json",
                 "arch.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["total_batch"] == 8 and config["lr"] == pytest.approx(0.04 * 8 / 1024)
    assert config["model"] == "cydas_b"
    from cydas_chain.models import PUBLISHED, resolve_arch
    assert resolve_arch(out / "arch.json") == PUBLISHED["cydas_b"]
    rows = read_metrics(out)
    assert [int(r["step"]) for r in rows] == [1, 2]
    state = ckpt(out / "checkpoints" / "last.pth")
    assert state["epoch"] == 2 and state["step"] == 2 * (24 // 8)
    assert state["kind"] == "cydas_chain/train"  # the one training driver's format
    assert set(state) >= {"state_dict", "state_dict_ema", "optimizer", "rng", "best", "config"}
    assert "scheduler" not in state  # a function of the step and the recipe: set from the step on resume


@pytest.mark.slow
def test_loss_decreases_on_a_tiny_repeated_dataset(tmp_path):
    """The training loop learns: 3 colours, the same 24 images every epoch, a timm ResNet.

    (MBConv networks with TF-style classifier init start from very large logits on a 3-class,
    16 px problem and need far more steps than a test can afford; the loop is the same.)
    """
    data = write_folder(tmp_path / "data", train_per_class=8, val_per_class=2)
    out = tmp_path / "out"
    run_tool("--model", "resnet18", "--data", data, "--out", out, "--epochs", 6, "--workers", 0,
             "--lr", "0.001", "--drop", 0, "--drop-path", 0, "--smoothing", 0, "--crop-scale", 1, *FAST)
    rows = read_metrics(out)
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.6 * losses[0], losses
    assert float(rows[-1]["val_top1"]) > 100 / 3 + 10  # well above chance
    assert not (out / "arch.json").exists()  # not a chain-space model


@pytest.mark.slow
def test_resume_continues_exactly(reference_run, data, tmp_path):
    """SIGKILL the training as soon as its first checkpoint is on disk; --resume alone (the settings not
    given are the run's) ends with the weights and metrics of the uninterrupted run."""
    from conftest import kill_at_first_checkpoint

    out = tmp_path / "out"
    args = ["--data", data, "--out", out, "--epochs", 2, "--workers", 1, "--seed", 3, *FAST]
    state = kill_at_first_checkpoint([TOOL, *args], out / "checkpoints" / "last.pth", env={"OMP_NUM_THREADS": "1"})
    assert state["epoch"] == 1
    run_tool("--out", out, "--resume", "--workers", 1, "--seed", 3, "--aa", "none", "--device", "cpu")
    ref, got = ckpt(reference_run / "checkpoints" / "last.pth"), ckpt(out / "checkpoints" / "last.pth")
    assert got["epoch"] == ref["epoch"] == 2
    for key in ("state_dict", "state_dict_ema"):
        for name, tensor in ref[key].items():
            assert torch.equal(tensor, got[key][name]), f"{key}.{name} differs after resume"
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]  # noqa: E731
    assert drop_time(read_metrics(out)) == drop_time(read_metrics(reference_run))


@pytest.mark.slow
def test_eval_only_reproduces_the_logged_accuracy(reference_run, data):
    rows = read_metrics(reference_run)
    for name, row in (("last.pth", rows[-1]), ("best.pth", max(rows, key=lambda r: float(r["ema_top1"])))):
        proc = run_tool("--eval-only", "--checkpoint", reference_run / "checkpoints" / name, "--data", data,
                        "--batch-size", 8, "--workers", 0, "--device", "cpu")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["weights"] == "state_dict_ema"
        assert result["images"] == 12
        assert result["top1"] == pytest.approx(float(row["ema_top1"]), abs=1e-9)
        assert result["top5"] == pytest.approx(float(row["ema_top5"]), abs=1e-9)
        assert result["loss"] == pytest.approx(float(row["ema_loss"]), rel=1e-4)


@pytest.mark.slow
def test_eval_with_the_arch_file_of_the_run(reference_run, data, capsys):
    """--arch OUT/arch.json builds timm's 'cydas_chain' model, which takes the cydas_b weights."""
    tool = _load_tool()
    assert tool.main(["--eval-only", "--arch", str(reference_run / "arch.json"), "--checkpoint",
                      str(reference_run / "checkpoints" / "last.pth"), "--data", str(data), "--batch-size", "8",
                      "--workers", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["top1"] == pytest.approx(float(read_metrics(reference_run)[-1]["ema_top1"]), abs=1e-9)


@pytest.mark.slow
def test_checkpoint_loads_in_timm(reference_run):
    import timm

    import cydas_chain  # noqa: F401

    path = reference_run / "checkpoints" / "best.pth"
    state = ckpt(path)
    model = timm.create_model("cydas_b", pretrained=True, num_classes=3,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=3))
    loaded = model.state_dict()
    # timm prefers the EMA weights of a checkpoint that has them
    assert all(torch.equal(loaded[k], v) for k, v in state["state_dict_ema"].items())
    assert not all(torch.equal(loaded[k], v) for k, v in state["state_dict"].items())


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOOL),
           *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_ddp_two_processes_train_resume_and_evaluate_like_one(reference_run, data, tmp_path):
    """torchrun, gloo on CPU: training and resume on 2 ranks; each rank evaluates its shard and the
    summed metrics equal one process's."""
    from conftest import kill_at_first_checkpoint

    out = tmp_path / "ddp"
    first = kill_at_first_checkpoint(  # --batch-size: the total, 4 images a process
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TOOL, "--data", data, "--out", out,
         "--epochs", 2, "--batch-size", 8, "--img-size", 16, "--warmup-epochs", 0, "--aa", "none", "--workers", 0,
         "--device", "cpu"], out / "checkpoints" / "last.pth", env={"OMP_NUM_THREADS": "1"})
    assert first["epoch"] == 1
    proc = torchrun("--out", out, "--resume", "--aa", "none", "--workers", 0, "--device", "cpu")
    assert "the 2 processes held the same weights at every checkpoint" in proc.stderr  # checked before each save
    state = ckpt(out / "checkpoints" / "last.pth")
    assert (state["epoch"], state["step"], len(state["rng"])) == (2, 2 * 24 // (2 * 4), 2)
    assert json.loads((out / "config.json").read_text())["total_batch"] == 8
    assert [int(r["step"]) for r in read_metrics(out)] == [1, 2]

    single = json.loads(run_tool("--eval-only", "--checkpoint", reference_run / "checkpoints" / "last.pth", "--data", data,
                                 "--batch-size", 4, "--workers", 0, "--device", "cpu").stdout.splitlines()[-1])
    proc = torchrun("--eval-only", "--checkpoint", reference_run / "checkpoints" / "last.pth", "--data", data,
                    "--batch-size", 4, "--workers", 0, "--device", "cpu")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 prints
    both = json.loads(lines[0])
    assert both["images"] == single["images"] == 12
    assert both["top1"] == pytest.approx(single["top1"]) and both["top5"] == pytest.approx(single["top5"])


@pytest.mark.slow
def test_two_processes_follow_one_at_the_same_total_batch_and_resume_it(data, tmp_path):
    """convnext_atto (LayerNorm: no batch statistics), total batch 8: one process of 8 images and two of 4 see
    the same images with the same crops (seeded per image) and end an epoch with the same weights, up to float
    summation; then the one-process run continues on two processes."""
    common = ["--model", "convnext_atto", "--data", data, "--batch-size", 8, "--img-size", 32, "--warmup-epochs", 0,
              "--aa", "none", "--drop", 0, "--drop-path", 0, "--workers", 0, "--device", "cpu", "--seed", 1]
    run_tool(*common, "--epochs", 1, "--out", tmp_path / "one")
    torchrun(*common, "--epochs", 1, "--out", tmp_path / "two")
    one, two = ckpt(tmp_path / "one" / "checkpoints" / "last.pth"), ckpt(tmp_path / "two" / "checkpoints" / "last.pth")
    assert one["step"] == two["step"] == 3
    for key in ("state_dict", "state_dict_ema"):
        for name, tensor in one[key].items():
            torch.testing.assert_close(two[key][name], tensor, atol=2e-5, rtol=1e-4, msg=f"{key}.{name}")
    moved = ckpt(tmp_path / "one" / "checkpoints" / "best.pth")  # (and training did change the weights)
    assert one["metrics"]["train_loss"] > 0 and moved["epoch"] == 1
    # a one-process checkpoint continued by two processes: one line says the data streams are re-seeded
    proc = torchrun("--out", tmp_path / "one", "--resume", "--epochs", 2, "--workers", 0, "--device", "cpu")
    assert "was written by 1 process(es), this run has 2" in proc.stderr
    assert "the 2 processes held the same weights at every checkpoint" in proc.stderr
    state = ckpt(tmp_path / "one" / "checkpoints" / "last.pth")
    assert (state["epoch"], state["step"], len(state["rng"])) == (2, 6, 2)
    assert [int(r["step"]) for r in read_metrics(tmp_path / "one")] == [1, 2]


# ------------------------------------------------------------------------------------------------
# Bad input: one ``error:`` line and exit 2
# ------------------------------------------------------------------------------------------------
def _load_tool():
    spec = importlib.util.spec_from_file_location("train_cls_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_one_error_line(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.slow
def test_missing_data_dir_exits_2(tmp_path):
    proc = run_tool("--data", tmp_path / "nowhere", "--out", tmp_path / "out", "--device", "cpu", check=False)
    assert_one_error_line(proc.returncode, proc.stderr, "data folder not found")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt", "empty", "missing", "other_arch", "other_model", "no_resume_point",
                                  "malformed_arch", "arch_of_another_space", "unknown_model", "existing_run",
                                  "indivisible_batch", "fp16_on_cpu", "unknown_optimizer"])
def test_bad_input_gives_one_error_line(case, reference_run, data, tmp_path, capsys):
    from cydas_chain.core.cli import run_tool as cli

    tool = _load_tool()
    bad = tmp_path / "bad.pth"
    evaluate = ["--eval-only", "--data", str(data), "--workers", "0", "--device", "cpu", "--checkpoint"]
    if case == "corrupt":
        bad.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
        argv, expect = evaluate + [str(bad)], "cannot read checkpoint"
    elif case == "empty":
        bad.write_bytes(b"")
        argv, expect = evaluate + [str(bad)], "empty"
    elif case == "missing":
        argv, expect = evaluate + [str(tmp_path / "none.pth")], "not found"
    elif case == "other_arch":  # a chain-space arch file of CyDAS-a against CyDAS-b weights
        from cydas_chain.models import PUBLISHED
        (tmp_path / "arch.json").write_text(PUBLISHED["cydas_a"].to_json())
        argv, expect = evaluate + [str(reference_run / "checkpoints" / "best.pth"), "--arch", str(tmp_path / "arch.json")], \
            "does not match"
    elif case == "other_model":
        argv, expect = evaluate + [str(reference_run / "checkpoints" / "best.pth"), "--model", "cydas_a"], "does not match"
    elif case == "no_resume_point":
        argv, expect = ["--data", str(data), "--out", str(tmp_path), "--resume"], "nothing to resume"
    elif case == "malformed_arch":
        (tmp_path / "arch.json").write_text('{"space": "cydas_chain", "stages": [[0, 1], [2]')
        argv, expect = ["--arch", str(tmp_path / "arch.json"), "--data", str(data), "--out", str(tmp_path / "o")], \
            "not valid JSON"
    elif case == "arch_of_another_space":
        (tmp_path / "arch.json").write_text(json.dumps({"space": "darts", "normal": []}))
        argv, expect = ["--arch", str(tmp_path / "arch.json"), "--data", str(data), "--out", str(tmp_path / "o")], \
            "'darts' space"
    elif case == "unknown_model":
        argv, expect = ["--model", "no_such_net", "--data", str(data), "--out", str(tmp_path / "o")], "unknown model"
    elif case == "indivisible_batch":
        argv, expect = ["--data", str(data), "--out", str(tmp_path / "o"), "--batch-size", "10", "--accum-steps", "4",
                        "--device", "cpu"], "--batch-size 10 (the total) is not divisible by 1 process(es) x 4"
    elif case == "fp16_on_cpu":
        argv, expect = ["--data", str(data), "--out", str(tmp_path / "o"), "--amp", "fp16", "--device", "cpu"], \
            "--amp fp16 needs a CUDA device"
    elif case == "unknown_optimizer":
        argv, expect = ["--data", str(data), "--out", str(tmp_path / "o"), "--opt", "nosuch"], "not a timm optimizer"
    else:  # a second run into the folder of a finished one must not overwrite it
        argv, expect = ["--data", str(data), "--out", str(reference_run)], "already holds a run"
    with pytest.raises(SystemExit) as exit_info:
        cli(lambda: tool.main(argv))
    assert_one_error_line(exit_info.value.code, capsys.readouterr().err, expect)
    assert not (tmp_path / "o").exists()  # nothing written for a run that was refused


@pytest.mark.parametrize("opt, kind, extra", [("rmsproptf", "RMSpropTF", {"alpha": 0.9, "eps": 1e-3}),
                                              ("momentum", "SGD", {"momentum": 0.9, "nesterov": False}),
                                              ("sgd", "SGD", {"momentum": 0.9, "nesterov": True}),
                                              ("adamw", "AdamW", {"eps": 1e-3})])
def test_the_recipe_builds_any_timm_optimizer(opt, kind, extra):
    """--opt takes timm's names: RMSProp's alpha/eps go only where they belong (SGD takes neither)."""
    from cydas_chain.train.recipe import Recipe

    optimizer = Recipe(opt=opt, weight_decay=1e-5).optimizer(torch.nn.Linear(4, 2), lr=0.1)
    assert type(optimizer).__name__ == kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1 and all(group[k] == v for k, v in extra.items()), group
