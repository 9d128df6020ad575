"""tools/search_cell.py and tools/train_cell.py end to end, and their answers to bad input."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cydas_chain.models.darts.genotypes import Genotype, resolve_genotype
from test_darts_data import write_cifar

ROOT = Path(__file__).resolve().parents[1]
TINY_SEARCH = ["--channels", "4", "--layers", "3", "--eval-channels", "4", "--eval-layers", "3"]


def run(tool, *args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *map(str, args)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)


def torchrun(tool, *args, tmp_path):
    """``tool`` under torchrun with 2 CPU processes (gloo)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tools" / tool), *map(str, args)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def varied_imagenet_folder(root, classes=3, per_class=8):
    """The ImageNet layout with images of many sizes: a random-resized crop draws a number of random numbers that
    depends on the image, so ranks whose streams fed augmentation would drift apart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                h, w = rng.integers(20, 60, 2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    return root


def assert_one_error_line(proc, pattern):
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert pattern in errors[0], errors[0]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_search_cell_on_cifar_batches_and_resume(tmp_path):
    write_cifar(tmp_path / "cifar", per_batch=8)
    out = tmp_path / "search"
    args = ["--dataset", "cifar10", "--data", tmp_path / "cifar", "--out", out, "--batch-size", "10", *TINY_SEARCH]
    proc = run("search_cell.py", *args, "--epochs", "1", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    g = resolve_genotype(out / "genotype.json")
    assert isinstance(g, Genotype) and json.loads((out / "genotype.json").read_text())["epoch"] == 1
    assert (out / "normal.png").stat().st_size > 1000 and (out / "reduce.png").stat().st_size > 1000
    assert len(json.loads((out / "alpha_history.json").read_text())) == 1
    assert len(rows(out / "metrics.csv")) == 1
    assert_one_error_line(run("search_cell.py", *args, "--epochs", "2", tmp_path=tmp_path), "--resume")
    proc = run("search_cell.py", *args, "--epochs", "2", "--resume", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed at epoch 1" in proc.stderr
    assert [r["step"] for r in rows(out / "metrics.csv")] == ["1", "2"]
    assert len(json.loads((out / "alpha_history.json").read_text())) == 2
    # the cosine ran to the new length: at its end w_lr_min (the first run's 1-epoch cosine, kept, would
    # have climbed back to w_lr in the added epoch)
    import torch
    state = torch.load(out / "checkpoints" / "last.pth", weights_only=True)
    lr_min = json.loads((out / "config.json").read_text())["w_lr_min"]
    assert state["w_opt"]["param_groups"][0]["lr"] == pytest.approx(lr_min)


@pytest.mark.slow
def test_search_cell_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL the search as soon as its first checkpoint is on disk, --resume alone (the run's settings),
    and get the results of an uninterrupted search."""
    from conftest import kill_at_first_checkpoint

    write_cifar(tmp_path / "cifar", per_batch=8)
    args = ["--dataset", "cifar10", "--data", tmp_path / "cifar", "--batch-size", "10", "--epochs", "3", *TINY_SEARCH]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run("search_cell.py", *args, "--out", full, tmp_path=tmp_path).returncode == 0
    env = {"OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    state = kill_at_first_checkpoint([ROOT / "tools" / "search_cell.py", *args, "--out", part],
                                     part / "checkpoints" / "last.pth", cwd=tmp_path, env=env)
    assert state["epoch"] in (1, 2)
    proc = run("search_cell.py", "--out", part, "--resume", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("genotype.json", "genotype_history.json", "alpha_history.json"):
        assert (part / name).read_text() == (full / name).read_text(), name
    assert rows(part / "metrics.csv") == rows(full / "metrics.csv") and len(rows(full / "metrics.csv")) == 3


def test_run_folder_rules_of_search_cell(tmp_path):
    """The run skeleton through a real tool: an existing run is refused, --resume alone and --resume CKPT
    continue, a setting that changes the result is one error naming it, a missing checkpoint one error."""
    out = tmp_path / "run"
    args = ["--out", out, "--space", "nb201", "--channels", "4", "--batch-size", "50", "--workers", "0"]
    assert run("search_cell.py", *args, "--epochs", "1", tmp_path=tmp_path).returncode == 0
    assert (out / "checkpoints" / "last.pth").is_file() and (out / "config.json").is_file()
    assert_one_error_line(run("search_cell.py", *args, "--epochs", "1", tmp_path=tmp_path), "--resume")
    assert_one_error_line(run("search_cell.py", *args, "--channels", "6", "--resume", tmp_path=tmp_path),
                          "c=4 (now 6)")
    assert_one_error_line(run("search_cell.py", "--out", out, "--resume", tmp_path / "none.pth", tmp_path=tmp_path),
                          "nothing to resume: checkpoint not found")
    assert_one_error_line(run("search_cell.py", "--out", tmp_path / "empty", "--resume", tmp_path=tmp_path),
                          "nothing to resume: no checkpoint in")
    # --resume CKPT into another folder; --epochs may grow
    proc = run("search_cell.py", "--out", tmp_path / "more", "--resume", out / "checkpoints" / "last.pth",
               "--epochs", "2", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed at epoch 1" in proc.stderr
    assert json.loads((tmp_path / "more" / "genotype.json").read_text())["epoch"] == 2


@pytest.mark.slow
def test_search_cell_default_embedded_nb201(tmp_path):
    out = tmp_path / "nb"
    proc = run("search_cell.py", "--space", "nb201", "--out", out, "--epochs", "1", "--channels", "4",
               "--batch-size", "50", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded synthetic 'shapes' set" in proc.stderr
    d = json.loads((out / "genotype.json").read_text())
    assert d["space"] == "nb201" and d["arch_str"].count("~") == 6 and (out / "cell.png").exists()


@pytest.mark.slow
def test_train_cell_resume_and_eval_only(tmp_path):
    out = tmp_path / "train"
    args = ["--genotype", "dartsv2", "--out", out, "--channels", "4", "--layers", "3", "--batch-size", "50",
            "--workers", "0"]
    assert run("train_cell.py", *args, "--epochs", "1", tmp_path=tmp_path).returncode == 0
    proc = run("train_cell.py", *args, "--epochs", "2", "--resume", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = rows(out / "metrics.csv")
    assert [r["step"] for r in epochs] == ["1", "2"]
    # the resumed run follows the cosine of its new length (2 epochs: half the peak in the second), not the
    # first run's (1 epoch: lr 0 after it)
    assert float(epochs[1]["lr"]) == pytest.approx(float(epochs[0]["lr"]) / 2)
    proc = run("train_cell.py", "--eval-only", "--checkpoint", out / "checkpoints" / "best.pth", "--workers", "0",
               tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval_top1=" in proc.stdout


@pytest.mark.slow
def test_search_cell_ranks_agree_on_an_imagenet_folder(tmp_path):
    """Two processes, an ImageNet-style folder of images of many sizes, random-resized crops: both ranks hold
    the same search and evaluation networks at every checkpoint (the run stops otherwise), across two
    evaluation networks."""
    data = varied_imagenet_folder(tmp_path / "in")
    out = tmp_path / "s"
    proc = torchrun("search_cell.py", "--dataset", "imagenet", "--data", data, "--img-size", "32", *TINY_SEARCH,
                    "--pretrain-epochs", "0", "--epochs", "2", "--eval-epochs", "1", "--batch-size", "8",
                    "--subset-fraction", "1", "--workers", "0", "--device", "cpu", "--out", out, tmp_path=tmp_path)
    assert "the 2 processes held the same weights at every checkpoint" in proc.stderr
    assert [r["step"] for r in rows(out / "metrics.csv")] == ["1", "2"]


@pytest.mark.slow
def test_train_cell_on_two_processes_continues_a_one_process_run(tmp_path):
    """A one-process epoch, then two processes (total batch 50: 25 each) continue it: the data streams are
    re-seeded (one line says so), both ranks hold the same weights, one checkpoint holds both ranks' RNG."""
    import torch

    out = tmp_path / "train"
    args = ["--genotype", "dartsv2", "--out", out, "--channels", "4", "--layers", "3", "--batch-size", "50",
            "--workers", "0", "--device", "cpu"]
    assert run("train_cell.py", *args, "--epochs", "1", tmp_path=tmp_path).returncode == 0
    proc = torchrun("train_cell.py", *args, "--epochs", "2", "--resume", tmp_path=tmp_path)
    assert "was written by 1 process(es), this run has 2" in proc.stderr
    assert "the 2 processes held the same weights at every checkpoint" in proc.stderr
    state = torch.load(out / "checkpoints" / "last.pth", weights_only=True)
    assert state["epoch"] == 2 and len(state["rng"]) == 2 and state["kind"] == "cydas_chain/train"
    assert [r["step"] for r in rows(out / "metrics.csv")] == ["1", "2"]


def test_bad_input_gives_one_line(tmp_path):
    assert_one_error_line(run("search_cell.py", "--dataset", "cifar10", "--data", tmp_path / "none",
                              "--out", tmp_path / "o", tmp_path=tmp_path), "CIFAR-10 not found")
    assert_one_error_line(run("train_cell.py", "--genotype", "dartsv9", tmp_path=tmp_path),
                          "unknown genotype 'dartsv9'")
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": "darts", "normal": [["sep_conv_3x3", 0]')
    assert_one_error_line(run("train_cell.py", "--genotype", bad, tmp_path=tmp_path), "not valid JSON")
    corrupt = tmp_path / "run" / "checkpoint.pt"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert_one_error_line(run("search_cell.py", "--out", corrupt.parent, "--resume", tmp_path=tmp_path),
                          "cannot read checkpoint")
    assert corrupt.read_bytes().startswith(b"PK")  # nothing already written is lost
    assert_one_error_line(run("train_cell.py", "--eval-only", "--checkpoint", corrupt, tmp_path=tmp_path),
                          "cannot read checkpoint")
    assert_one_error_line(run("train_cell.py", "--batch-size", "50", "--accum-steps", "3", "--out", tmp_path / "t",
                              tmp_path=tmp_path), "--batch-size 50 (the total) is not divisible by 1 process(es) x 3")
    assert not (tmp_path / "t").exists()  # nothing written
    assert_one_error_line(run("search_cell.py", "--amp", "fp16", "--device", "cpu", "--out", tmp_path / "c",
                              tmp_path=tmp_path), "--amp fp16 needs a CUDA device")


def tool_module(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_former_flag_spellings_parse_to_the_same_value(capsys):
    """--img-size / --smoothing as in the other tools; --image-size / --label-smoothing still work, unlisted."""
    search, train = tool_module("search_cell"), tool_module("train_cell")
    assert search.parse_args(["--img-size", "24"]).img_size == search.parse_args(["--image-size", "24"]).img_size == 24
    assert search.parse_args([]).img_size is None
    assert train.parse_args(["--img-size", "24"]).image_size == 24  # the recipe's key
    assert train.parse_args(["--image-size", "24"]).image_size == 24
    assert train.parse_args(["--smoothing", "0.1"]).label_smoothing == 0.1
    assert train.parse_args(["--label-smoothing", "0.1"]).label_smoothing == 0.1
    assert train.parse_args([]).image_size is None and train.parse_args([]).label_smoothing is None
    for tool in (search, train):
        with pytest.raises(SystemExit):
            tool.parse_args(["--help"])
        listed = capsys.readouterr().out
        assert "--img-size" in listed and "--image-size" not in listed and "--label-smoothing" not in listed
