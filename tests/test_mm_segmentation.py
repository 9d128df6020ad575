"""CyDAS-b + Semantic FPN through tools/train.py and tools/test.py on tiny Cityscapes/ADE20K copies written here."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, assert_one_line_error, run_tool
from mm_tools import ONE_THREAD, read_json_logs, train

pytest.importorskip("mmseg")
import cydas_chain.mm  # noqa: E402,F401  (torch.load reads mmengine checkpoints)

pytestmark = [pytest.mark.mm, pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")]

W, H = 128, 64
# (train id, colour): road, building, vegetation, sky, car -- painted as bands and a box.
PALETTE = ((0, (128, 64, 128)), (2, (70, 70, 70)), (8, (107, 142, 35)), (10, (70, 130, 180)), (13, (0, 0, 142)))


def _scene(rng):
    label = np.zeros((H, W), np.uint8)
    img = np.zeros((H, W, 3), np.uint8)
    rows = np.sort(rng.integers(8, H - 8, 3))
    bands = np.split(np.arange(H), rows)
    for (tid, color), band in zip(PALETTE[::-1][1:], bands):
        label[band] = tid
        img[band] = color
    x, y = int(rng.integers(0, W - 40)), int(rng.integers(H // 2, H - 16))
    label[y:y + 14, x:x + 36], img[y:y + 14, x:x + 36] = PALETTE[-1][0], PALETTE[-1][1]
    img = np.clip(img.astype(int) + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
    return img, label


def write_tiny_cityscapes(root: Path, n_images: int = 2, seed: int = 0) -> Path:
    """leftImg8bit/{train,val}/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelTrainIds.png."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        img_dir, ann_dir = root / "leftImg8bit" / split / "aachen", root / "gtFine" / split / "aachen"
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for i in range(n_images):
            img, label = _scene(rng)
            stem = f"aachen_{i:06d}_000019"
            Image.fromarray(img).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(label).save(ann_dir / f"{stem}_gtFine_labelTrainIds.png")
    return root


def write_tiny_ade(root: Path, n_images: int = 2, seed: int = 1) -> Path:
    """images/{training,validation}/*.jpg + annotations/.../*.png (0 = other, classes 1..150)."""
    rng = np.random.default_rng(seed)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n_images):
            img, label = _scene(rng)
            name = f"ADE_{split[:5]}_{i:08d}"
            Image.fromarray(img).save(root / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(label + 1).save(root / "annotations" / split / f"{name}.png")
    return root


def write_test_config(tmp_path: Path, base: str = "fpn_cydas_b_cityscapes.py") -> Path:
    """The real config at a tiny scale: 128x64 images without augmentation, random init."""
    cfg = tmp_path / f"tiny_{base}"
    ade = "ade20k" in base
    cfg.write_text(f"""
_base_ = ['{ROOT / 'mm_configs' / base}']
scale = ({W}, {H})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label={ade}),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label={ade}),
    dict(type='PackSegInputs'),
]
model = dict(data_preprocessor=dict(size=({H}, {W})), backbone=dict(init_cfg=None))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = []
train_cfg = dict(max_iters=6, val_interval=6)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=3))
log_processor = dict(window_size=1)
""")
    return cfg


def test_cityscapes_train_evaluate_resume_test_and_infer(tmp_path):
    data = write_tiny_cityscapes(tmp_path / "cityscapes")
    cfg, wd = write_test_config(tmp_path), tmp_path / "work"
    train(cfg, wd, data, "train_cfg.max_iters=6", "train_cfg.val_interval=6")
    (first,) = read_json_logs(wd)
    losses = [r["loss"] for r in first if "loss" in r]
    assert [r["iter"] for r in first if "loss" in r] == [1, 2, 3, 4, 5, 6]  # the same batch of 2 each time
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1, losses
    val = [r for r in first if "mIoU" in r]
    assert len(val) == 1 and 0.0 <= val[0]["mIoU"] <= 100.0 and 0.0 < val[0]["aAcc"] <= 100.0
    assert (wd / "iter_3.pth").is_file() and (wd / "iter_6.pth").is_file()

    proc = train(cfg, wd, data, "train_cfg.max_iters=8", "train_cfg.val_interval=100", resume=True)
    assert "resumed epoch: 0, iter: 6" in proc.stdout + proc.stderr
    resumed = [r for r in read_json_logs(wd)[1] if "loss" in r]
    assert [r["iter"] for r in resumed] == [7, 8]
    assert resumed[0]["loss"] < losses[0] - 0.1  # the trained weights, not a fresh start

    proc = run_tool("tools/test.py", cfg, wd / "iter_8.pth", "--work-dir", tmp_path / "test", "--data-root", data,
                    "--show-dir", tmp_path / "vis", env=ONE_THREAD, check=True)
    metrics = dict(line.split(": ") for line in proc.stdout.splitlines() if line.startswith(("mIoU", "aAcc")))
    assert 0.0 <= float(metrics["mIoU"]) <= 100.0 and 0.0 < float(metrics["aAcc"]) <= 100.0
    assert len(list((tmp_path / "vis").rglob("*.png"))) == 2

    from mmseg.apis import inference_model, init_model

    model = init_model(str(cfg), str(wd / "iter_8.pth"), device="cpu")
    state = torch.load(wd / "iter_8.pth")["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    image = next((data / "leftImg8bit" / "val").rglob("*.png"))
    pred = inference_model(model, str(image)).pred_sem_seg.data
    assert tuple(pred.shape) == (1, H, W) and int(pred.max()) < 19


def test_ade20k_config_trains_and_evaluates(tmp_path):
    data = write_tiny_ade(tmp_path / "ade")
    cfg, wd = write_test_config(tmp_path, "fpn_cydas_b_ade20k.py"), tmp_path / "work"
    train(cfg, wd, data, "train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=2")
    (log,) = read_json_logs(wd)
    assert [r["iter"] for r in log if "loss" in r] == [1, 2]
    (val,) = [r for r in log if "mIoU" in r]
    assert 0.0 <= val["mIoU"] <= 100.0
    state = torch.load(wd / "iter_2.pth")["state_dict"]
    assert state["decode_head.conv_seg.weight"].shape[0] == 150


def test_bad_input_is_one_line(tmp_path):
    real = ROOT / "mm_configs" / "fpn_cydas_b_cityscapes.py"
    assert_one_line_error(run_tool("tools/train.py", real, "--work-dir", tmp_path / "w", "--cfg-options",
                                   f"train_dataloader.dataset.data_root={tmp_path / 'none'}"),
                          "train data root not found", "--data-root")
    assert_one_line_error(run_tool("tools/test.py", tmp_path / "missing.py", tmp_path / "x.pth"),
                          "config not found")
    corrupt = tmp_path / "iter_8.pth"
    corrupt.write_bytes(b"PK\x03\x04 not a checkpoint")
    assert_one_line_error(run_tool("tools/test.py", real, corrupt), "cannot read checkpoint")
