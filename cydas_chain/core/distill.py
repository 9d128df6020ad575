"""Knowledge-distillation losses shared by both search spaces."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T².

    The T² factor (Hinton et al., 2015) keeps the gradient magnitude independent of T.  The
    teacher is detached: distillation never trains the teacher through this term.
    Averaged over the batch (``batchmean``), the mathematically correct KL reduction.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    t = float(temperature)
    if t <= 0:
        raise ValueError(f"temperature must be positive, got {t}")
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (t * t)


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
