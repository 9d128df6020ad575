"""The shared core: counting, distillation, checkpoints, data, metrics."""
import argparse
import csv
import io
import json
import math
import os
import pickle
import re
import stat

import numpy as np
import pytest
import torch
from torch import nn

from cydas_chain.core import (CheckpointError, ConfigError, DataError, atomic_write, count_macs, load_checkpoint,
                              load_model_weights, save_checkpoint, soft_target_kl)
from cydas_chain.core.checkpoint import classify_load_error
from cydas_chain.core.errors import CheckpointObjectsError, CorruptCheckpointError
from cydas_chain.core.data import (SHAPE_CLASSES, add_pixel_noise, load_digits_array, make_shapes_folder,
                                   stratified_split, train_val_folders, written_once)
from cydas_chain.core.logging import LogProgress, MetricWriter, progress
from cydas_chain.core.seed import rng_state, seed_everything, set_rng_state


# ---- counting --------------------------------------------------------------------------------
def test_count_macs_matches_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 8 * 8, 5))
    cost = count_macs(model, input_size=8)
    conv = 8 * 3 * 3 * 3 * 8 * 8  # out_ch * in_ch * k * k * H * W
    linear = 8 * 8 * 8 * 5
    assert cost.fvcore_macs == conv + linear
    assert cost.params == 8 * 3 * 9 + 8 * 8 * 8 * 5 + 5
    assert abs(cost.thop_macs - cost.fvcore_macs) <= 5  # thop also counts the bias adds


def test_count_macs_leaves_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    keys = set(model.state_dict())
    count_macs(model, (16, 12))
    assert model.training and set(model.state_dict()) == keys  # thop's buffers stay on its copy


