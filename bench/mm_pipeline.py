#!/usr/bin/env python
"""Images per second of the mm configs' training data pipelines on one CPU core, and the data loader
workers per GPU that a training speed needs.

Each config's own train pipeline (the mmdet / mmseg transforms of ``train_dataloader.dataset.pipeline``,
built as the dataset builds it) runs in this process, on one thread, over synthetic images written in
the data set's real format and size: a 640x480 JPEG with 7 boxes for COCO (RetinaNet: decode, resize to
1333x800, flip, pack), a 2048x1024 PNG with its labelTrainIds PNG for Cityscapes (decode, random
resize 0.5-2x, 512x1024 crop, flip, photometric distortion, pack), a 683x512 JPEG with its PNG
annotation for ADE20K (the same at 2048x512, 512x512 crops).  The images are smooth random fields
with pixel noise, so that the files are about as large as the real ones (printed); a loader worker
is one such process.

  python bench/mm_pipeline.py                         # all three, 40 images each
  python bench/mm_pipeline.py --images 100 --gpu-rate 30

Workers per GPU = ceil(GPU images/s / images/s per core); the GPU rates are for you to give
(--gpu-rate, or the estimates in docs/mm.md): nothing here ran on a GPU.
"""
import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # config -> (data set, image size W x H, image format)
    "retinanet_cydas_b.py": ("COCO", (640, 480), "jpg"),
    "fpn_cydas_b_cityscapes.py": ("Cityscapes", (2048, 1024), "png"),
    "fpn_cydas_b_ade20k.py": ("ADE20K", (683, 512), "jpg"),
}


# pixel noise and fine-texture amplitude per format, chosen so that the files are about as large as the
# data sets' (COCO train2017 JPEGs ~160 KB, Cityscapes leftImg8bit PNGs ~2.3 MB)
TEXTURE = {"jpg": (16.0, 10.0), "png": (0.8, 4.0)}


def natural_image(rng, w, h, noise=16.0, fine=10.0):
    """A photo-like RGB image: smooth random fields at a few scales plus sensor-like pixel noise."""
    import cv2

    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 70.0), (16, 35.0), (64, 18.0), (256, fine)):
        small = rng.normal(0, amp, (max(2, cells * h // w), cells, 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, noise, img.shape)
    return np.clip(img + 120, 0, 255).astype(np.uint8)


def label_map(rng, w, h, classes, blocks=24):
    """Class regions: a coarse random partition, as a segmentation map."""
    import cv2

    small = rng.integers(0, classes, (max(2, blocks * h // w), blocks), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def write_sample(folder: Path, dataset: str, size, fmt: str, seed: int) -> dict:
    """One image (and annotation) in the data set's format; the data-info dict its dataset would give."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    img = natural_image(rng, w, h, *TEXTURE[fmt])
    path = folder / f"{dataset}_{seed}.{fmt}"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if dataset == "COCO":
        x1 = rng.uniform(0, w * 0.7, 7)
        y1 = rng.uniform(0, h * 0.7, 7)
        bw, bh = rng.uniform(20, w * 0.3, 7), rng.uniform(20, h * 0.3, 7)
        instances = [dict(bbox=[float(a), float(b), float(min(w, a + c)), float(min(h, b + d))],
                          bbox_label=int(k), ignore_flag=0)
                     for a, b, c, d, k in zip(x1, y1, bw, bh, rng.integers(0, 80, 7))]
        return dict(img_path=str(path), img_id=seed, height=h, width=w, instances=instances)
    classes, zero = (19, False) if dataset == "Cityscapes" else (151, True)
    seg = folder / f"{dataset}_{seed}_label.png"
    cv2.imwrite(str(seg), label_map(rng, w, h, classes))
    return dict(img_path=str(path), seg_map_path=str(seg), reduce_zero_label=zero, seg_fields=[], label_map=None)


def pipeline_of(config: Path):
    from mmengine.config import Config
    from mmengine.dataset import Compose

    from cydas_chain.mm.runner import register_scope, scope_of

    cfg = Config.fromfile(str(config))
    register_scope(scope_of(cfg, config))
    return Compose(cfg.train_dataloader.dataset.pipeline), cfg


def measure(config: Path, images: int, warmup: int, folder: Path) -> dict:
    dataset, size, fmt = CONFIGS[config.name]
    pipeline, cfg = pipeline_of(config)
    samples = [write_sample(folder, dataset, size, fmt, seed) for seed in range(4)]
    times = []
    for i in range(warmup + images):
        info = dict(samples[i % len(samples)])
        t = time.perf_counter()
        out = pipeline(info)
        dt = time.perf_counter() - t
        assert out is not None, f"{config.name}: the pipeline dropped the sample"
        if i >= warmup:
            times.append(dt)
    shape = tuple(out["inputs"].shape)
    loader = cfg.train_dataloader
    return dict(config=config.name, dataset=dataset, size=f"{size[0]}x{size[1]} {fmt.upper()}",
                file_kb=round(Path(samples[0]["img_path"]).stat().st_size / 1024),
                out_shape="x".join(map(str, shape[1:])), ms_median=1000 * statistics.median(times),
                per_core=len(times) / sum(times), batch_per_gpu=loader.batch_size,
                workers=loader.get("num_workers"), persistent=loader.get("persistent_workers"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--images", type=int, default=40, help="timed samples per config")
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--gpu-rate", type=float, nargs="+", default=None, metavar="IMG_PER_S",
                   help="training images/s of one GPU, per config in --configs order (one value: all): prints the "
                        "loader workers per GPU that rate needs")
    args = p.parse_args()

    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread measured; "
          f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            rows.append(measure(ROOT / "mm_configs" / name, args.images, args.warmup, Path(tmp)))
    rates = args.gpu_rate or []
    if len(rates) == 1:
        rates = rates * len(rows)
    print("\n| config | data set | input | file | pipeline output | ms / image (median) | images/s per core "
          "| config: workers, persistent |" + (" GPU images/s (given) | workers per GPU needed |" if rates else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if rates else ""))
    for i, r in enumerate(rows):
        line = (f"| {r['config']} | {r['dataset']} | {r['size']} | {r['file_kb']} KB | {r['out_shape']} | "
                f"{r['ms_median']:.1f} | {r['per_core']:.1f} | {r['workers']}, {r['persistent']} |")
        if rates:
            line += f" {rates[i]:g} | {math.ceil(rates[i] / r['per_core'])} |"
        print(line)


if __name__ == "__main__":
    main()
