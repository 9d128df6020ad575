"""Distributed helpers: DDP through ``torchrun`` (env://), one process per device.

Single-process runs need none of this; every helper degrades to a no-op when the process group is
not initialised, so the same training code runs on one CPU or many GPUs.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

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


def main_first(fn: Callable[[], Any]) -> Any:
    """``fn()`` on the main process first, then, after a barrier, on the others: for idempotent preparation
    (writing a data set once), which the other ranks then find done instead of writing it alongside."""
    if is_main_process():
        out = fn()
        barrier()
        return out
    barrier()
    return fn()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place) and return it."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


BUCKET_BYTES = 25 * 2 ** 20  # DDP's default bucket size


def average_gradients(params, bucket_bytes: int = BUCKET_BYTES) -> None:
    """Average gradients over DDP ranks in a few bucketed collectives (a no-op in one process).

    For what does not suit ``DistributedDataParallel``'s wrapper (the cell search's two networks: it calls
    ``forward_all`` and rebuilds the evaluation network); everything else trains under DDP.  The
    gradients of each dtype are packed into flat buffers of at most ``bucket_bytes`` (one all-reduce
    each) instead of one collective per tensor.  Every rank must pass the same parameters with the
    same gradients present.
    """
    world = get_world_size()
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    bucket, size = [], 0
    for g in grads + [None]:
        if g is not None and bucket and (g.dtype != bucket[0].dtype or size + g.numel() * g.element_size()
                                         > bucket_bytes):
            _reduce_bucket(bucket, world)
            bucket, size = [], 0
        if g is None:
            _reduce_bucket(bucket, world)
        else:
            bucket.append(g)
            size += g.numel() * g.element_size()


def _reduce_bucket(grads, world: int) -> None:
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (a no-op in one process):
    a network built on every rank starts from the same weights, whatever each rank's RNG did."""
    if not is_dist():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def wrap_ddp(model: torch.nn.Module, device: torch.device, **kwargs) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` under torchrun (it broadcasts rank 0's weights and buffers,
    buckets and overlaps the gradient all-reduce with the backward), ``model`` in one process."""
    if not is_dist():
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, **kwargs)


def micro_batch(batch_size: int, world: int, accum_steps: int = 1) -> int:
    """Images a process runs a forward: the total ``batch_size`` over ``world`` processes and ``accum_steps``
    accumulation steps; one :class:`ConfigError` line when it does not divide."""
    from .errors import ConfigError

    if accum_steps < 1:
        raise ConfigError(f"--accum-steps must be at least 1, got {accum_steps}")
    parts = world * accum_steps
    if batch_size % parts:
        raise ConfigError(f"--batch-size {batch_size} (the total) is not divisible by {world} process(es) x "
                          f"{accum_steps} accumulation step(s) = {parts}")
    return batch_size // parts


def accumulation_steps(batch_size: int, world: int, accum_steps: Optional[int], device_batch: Optional[int]) -> int:
    """``--accum-steps`` as given, or derived from ``--device-batch`` (images a process runs a forward)."""
    from .errors import ConfigError

    if device_batch is None:
        return accum_steps or 1
    if device_batch < 1 or batch_size % (world * device_batch):
        raise ConfigError(f"--device-batch {device_batch}: the total --batch-size {batch_size} is not a multiple of "
                          f"{world} process(es) x {device_batch}")
    derived = batch_size // (world * device_batch)
    if accum_steps not in (None, derived):
        raise ConfigError(f"--accum-steps {accum_steps} and --device-batch {device_batch} disagree "
                          f"({batch_size} / ({world} x {device_batch}) = {derived} steps); give one of them")
    return derived


@contextmanager
def out_of_memory_advice(images: int):
    """A device out of memory at ``images`` a forward becomes one line saying what to change (the total
    batch, and with it the result, stays)."""
    from .errors import ConfigError

    try:
        yield
    except torch.OutOfMemoryError:
        raise ConfigError(f"the device ran out of memory at {images} images a forward: give --device-batch "
                          f"{max(1, images // 2)} (gradient accumulation; the total --batch-size, and the result, "
                          f"stay the same)") from None


def local_world_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched_by_torchrun() else 1


def cpus_per_process() -> int:
    """The CPU cores this process may use, shared with the other processes of this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // local_world_size())


def default_workers(device: torch.device, cap: int = 12) -> int:
    """Loader processes per training process: on a GPU every core of this process's share but one (which
    drives the GPU), up to ``cap``; on the CPU the cores compute, so one loader process at most, and
    none when a process has a single core."""
    cores = cpus_per_process()
    if device.type == "cuda":
        return max(1, min(cap, cores - 1))
    return 1 if cores > 1 else 0


def same_on_all_ranks(t: torch.Tensor) -> bool:
    """Whether ``t`` holds the same values on every rank, bit for bit (True in one process)."""
    if not is_dist():
        return True
    lo, hi = t.clone(), t.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


def weights_checksum(*modules: torch.nn.Module) -> torch.Tensor:
    """Per parameter its sum, sum of absolute values and sum of squares, in float64 on the parameters'
    device: equal parameters give equal checksums bit for bit."""
    sums = [torch.stack([v.sum(), v.abs().sum(), (v * v).sum()])
            for m in modules for v in (p.detach().double() for p in m.parameters())]
    return torch.cat(sums) if sums else torch.zeros(0, dtype=torch.float64)


def agree_on_weights(what: str, *modules: torch.nn.Module) -> None:
    """Before a checkpoint of a distributed run (which saves rank 0's copy): the buffers (BN statistics,
    which each rank updates from its own images and DDP takes from rank 0 at every forward) become rank
    0's, and the parameters must already agree bit for bit, else a :class:`CydasError` (a collective pair of
    checksums, no copy to the host)."""
    from .errors import CydasError

    if not is_dist():
        return
    with torch.no_grad():
        for m in modules:
            for b in m.buffers():
                dist.broadcast(b, src=0)
    if not same_on_all_ranks(weights_checksum(*modules)):
        raise CydasError(f"the {get_world_size()} processes hold different {what} (rank 0's would be saved): "
                         f"a bug, please report it; restart from the last checkpoint")


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
