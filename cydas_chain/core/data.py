"""Dataset loading in the ImageNet folder layout, and the embedded synthetic default.

Layout expected by the tools (torchvision's ImageFolder, one sub-folder per class)::

    DIR/train/<class>/*.jpg|png   and optionally   DIR/val/<class>/*
    (or DIR/<class>/* directly, read as the training set)

Without ``val/`` a stratified share of ``train/`` is held out for validation.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .errors import DataError


def image_folder(root: os.PathLike, transform: Optional[Callable] = None):
    """torchvision ImageFolder over ``root`` with one-line errors for missing or empty folders."""
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    if not any(p.is_dir() for p in root.iterdir()):
        raise DataError(f"data folder {root} has no class sub-folders (expected {root}/<class>/<image>)")
    try:
        return ImageFolder(str(root), transform=transform)
    except FileNotFoundError as e:  # ImageFolder's message for a class folder without images
        raise DataError(f"data folder {root}: {e}") from e


def check_same_classes(train, val, train_root, val_root) -> None:
    if train.classes != val.classes:
        detail = [f"absent from {where}: {', '.join(sorted(set(a) - set(b))[:5])}"
                  for where, a, b in (("val", train.classes, val.classes), ("train", val.classes, train.classes))
                  if set(a) - set(b)]
        raise DataError(f"class folders of {train_root} and {val_root} differ ({'; '.join(detail)})")


def stratified_split(targets: Sequence[int], fraction: float, seed: int = 0) -> Tuple[List[int], List[int]]:
    """Split indices per class: ``fraction`` of each class (at least one image) goes to the second list."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    first, second = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        if len(idx) < 2:
            raise DataError(f"class {int(c)} has {len(idx)} image(s); at least 2 are needed to hold one out")
        n = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        second.extend(idx[:n].tolist())
        first.extend(idx[n:].tolist())
    return sorted(first), sorted(second)


def train_val_folders(root: os.PathLike, train_transform=None, val_transform=None,
                      val_fraction: float = 0.1, seed: int = 0) -> Tuple[Dataset, Dataset, List[str]]:
    """Training and validation sets from ``root`` (see module doc).  Returns (train, val, classes)."""
    root = Path(root)  # a missing one: image_folder's "data folder not found"
    train_dir = root / "train" if (root / "train").is_dir() else root
    val_dir = root / "val"
    train = image_folder(train_dir, train_transform)
    if val_dir.is_dir():
        val = image_folder(val_dir, val_transform)
        check_same_classes(train, val, train_dir, val_dir)
        return train, val, train.classes
    train_idx, val_idx = stratified_split(train.targets, val_fraction, seed)
    val_base = image_folder(train_dir, val_transform)
    return Subset(train, train_idx), Subset(val_base, val_idx), train.classes


def holdout_counts(targets: Sequence[int], holdout: float, classes: Sequence[str],
                   max_share: Optional[float] = None) -> dict:
    """Images of each class held out: a share (``holdout`` < 1) of each class, or ``holdout`` images in all
    (>= 1) shared in proportion to the classes' sizes, at most ``max_share`` of them when given (a default
    count on a small set); one :class:`DataError` line when a class would keep no training image or give no
    held-out one."""
    targets = np.asarray(targets)
    labels, sizes = np.unique(targets, return_counts=True)
    if holdout <= 0:
        raise DataError(f"--holdout must be a share in (0, 1) or a number of images >= 1, got {holdout:g}")
    share = holdout if holdout < 1 else holdout / len(targets)
    if max_share is not None:
        share = min(share, max_share)
    counts = {}
    for c, n in zip(labels.tolist(), sizes.tolist()):
        k = int(round(share * n))
        name = classes[c] if c < len(classes) else str(c)
        if k == 0:
            raise DataError(f"--holdout {holdout:g} holds out no image of class '{name}' ({n} images): give a larger "
                            f"share or count, so that every class is scored")
        if k >= n:
            raise DataError(f"--holdout {holdout:g} leaves class '{name}' ({n} images) without training images: "
                            f"give a smaller share or count")
        counts[c] = k
    return counts


