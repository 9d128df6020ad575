"""Embedding modules of the introspective distillation (CyDAS Eq. 9-10).

Each stage's output of the search and of the evaluation network is projected to class logits by a
small head; the distillation loss compares the two networks stage by stage.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...core.distill import soft_target_kl


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


DISTILL_REDUCTIONS = ("released", "batchmean")


def stage_distillation_loss(student_stages: Sequence[torch.Tensor], teacher_stages: Sequence[torch.Tensor],
                            temperature: float = 2.0, reduction: str = "batchmean") -> torch.Tensor:
    """KL(teacher || student) of the stage logits at ``temperature``, x T² (the teacher detached).

    ``batchmean``: the sum over the S stages of the KL averaged over the batch (the KL of each sample
    summed over its C classes).  ``released``: the released CyDAS code's ``nn.KLDivLoss()`` (default
    element-wise ``mean``) on the stage logits stacked along the batch, i.e. the KL summed over every
    element and divided by their number S x N x C -- the ``batchmean`` value divided by S x C.
    """
    if len(student_stages) != len(teacher_stages):
        raise ValueError(f"{len(student_stages)} student stages vs {len(teacher_stages)} teacher stages")
    if reduction == "batchmean":
        return sum(soft_target_kl(s, t, temperature) for s, t in zip(student_stages, teacher_stages))
    if reduction != "released":
        raise ValueError(f"unknown distillation reduction '{reduction}' ({', '.join(DISTILL_REDUCTIONS)})")
    student, teacher = torch.cat(list(student_stages)), torch.cat(list(teacher_stages))
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
    t = float(temperature)
    log_p_student = F.log_softmax(student / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher.detach() / t, dim=-1)
    # explicit sum / numel: torch announces that KLDivLoss' "mean" will change its meaning
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="sum", log_target=True) / student.numel()
    return kl * (t * t)


def stage_indices(layers: int) -> tuple:
    """Indices of the cells whose outputs end the three stages (before each reduction, and the last)."""
    return (layers // 3 - 1, 2 * layers // 3 - 1, layers - 1)
