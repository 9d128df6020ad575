"""Embedding modules of the introspective distillation (CyDAS Eq. 9-10).

Each stage's output of the search and of the evaluation network is projected to class logits by a
small head; the distillation loss compares the two networks stage by stage.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..core.distill import soft_target_kl


class StageEmbedding(nn.Sequential):
    """ReLU, 1x1 conv to ``hidden`` channels, BN, ReLU, global average pool, linear to classes."""

    def __init__(self, c_in: int, num_classes: int, hidden: int = 128):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(hidden, num_classes),
        )


def stage_distillation_loss(student_stages: Sequence[torch.Tensor], teacher_stages: Sequence[torch.Tensor],
                            temperature: float = 2.0) -> torch.Tensor:
    """Sum over stages of KL(teacher || student) at ``temperature``, x T² (teacher detached)."""
    if len(student_stages) != len(teacher_stages):
        raise ValueError(f"{len(student_stages)} student stages vs {len(teacher_stages)} teacher stages")
    return sum(soft_target_kl(s, t, temperature) for s, t in zip(student_stages, teacher_stages))


def stage_indices(layers: int) -> tuple:
    """Indices of the cells whose outputs end the three stages (before each reduction, and the last)."""
    return (layers // 3 - 1, 2 * layers // 3 - 1, layers - 1)