class SelectionSplits(NamedTuple):
    """The data of a search (``selection_splits``): the supernet's training images, the images that score
    paths (held out of them), the report images (``val/``, never used to select) and the classes."""

    train: Dataset  # images without a transform (the search applies its seeded augmentation)
    score: Dataset
    report: Optional[Dataset]
    classes: List[str]
    description: str


def selection_splits(root: os.PathLike, holdout: float, eval_transform=None, seed: int = 0,
                     max_share: Optional[float] = None) -> SelectionSplits:
    """``root/train`` (or ``root``) split per class into the supernet's training images and ``holdout``
    images that score paths (stratified, seeded); ``root/val``, when it exists, only to report the result."""
    root = Path(root)
    train_dir = root / "train" if (root / "train").is_dir() else root
    full = image_folder(train_dir)
    counts = holdout_counts(full.targets, holdout, full.classes, max_share)
    targets = np.asarray(full.targets)
    rng = np.random.default_rng([seed, 29])
    held, kept = [], []
    for c, k in counts.items():
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        held.extend(idx[:k].tolist())
        kept.extend(idx[k:].tolist())
    held, kept = sorted(held), sorted(kept)
    score = Subset(image_folder(train_dir, eval_transform), held)
    report = None
    if (root / "val").is_dir() and train_dir != root:
        report = image_folder(root / "val", eval_transform)
        check_same_classes(full, report, train_dir, root / "val")
    desc = (f"{len(kept)} training images, {len(held)} held out of {train_dir} to score paths"
            + (f", {len(report)} of {root / 'val'} to report the result" if report is not None else
               " (no val/: the result's score is the selection's own)"))
    return SelectionSplits(Subset(full, kept), score, report, list(full.classes), desc)


