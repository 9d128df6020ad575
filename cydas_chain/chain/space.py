"""The chain search space as data.

Five searched stages (``models.LAYOUT``) of four layers each, 20 layers in all.  The first layer of
a stage changes width or stride and chooses among the six MBConv ops (``models.OPS``); the other
three choose among the six ops or ``SKIP`` (identity), which gives each stage a depth of 1 to 4.
That is 6^5 * 7^15 ~ 3.69e16 paths, the paper's count.  A *path* is one choice index per layer;
``ChainArch.from_path`` / ``.to_path`` convert between paths and architectures.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ..models import LAYOUT, OPS, SKIP, ChainArch

LAYERS_PER_STAGE = LAYOUT.layers_per_stage
NUM_LAYERS = LAYOUT.num_stages * LAYERS_PER_STAGE
NUM_CHOICES = len(OPS) + 1  # columns of the per-layer tables: the ops, then SKIP

# CHOICE_MASK[l, c]: whether choice c exists at layer l (a stage's first layer cannot skip).
CHOICE_MASK = np.ones((NUM_LAYERS, NUM_CHOICES), dtype=bool)
CHOICE_MASK[::LAYERS_PER_STAGE, SKIP] = False


def stage_of(layer: int) -> int:
    return layer // LAYERS_PER_STAGE


def is_first_layer(layer: int) -> bool:
    return layer % LAYERS_PER_STAGE == 0


def layer_channels(layer: int) -> Tuple[int, int, int]:
    """(in channels, out channels, stride) of ``layer``'s blocks, whatever the op."""
    s = stage_of(layer)
    out = LAYOUT.widths[s]
    if not is_first_layer(layer):
        return out, out, 1
    return (LAYOUT.widths[s - 1] if s else LAYOUT.stem_width), out, LAYOUT.strides[s]


def block_string(layer: int, op: int) -> str:
    """timm block string of op ``op`` (an index into ``OPS``) at ``layer``."""
    _, out, stride = layer_channels(layer)
    return OPS[op].block_string(out, stride)


def space_size() -> int:
    return int(np.prod(CHOICE_MASK.sum(1).astype(object)))


def check_path(path: Sequence[int]) -> Tuple[int, ...]:
    """``path`` as a tuple of ints, validated (raises ``ArchError``)."""
    ChainArch.from_path(path)
    return tuple(int(c) for c in path)


def uniform_paths(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` paths drawn uniformly from the whole space, shape (n, NUM_LAYERS)."""
    return rng.integers(0, CHOICE_MASK.sum(1), size=(n, NUM_LAYERS))  # valid choices: 0..count-1


def path_str(path: Sequence[int]) -> str:
    """Compact form, one group per stage, ``-`` for skip: ``3444|52-0|...``."""
    chars = ["-" if c == SKIP else str(c) for c in path]
    return "|".join("".join(chars[i:i + LAYERS_PER_STAGE]) for i in range(0, NUM_LAYERS, LAYERS_PER_STAGE))
