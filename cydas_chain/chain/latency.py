"""Per-layer latency tables, measured on the device that will run the network.

A table holds the median latency (ms, eval mode) of every choice block of the space and of the fixed
parts, each run alone on the input it sees in the network; a path's latency is estimated as the sum
along it: a proxy that ignores what isolation hides (fusion across blocks, caches), good for ranking
paths and for a budget.  ``tools/latency_table.py`` measures one on the target (a CPU server, a phone
with Python, a GPU) and writes it as JSON; ``search_chain`` and ``select_chain`` read it with
``--latency-table FILE``, wherever they run.  The file records what it was measured with (device,
threads, batch, input size, classes, slots, torch version); one that does not fit the search (another
input size, classes or space) is refused with one line.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..core.errors import ConfigError
from ..models import ChainSpace
from .cost import _hw, _per_block

FORMAT = "cydas_chain/latency_table"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}"


@torch.no_grad()
def _median_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
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


@dataclass(frozen=True)
class LatencyTable:
    table: np.ndarray  # (layers, choices) ms, SKIP 0
    fixed: float  # ms of the stem, first stage, last stage and head
    device: str
    threads: int
    batch: int
    input_size: Tuple[int, int]
    num_classes: int
    slots: Tuple[int, ...]
    torch: str
    repeats: int

    @classmethod
    def measure(cls, space: ChainSpace, num_classes: int, input_size=224, device="cpu", batch: int = 1,
                repeats: int = 10) -> "LatencyTable":
        device = torch.device(device)
        h, w = _hw(input_size)
        table, fixed = _per_block(space, num_classes, (h, w), device,
                                  lambda module, x: (_median_ms(module, x, repeats),), batch=batch)
        return cls(table[..., 0], float(fixed[0]), device_name(device), torch.get_num_threads(), batch, (h, w),
                   num_classes, tuple(space.slots), torch.__version__, repeats)

    def path_ms(self, paths) -> np.ndarray:
        paths = np.asarray(paths).reshape(-1, len(self.table))
        return self.fixed + self.table[np.arange(len(self.table)), paths].sum(1)

    def describe(self) -> str:
        return (f"{self.device}, {self.threads} thread(s), batch {self.batch}, {self.input_size[0]}x{self.input_size[1]}"
                f", torch {self.torch}")

    # ---- the file ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        return {"format": FORMAT, **d, "table": self.table.tolist(), "input_size": list(self.input_size),
                "slots": list(self.slots)}

    def save(self, path) -> Path:
        from ..core.checkpoint import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "LatencyTable":
        """Read a table file; one :class:`ConfigError` line for a missing, malformed or foreign file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"latency table not found: {path} (measure one with tools/latency_table.py)")
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"latency table {path} is not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a latency table of tools/latency_table.py (no \"format\": \"{FORMAT}\")")
        try:
            table = np.asarray(d["table"], dtype=np.float64)
            slots = tuple(int(n) for n in d["slots"])
            out = cls(table, float(d["fixed"]), str(d["device"]), int(d["threads"]), int(d["batch"]),
                      tuple(int(v) for v in d["input_size"]), int(d["num_classes"]), slots, str(d["torch"]),
                      int(d.get("repeats", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"latency table {path} is malformed ({type(e).__name__}: {e})") from None
        space = ChainSpace(slots)
        if table.shape != space.choice_mask.shape or not np.isfinite(table).all() or (table < 0).any():
            raise ConfigError(f"latency table {path} is malformed: a ({space.num_layers}, "
                              f"{space.choice_mask.shape[1]}) table of non-negative ms expected for slots "
                              f"{list(slots)}, got shape {table.shape}")
        return out

    def check_fits(self, source, space: ChainSpace, num_classes: int, input_size: Sequence[int]) -> None:
        """One line when this table was measured for another search (input size, classes, space)."""
        h, w = _hw(input_size)
        if tuple(self.input_size) != (h, w):
            raise ConfigError(f"latency table {source} was measured at {self.input_size[0]}x{self.input_size[1]}, "
                              f"this search counts its budgets at {h}x{w} (--cost-size): measure it again with "
                              f"tools/latency_table.py --input-size {h}")
        if self.num_classes != num_classes:
            raise ConfigError(f"latency table {source} was measured with {self.num_classes} classes, this search "
                              f"has {num_classes}: measure it again with --num-classes {num_classes}")
        if tuple(self.slots) != tuple(space.slots):
            raise ConfigError(f"latency table {source} was measured for slots {list(self.slots)}, this search's "
                              f"space has {list(space.slots)}: measure it again with --slots "
                              f"{','.join(map(str, space.slots))}")


def cached_table(space: ChainSpace, num_classes: int, input_size, device, cache_dir: Optional[Path],
                 repeats: int = 10) -> LatencyTable:
    """A table of this machine and device, measured once and kept in ``cache_dir`` (``--latency`` without
    ``--latency-table``: the search's own device)."""
    device = torch.device(device)
    h, w = _hw(input_size)
    tag = f"{device_name(device)}_{torch.get_num_threads()}t".replace(" ", "_").replace("/", "_")
    key = f"latency_{tag}_{h}x{w}_c{num_classes}_s{'-'.join(map(str, space.slots))}_torch{torch.__version__}.json"
    cache = None if cache_dir is None else Path(cache_dir) / key
    if cache is not None and cache.is_file():
        try:
            return LatencyTable.load(cache)
        except ConfigError:
            pass  # a damaged cache is measured again
    table = LatencyTable.measure(space, num_classes, (h, w), device, repeats=repeats)
    if cache is not None:
        table.save(cache)
    return table
