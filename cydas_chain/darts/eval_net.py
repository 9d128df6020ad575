"""The DARTS evaluation network: cells built from a genotype (CIFAR and ImageNet variants).

Parameter names follow ``(cell, edge, op)``: the op of node ``n`` fed by state ``i`` in cell ``c`` is
``cells.{c}.edges.n{n}_in{i}_{op}``.  A network built from another genotype therefore shares exactly
the names of the edges both genotypes have, which is how the cyclic search lets a regenerated
evaluation network inherit trained weights (:func:`inherit_weights`).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import nn

from .embedding import StageEmbedding, stage_indices
from .genotypes import Genotype
from .operations import OPS, FactorizedReduce, ReLUConvBN, drop_path
from .search_net import Stem

__all__ = ["EvalCell", "DartsEvalNetwork", "AuxiliaryHead", "edge_key", "inherit_weights"]


def edge_key(node: int, inp: int, op: str) -> str:
    return f"n{node}_in{inp}_{op}"


class EvalCell(nn.Module):
    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        edges, self.concat = genotype.cell(reduction)
        self.steps = len(edges) // 2
        self.edges = nn.ModuleDict()
        self.wiring = []  # (node, input, key) in the order of the genotype
        for i, (op, inp) in enumerate(edges):
            node = i // 2
            key = edge_key(node, inp, op)
            if key in self.edges:  # the same op twice on the same input: a second copy
                key += "_b"
            stride = 2 if reduction and inp < 2 else 1
            self.edges[key] = OPS[op](c, stride, True)
            self.wiring.append((node, inp, key))
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.steps):
            out = 0
            for n, inp, key in self.wiring:
                if n != node:
                    continue
                op = self.edges[key]
                h = op(states[inp])
                if not isinstance(op, nn.Identity):  # DARTS drops paths of every op but identity
                    h = drop_path(h, drop_prob, self.training)
                out = out + h
            states.append(out)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Sequential):
    """DARTS' auxiliary classifier: 8x8 input on CIFAR (pool 5, stride 3), 7x7 on ImageNet (stride 2)."""

    def __init__(self, c: int, num_classes: int, imagenet: bool = False):
        super().__init__(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            # DARTS' ImageNet head has no BN here (kept as in its paper's experiments)
            *([] if imagenet else [nn.BatchNorm2d(768)]),
            nn.ReLU(inplace=True),
            nn.Flatten(1),
            nn.Linear(768, num_classes),
        )


class DartsEvalNetwork(nn.Module):
    """``layers`` cells of ``genotype`` (reductions at 1/3 and 2/3), classifier, optional auxiliary head
    (after the cell at 2/3 of the depth) and optional per-stage embedding heads (the distillation
    teacher's, in the cyclic search; they read detached features)."""

    def __init__(self, genotype: Genotype, c: int = 36, num_classes: int = 10, layers: int = 20,
                 stem: str = "cifar", auxiliary: bool = True, drop_path_rate: float = 0.0,
                 drop_rate: float = 0.0, embed_hidden: Optional[int] = None, stem_multiplier: int = 3,
                 in_chans: int = 3):
        super().__init__()
        if in_chans != 3:
            raise ValueError("DARTS evaluation networks take 3-channel images")
        self.genotype = genotype
        self.num_classes, self.drop_path_prob, self.layers = num_classes, drop_path_rate, layers
        imagenet = stem == "imagenet"
        c_stem = c if imagenet else stem_multiplier * c
        self.stem = Stem(stem, c_stem, c)
        c_pp = c_p = c_stem
        c_curr, reduction_prev = c, imagenet
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        self.stage_ends = stage_indices(layers)
        stage_channels, c_aux = [], None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_p
            if i in self.stage_ends:
                stage_channels.append(c_p)
        self.auxiliary = AuxiliaryHead(c_aux, num_classes, imagenet) if auxiliary else None
        self.embed = nn.ModuleList(StageEmbedding(ch, num_classes, embed_hidden) for ch in stage_channels) \
            if embed_hidden else None
        self.num_features = c_p
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(c_p, num_classes) if num_classes > 0 else nn.Identity()

    def forward_all(self, x: torch.Tensor) -> dict:
        """Logits, auxiliary logits (training with an auxiliary head only) and per-stage logits."""
        s0, s1 = self.stem(x)
        aux, stages = None, []
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
            if self.embed is not None and i in self.stage_ends:
                # the teacher's embeddings read detached features: they are trained as probes
                # (cross-entropy) and never change the network they read
                stages.append(self.embed[len(stages)](s1.detach()))
        return {"logits": self.forward_head(s1), "aux": aux, "stages": stages}

    # ---- timm-style interface --------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
        return s1

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def inherit_weights(model: nn.Module, bank: Mapping[str, torch.Tensor]) -> Dict[str, list]:
    """Copy every tensor of ``bank`` whose name and shape ``model`` shares into ``model``.

    Returns ``{"inherited": [...], "fresh": [...]}`` (state-dict names of ``model``).
    """
    inherited, fresh = [], []
    with torch.no_grad():
        for name, t in model.state_dict().items():
            src = bank.get(name)
            if src is not None and src.shape == t.shape:
                t.copy_(src)
                inherited.append(name)
            else:
                fresh.append(name)
    return {"inherited": inherited, "fresh": fresh}
