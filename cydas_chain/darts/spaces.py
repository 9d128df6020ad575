"""The cell spaces of the cyclic search as values: each says what differs in it (genotype type,
search and evaluation networks, its preset, its rules, its drawing).  ``SearchConfig.space`` names
one; :func:`cell_space` gives the value, and nothing else compares space names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from torch import nn

from ..core.errors import CydasError
from ..models.darts.eval_net import DartsEvalNetwork
from ..models.darts.genotypes import Genotype
from ..models.darts.nb201 import NB201_EDGES, NB201Genotype, NB201Network
from .nb201 import NB201SearchNetwork
from .search_net import DartsSearchNetwork

class CellSpace:
    """The DARTS cell space (the default); :data:`NB201` overrides what differs."""

    name = "darts"
    genotype_type: Any = Genotype
    skip_penalty = True  # lambda' (Eq. 11) may apply
    benchmark = False  # NAS-Bench-201 lookups of the found cells (--nb201-api)
    eval_like_search = False  # the evaluation network has the search network's size

    def search_net(self, cfg, embed_hidden) -> nn.Module:
        return DartsSearchNetwork(cfg.c, cfg.num_classes, cfg.layers, stem=cfg.stem, embed_hidden=embed_hidden)

    def eval_net(self, genotype, cfg) -> nn.Module:
        return DartsEvalNetwork(genotype, cfg.eval_c, cfg.num_classes, cfg.eval_layers, stem=cfg.stem,
                                auxiliary=False, embed_hidden=cfg.embed_hidden)

    def default_preset(self, dataset: str) -> str:
        """The paper's preset for ``dataset`` (with --data)."""
        return "imagenet" if dataset == "imagenet" else "cifar"

    def adapt_preset(self, values: Dict[str, Any], preset: str) -> None:
        """Fit a preset's values (in place) to this space."""

    def draw(self, genotype, out: Path, epoch: int) -> None:
        from .plot import draw_darts_cell

        for kind in ("normal", "reduce"):
            edges, concat = genotype.cell(kind == "reduce")
            draw_darts_cell(edges, concat, out / f"{kind}.png", f"{kind} cell, epoch {epoch}")


class NB201Space(CellSpace):
    """NAS-Bench-201: one 6-edge cell type, a ResNet-style skeleton, no skip penalty (the benchmark's
    rules), evaluation network as large as the search network, benchmark lookups."""

    name = "nb201"
    genotype_type = NB201Genotype
    skip_penalty = False
    benchmark = True
    eval_like_search = True

    def search_net(self, cfg, embed_hidden) -> nn.Module:
        return NB201SearchNetwork(cfg.c, cfg.layers, cfg.num_classes, embed_hidden=embed_hidden)

    def eval_net(self, genotype, cfg) -> nn.Module:
        return NB201Network(genotype, cfg.eval_c, cfg.eval_layers, cfg.num_classes, embed_hidden=cfg.embed_hidden)

    def default_preset(self, dataset: str) -> str:
        return self.name

    def adapt_preset(self, values: Dict[str, Any], preset: str) -> None:
        values.update(space=self.name, stem="cifar")
        if preset == "tiny":
            values.update(layers=1, eval_layers=1)
        values["eval_c"], values["eval_layers"] = values["c"], values["layers"]

    def draw(self, genotype, out: Path, epoch: int) -> None:
        from .plot import draw_nb201_cell

        draw_nb201_cell(genotype.ops, NB201_EDGES, out / "cell.png", f"NB201 cell, epoch {epoch}")


SPACES: Dict[str, CellSpace] = {s.name: s for s in (CellSpace(), NB201Space())}


def cell_space(name: str) -> CellSpace:
    if name not in SPACES:
        raise CydasError(f"unknown cell space '{name}' (one of {', '.join(SPACES)})")
    return SPACES[name]