class TensorImageDataset(Dataset):
    """In-memory uint8 images (N, H, W, C) with labels; transforms receive PIL images."""

    def __init__(self, images: np.ndarray, labels: Sequence[int], transform=None, classes=None):
        self.images, self.targets, self.transform = images, list(labels), transform
        self.classes = classes or sorted({int(t) for t in self.targets})

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image
        img = Image.fromarray(self.images[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[i]


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
TRANSFORM_KINDS = ("embedded", "cifar", "imagenet", "timm", "released")


class Cutout:
    """Fill one random ``length`` x ``length`` square of a uint8 image tensor with ``fill`` (DARTS' CIFAR
    recipe).  DARTS zeroes the square after normalisation; ``fill`` = the normalisation mean in pixels
    (:meth:`Transforms.mean_pixel`) is that zero before it, up to rounding."""

    def __init__(self, length: int, fill: Sequence[int] = (0, 0, 0)):
        self.length, self.fill = length, tuple(int(v) for v in fill)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(0, cy - self.length // 2), min(h, cy + self.length // 2)
        x0, x1 = max(0, cx - self.length // 2), min(w, cx + self.length // 2)
        img = img.clone()
        img[..., y0:y1, x0:x1] = torch.tensor(self.fill, dtype=img.dtype).view(-1, 1, 1)
        return img


class RandomErasing:
    """timm's random erasing ("pixel" mode: per-pixel normal noise in normalised units) on a uint8 image:
    with probability ``p`` a rectangle of 2%..1/3 of the area, aspect 0.3..3.3, gets noise of the
    normalisation's mean and std, rounded and clipped to pixels (the same after normalisation, up to that)."""

    def __init__(self, p: float, mean: Sequence[float], std: Sequence[float]):
        self.p, self.mean, self.std = p, torch.tensor(mean) * 255, torch.tensor(std) * 255

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import math
        import random

        if random.random() >= self.p:
            return img
        c, h, w = img.shape
        for _ in range(10):
            area = random.uniform(0.02, 1 / 3) * h * w
            aspect = math.exp(random.uniform(math.log(0.3), math.log(1 / 0.3)))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if eh < h and ew < w:
                top, left = random.randint(0, h - eh), random.randint(0, w - ew)
                noise = torch.randn(c, eh, ew) * self.std.view(-1, 1, 1) + self.mean.view(-1, 1, 1)
                img = img.clone()
                img[:, top:top + eh, left:left + ew] = noise.round().clamp(0, 255).to(img.dtype)
                return img
        return img


class Transforms(NamedTuple):
    """What :func:`build_transforms` gives: the train and eval transforms (PIL image -> uint8 CHW tensor)
    and the normalisation the loader applies on the device (``core.loader.make_loader``)."""

    train: Callable
    eval: Callable
    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    def mean_pixel(self) -> Tuple[int, ...]:
        return tuple(int(round(255 * m)) for m in self.mean)


def normalize_uint8(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A uint8 batch (N, C, H, W) as the loader normalises it, on ``x``'s device (for data held outside a
    loader, e.g. preloaded scoring images)."""
    m = torch.tensor([255 * v for v in mean], device=x.device).view(1, -1, 1, 1)
    s = torch.tensor([255 * v for v in std], device=x.device).view(1, -1, 1, 1)
    return (x.float() - m) / s


def build_transforms(img_size: int, kind: str = "imagenet", *, crop_scale: float = 0.08, cutout: int = 0,
                     auto_augment: Optional[str] = None, interpolation: str = "bilinear",
                     mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                     crop_pct: float = 0.875) -> Transforms:
    """(train, eval, mean, std) of every tool; the transforms give uint8 tensors, which the loader
    normalises with ``mean`` / ``std`` on the device.  ``kind`` says which:

    * ``embedded`` (the 8x8 digits of the chain search): upscaled to ``img_size``, no augmentation
      (measured: a random shift halves what a 200-step search learns on them; docs/chain.md), no flips
      (a flipped digit is another).
    * ``cifar`` (DARTS): pad by ``img_size / 8`` and random crop, flip, ``cutout`` > 0 squares;
      CIFAR normalisation.
    * ``imagenet`` (the searches): random-resized crops of at least ``crop_scale`` of the area and flips;
      resize to ``img_size / 0.875`` and centre crop for evaluation.  torchvision's, so that a seeded
      torch generator fixes them (the chain search seeds every image).
    * ``timm`` (retraining): timm's ``create_transform``: random-resized crop, flip, ``auto_augment``
      (a timm policy) or else colour jitter 0.4; evaluation resizes to ``img_size / crop_pct``.
    * ``released`` (the released supernet code's): timm's random-resized crop with random interpolation,
      flip, colour jitter 0.4, random erasing 0.2 ("pixel"); evaluation as ``imagenet``.
    ``mean`` / ``std`` default to ImageNet's (CIFAR's for ``cifar``).
    """
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from torchvision import transforms as T

    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown transform kind '{kind}' (one of {', '.join(TRANSFORM_KINDS)})")
    mean = tuple(mean or (CIFAR_MEAN if kind == "cifar" else IMAGENET_DEFAULT_MEAN))
    std = tuple(std or (CIFAR_STD if kind == "cifar" else IMAGENET_DEFAULT_STD))
    if kind == "released":
        from timm.data import create_transform

        erase = RandomErasing(0.2, mean, std)
        train = create_transform(img_size, is_training=True, scale=(crop_scale, 1.0), interpolation="random",
                                 color_jitter=0.4, mean=mean, std=std, use_prefetcher=True)
        return Transforms(T.Compose([train, erase]), build_transforms(img_size, "imagenet", mean=mean, std=std).eval,
                          mean, std)
    if kind == "timm":
        from timm.data import create_transform

        return Transforms(create_transform(img_size, is_training=True, auto_augment=auto_augment,
                                           scale=(crop_scale, 1.0), interpolation=interpolation, mean=mean, std=std,
                                           use_prefetcher=True),
                          create_transform(img_size, is_training=False, interpolation=interpolation, mean=mean,
                                           std=std, crop_pct=crop_pct, use_prefetcher=True), mean, std)
    to_tensor = T.PILToTensor()
    if kind == "embedded":
        resize = T.Compose([T.Resize(img_size, interpolation=T.InterpolationMode.BILINEAR), to_tensor])
        return Transforms(resize, resize, mean, std)
    if kind == "cifar":
        fill = tuple(int(round(255 * m)) for m in mean)
        train = [T.RandomCrop(img_size, padding=img_size // 8), T.RandomHorizontalFlip(), to_tensor]
        return Transforms(T.Compose(train + ([Cutout(cutout, fill)] if cutout > 0 else [])), to_tensor, mean, std)
    return Transforms(T.Compose([T.RandomResizedCrop(img_size, scale=(crop_scale, 1.0)), T.RandomHorizontalFlip(),
                                 to_tensor]),
                      T.Compose([T.Resize(int(round(img_size / 0.875))), T.CenterCrop(img_size), to_tensor]),
                      mean, std)


# --------------------------------------------------------------------------------------------
# Embedded default: real handwritten digits shipped inside the package (see embedded/README.md).
# --------------------------------------------------------------------------------------------
DIGITS_FILE = Path(__file__).with_name("embedded") / "digits.csv.gz"


def load_digits_array() -> Tuple[np.ndarray, np.ndarray]:
    """The 1,797 embedded digits as uint8 images (N, 8, 8) scaled from 0..16 to 0..255, and labels."""
    import gzip

    with gzip.open(DIGITS_FILE, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = np.round(rows[:, :64].reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)
    return images, rows[:, 64]


def add_pixel_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """uint8 ``images`` plus Gaussian noise of std ``sigma`` (pixel scale), rounded and clipped to 0..255.

    A harder version of the same real images (the corruption of MNIST-noise / CIFAR-C): deterministic
    for a seed; ``sigma`` 0 returns a copy.
    """
    if sigma == 0:
        return images.copy()
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(np.round(images.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def make_digits_folder(root: os.PathLike, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write the embedded default data set as ``root/train/<digit>/*.png`` and ``root/val/...``.

    The 1,797 real 8x8 handwritten digits (greyscale PNGs, as they are: the tools resize them), split
    per class with ``val_fraction`` held out (1,438 train / 359 val at 0.2).  Deterministic; an
    existing complete copy is reused.
    """
    from PIL import Image

    def write(root: Path) -> None:
        images, labels = load_digits_array()
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        for split, idx in (("train", train_idx), ("val", val_idx)):
            for i in idx:
                d = root / split / str(labels[i])
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i], mode="L").save(d / f"{i:04d}.png")

    return written_once(root, dict(source=DIGITS_FILE.name, val_fraction=val_fraction, seed=seed, version=1), write)


def written_once(root: os.PathLike, spec: dict, write: Callable[[Path], None]) -> Path:
    """``write(root)`` unless ``root`` holds a complete copy made with ``spec``.

    ``root/dataset.json`` says what the folder holds.  A copy is written in a temporary folder beside
    ``root`` and renamed into place when complete, so a killed write leaves no half copy and two writers
    (the ranks of a run, two runs) cannot break each other: the second finds the first's copy, or its own
    rename loses and it keeps the first.  A copy made with other settings, or left unfinished by an older
    version (``{"unfinished": spec}``), is replaced whole, so that no stale image stays behind; a folder
    without ``dataset.json`` is not ours: it is written over in place, nothing removed.
    """
    import shutil
    import uuid

    root = Path(root)

    def holds() -> bool:
        try:
            return json.loads((root / "dataset.json").read_text()) == spec
        except (OSError, ValueError):
            return False

    if holds():
        return root
    if root.is_dir() and not (root / "dataset.json").exists() and any(root.iterdir()):
        write(root)
        (root / "dataset.json").write_text(json.dumps(spec, indent=1))
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        tmp.mkdir()
        write(tmp)
        (tmp / "dataset.json").write_text(json.dumps(spec, indent=1))
        if root.exists() and not holds():
            shutil.rmtree(root, ignore_errors=True)  # another version's copy
        try:
            os.rename(tmp, root)
        except OSError:  # another writer's copy got there first
            if not holds():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _cache_dir(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cydas_chain" / name


def embedded_data_root() -> Path:
    """Where the embedded default data set is written (XDG cache)."""
    return _cache_dir("digits")


# --------------------------------------------------------------------------------------------
# Test data: a small, deterministic, procedurally drawn 10-class image set ("shapes").
# It is not a benchmark: it exists so that the tools run end to end on a fresh clone, offline.
# Each class is a pattern (disc, ring, square, triangle, cross, stripes of 3 orientations, checker,
# dots) drawn at a random position, scale and colour over a noisy background.
# --------------------------------------------------------------------------------------------
SHAPE_CLASSES = ("checker", "cross", "diagonal", "disc", "dots", "hstripes", "ring", "square",
                 "triangle", "vstripes")


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 image of ``kind`` with random placement, scale, colours and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.3, 0.7, size=2)
    r = rng.uniform(0.15, 0.3)
    period = rng.uniform(0.12, 0.25)
    dx, dy = xx - cx, yy - cy
    dist = np.sqrt(dx ** 2 + dy ** 2)
    masks = {
        "disc": dist < r,
        "ring": (dist < r) & (dist > 0.6 * r),
        "square": (np.abs(dx) < r * 0.8) & (np.abs(dy) < r * 0.8),
        "triangle": (dy < r * 0.7) & (dy > -r * 0.9 + 1.8 * np.abs(dx)),
        "cross": ((np.abs(dx) < r * 0.25) | (np.abs(dy) < r * 0.25)) & (np.maximum(np.abs(dx), np.abs(dy)) < r),
        "hstripes": (np.floor(yy / period) % 2) == 0,
        "vstripes": (np.floor(xx / period) % 2) == 0,
        "diagonal": (np.floor((xx + yy) / (1.4 * period)) % 2) == 0,
        "checker": ((np.floor(xx / period) + np.floor(yy / period)) % 2) == 0,
        "dots": ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 4) ** 2,
    }
    fg, bg = rng.uniform(0, 255, size=(2, 3))
    while np.abs(fg - bg).sum() < 150:  # keep the pattern visible
        fg = rng.uniform(0, 255, size=3)
    img = np.where(masks[kind][..., None], fg, bg) + rng.normal(0, 12, size=(size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_shapes_folder(root: os.PathLike, train_per_class: int = 60, val_per_class: int = 20,
                       image_size: int = 32, seed: int = 0) -> Path:
    """Write the embedded default dataset as ``root/train/<class>/*.png`` and ``root/val/...``.

    Deterministic for a given (sizes, seed); an existing complete copy is reused.
    """
    from PIL import Image

    def write(root: Path) -> None:
        rng = np.random.default_rng(seed)
        for split, n in (("train", train_per_class), ("val", val_per_class)):
            for kind in SHAPE_CLASSES:
                d = root / split / kind
                d.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    Image.fromarray(draw_shape(kind, image_size, rng)).save(d / f"{kind}_{i:04d}.png")

    return written_once(root, dict(classes=list(SHAPE_CLASSES), train_per_class=train_per_class,
                                    val_per_class=val_per_class, image_size=image_size, seed=seed, version=1), write)


def default_data_root() -> Path:
    """Where the embedded default dataset is written (XDG cache)."""
    return _cache_dir("shapes")


CELL_SHAPES_SIZE = 16


def cell_shapes_root(image_size: int = CELL_SHAPES_SIZE) -> Path:
    """The embedded default of the cell tools (search_cell, train_cell): the shapes at ``image_size``,
    40 train + 10 test images a class, written once."""
    return make_shapes_folder(_cache_dir(f"shapes_darts{image_size}"), train_per_class=40, val_per_class=10,
                              image_size=image_size, seed=0)


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 from the standard "python version" pickle batches on disk (no download).
# --------------------------------------------------------------------------------------------
CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
CELL_DATASETS = ("cifar10", "cifar100", "imagenet")  # what the cell tools' --dataset names

CIFAR_LAYOUT = {
    # classes: (folder name, train files, test files, meta file, label key, class-name key)
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
         "labels", "label_names"),
    100: ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


# What a data pickle may construct: numpy arrays, their dtypes and scalars, under the module names
# numpy 1 and numpy 2 write.  Anything else (a pickle can call any importable function) is refused.
_PICKLE_ALLOWED = {(m, name) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                   for name in ("_reconstruct", "scalar")} | \
    {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")} | \
    {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # the last: bytes in protocol 2


def safe_unpickle(path: os.PathLike, what: str, encoding: str = "bytes"):
    """Load a data pickle (CIFAR batches, MNIST's ``mnist.pkl.gz``: gzip read transparently) that may
    hold only plain Python values and numpy arrays; a :class:`DataError` for anything else."""
    import gzip
    import importlib
    import pickle

    class _DataUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in _PICKLE_ALLOWED:
                raise DataError(f"{what} {path} is not a plain data pickle: it wants to construct {module}.{name}")
            if module.startswith("numpy.core"):  # numpy 1's name of numpy 2's numpy._core
                module = "numpy._core" + module[len("numpy.core"):] if hasattr(np, "_core") else module
            return getattr(importlib.import_module(module), name)

    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        with (gzip.open if gz else open)(path, "rb") as f:
            return _DataUnpickler(f, encoding=encoding).load()
    except DataError:
        raise
    except Exception as e:  # truncated or not a pickle
        raise DataError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None


def _unpickle(path: Path) -> dict:
    d = safe_unpickle(path, "CIFAR batch")
    if not isinstance(d, dict):
        raise DataError(f"CIFAR batch {path} holds a {type(d).__name__}, expected a dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def cifar_dataset(root: os.PathLike, num_classes: int = 10, train: bool = True,
                  transform: Optional[Callable] = None) -> TensorImageDataset:
    """CIFAR-10 (``num_classes=10``) or CIFAR-100 read from the python pickle batches.

    ``root`` is the folder holding the batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``;
    CIFAR-100: ``train``, ``test``, ``meta``) or its parent holding ``cifar-10-batches-py`` /
    ``cifar-100-python`` as unpacked from the official archives.  Nothing is downloaded.
    """
    if num_classes not in CIFAR_LAYOUT:
        raise DataError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    folder, train_files, test_files, meta_file, label_key, names_key = CIFAR_LAYOUT[num_classes]
    root = Path(root)
    if (root / folder).is_dir():
        root = root / folder
    files = train_files if train else test_files
    missing = [f for f in files + [meta_file] if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-{num_classes} not found in {root} (missing {', '.join(missing[:3])}): unpack the python "
            f"version of the dataset (cifar-{num_classes}-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) so that {root}/{folder}/{files[0]} exists")
    images, labels = [], []
    for name in files:
        d = _unpickle(root / name)
        if "data" not in d or label_key not in d:
            raise DataError(f"CIFAR batch {root / name} lacks 'data' or '{label_key}'")
        data = np.asarray(d["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(d[label_key]) != len(data):
            raise DataError(f"CIFAR batch {root / name}: expected N x 3072 images with N labels, "
                            f"got {data.shape} and {len(d[label_key])} labels")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(int(t) for t in d[label_key])
    meta = _unpickle(root / meta_file)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(names_key, [])]
    if len(classes) != num_classes:
        raise DataError(f"CIFAR meta file {root / meta_file} lists {len(classes)} classes, expected {num_classes}")
    return TensorImageDataset(np.ascontiguousarray(np.concatenate(images)), labels, transform, classes)
