"""The DARTS evaluation network: cells built from a genotype (CIFAR and ImageNet variants).

Parameter names follow ``(cell, edge, op)``: the op of node ``n`` fed by state ``i`` in cell ``c`` is
``cells.{c}.edges.n{n}_in{i}_{op}``.  A network built from another genotype therefore shares exactly
the names of the edges both genotypes have, which is how the cyclic search lets a regenerated
evaluation network inherit trained weights (:func:`inherit_weights`).

The network honours timm's model contract (it is built by timm's ``build_model_with_cfg`` in
:mod:`.timm_models`): ``forward_features`` / ``forward_head`` / ``forward_intermediates``,
``feature_info`` with one level per resolution (CIFAR: the three stages at strides 1, 2, 4;
ImageNet: the stem's strides 2 and 4, then the stages at 8, 16, 32), ``prune_intermediate_layers``
(so ``features_only=True`` works through timm's ``FeatureGetterNet``), ``reset_classifier``,
``device`` / ``dtype`` keywords, and ``torch.jit.script``.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models._features import feature_take_indices
from torch import nn

from .embedding import StageEmbedding, stage_indices
from .genotypes import Genotype
from .operations import OPS, FactorizedReduce, ReLUConvBN, drop_path

__all__ = ["Stem", "EvalCell", "DartsEvalNetwork", "AuxiliaryHead", "edge_key", "inherit_weights"]


class Stem(nn.Module):
    """The two input states of the first cell.

    ``cifar``: one 3x3 conv, both states equal.  ``imagenet`` (DARTS): ``stem0`` = two stride-2 3x3
    convs (224 -> 56) gives state 0, ``stem1`` = one more stride-2 conv (56 -> 28) gives state 1.
    """

    def __init__(self, kind: str, c_stem: int, c: int):
        super().__init__()
        if kind not in ("cifar", "imagenet"):
            raise ValueError(f"unknown stem '{kind}' (cifar or imagenet)")
        self.kind = kind
        if kind == "cifar":
            self.stem0 = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
            self.stem1 = None
        else:
            self.stem0 = nn.Sequential(
                nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        if self.stem1 is None:
            return s0, s0
        return s0, self.stem1(s0)

    def forward_levels(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """``forward`` and the outputs at each resolution inside the stem (ImageNet: strides 2 and 4)."""
        if self.stem1 is None:
            s0 = self.stem0(x)
            return s0, s0, []
        levels = []
        h = x
        for i, layer in enumerate(self.stem0):
            h = layer(h)
            if i == 2:  # after the first stride-2 conv, BN and ReLU
                levels.append(h)
        levels.append(h)
        return h, self.stem1(h), levels


def edge_key(node: int, inp: int, op: str) -> str:
    return f"n{node}_in{inp}_{op}"


class EvalCell(nn.Module):
    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        edges, concat = genotype.cell(reduction)
        self.concat: List[int] = [int(i) for i in concat]
        self.steps = len(edges) // 2
        self.edges = nn.ModuleDict()
        self.wiring = []  # (node, input, key) in the order of the genotype
        # the same wiring as plain lists, aligned with the (ordered) ModuleDict, for TorchScript
        self.edge_inputs: List[int] = []
        self.edge_closes: List[bool] = []  # the last edge of its node
        self.edge_drops: List[bool] = []  # DARTS drops paths of every op but identity
        for i, (op, inp) in enumerate(edges):
            node = i // 2
            key = edge_key(node, inp, op)
            if key in self.edges:  # the same op twice on the same input: a second copy
                key += "_b"
            stride = 2 if reduction and inp < 2 else 1
            self.edges[key] = OPS[op](c, stride, True)
            self.wiring.append((node, inp, key))
            self.edge_inputs.append(int(inp))
            self.edge_closes.append(i + 1 == len(edges) or (i + 1) // 2 != node)
            self.edge_drops.append(not isinstance(self.edges[key], nn.Identity))
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        acc, first, i = states[0], True, 0  # edges come node by node, in the genotype's order
        for op in self.edges.values():
            h = op(states[self.edge_inputs[i]])
            if self.edge_drops[i]:
                h = drop_path(h, drop_prob, self.training)
            acc = h if first else acc + h
            first = False
            if self.edge_closes[i]:
                states.append(acc)
                first = True
            i += 1
        return torch.cat([states[j] for j in self.concat], dim=1)


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
                 in_chans: int = 3, global_pool: str = "avg", device=None, dtype=None):
        super().__init__()
        if in_chans != 3:
            raise ValueError("DARTS evaluation networks take 3-channel images")
        self.genotype = genotype
        self.num_classes, self.drop_path_prob, self.layers = num_classes, float(drop_path_rate), layers
        self.in_chans = in_chans
        imagenet = stem == "imagenet"
        c_stem = c if imagenet else stem_multiplier * c
        self.stem = Stem(stem, c_stem, c)
        c_pp = c_p = c_stem
        c_curr, reduction_prev = c, imagenet
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        self.stage_ends: List[int] = list(stage_indices(layers))
        stage_channels, c_aux = [], None
        # timm's feature_info: one level per resolution (reduction) of the network
        self.feature_info: List[dict] = [] if not imagenet else [
            dict(num_chs=c // 2, reduction=2, module="stem.stem0.2"), dict(num_chs=c, reduction=4, module="stem.stem0")]
        self.num_stem_levels = len(self.feature_info)
        reduction_factor = 8 if imagenet else 1
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
            if reduction:
                reduction_factor *= 2
            if i in self.stage_ends:
                stage_channels.append(c_p)
                self.feature_info.append(dict(num_chs=c_p, reduction=reduction_factor, module=f"cells.{i}"))
        self.auxiliary = AuxiliaryHead(c_aux, num_classes, imagenet) if auxiliary else None
        self.embed = nn.ModuleList(StageEmbedding(ch, num_classes, embed_hidden) for ch in stage_channels) \
            if embed_hidden else None
        self.num_features = self.head_hidden_size = c_p
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(c_p, num_classes) if num_classes > 0 else nn.Identity()
        if device is not None or dtype is not None:  # timm's builder keywords
            self.to(device=device, dtype=dtype)

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
        x = self.drop(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's feature interface: the outputs of the ``feature_info`` levels ``indices`` (the last n
        if an int, all if None), with the final features unless ``intermediates_only``."""
        assert output_fmt == "NCHW", "output shape must be NCHW"
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        s0, s1, stem_levels = self.stem.forward_levels(x)
        for j, h in enumerate(stem_levels):
            if j in take_indices:
                intermediates.append(h)
        level = self.num_stem_levels
        if not (stop_early and max_index < level):
            for i, cell in enumerate(self.cells):
                s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
                if i in self.stage_ends:
                    if level in take_indices:
                        intermediates.append(s1)
                    if stop_early and level >= max_index:
                        break
                    level += 1
        if intermediates_only:
            return intermediates
        return s1, intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the cells after the last level of ``indices`` (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        cell_level = max_index - self.num_stem_levels
        last_cell = self.stage_ends[cell_level] if cell_level >= 0 else -1
        prune_end = last_cell < len(self.cells) - 1
        if prune_end:
            self.cells = self.cells[:last_cell + 1]
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            if self.aux_index > last_cell:
                self.auxiliary = None
            self.embed = None  # the distillation heads belong to the whole network
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
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
