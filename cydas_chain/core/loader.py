"""The input pipeline of every tool: uint8 batches from the loader processes, normalised on the device.

Augmentation is seeded per image by (seed, epoch, index) (:class:`SeededSamples` with an
:class:`EpochSampler`): an image's crop does not depend on the loader process that decoded it, the
number of processes, or an interrupted run, so ``--resume`` continues exactly with persistent workers.

Workers decode and augment images into ``uint8`` tensors (``core.data.build_transforms`` ends in
``PILToTensor``), the default collate stacks them (a quarter of float32's bytes through the worker
queues and the host-to-device copy), batches are pinned on CUDA, and timm's ``PrefetchLoader`` moves
the next batch with ``non_blocking`` on a side stream while the current one trains, converting to
float and normalising there.  Workers persist across epochs.  A faster decoder (DALI, a pre-resized
copy of the data set, Pillow-SIMD) plugs in as the dataset or its transform; see docs/gpu.md.
"""
from __future__ import annotations

import random
from typing import Callable, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

_SEED_MASK = 0x7FFF_FFFF_FFFF_FFFF


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one image's augmentation (ints hash alike in every process)."""
    return hash((int(seed), int(epoch), int(index))) & _SEED_MASK


class SeededSamples(Dataset):
    """``dataset[index]`` (its image passed through ``transform`` when given) with torch's and Python's
    generators seeded by (seed, epoch, index); the keys are ``(epoch, index)`` pairs, as
    :class:`EpochSampler` yields them.  The process's own streams are left as they were."""

    def __init__(self, dataset: Dataset, seed: int, transform: Optional[Callable] = None):
        self.dataset, self.seed, self.transform = dataset, seed, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]):
        epoch, index = key
        s = sample_seed(self.seed, epoch, index)
        state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                img, target = self.dataset[index]
                return (img if self.transform is None else self.transform(img)), target
        finally:
            random.setstate(state)


class EpochSampler(Sampler):
    """``(epoch, index)`` for each index of ``sampler`` (e.g. a ``DistributedSampler``); ``set_epoch``
    reaches both.  The sampler runs in the training process, so persistent loader processes see the epoch."""

    def __init__(self, sampler: Sampler, epoch: int = 0):
        self.sampler, self.epoch = sampler, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _seed_numpy(worker_id: int) -> None:
    """torch seeds each worker's torch and random generators; numpy's too, from the same seed."""
    np.random.seed(torch.initial_seed() % 2 ** 32)


def make_loader(dataset: Dataset, batch_size: int, *, device: torch.device, mean: Sequence[float],
                std: Sequence[float], sampler: Optional[Sampler] = None, shuffle: bool = False,
                drop_last: bool = False, workers: int = 0, generator: Optional[torch.Generator] = None):
    """Batches of ``dataset`` (uint8 images) as normalised float32 tensors on ``device``.

    Returns timm's ``PrefetchLoader``: iterate it like a DataLoader; ``len``, ``.sampler`` and
    ``.dataset`` are the wrapped loader's.  The loader draws its worker seeds from ``generator`` (default: its
    own), never from the process's generator, so starting an iteration does not change the dropout or
    drop-path stream of the training that follows.
    """
    from timm.data.loader import PrefetchLoader

    if generator is None:  # the loader's own seed draws must not advance the process's stream (exact resume)
        generator = torch.Generator()
        generator.manual_seed(0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle if sampler is None else False,
                        drop_last=drop_last, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, worker_init_fn=_seed_numpy if workers > 0 else None,
                        prefetch_factor=4 if workers > 0 else None, generator=generator)
    return PrefetchLoader(loader, mean=tuple(mean), std=tuple(std), channels=3, device=device)
