"""Distributed helpers: DDP through ``torchrun`` (env://), one process per device.

Single-process runs need none of this; every helper degrades to a no-op when the process group is
not initialised, so the same training code runs on one CPU or many GPUs.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(device: str | None = None, local_rank: int = 0) -> torch.device:
    """``auto`` (or None) picks this process's GPU when there is one, else the CPU.

    ``auto`` never falls back to the CPU in silence where GPUs were meant to be used: under torchrun,
    or when ``nvidia-smi`` lists GPUs that torch cannot use, it raises a :class:`CydasError` that says
    why CUDA is unavailable (:func:`cydas_chain.core.gpu.cuda_unavailable_reason`); ``cpu`` still runs there."""
    from . import gpu
    from .errors import CydasError

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if launched_by_torchrun():
            raise CydasError(f"--device auto under torchrun needs CUDA, which is unavailable: "
                             f"{gpu.cuda_unavailable_reason()}; or --device cpu to run the processes on the CPU")
        if gpu.nvidia_smi_gpus():
            raise CydasError(f"--device auto: this machine has GPUs, but CUDA is unavailable: "
                             f"{gpu.cuda_unavailable_reason()}; or --device cpu to run on the CPU")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CydasError(f"--device {device} asked for, but CUDA is unavailable: {gpu.cuda_unavailable_reason()}")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun; otherwise a single process."""
    if not launched_by_torchrun():
        return DistInfo(device=resolve_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


@contextmanager
def process_group(device: str | None = None) -> Iterator[DistInfo]:
    """:func:`init_distributed` for a ``with`` block; :func:`cleanup` when it ends, by error or not."""
    info = init_distributed(device)
    try:
        yield info
    finally:
        cleanup()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place) and return it."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def average_gradients(params) -> None:
    """Average gradients over DDP ranks (a no-op in one process).

    Explicit rather than ``DistributedDataParallel``: the DARTS searcher rebuilds the evaluation network and
    calls ``forward_all`` on its networks, neither of which suits DDP's wrapper.
    """
    world = get_world_size()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            all_reduce_sum(p.grad).div_(world)


def same_on_all_ranks(t: torch.Tensor) -> bool:
    """Whether the integer tensor ``t`` holds the same values on every rank (True in one process)."""
    if not is_dist():
        return True
    lo, hi = t.clone(), t.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable value from ``src`` to every rank (e.g. a sampled path, a decision)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
