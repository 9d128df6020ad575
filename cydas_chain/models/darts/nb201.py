"""The NAS-Bench-201 topology space: a 4-node cell with 6 edges, its genotype and discrete network.

Macro skeleton as in NAS-Bench-201: a 3x3 conv stem, three stages of ``n`` cells (``C``, ``2C``,
``4C`` channels) joined by ResNet basic blocks of stride 2, then BN, ReLU, pooling and a classifier.
Node ``i`` of a cell sums one op on each earlier node; node 3 is the cell output.  An architecture is
one op per edge, written ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` as in the benchmark.  The search
network (``cydas_chain.darts.nb201``) shares this skeleton.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Tuple

import torch
from torch import nn

from ...core.errors import ArchError
from .embedding import StageEmbedding
from .operations import NB201_PRIMITIVES, OPS, ReLUConvBN

__all__ = ["NB201_EDGES", "NB201Genotype", "NB201Skeleton", "NB201Network"]

SPACE_NAME = "nb201"
NB201_EDGES: Tuple[Tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (node, input)


@dataclass(frozen=True)
class NB201Genotype:
    ops: Tuple[str, ...]  # one op per edge of NB201_EDGES

    def __post_init__(self):
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if len(ops) != len(NB201_EDGES):
            raise ArchError(f"a NAS-Bench-201 cell has {len(NB201_EDGES)} edges, got {len(ops)} ops")
        bad = [o for o in ops if o not in NB201_PRIMITIVES]
        if bad:
            raise ArchError(f"unknown NAS-Bench-201 op '{bad[0]}' (ops: {', '.join(NB201_PRIMITIVES)})")

    def arch_str(self) -> str:
        nodes = [[f"{op}~{inp}" for op, (n, inp) in zip(self.ops, NB201_EDGES) if n == node] for node in (1, 2, 3)]
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    @classmethod
    def from_arch_str(cls, s: str) -> "NB201Genotype":
        """Parse the benchmark's string: node k (1..3) lists ``op~i`` for its inputs i = 0..k-1."""
        bad = ArchError(f"malformed NAS-Bench-201 arch string {s!r} (expected "
                        f"'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|')")
        if not isinstance(s, str):
            raise bad
        nodes = s.strip().split("+")
        if len(nodes) != 3:
            raise bad
        ops = []
        for k, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise bad
            tokens = node[1:-1].split("|")
            if len(tokens) != k:
                raise bad
            for i, tok in enumerate(tokens):
                op, sep, inp = tok.partition("~")
                if not sep or inp != str(i):
                    raise bad
                ops.append(op)
        return cls(tuple(ops))

    def to_dict(self) -> dict:
        return {"space": SPACE_NAME, "arch_str": self.arch_str(), "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "genotype") -> "NB201Genotype":
        if not isinstance(d, Mapping) or d.get("space") != SPACE_NAME or "arch_str" not in d:
            raise ArchError(f"{source}: not a NAS-Bench-201 genotype (expected space 'nb201' and 'arch_str')")
        return cls.from_arch_str(d["arch_str"])

    def __str__(self) -> str:
        return self.arch_str()


class ResNetBasicBlock(nn.Module):
    """The stride-2 block between stages (NAS-Bench-201's ResNetBasicblock)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """A discrete cell; the op on edge (node, input) is ``edges.n{node}_in{input}_{op}``."""

    def __init__(self, c: int, genotype: NB201Genotype):
        super().__init__()
        self.keys = [f"n{n}_in{i}_{op}" for (n, i), op in zip(NB201_EDGES, genotype.ops)]
        self.edges = nn.ModuleDict({k: OPS[op](c, 1, True) for k, op in zip(self.keys, genotype.ops)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(sum(self.edges[k](nodes[inp]) for k, (n, inp) in zip(self.keys, NB201_EDGES) if n == node))
        return nodes[3]


class NB201Skeleton(nn.Module):
    def _build(self, c: int, n: int, num_classes: int, make_cell, affine: bool, embed_hidden):
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.cells = nn.ModuleList()
        self.stage_ends = []
        c_prev = c
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                self.cells.append(ResNetBasicBlock(c_prev, width, affine))
            for _ in range(n):
                self.cells.append(make_cell(width))
            self.stage_ends.append(len(self.cells) - 1)
            c_prev = width
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        self.embed = nn.ModuleList(StageEmbedding(w, num_classes, embed_hidden) for w in (c, 2 * c, 4 * c)) \
            if embed_hidden else None

    def _run(self, x: torch.Tensor, cell_fn, detach_embed: bool = False) -> dict:
        x = self.stem(x)
        stages = []
        for i, cell in enumerate(self.cells):
            x = cell_fn(cell, x)
            if self.embed is not None and i in self.stage_ends:
                stages.append(self.embed[len(stages)](x.detach() if detach_embed else x))
        logits = self.classifier(torch.flatten(self.global_pool(self.lastact(x)), 1))
        return {"logits": logits, "stages": stages, "aux": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]


class NB201Network(NB201Skeleton):
    """The discrete network of one NAS-Bench-201 architecture."""

    def __init__(self, genotype: NB201Genotype, c: int = 16, n: int = 5, num_classes: int = 10,
                 embed_hidden: int | None = None):
        super().__init__()
        self.genotype = genotype
        self._build(c, n, num_classes, lambda w: NB201Cell(w, genotype), True, embed_hidden)

    def forward_all(self, x: torch.Tensor) -> dict:
        # embeddings of the discrete (teacher) network are probes on detached features
        return self._run(x, lambda cell, h: cell(h), detach_embed=True)
