"""Retraining an evaluation network from scratch (DARTS/CyDAS recipes), and its evaluation."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..core.distributed import all_reduce_sum, average_gradients
from ..core.logging import progress

# The paper's recipes (CyDAS Sec. 4, following DARTS); the tool's defaults.
RECIPES: Dict[str, Dict] = {
    "cifar": dict(epochs=600, batch_size=128, lr=0.025, momentum=0.9, weight_decay=5e-4, warmup_epochs=0,
                  drop_path=0.3, aux_weight=0.4, cutout=16, label_smoothing=0.0, channels=36, layers=20,
                  image_size=32, grad_clip=5.0),
    "imagenet": dict(epochs=250, batch_size=128, lr=0.5, momentum=0.9, weight_decay=3e-5, warmup_epochs=5,
                     drop_path=0.0, aux_weight=0.4, cutout=0, label_smoothing=0.1, channels=48, layers=14,
                     image_size=224, grad_clip=5.0),
    # the embedded default: a smoke run on the synthetic set, minutes on a CPU
    "tiny": dict(epochs=2, batch_size=32, lr=0.025, momentum=0.9, weight_decay=5e-4, warmup_epochs=0,
                 drop_path=0.1, aux_weight=0.4, cutout=8, label_smoothing=0.0, channels=8, layers=5,
                 image_size=32, grad_clip=5.0),
}


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, aux_weight: float = 0.4, label_smoothing: float = 0.0,
                    grad_clip: float = 5.0, desc: str = "train") -> Dict[str, float]:
    """One epoch of cross-entropy (+ ``aux_weight`` x the auxiliary head's), SGD, clipped gradients."""
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    params = [p for p in model.parameters() if p.requires_grad]
    bar = progress(loader, desc=desc, unit="batch")
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model.forward_all(x)
        loss = F.cross_entropy(out["logits"], y, label_smoothing=label_smoothing)
        if out["aux"] is not None and aux_weight > 0:
            loss = loss + aux_weight * F.cross_entropy(out["aux"], y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params)
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        n = y.numel()
        total += n
        loss_sum += loss.item() * n
        correct += int((out["logits"].argmax(1) == y).sum())
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
    return {"train_loss": loss_sum / max(1, total), "train_top1": correct / max(1, total)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, desc: str = "eval") -> Dict[str, float]:
    """Top-1 / top-5 accuracy and loss, summed over DDP ranks."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # n, loss, top1, top5
    for x, y in progress(loader, desc=desc, unit="batch", leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        sums += torch.tensor([y.numel(), F.cross_entropy(logits, y, reduction="sum").item(),
                              (topk[:, 0] == y).sum().item(), (topk == y[:, None]).any(1).sum().item()],
                             dtype=torch.float64, device=device)
    all_reduce_sum(sums)
    n = max(1.0, float(sums[0]))
    return {"eval_loss": float(sums[1]) / n, "eval_top1": float(sums[2]) / n, "eval_top5": float(sums[3]) / n}


def drop_path_at(epoch: int, epochs: int, drop_path: float) -> float:
    """DARTS' schedule: drop-path probability ramps linearly from 0 to ``drop_path`` over training."""
    return drop_path * epoch / max(1, epochs)


def build_eval_model(genotype, dataset: str, num_classes: int, channels: int, layers: int,
                     auxiliary: bool, drop_path: float = 0.0) -> nn.Module:
    import timm

    from .. import models  # noqa: F401  (registers the models)

    name = "cydas_darts_imagenet" if dataset == "imagenet" else "cydas_darts_cifar"
    return timm.create_model(name, genotype=genotype, num_classes=num_classes, c=channels, layers=layers,
                             auxiliary=auxiliary, drop_path_rate=drop_path)
