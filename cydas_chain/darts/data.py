"""Datasets of the cell search and retraining: CIFAR pickle batches, ImageNet-style folders, or the
embedded synthetic "shapes" set (a smoke-test default, not a benchmark)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from torch.utils.data import Dataset, Subset

from ..core.data import (build_transforms, cifar_dataset, default_data_root, image_folder, make_shapes_folder,
                         stratified_split, train_val_folders)
from ..core.errors import DataError

DATASETS = ("cifar10", "cifar100", "imagenet")
CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
EMBEDDED_IMAGE_SIZE = 16


def embedded_root(image_size: int = EMBEDDED_IMAGE_SIZE) -> Path:
    """The embedded default: 10 procedurally drawn classes, 40 train + 10 test images each."""
    root = default_data_root().parent / f"shapes_darts{image_size}"
    return make_shapes_folder(root, train_per_class=40, val_per_class=10, image_size=image_size, seed=0)


def search_splits(dataset: str, data: Optional[Path], image_size: int, seed: int = 0,
                  fraction: float = 1.0) -> Tuple[Dataset, Dataset, list, str]:
    """The two halves of the training images: (train -> w_S, val -> alpha and w_E, classes, description).

    ``fraction`` < 1 first keeps that share of every class (ImageNet: 0.2 gives 10% + 10%).
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}' (one of {', '.join(DATASETS)})")
    if data is None:
        root = embedded_root(image_size)
        full = image_folder(root / "train", build_transforms(image_size, "cifar")[0])
        desc = f"embedded synthetic 'shapes' set ({root}), {len(full)} training images of {image_size}px"
    elif dataset.startswith("cifar"):
        full = cifar_dataset(data, CIFAR_CLASSES[dataset], train=True, transform=build_transforms(32, "cifar")[0])
        desc = f"{dataset} training images from {data}"
    else:
        root = Path(data)
        full = image_folder(root / "train" if (root / "train").is_dir() else root,
                            build_transforms(image_size, "imagenet")[0])
        desc = f"ImageNet-style folder {data}"
    targets = np.asarray(full.targets)
    idx = np.arange(len(targets))
    if fraction < 1.0:
        _, keep = stratified_split(targets, fraction, seed)
        idx = idx[keep]
    first, second = stratified_split(targets[idx], 0.5, seed)
    train, val = Subset(full, idx[first].tolist()), Subset(full, idx[second].tolist())
    return train, val, list(full.classes), f"{desc}; split {len(train)} (w_S) + {len(val)} (alpha, w_E)"


def train_test_sets(dataset: str, data: Optional[Path], image_size: int,
                    cutout: int = 0) -> Tuple[Dataset, Dataset, list, str]:
    """Training and test sets of the retraining (train_cell): CIFAR train/test batches (or the embedded set)
    with the CIFAR transforms, DIR/train + DIR/val with timm's."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}' (one of {', '.join(DATASETS)})")
    imagenet = data is not None and not dataset.startswith("cifar")
    train_tf, test_tf = build_transforms(image_size, "timm" if imagenet else "cifar", cutout=cutout)
    if data is not None and dataset.startswith("cifar"):
        n = CIFAR_CLASSES[dataset]
        train = cifar_dataset(data, n, train=True, transform=train_tf)
        test = cifar_dataset(data, n, train=False, transform=test_tf)
        return train, test, list(train.classes), f"{dataset} from {data}"
    root = embedded_root(image_size) if data is None else Path(data)
    if not (root / "val").is_dir():
        raise DataError(f"ImageNet-style data needs {root}/train/<class>/ and {root}/val/<class>/")
    train, test, classes = train_val_folders(root, train_tf, test_tf)
    return train, test, list(classes), (f"embedded synthetic 'shapes' set ({root})" if data is None else
                                        f"ImageNet-style folder {data}")
