"""Datasets of the cell search: CIFAR pickle batches, ImageNet-style folders, or the embedded synthetic
"shapes" set (a smoke-test default, not a benchmark).  The retraining's are in
:mod:`cydas_chain.train.cells`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from torch.utils.data import Dataset, Subset

from ..core.data import (CELL_DATASETS, CELL_SHAPES_SIZE, CIFAR_CLASSES, Transforms, build_transforms, cell_shapes_root,
                         cifar_dataset, image_folder, stratified_split)
from ..core.distributed import main_first
from ..core.errors import DataError

EMBEDDED_IMAGE_SIZE = CELL_SHAPES_SIZE


def search_splits(dataset: str, data: Optional[Path], image_size: int, seed: int = 0,
                  fraction: float = 1.0) -> Tuple[Dataset, Dataset, list, str, Transforms]:
    """The two halves of the training images: (train -> w_S, val -> alpha and w_E, classes, description,
    transforms: the loader normalises with their mean / std).

    ``fraction`` < 1 first keeps that share of every class (ImageNet: 0.2 gives 10% + 10%).
    """
    if dataset not in CELL_DATASETS:
        raise DataError(f"unknown dataset '{dataset}' (one of {', '.join(CELL_DATASETS)})")
    if data is None:
        root = main_first(lambda: cell_shapes_root(image_size))
        tf = build_transforms(image_size, "cifar")
        full = image_folder(root / "train", tf.train)
        desc = f"embedded synthetic 'shapes' set ({root}), {len(full)} training images of {image_size}px"
    elif dataset.startswith("cifar"):
        tf = build_transforms(32, "cifar")
        full = cifar_dataset(data, CIFAR_CLASSES[dataset], train=True, transform=tf.train)
        desc = f"{dataset} training images from {data}"
    else:
        root = Path(data)
        tf = build_transforms(image_size, "imagenet")
        full = image_folder(root / "train" if (root / "train").is_dir() else root, tf.train)
        desc = f"ImageNet-style folder {data}"
    targets = np.asarray(full.targets)
    idx = np.arange(len(targets))
    if fraction < 1.0:
        _, keep = stratified_split(targets, fraction, seed)
        idx = idx[keep]
    first, second = stratified_split(targets[idx], 0.5, seed)
    train, val = Subset(full, idx[first].tolist()), Subset(full, idx[second].tolist())
    return train, val, list(full.classes), f"{desc}; split {len(train)} (w_S) + {len(val)} (alpha, w_E)", tf
