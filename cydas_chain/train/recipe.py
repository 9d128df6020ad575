"""The CyDAS ImageNet retraining recipe, built from timm's factories.

The default recipe, in the style of the EfficientNet / MnasNet recipes that timm reproduces
(docs/train_cls.md gives every value's source: the paper, the released retraining configs, or ours):

================  =========================================================================
optimizer         RMSProp, TF style (timm ``rmsproptf``): momentum 0.9, decay (alpha) 0.9,
                  eps 1e-3 (the released configs' ``opt-eps``)
weight decay      1e-5 (not applied to biases and norm layers, timm's default)
learning rate     0.04 for a total batch of 1024 (8 GPUs x 128), scaled linearly with the
                  actual total batch: ``lr = 0.04 * total_batch / 1024`` (released: 0.064)
schedule          3 warmup epochs (from 1e-6), then cosine annealing, updated every step
regularisation    dropout 0.2 before the classifier (the paper's); drop-path 0.2 (ours, as the
                  released detection / segmentation backbones; the released retraining: 0)
augmentation      AutoAugment (timm ``original`` policy), random-resized crop, flip
EMA               exponential moving average of the weights (timm ``ModelEmaV3``), decay 0.9998
================  =========================================================================

Also: label smoothing 0.1, bicubic interpolation, the EMA decay warmup (so that EMA weights are
usable on short runs too).  The length, 350 epochs, is the paper's (``train_cls``'s ImageNet default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

BASE_LR = 0.04
BASE_BATCH = 1024


def scaled_lr(total_batch: int, base_lr: float = BASE_LR, base_batch: int = BASE_BATCH) -> float:
    """The linear scaling rule: ``base_lr`` is for ``base_batch`` images per step over all GPUs."""
    if total_batch <= 0:
        raise ValueError(f"total batch must be positive, got {total_batch}")
    return base_lr * total_batch / base_batch


@dataclass
class Recipe:
    """Optimisation and augmentation hyper-parameters; the defaults and their sources: module doc."""

    opt: str = "rmsproptf"
    momentum: float = 0.9
    alpha: float = 0.9  # RMSProp decay of the squared-gradient average
    opt_eps: float = 1e-3
    weight_decay: float = 1e-5
    base_lr: float = BASE_LR  # for BASE_BATCH images a step
    warmup_epochs: int = 3
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    auto_augment: Optional[str] = "original"  # timm's AutoAugment ImageNet policy; None disables
    crop_scale: float = 0.08  # smallest area share of the random-resized crop (Inception crop)
    interpolation: str = "bicubic"
    smoothing: float = 0.1
    ema: bool = True
    ema_decay: float = 0.9998
    ema_warmup: bool = True

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        from timm.optim import create_optimizer_v2

        name = self.opt.lower().split("_")[-1]
        extra = {}  # alpha and eps are RMSProp's (eps also the adaptive optimizers'); SGD takes neither
        if "rmsprop" in name:
            extra = dict(alpha=self.alpha, eps=self.opt_eps)
        elif name not in ("sgd", "momentum", "nesterov"):
            extra = dict(eps=self.opt_eps)
        return create_optimizer_v2(model, opt=self.opt, lr=lr, weight_decay=self.weight_decay,
                                   momentum=self.momentum, **extra)

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int, updates_per_epoch: int):
        """Warmup then cosine, stepped per update (``scheduler.step_update(num_updates)``)."""
        from timm.scheduler import create_scheduler_v2

        scheduler, _ = create_scheduler_v2(
            optimizer, sched="cosine", num_epochs=epochs, warmup_epochs=self.warmup_epochs,
            warmup_lr=self.warmup_lr, min_lr=self.min_lr, step_on_epochs=False,
            updates_per_epoch=updates_per_epoch)
        return scheduler

    def train_loss(self) -> nn.Module:
        from timm.loss import LabelSmoothingCrossEntropy

        return LabelSmoothingCrossEntropy(self.smoothing) if self.smoothing > 0 else nn.CrossEntropyLoss()

    def model_ema(self, model: nn.Module):
        """EMA of ``model`` (the unwrapped model, before DDP), or None when disabled."""
        if not self.ema:
            return None
        from timm.utils import ModelEmaV3

        return ModelEmaV3(model, decay=self.ema_decay, use_warmup=self.ema_warmup)
