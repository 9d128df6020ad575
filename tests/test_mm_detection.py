"""RetinaNet-CyDAS through tools/train.py and tools/test.py on a tiny COCO written here."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, assert_one_line_error, run_tool
from mm_tools import ONE_THREAD, read_json_logs, train

pytest.importorskip("mmdet")
import cydas_chain.mm  # noqa: E402,F401  (torch.load reads mmengine checkpoints)
from cydas_chain.models import LAYOUT, OPS, ChainArch  # noqa: E402

pytestmark = [pytest.mark.mm, pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")]

CLASSES = ("red", "green", "blue")
COLORS = ((220, 30, 30), (30, 200, 30), (40, 40, 230))
W, H = 128, 96


def write_tiny_coco(root: Path, n_images: int = 2, seed: int = 0) -> Path:
    """COCO layout: annotations/instances_{train,val}2017.json + {train,val}2017/*.jpg, 3 classes."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        images, anns = [], []
        for i in range(n_images):
            img = np.full((H, W, 3), 128, np.uint8) + rng.integers(0, 20, (H, W, 3), dtype=np.uint8)
            for c in range(len(CLASSES)):
                w, h = (int(v) for v in rng.integers(24, 44, 2))
                x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
                img[y:y + h, x:x + w] = COLORS[c]
                anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=c + 1, bbox=[x, y, w, h],
                                 area=w * h, iscrowd=0))
            name = f"{i:06d}.jpg"
            Image.fromarray(img).save(root / split / name, quality=95)
            images.append(dict(id=i + 1, file_name=name, width=W, height=H))
        coco = dict(images=images, annotations=anns,
                    categories=[dict(id=c + 1, name=n) for c, n in enumerate(CLASSES)])
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def write_test_config(tmp_path: Path, base: str = "retinanet_cydas_b.py") -> Path:
    """The real config at a tiny scale: 3 classes, 128x96 images, no augmentation, random init."""
    cfg = tmp_path / "retinanet_tiny.py"
    cfg.write_text(f"""
_base_ = ['{ROOT / 'mm_configs' / base}']
metainfo = dict(classes={CLASSES!r})
scale = ({W}, {H})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
model = dict(backbone=dict(init_cfg=None, norm_eval=False), bbox_head=dict(num_classes=3))
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        dataset=dict(metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=3))
log_processor = dict(window_size=1)
env_cfg = dict(mp_cfg=dict(mp_start_method='fork'))
""")
    return cfg


@pytest.fixture()
def coco(tmp_path):
    return write_tiny_coco(tmp_path / "coco")


def test_retinanet_train_evaluate_resume_test_and_infer(tmp_path, coco):
    cfg, wd = write_test_config(tmp_path), tmp_path / "work"
    common = ["model.test_cfg.score_thr=0.0", "train_cfg.val_interval=100"]
    train(cfg, wd, coco, "train_cfg.max_epochs=6", "train_cfg.val_interval=6", *common[:1])
    (first,) = read_json_logs(wd)
    losses = [r["loss"] for r in first if "loss" in r]
    assert [r["epoch"] for r in first if "loss" in r] == [1, 2, 3, 4, 5, 6]  # one repeated batch an epoch
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.02, losses
    val = [r for r in first if "coco/bbox_mAP" in r]
    assert len(val) == 1 and 0.0 <= val[0]["coco/bbox_mAP"] <= 1.0 and val[0]["coco/bbox_mAP_50"] >= 0.0
    assert (wd / "epoch_3.pth").is_file() and (wd / "epoch_6.pth").is_file()

    # --resume continues from epoch 6 (the latest checkpoint) with the trained weights.
    proc = train(cfg, wd, coco, "train_cfg.max_epochs=8", *common, resume=True)
    assert "resumed epoch: 6, iter: 6" in proc.stdout + proc.stderr
    second = read_json_logs(wd)[1]
    resumed = [r for r in second if "loss" in r]
    assert [(r["epoch"], r["iter"]) for r in resumed] == [(7, 7), (8, 8)]
    assert resumed[0]["loss"] < losses[0] - 0.02  # not a fresh start

    # tools/test.py on that checkpoint: CocoMetric numbers, and drawn predictions.
    proc = run_tool("tools/test.py", cfg, wd / "epoch_8.pth", "--work-dir", tmp_path / "test",
                    "--data-root", coco, "--show-dir", "vis", "--cfg-options", common[0], env=ONE_THREAD, check=True)
    metrics = dict(line.split(": ") for line in proc.stdout.splitlines() if line.startswith("coco/"))
    assert 0.0 <= float(metrics["coco/bbox_mAP"]) <= 1.0 and "coco/bbox_mAP_50" in metrics
    assert len(list((tmp_path / "test").glob("*/vis/*.jpg"))) == 2

    # mmdet.apis on an image file, the checkpoint loaded by torch's default weights-only load.
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(str(cfg), str(wd / "epoch_8.pth"), device="cpu",
                          cfg_options={"model.test_cfg.score_thr": 0.0})
    state = torch.load(wd / "epoch_8.pth")["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    pred = inference_detector(model, str(coco / "val2017" / "000000.jpg")).pred_instances
    assert 0 < len(pred.bboxes) <= 100 and set(pred.labels.tolist()) <= {0, 1, 2}
    assert float(pred.bboxes[:, 2].max()) <= W + 1 and float(pred.bboxes[:, 3].max()) <= H + 1


def test_searched_arch_json_as_retinanet_backbone(tmp_path, coco):
    arch = ChainArch(((0,), (2, 1), (4,), (5, 3), (1,)))
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    cfg, wd = write_test_config(tmp_path), tmp_path / "work"
    train(cfg, wd, coco, f"model.backbone.arch={path}", "train_cfg.max_epochs=1", "train_cfg.val_interval=100",
          "default_hooks.checkpoint.interval=1")
    assert [r["epoch"] for r in read_json_logs(wd)[0] if "loss" in r] == [1]
    state = torch.load(wd / "epoch_1.pth")["state_dict"]
    # the detector's backbone is the searched network: its blocks, kernels and expansions
    for s, (ops, width) in enumerate(zip(arch.stages, LAYOUT.widths)):
        assert f"backbone.blocks.{s + 1}.{len(ops)}.conv_pw.weight" not in state
        for j, op in enumerate(ops):
            c_in = (LAYOUT.stem_width if s == 0 else LAYOUT.widths[s - 1]) if j == 0 else width
            assert state[f"backbone.blocks.{s + 1}.{j}.conv_dw.weight"].shape[-1] == OPS[op].kernel
            assert state[f"backbone.blocks.{s + 1}.{j}.conv_pw.weight"].shape[:2] == (c_in * OPS[op].expansion, c_in)


def test_bad_input_is_one_line(tmp_path, coco):
    cfg = write_test_config(tmp_path)
    real = ROOT / "mm_configs" / "retinanet_cydas_b.py"
    assert_one_line_error(run_tool("tools/train.py", tmp_path / "missing.py"), "config not found")
    assert_one_line_error(run_tool("tools/train.py", real, "--work-dir", tmp_path / "w1", "--data-root",
                                   tmp_path / "no_coco"), "train data root not found", "no_coco")
    assert_one_line_error(run_tool("tools/train.py", real, "--work-dir", tmp_path / "w2", "--data-root", coco),
                          "pretrained backbone weights not found: checkpoints/cydas_b_in1k.pth")
    assert_one_line_error(run_tool("tools/train.py", cfg, "--work-dir", tmp_path / "w3", "--data-root", coco,
                                   "--cfg-options", "model.backbone.arch=cydas_zz"), "unknown architecture 'cydas_zz'")
    assert_one_line_error(run_tool("tools/train.py", cfg, "--work-dir", tmp_path / "w4", "--data-root", coco,
                                   "--cfg-options", "model.backbone.archh=cydas_b"),
                          "unexpected keyword argument 'archh'")
    assert_one_line_error(run_tool("tools/test.py", cfg, tmp_path / "nope.pth", "--data-root", coco),
                          "checkpoint not found")
