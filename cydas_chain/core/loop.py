"""The one classification loop (an epoch of training, an evaluation) of every tool that trains a
classifier: ``train_cls`` and ``train_cell``.  Accuracies are in percent, summed over DDP ranks.  The
parts (optimizer, scheduler, EMA, loss, ``NativeScaler``) are built by timm's factories and passed in;
what only some recipes use is an option: the auxiliary head's loss weight and gradient clipping (DARTS).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from .distributed import all_reduce_sum, average_gradients, get_rank, get_world_size
from .errors import CydasError
from .logging import progress


def sharded_loaders(train_set: Dataset, val_set: Dataset, batch_size: int, workers: int, seed: int,
                    device: torch.device) -> Tuple[DataLoader, DataLoader]:
    """This rank's training loader (a ``DistributedSampler`` also for one process: a shuffle that depends
    on (seed, epoch) only; call ``loader.sampler.set_epoch``) and its unpadded validation shard, so that
    summed metrics count every image once."""
    world, rank, pin = get_world_size(), get_rank(), device.type == "cuda"
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return (DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                       pin_memory=pin),
            DataLoader(Subset(val_set, range(rank, len(val_set), world)), batch_size=batch_size, shuffle=False,
                       num_workers=workers, pin_memory=pin))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False,
             desc: str = "eval") -> Dict[str, float]:
    """Loss, top-1 and top-5 accuracy (%) over the loader, summed over all ranks."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, images
    for x, y in progress(loader, desc=desc, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(x)
        logits = logits.float()
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(y[:, None])
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum"), hits[:, 0].sum(),
                             hits.sum(), torch.tensor(len(y), device=device)]).double()
    all_reduce_sum(sums)
    model.train(was_training)
    loss, top1, top5, n = sums.tolist()
    n = max(n, 1.0)
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": int(n)}


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device, *, scheduler=None, step: int = 0, scaler=None, ema=None,
                    amp: bool = False, aux_weight: float = 0.0, grad_clip: float = 0.0,
                    desc: str = "train") -> Tuple[Dict[str, float], int]:
    """One epoch; returns ({train_loss, train_top1 (%)}, step), ``step`` counting updates over the run.

    ``model`` may be wrapped in ``DistributedDataParallel``; otherwise the gradients are averaged over
    ranks here.  ``scheduler`` (timm) gets ``step_update`` after every update, ``ema`` (timm
    ``ModelEmaV3``) an update of the unwrapped model.  ``aux_weight`` > 0: the model's ``forward_all``
    gives ``logits`` and ``aux`` logits, and the loss adds ``aux_weight`` x the auxiliary head's.
    ``grad_clip`` > 0 clips the gradient norm before each update.
    """
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    raw = model.module if ddp else model
    params = [p for p in raw.parameters() if p.requires_grad]
    model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1, images
    bar = progress(loader, desc=desc, unit="batch")
    for i, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            if aux_weight > 0:
                out = raw.forward_all(x)
                logits, loss = out["logits"], criterion(out["logits"], y)
                if out["aux"] is not None:
                    loss = loss + aux_weight * criterion(out["aux"], y)
            else:
                logits = model(x)
                loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # timm's NativeScaler: backward, unscale, clip, step
            scaler(loss, optimizer, clip_grad=grad_clip or None, parameters=params)
        else:
            loss.backward()
            if not ddp:
                average_gradients(params)
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
        step += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=step)
        if ema is not None:
            ema.update(raw, step=step)
        sums += torch.stack([loss.detach().double() * len(y), logits.argmax(1).eq(y).sum().double(),
                             torch.tensor(float(len(y)), device=device, dtype=torch.float64)])
        if i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    all_reduce_sum(sums)
    loss_sum, top1, n = sums.tolist()
    if not math.isfinite(loss_sum):
        raise CydasError(f"{desc}: the training loss is not finite (try a lower --lr or no --amp)")
    n = max(n, 1.0)
    return {"train_loss": loss_sum / n, "train_top1": 100.0 * top1 / n}, step
