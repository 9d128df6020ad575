"""The DARTS search network: cells of mixed ops weighted by softmax(alpha), and its discretization."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.darts.embedding import StageEmbedding, stage_indices
from ..models.darts.eval_net import Stem
from ..models.darts.genotypes import Genotype
from ..models.darts.operations import DARTS_PRIMITIVES, OPS, FactorizedReduce, ReLUConvBN

__all__ = ["MixedOp", "SearchCell", "DartsSearchNetwork", "genotype_from_alpha"]


class MixedOp(nn.Module):
    """Every candidate op on one edge; the output is their sum weighted by ``weights``."""

    def __init__(self, c: int, stride: int, primitives: Sequence[str]):
        super().__init__()
        self.ops = nn.ModuleList()
        for name in primitives:
            op = OPS[name](c, stride, False)
            if "pool" in name:  # as in DARTS: pools get a BN so their scale matches the convs
                op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
            self.ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    """Two inputs, ``steps`` intermediate nodes each fed by all earlier states, the last ``multiplier`` concatenated."""

    def __init__(self, steps: int, multiplier: int, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, primitives: Sequence[str]):
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else \
            ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1, primitives)
            for i in range(steps) for j in range(2 + i))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for i in range(self.steps):
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
            offset += len(states) - 1
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSearchNetwork(nn.Module):
    """``layers`` search cells, reductions at 1/3 and 2/3 of the depth, separate alphas for normal and
    reduction cells.  With ``embed_hidden`` set, each stage also has an embedding head (distillation)."""

    def __init__(self, c: int = 16, num_classes: int = 10, layers: int = 8, steps: int = 4,
                 multiplier: int = 4, stem_multiplier: int = 3, stem: str = "cifar",
                 primitives: Sequence[str] = DARTS_PRIMITIVES, embed_hidden: int | None = 128):
        super().__init__()
        self.primitives = tuple(primitives)
        self.steps, self.layers = steps, layers
        c_stem = stem_multiplier * c if stem == "cifar" else c
        self.stem = Stem(stem, c_stem, c)
        c_pp, c_p, c_curr = c_stem, c_stem, c
        reduction_prev = stem == "imagenet"  # the ImageNet stem's last conv already reduced
        if stem == "imagenet":
            c_pp = c_p = c
        self.cells = nn.ModuleList()
        self.stage_ends = stage_indices(layers)
        stage_channels = []
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev,
                                         primitives))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
            if i in self.stage_ends:
                stage_channels.append(c_p)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.embed = nn.ModuleList(StageEmbedding(ch, num_classes, embed_hidden) for ch in stage_channels) \
            if embed_hidden else None
        n_edges = sum(2 + i for i in range(steps))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(n_edges, len(primitives)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, len(primitives)))

    # ---- parameter groups: alpha (architecture) vs w_S (network weights) -------------------------
    def arch_parameters(self) -> List[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> List[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("alpha_")]

    def alphas(self) -> Dict[str, torch.Tensor]:
        return {"normal": self.alpha_normal.detach().clone(), "reduce": self.alpha_reduce.detach().clone()}

    def genotype(self) -> Genotype:
        return genotype_from_alpha(self.alpha_normal, self.alpha_reduce, self.primitives, self.steps)

    def skip_alpha_l1(self) -> torch.Tensor:
        """‖alpha_skip‖₁ over normal and reduction cells (CyDAS Eq. 11)."""
        k = self.primitives.index("skip_connect")
        return self.alpha_normal[:, k].abs().sum() + self.alpha_reduce[:, k].abs().sum()

    def forward_all(self, x: torch.Tensor) -> dict:
        """Logits and, when embedding heads exist, the per-stage logits."""
        w_normal, w_reduce = F.softmax(self.alpha_normal, dim=-1), F.softmax(self.alpha_reduce, dim=-1)
        s0, s1 = self.stem(x)
        stages = []
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
            if self.embed is not None and i in self.stage_ends:
                stages.append(self.embed[len(stages)](s1))
        logits = self.classifier(torch.flatten(self.global_pool(s1), 1))
        return {"logits": logits, "stages": stages}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]


def _discretize_cell(alpha: torch.Tensor, primitives: Sequence[str], steps: int, k: int):
    weights = F.softmax(alpha.detach().float(), dim=-1).cpu()
    none = primitives.index("none") if "none" in primitives else None
    edges, offset = [], 0
    for i in range(steps):
        n_in = 2 + i
        w = weights[offset:offset + n_in].clone()
        if none is not None:
            w[:, none] = float("-inf")
        best_w, best_op = w.max(dim=1)  # each edge: its strongest op other than none
        order = sorted(range(n_in), key=lambda j: (-float(best_w[j]), j))[:k]
        edges.extend((primitives[int(best_op[j])], j) for j in sorted(order, key=lambda j: -float(best_w[j])))
        offset += n_in
    return edges


def genotype_from_alpha(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor,
                        primitives: Sequence[str] = DARTS_PRIMITIVES, steps: int = 4, k: int = 2,
                        multiplier: int = 4) -> Genotype:
    """Top-k discretization: per node the k incoming edges whose strongest non-``none`` op (by softmax
    weight) is strongest, each with that op."""
    concat = tuple(range(2 + steps - multiplier, steps + 2))
    return Genotype(_discretize_cell(alpha_normal, primitives, steps, k), concat,
                    _discretize_cell(alpha_reduce, primitives, steps, k), concat)