# ---- distillation -----------------------------------------------------------------------------
def test_soft_target_kl_against_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[0.5, 1.5, 2.0], [1.0, 0.0, 0.0]])
    T = 2.0
    expected = 0.0
    for si, ti in zip(s.tolist(), t.tolist()):
        ps = [math.exp(v / T) for v in si]
        pt = [math.exp(v / T) for v in ti]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected = expected / 2 * T * T
    assert soft_target_kl(s, t, T).item() == pytest.approx(expected, rel=1e-5)
    assert soft_target_kl(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_target_kl_does_not_train_the_teacher():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    soft_target_kl(s, t, 4.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


# ---- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_roundtrip_and_errors(tmp_path):
    path = tmp_path / "ck.pth"
    save_checkpoint({"step": 3, "w": torch.arange(4.0), "rng": rng_state()}, path)
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pth")
    (tmp_path / "bad.pth").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "bad.pth")


def test_interrupted_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pth"
    save_checkpoint({"step": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        save_checkpoint({"step": 2, "x": Boom()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left behind


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_umask_mode(mask, mode, umask, tmp_path):
    umask(mask)
    atomic_write(tmp_path / "arch.json", lambda f: f.write(b"{}"))
    save_checkpoint({"step": 1}, tmp_path / "ck" / "last.pth")
    assert stat.S_IMODE(os.stat(tmp_path / "arch.json").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "ck" / "last.pth").st_mode) == mode
    with open(tmp_path / "plain.txt", "w"):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == mode  # what open() gives


def test_atomic_write_keeps_an_existing_files_mode(umask, tmp_path):
    umask(0o022)
    path = tmp_path / "teacher_history.json"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(umask, tmp_path):
    umask(0o022)
    path = tmp_path / "search.png"
    atomic_write(path, lambda f: f.write(b"old"))

    def killed(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, killed)
    assert path.read_bytes() == b"old" and stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["search.png"]


# Unreadable files: what torch.load(weights_only=True) meets in the field.
def _random_bytes(tmp_path, good):
    return np.random.default_rng(0).bytes(4096)


def _truncated(tmp_path, good):
    return good.read_bytes()[: good.stat().st_size // 2]


def _last_bytes_cut(tmp_path, good):
    return good.read_bytes()[:-10]


def _text(tmp_path, good):
    return b"checkpoint: last.pth\nstep: 3\n"  # starts with 'c', torch's GLOBAL opcode


def _html(tmp_path, good):
    return b"<!DOCTYPE html><html>404 Not Found</html>"


def _legacy_truncated(tmp_path, good):
    torch.save({"w": torch.arange(100.0)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    return (tmp_path / "legacy.pth").read_bytes()[:200]


@pytest.mark.parametrize("make, reason", [
    (_random_bytes, "not a torch checkpoint: it starts with b"),
    (_truncated, "a zip archive cut short or damaged: no central directory at its end"),
    (_last_bytes_cut, "a zip archive cut short or damaged: no central directory at its end"),
    (_text, "not a torch checkpoint: it starts with b'checkpoi'"),
    (_html, "not a torch checkpoint: it starts with b'<!DOCTYP'"),
    (_legacy_truncated, "("),
])
def test_corrupt_checkpoint_is_reported_as_such(make, reason, tmp_path):
    good = save_checkpoint({"w": torch.arange(1000.0), "step": 3}, tmp_path / "good.pth")
    bad = tmp_path / "last.pth"
    bad.write_bytes(make(tmp_path, good))
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(bad, trusted_hint="convert it with tools/convert_official.py")
    msg = str(info.value)
    assert msg.startswith(f"cannot read checkpoint {bad}: it is corrupt or truncated (")
    assert reason in msg and msg.endswith("); copy it again or use another checkpoint")
    assert "\n" not in msg and "weights_only" not in msg and "convert_official" not in msg
    assert isinstance(info.value.__cause__, Exception)  # torch's own error stays attached


def test_checkpoint_with_python_objects_names_them(tmp_path):
    path = tmp_path / "official.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointObjectsError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"cannot read checkpoint {path}: it holds Python objects that a safe load refuses "
                               f"(argparse.Namespace); cydas_chain loads only checkpoints of tensors and plain values")
    assert info.value.objects == "argparse.Namespace"
    with pytest.raises(CheckpointObjectsError) as info:
        load_checkpoint(path, trusted_hint="convert it with tools/convert_official.py")
    assert str(info.value).endswith("refuses (argparse.Namespace); convert it with tools/convert_official.py")
    assert "weights_only" not in str(info.value)
    # the converter's trusted path reads torch's refusal from the cause
    assert "Unsupported global: GLOBAL argparse.Namespace" in str(info.value.__cause__)


def test_classify_load_error_without_a_path():
    refused = pickle.UnpicklingError("Weights only load failed. ... WeightsUnpickler error: Unsupported global: "
                                     "GLOBAL argparse.Namespace was not an allowed global by default. Please ...")
    assert classify_load_error(refused) == ("refused", "argparse.Namespace")
    blocked = pickle.UnpicklingError("Weights only load failed.\n\nTrying to load unsupported GLOBAL posix.system "
                                     "whose module posix is blocked.")
    assert classify_load_error(blocked) == ("blocked", "posix.system")
    assert classify_load_error(RuntimeError("PytorchStreamReader failed reading zip archive: failed finding "
                                            "central directory. This is an internal miniz error. If ...")) == (
        "corrupt", "PytorchStreamReader failed reading zip archive: failed finding central directory")
    assert classify_load_error(RuntimeError("Attempting to deserialize object on a CUDA device")).kind == "other"


def test_load_model_weights_reports_mismatch(tmp_path):
    a, b = nn.Linear(4, 3), nn.Linear(4, 5)
    save_checkpoint({"state_dict": a.state_dict()}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="differ in shape"):
        load_model_weights(b, tmp_path / "a.pth")
    c = nn.Linear(4, 3)
    load_model_weights(c, tmp_path / "a.pth")
    assert torch.equal(c.weight, a.weight)


def test_rng_state_restores_every_generator():
    seed_everything(7)
    state = rng_state()
    first = (np.random.rand(), torch.rand(2), __import__("random").random())
    set_rng_state(state)
    second = (np.random.rand(), torch.rand(2), __import__("random").random())
    assert first[0] == second[0] and torch.equal(first[1], second[1]) and first[2] == second[2]


# ---- data ------------------------------------------------------------------------------------
def test_shapes_dataset_is_deterministic_and_loadable(tmp_path):
    a = make_shapes_folder(tmp_path / "a", train_per_class=3, val_per_class=2, image_size=16, seed=1)
    b = make_shapes_folder(tmp_path / "b", train_per_class=3, val_per_class=2, image_size=16, seed=1)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == len(SHAPE_CLASSES) * 5
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    train, val, classes = train_val_folders(a)
    assert classes == sorted(SHAPE_CLASSES) and len(train) == 30 and len(val) == 20
    img, label = train[0]
    assert img.size == (16, 16) and label == 0


def test_held_out_split_is_stratified_and_disjoint(tmp_path):
    make_shapes_folder(tmp_path, train_per_class=10, val_per_class=1, image_size=8)
    import shutil
    shutil.rmtree(tmp_path / "val")
    train, val, _ = train_val_folders(tmp_path, val_fraction=0.2)
    assert len(train) == 80 and len(val) == 20
    assert not set(train.indices) & set(val.indices)
    counts = np.bincount([val.dataset.targets[i] for i in val.indices])
    assert counts.tolist() == [2] * 10
    with pytest.raises(DataError):
        stratified_split([0, 1, 1], 0.5)  # class 0 has one image


def test_pixel_noise_has_its_std_and_is_seeded():
    images, _ = load_digits_array()
    mid = np.full((2000, 8, 8), 128, np.uint8)  # far from 0 and 255: no clipping, so the std is sigma's
    diff = add_pixel_noise(mid, 40.0, seed=3).astype(float) - 128
    assert abs(diff.mean()) < 0.5 and abs(diff.std() - 40.0) < 0.5
    noisy = add_pixel_noise(images, 96.0, seed=3)
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape
    assert np.array_equal(noisy, add_pixel_noise(images, 96.0, seed=3))
    assert not np.array_equal(noisy, add_pixel_noise(images, 96.0, seed=4))
    assert np.array_equal(add_pixel_noise(images, 0.0), images)


def test_written_once_reuses_and_replaces_whole_copies(tmp_path):
    calls = []

    def write(root, name):
        calls.append(name)
        (root / name).write_text(name)

    root = tmp_path / "d"
    written_once(root, {"v": 1}, lambda r: write(r, "a"))
    written_once(root, {"v": 1}, lambda r: write(r, "b"))  # same settings: reused
    assert calls == ["a"] and json.loads((root / "dataset.json").read_text()) == {"v": 1}
    written_once(root, {"v": 2}, lambda r: write(r, "c"))  # other settings: the old copy goes
    assert sorted(p.name for p in root.iterdir()) == ["c", "dataset.json"]
    (root / "dataset.json").write_text(json.dumps({"unfinished": {"v": 3}}))  # a write that was killed
    written_once(root, {"v": 3}, lambda r: write(r, "e"))
    assert sorted(p.name for p in root.iterdir()) == ["dataset.json", "e"]
    own = tmp_path / "mine"  # no dataset.json: not ours, written over, nothing removed
    own.mkdir()
    (own / "keep.txt").write_text("x")
    written_once(own, {"v": 1}, lambda r: write(r, "f"))
    assert (own / "keep.txt").exists() and (own / "f").exists()


def _write_slowly(root, name):
    import time
    for i in range(20):
        (root / f"{name}_{i}").write_text(name)
        time.sleep(0.005)


def _write_shared(root, start):
    start.wait()  # both writers begin together
    written_once(root, {"v": 1}, lambda r: _write_slowly(r, str(os.getpid())))


def test_written_once_by_two_processes_at_once(tmp_path):
    """Two writers of the same copy (the ranks of a run) both end with one whole copy, no error, and no
    temporary folder left behind."""
    import multiprocessing

    root = tmp_path / "shared"
    ctx = multiprocessing.get_context("fork")  # the writers only touch files
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_shared, args=(root, start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    files = sorted(p.name for p in root.iterdir())
    assert len(files) == 21 and "dataset.json" in files  # one writer's 20 files and the marker
    assert len({(root / f).read_text() for f in files if f != "dataset.json"}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]


def test_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        train_val_folders(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        train_val_folders(tmp_path / "empty")
    root = make_shapes_folder(tmp_path / "s", train_per_class=2, val_per_class=2, image_size=8)
    import shutil
    shutil.rmtree(root / "val" / "disc")
    with pytest.raises(DataError, match="absent from val: disc"):
        train_val_folders(root)


def test_metric_writer_appends_and_truncates(tmp_path):
    w = MetricWriter(tmp_path, tensorboard=False)
    for step in range(5):
        w.write(step, {"loss": 1.0 / (step + 1)})
    w.truncate_after(2)
    w = MetricWriter(tmp_path, tensorboard=False)  # a resumed run
    w.write(3, {"loss": 0.1})
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[-1]["loss"]) == 0.1


# ---- progress off a terminal ---------------------------------------------------------------------
class _Clock:
    """A stand-in for tqdm's clock (``tqdm.std.time``), advanced by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_progress_off_a_terminal_writes_no_carriage_returns(capsys, monkeypatch):
    monkeypatch.delenv("CYDAS_PROGRESS_INTERVAL", raising=False)
    bar = progress(total=1000, desc="search", unit="step")
    assert isinstance(bar, LogProgress)  # capsys' stderr is not a TTY
    for _ in range(1000):
        bar.update(1)
        bar.set_postfix(loss="0.412", acc="86.0")
    assert (bar.n, bar.total) == (1000, 1000)
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and 1 <= len(lines) <= 2
    assert re.fullmatch(r"search: 1000/1000 steps \(100%\) \d+ step/s, took \d+ s \| acc=86\.0, loss=0\.412",
                        lines[-1])


def test_progress_line_every_interval_with_pace_and_eta(capsys, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("tqdm.std.time", clock)
    monkeypatch.setenv("CYDAS_PROGRESS_INTERVAL", "30")
    with progress(total=220, initial=100, desc="search", unit="step") as bar:  # a resumed search
        for step in range(1, 121):
            clock.t += 1.5
            bar.update(1)
            bar.set_postfix(loss=f"{1 / step:.3f}")
            if step == 20:
                assert capsys.readouterr().err == ("search: 120/220 steps (55%) 1.5 s/step, eta 2 min | "
                                                   "loss=0.053\n")  # update() wrote it: step 19's postfix
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" ")[1] for ln in lines] == ["140/220", "160/220", "180/220", "200/220", "220/220",
                                                  "220/220"]  # every 30 s, then the final line
    assert lines[-1] == "search: 220/220 steps (100%) 1.5 s/step, took 3 min | loss=0.008"


def test_progress_iteration_and_leave_false(capsys, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("tqdm.std.time", clock)
    monkeypatch.setenv("CYDAS_PROGRESS_INTERVAL", "10")
    seen = []
    for x in progress(range(50), desc="eval", unit="batch", leave=False):
        clock.t += 0.5
        seen.append(x)
    assert seen == list(range(50))
    err = capsys.readouterr().err
    assert err.splitlines() == ["eval: 20/50 batches (40%) 2.0 batch/s, eta 15 s",
                                "eval: 40/50 batches (80%) 2.0 batch/s, eta 5 s"]  # no final line: leave=False


def test_progress_on_a_terminal_is_tqdms_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    bar = progress(total=3, desc="search", file=out)
    assert not isinstance(bar, LogProgress)
    bar.update(3)
    bar.close()
    assert "\r" in out.getvalue() and "3/3" in out.getvalue()


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_progress_interval_must_be_seconds(value, monkeypatch):
    monkeypatch.setenv("CYDAS_PROGRESS_INTERVAL", value)
    with pytest.raises(ConfigError) as info:
        progress(total=3, file=io.StringIO())
    assert str(info.value) == f"CYDAS_PROGRESS_INTERVAL must be a number of seconds >= 0, got {value!r}"
