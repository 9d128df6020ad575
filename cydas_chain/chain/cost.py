"""Per-layer cost tables: MACs and parameters of every choice, summed along a path.

MACs are counted by one of the core counters (fvcore or thop, ``core.flops``) at the *deployment* resolution
(224x224 by default, whatever the training resolution), one block at a time, on the input shape
that block sees in the network.  Both count module by module, so the MACs of a network are
the sum of its parts: ``fixed + sum over layers of table[layer, choice]`` equals
``count_macs(create_chain_model(..., ChainArch.from_path(path))).fvcore_macs`` (or ``.thop_macs``)
exactly (the tests check it on random paths and on CyDAS-a/b).  Evaluating a batch of paths is one gather and one sum,
millions of paths a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..core.errors import ConfigError
from ..core.flops import count_params, fvcore_macs, thop_macs
from ..models import DEFAULT_SPACE, LAYOUT, NUM_CHOICES, OPS, ChainArch, ChainSpace, create_chain_model
from ..models.cydas import build_block

InputSize = Union[int, Sequence[int]]


def _hw(input_size: InputSize) -> Tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size[-2:]
    return int(h), int(w)


@dataclass(frozen=True)
class CostTable:
    """``macs[l, c]`` and ``params[l, c]`` of choice ``c`` at layer ``l`` (SKIP: 0), plus the fixed parts."""

    space: ChainSpace
    input_size: Tuple[int, int]
    num_classes: int
    macs: np.ndarray
    params: np.ndarray
    fixed_macs: int
    fixed_params: int
    counter: str = "fvcore"  # which counter's MACs

    def _gather(self, table: np.ndarray, fixed: int, paths) -> np.ndarray:
        paths = np.asarray(paths, dtype=np.int64)
        single = paths.ndim == 1
        paths = paths.reshape(-1, self.space.num_layers)
        total = fixed + table[np.arange(self.space.num_layers), paths].sum(1)
        return total[0] if single else total

    def path_macs(self, paths) -> np.ndarray:
        """MACs (the table's counter) of one path (a scalar) or of a batch of paths (shape (N,))."""
        return self._gather(self.macs, self.fixed_macs, paths)

    def path_params(self, paths) -> np.ndarray:
        return self._gather(self.params, self.fixed_params, paths)

    def macs_range(self) -> Tuple[int, int]:
        """The smallest and the largest MACs of any path."""
        big, mask = np.iinfo(np.int64).max, self.space.choice_mask
        lo = np.where(mask, self.macs, big).min(1).sum()
        hi = np.where(mask, self.macs, -1).max(1).sum()
        return int(self.fixed_macs + lo), int(self.fixed_macs + hi)


@torch.no_grad()
def _per_block(space: ChainSpace, num_classes: int, input_size: InputSize, device,
               measure, batch: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """``measure(module, x)`` (a tuple of numbers) of every choice block of ``space`` and of the fixed
    parts, each a standalone timm module in eval mode run on the input it sees in the network.

    Returns ``table`` of shape (layers, choices, len(measure)) with zeros for ``SKIP``, and the sum
    over the fixed parts (stem, first stage, last stage, head)."""
    h, w = _hw(input_size)
    template = create_chain_model("cydas_chain", ChainArch(((0,),) * LAYOUT.num_stages, space.slots),
                                  num_classes=num_classes, drop_rate=0.0, drop_path_rate=0.0).to(device).eval()
    t = template  # the fixed parts, in the order of ChainSupernet.forward
    stem = nn.Sequential(t.conv_stem, t.bn1, t.blocks[0])
    head = nn.Sequential(t.blocks[-1], t.global_pool, t.conv_head, t.norm_head, t.act2, t.flatten, t.classifier)
    x = torch.zeros(batch, 3, h, w, device=device)
    fixed = np.asarray(measure(stem, x), dtype=np.float64)
    x = stem(x)
    table = None
    for layer in range(space.num_layers):
        for op in range(len(OPS)):
            block = build_block(space, layer, op, drop_path_rate=0.0).to(device).eval()
            m = np.asarray(measure(block, x), dtype=np.float64)
            if table is None:
                table = np.zeros((space.num_layers, NUM_CHOICES, len(m)))
            table[layer, op] = m
        x = block(x)  # every op of a layer gives the same output shape
    fixed += np.asarray(measure(head, x), dtype=np.float64)
    return table, fixed


COUNTERS = {"fvcore": fvcore_macs, "thop": thop_macs}


def build_cost_table(space: ChainSpace = DEFAULT_SPACE, num_classes: int = 1000,
                     input_size: InputSize = 224, counter: str = "fvcore") -> CostTable:
    """Count the MACs (by ``counter``: fvcore or thop; both are additive over the blocks, so a path's sum
    equals the counter's count of its network exactly) and parameters of every choice of ``space``."""
    if counter not in COUNTERS:
        raise ConfigError(f"unknown MACs counter {counter!r} (one of {', '.join(COUNTERS)})")
    count = COUNTERS[counter]
    table, fixed = _per_block(space, num_classes, input_size, "cpu",
                              lambda module, x: (count(module, x), count_params(module)))
    table = table.astype(np.int64)
    return CostTable(space, _hw(input_size), num_classes, table[..., 0], table[..., 1], int(fixed[0]),
                     int(fixed[1]), counter)
