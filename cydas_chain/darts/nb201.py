"""The NAS-Bench-201 search network: every op on every edge, weighted by softmax(alpha).

The genotype, the cell skeleton and the discrete network are definitions (``cydas_chain.models.darts.nb201``).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.darts.nb201 import NB201_EDGES, NB201Genotype, NB201Skeleton
from ..models.darts.operations import NB201_PRIMITIVES, OPS

__all__ = ["NB201SearchCell", "NB201SearchNetwork"]


class NB201SearchCell(nn.Module):
    def __init__(self, c: int, primitives: Sequence[str]):
        super().__init__()
        self.edges = nn.ModuleList(nn.ModuleList(OPS[p](c, 1, False) for p in primitives) for _ in NB201_EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(sum(sum(w * op(nodes[inp]) for w, op in zip(weights[e], self.edges[e]))
                             for e, (n, inp) in enumerate(NB201_EDGES) if n == node))
        return nodes[3]


class NB201SearchNetwork(NB201Skeleton):
    def __init__(self, c: int = 16, n: int = 5, num_classes: int = 10,
                 primitives: Sequence[str] = NB201_PRIMITIVES, embed_hidden: int | None = 128):
        super().__init__()
        self.primitives = tuple(primitives)
        self._build(c, n, num_classes, lambda w: NB201SearchCell(w, self.primitives), False, embed_hidden)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(self.primitives)))

    def arch_parameters(self) -> List[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> List[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def alphas(self) -> Dict[str, torch.Tensor]:
        return {"cell": self.alpha.detach().clone()}

    def genotype(self) -> NB201Genotype:
        """The strongest op of every edge (NAS-Bench-201's rule: ``none`` included)."""
        return NB201Genotype(tuple(self.primitives[int(i)] for i in self.alpha.detach().argmax(dim=1)))

    def skip_alpha_l1(self) -> torch.Tensor:
        return self.alpha[:, self.primitives.index("skip_connect")].abs().sum()

    def forward_all(self, x: torch.Tensor) -> dict:
        w = F.softmax(self.alpha, dim=-1)
        return self._run(x, lambda cell, h: cell(h, w) if isinstance(cell, NB201SearchCell) else cell(h))
