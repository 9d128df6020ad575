"""Per-layer cost tables: MACs and parameters of every choice, summed along a path.

MACs are counted by the core counter (fvcore, the reference) at the *deployment* resolution
(224x224 by default, whatever the training resolution), one block at a time, on the input shape
that block sees in the network.  fvcore counts operator by operator, so the MACs of a network are
the sum of its parts: ``fixed + sum over layers of table[layer, choice]`` equals
``count_macs(create_chain_model(..., ChainArch.from_path(path))).fvcore_macs`` exactly (the tests
check it on random paths and on CyDAS-a/b).  Evaluating a batch of paths is one gather and one sum,
millions of paths a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..core.flops import count_params, fvcore_macs
from ..models import OPS, SKIP
from .space import CHOICE_MASK, NUM_CHOICES, NUM_LAYERS

InputSize = Union[int, Sequence[int]]


def _hw(input_size: InputSize) -> Tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size[-2:]
    return int(h), int(w)


@dataclass(frozen=True)
class CostTable:
    """``macs[l, c]`` and ``params[l, c]`` of choice ``c`` at layer ``l`` (SKIP: 0), plus the fixed parts."""

    input_size: Tuple[int, int]
    num_classes: int
    macs: np.ndarray
    params: np.ndarray
    fixed_macs: int
    fixed_params: int

    def _gather(self, table: np.ndarray, fixed: int, paths) -> np.ndarray:
        paths = np.asarray(paths, dtype=np.int64)
        single = paths.ndim == 1
        paths = paths.reshape(-1, NUM_LAYERS)
        total = fixed + table[np.arange(NUM_LAYERS), paths].sum(1)
        return total[0] if single else total

    def path_macs(self, paths) -> np.ndarray:
        """fvcore MACs of one path (a scalar) or of a batch of paths (shape (N,))."""
        return self._gather(self.macs, self.fixed_macs, paths)

    def path_params(self, paths) -> np.ndarray:
        return self._gather(self.params, self.fixed_params, paths)

    @staticmethod
    def _range(table: np.ndarray, fixed: int) -> Tuple[int, int]:
        big = np.iinfo(np.int64).max
        lo = np.where(CHOICE_MASK, table, big).min(1).sum()
        hi = np.where(CHOICE_MASK, table, -1).max(1).sum()
        return int(fixed + lo), int(fixed + hi)

    def macs_range(self) -> Tuple[int, int]:
        """The smallest and the largest MACs of any path."""
        return self._range(self.macs, self.fixed_macs)

    def params_range(self) -> Tuple[int, int]:
        return self._range(self.params, self.fixed_params)


@torch.no_grad()
def build_cost_table(supernet: nn.Module, input_size: InputSize = 224) -> CostTable:
    """Count every choice block of ``supernet`` (a :class:`ChainSupernet`) at ``input_size``."""
    h, w = _hw(input_size)
    was_training = supernet.training
    supernet.eval()
    try:
        device = next(supernet.parameters()).device
        x = torch.zeros(1, 3, h, w, device=device)
        s = supernet  # the fixed parts as modules, in the order of ChainSupernet.forward
        stem = nn.Sequential(s.conv_stem, s.bn1, s.first_stage)
        head = nn.Sequential(s.last_stage, s.global_pool, s.conv_head, s.norm_head, s.act2, s.flatten,
                             s.classifier)
        fixed_macs = fvcore_macs(stem, x)
        x = supernet.forward_stem(x)
        macs = np.zeros((NUM_LAYERS, NUM_CHOICES), dtype=np.int64)
        params = np.zeros_like(macs)
        for layer, blocks in enumerate(supernet.layers):
            for op in range(len(OPS)):
                macs[layer, op] = fvcore_macs(blocks[op], x)
                params[layer, op] = count_params(blocks[op])
            x = blocks[0](x)  # every op of a layer gives the same output shape
        fixed_macs += fvcore_macs(head, x)
        fixed_params = count_params(supernet) - int(params.sum())
    finally:
        supernet.train(was_training)
    macs[:, SKIP] = params[:, SKIP] = 0
    return CostTable((h, w), supernet.num_classes, macs, params, int(fixed_macs), int(fixed_params))


# ---- latency: a per-layer table measured on the current device ----------------------------------
def _device_tag(device: torch.device) -> str:
    import platform

    if device.type == "cuda":
        return "cuda-" + torch.cuda.get_device_name(device).replace(" ", "_")
    return f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"


@torch.no_grad()
def _median_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    import time

    times = []
    for i in range(repeats + 3):  # 3 warm-up runs
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        t = time.perf_counter()
        module(x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        if i >= 3:
            times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


@torch.no_grad()
def measure_latency_table(supernet: nn.Module, input_size: InputSize = 224, repeats: int = 10,
                          cache_dir=None) -> Tuple[np.ndarray, float]:
    """Median latency in ms (batch 1, eval mode) of every choice block and of the fixed parts.

    A path's latency is estimated as the sum of its blocks' latencies: a proxy that ignores what
    the blocks' isolation hides (kernel fusion across blocks, caches), good for ranking paths.
    The table is cached per device, input size, classes and torch version in ``cache_dir``.
    """
    import json

    h, w = _hw(input_size)
    device = next(supernet.parameters()).device
    key = f"latency_{_device_tag(device)}_{h}x{w}_c{supernet.num_classes}_torch{torch.__version__}.json"
    cache = None if cache_dir is None else Path(cache_dir) / key
    if cache is not None and cache.is_file():
        try:
            d = json.loads(cache.read_text())
            return np.asarray(d["table"], dtype=np.float64), float(d["fixed"])
        except (ValueError, KeyError):
            pass  # a damaged cache is measured again
    was_training = supernet.training
    supernet.eval()
    try:
        s = supernet
        stem = nn.Sequential(s.conv_stem, s.bn1, s.first_stage)
        head = nn.Sequential(s.last_stage, s.global_pool, s.conv_head, s.norm_head, s.act2, s.flatten,
                             s.classifier)
        x = torch.zeros(1, 3, h, w, device=device)
        fixed = _median_ms(stem, x, repeats)
        x = stem(x)
        table = np.zeros((NUM_LAYERS, NUM_CHOICES))
        for layer, blocks in enumerate(supernet.layers):
            for op in range(len(OPS)):
                table[layer, op] = _median_ms(blocks[op], x, repeats)
            x = blocks[0](x)
        fixed += _median_ms(head, x, repeats)
    finally:
        supernet.train(was_training)
    if cache is not None:
        from ..core.checkpoint import atomic_write

        data = json.dumps({"device": _device_tag(device), "input_size": [h, w], "table": table.tolist(),
                           "fixed": fixed}).encode()
        atomic_write(cache, lambda f: f.write(data))
    return table, fixed
