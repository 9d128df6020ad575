"""Embedding modules of the introspective distillation (CyDAS Eq. 9-10).

Each stage's output of the search and of the evaluation network is projected to class logits by a
small head; the distillation loss (:func:`cydas_chain.core.distill.stage_distillation_loss`) compares
the two networks stage by stage.
"""
from __future__ import annotations

from torch import nn


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


def stage_indices(layers: int) -> tuple:
    """Indices of the cells whose outputs end the three stages (before each reduction, and the last)."""
    return (layers // 3 - 1, 2 * layers // 3 - 1, layers - 1)
