#!/usr/bin/env python
"""Images per second of the input pipeline, before and after issue 24, side by side.

Both read the same JPEG ImageFolder (written once: ImageNet-like photographs' sizes, 500x375 and 375x500,
smooth noise so that JPEG has something to code) through the same training transforms of
``tools/train_cls.py`` at 224 px (random-resized crop, flip, AutoAugment), with the same number of
loader processes:

* **before**: the transforms end in ToTensor + Normalize in float32 in the loader processes, the
  default collate stacks float32 batches, the workers start again every epoch;
* **now** (``cydas_chain.core.loader.make_loader``): the transforms end in uint8, the batches are a
  quarter of the bytes, the workers persist, and the device normalises (timm's PrefetchLoader: on a GPU
  the copy overlaps the step).

Each pipeline runs ``--epochs`` passes over the folder; the first pass is reported apart (worker
start-up, page cache).  On a GPU node the figure to compare with is the training speed of the network
(``bench/gpu_check.py``): a loader that gives fewer images/s per process than the GPU takes is the
bottleneck.  ``--json FILE`` writes the figures.
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

from cydas_chain.core.checkpoint import write_json


def write_jpeg_folder(root: Path, images: int, classes: int = 10, seed: int = 0) -> Path:
    """``images`` JPEGs (quality 90) in ``classes`` class folders, once; ImageNet's typical sizes."""
    from PIL import Image

    from cydas_chain.core.data import written_once

    def write(out: Path) -> None:
        rng = np.random.default_rng(seed)
        for i in range(images):
            w, h = (500, 375) if i % 3 else (375, 500)
            low = rng.uniform(0, 255, (h // 25 + 1, w // 25 + 1, 3)).astype(np.uint8)
            img = Image.fromarray(low).resize((w, h), Image.BICUBIC)  # smooth, like a photograph
            noise = rng.normal(0, 12, (h, w, 3))
            img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
            d = out / "train" / f"class_{i % classes:02d}"
            d.mkdir(parents=True, exist_ok=True)
            img.save(d / f"{i:05d}.jpg", quality=90)

    return written_once(root, {"images": images, "classes": classes, "seed": seed, "version": 1}, write)


def old_pipeline(root: Path, batch: int, workers: int, img_size: int, device):
    """ToTensor + Normalize in the workers, float32 batches, workers restarted each epoch, copied to the device."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    tf = create_transform(img_size, is_training=True, auto_augment="original", interpolation="bicubic",
                          mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    loader = DataLoader(ImageFolder(str(root / "train"), tf), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda")

    def epoch():
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return epoch


def new_pipeline(root: Path, batch: int, workers: int, img_size: int, device):
    """The project's: uint8 from the workers, persistent workers, normalised on the device."""
    from torchvision.datasets import ImageFolder

    from cydas_chain.core.data import build_transforms
    from cydas_chain.core.loader import make_loader

    tf = build_transforms(img_size, "timm", auto_augment="original", interpolation="bicubic")
    loader = make_loader(ImageFolder(str(root / "train"), tf.train), batch, device=device, mean=tf.mean, std=tf.std,
                         shuffle=True, drop_last=True, workers=workers)
    return lambda: iter(loader)


def measure(make_epoch, epochs: int, device) -> dict:
    import torch

    rates = []
    for _ in range(epochs):
        n, t0 = 0, time.perf_counter()
        for x, _ in make_epoch():
            assert x.dtype == torch.float32  # normalised, ready for the network
            n += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(n / (time.perf_counter() - t0))
    return {"first_epoch": rates[0], "later_epochs": float(np.mean(rates[1:])) if len(rates) > 1 else rates[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("runs/bench_loader/jpeg"),
                   help="where the JPEG folder is written once (default: %(default)s)")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--workers", type=int, nargs="+", default=[0, len(os.sched_getaffinity(0))],
                   help="loader processes to measure (default: 0 and the cores of this machine)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(1)  # the main process only moves batches; the workers decode
    device = torch.device(args.device)
    root = write_jpeg_folder(args.data, args.images)
    print(f"{args.images} JPEGs (500x375), training transforms at {args.img_size} px (RRC, flip, AutoAugment), "
          f"batch {args.batch_size}, device {device}, torch {torch.__version__}")
    rows = []
    for workers in args.workers:
        row = {"workers": workers}
        for name, build in (("before", old_pipeline), ("now", new_pipeline)):
            row[name] = measure(build(root, args.batch_size, workers, args.img_size, device), args.epochs, device)
        row["ratio"] = row["now"]["later_epochs"] / row["before"]["later_epochs"]
        rows.append(row)
        print(f"  {workers} loader process(es): before {row['before']['later_epochs']:.0f} img/s "
              f"(first epoch {row['before']['first_epoch']:.0f}), now {row['now']['later_epochs']:.0f} img/s "
              f"(first epoch {row['now']['first_epoch']:.0f}): {row['ratio']:.2f}x")
    result = {"date": time.strftime("%Y-%m-%d"), "device": str(device), "cpu_cores": len(os.sched_getaffinity(0)),
              "torch": torch.__version__, "images": args.images, "batch_size": args.batch_size,
              "img_size": args.img_size, "rows": rows}
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
