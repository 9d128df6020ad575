"""The SPOS supernet of the chain space, made of timm blocks.

Every layer holds one timm block per op, built by timm's ``EfficientNetBuilder`` from the same block
strings as the standalone networks (``models.cydas``), so the supernet has no block code of its own.
The stem, the first stage and the head are those of the standalone timm ``MobileNetV3`` and carry
the same parameter names: the weights of any path copy into ``create_chain_model`` exactly
(:meth:`ChainSupernet.child_state_dict`, :func:`extract_child`).

``forward(x, path)`` runs only the path's blocks (``SKIP`` is the identity), so a training step
costs what the child network's step costs.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from timm.models._efficientnet_builder import EfficientNetBuilder, decode_arch_def, efficientnet_init_weights
from torch import nn

from ..models import LAYOUT, OPS, SKIP, ChainArch, create_chain_model
from ..models.cydas import chain_model_kwargs
from .space import NUM_LAYERS, block_string, check_path, layer_channels, stage_of

# The path used to build the fixed parts (any path has the same stem, first stage and head).
_TEMPLATE = ChainArch(((0,),) * 5)


class ChainSupernet(nn.Module):
    """All choice blocks of the 20 searched layers between the fixed stem and head."""

    def __init__(self, num_classes: int = 1000, **model_kwargs):
        super().__init__()
        model_kwargs = {"drop_rate": 0.0, "drop_path_rate": 0.0, **model_kwargs}
        self.model_kwargs = dict(model_kwargs)
        self.num_classes = num_classes
        template = create_chain_model("cydas_chain", _TEMPLATE, num_classes=num_classes, **model_kwargs)
        self.drop_rate = template.drop_rate
        self.conv_stem, self.bn1 = template.conv_stem, template.bn1
        self.first_stage, self.last_stage = template.blocks[0], template.blocks[-1]
        self.global_pool, self.conv_head = template.global_pool, template.conv_head
        self.norm_head, self.act2 = template.norm_head, template.act2
        self.flatten, self.classifier = template.flatten, template.classifier

        # The block factory of MobileNetV3, with the same norm/act/SE settings as the child networks.
        kw = chain_model_kwargs(_TEMPLATE, num_classes=num_classes, **model_kwargs)
        builder_kw = dict(act_layer=kw["act_layer"], norm_layer=kw["norm_layer"], se_layer=kw["se_layer"],
                          se_from_exp=True, drop_path_rate=kw["drop_path_rate"])
        layers = []
        for layer in range(NUM_LAYERS):
            in_chs = layer_channels(layer)[0]
            blocks = []
            for op in range(len(OPS)):
                builder = EfficientNetBuilder(**builder_kw)
                blocks.append(builder(in_chs, decode_arch_def([[block_string(layer, op)]]))[0][0])
            layers.append(nn.ModuleList(blocks))
        self.layers = nn.ModuleList(layers)
        efficientnet_init_weights(self.layers)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.first_stage(self.bn1(self.conv_stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """timm ``MobileNetV3``'s last block and head (pool, 1x1 conv, act, classifier)."""
        x = self.act2(self.norm_head(self.conv_head(self.global_pool(self.last_stage(x)))))
        x = self.flatten(x)
        if self.drop_rate > 0.0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        x = self.forward_stem(x)
        for layer, choice in zip(self.layers, path):
            if choice != SKIP:
                x = layer[choice](x)
        return self.forward_head(x)

    # ---- the standalone child network of a path ------------------------------------------------
    def child_state_dict(self, path: Sequence[int]) -> Dict[str, torch.Tensor]:
        """The path's weights under the parameter names of ``create_chain_model``'s network."""
        path = check_path(path)
        out = {}
        for name, t in self.state_dict().items():
            head, _, rest = name.partition(".")
            if head == "first_stage":
                out[f"blocks.0.{rest}"] = t
            elif head == "last_stage":
                out[f"blocks.{LAYOUT.num_stages + 1}.{rest}"] = t
            elif head != "layers":
                out[name] = t
        per_stage = [0] * LAYOUT.num_stages  # blocks kept so far in each stage
        for layer, choice in enumerate(path):
            if choice == SKIP:
                continue
            stage = stage_of(layer)
            prefix = f"layers.{layer}.{choice}."
            for name, t in self.layers[layer][choice].state_dict(prefix=prefix).items():
                out[f"blocks.{stage + 1}.{per_stage[stage]}.{name[len(prefix):]}"] = t
            per_stage[stage] += 1
        return out


def extract_child(supernet: ChainSupernet, path: Sequence[int], **model_kwargs) -> nn.Module:
    """The standalone timm network of ``path`` with the supernet's weights (same outputs in eval)."""
    kwargs = {**supernet.model_kwargs, **model_kwargs}
    child = create_chain_model("cydas_chain", ChainArch.from_path(path), num_classes=supernet.num_classes,
                               **kwargs)
    child.load_state_dict(supernet.child_state_dict(path), strict=True)
    return child.to(next(supernet.parameters()).device)
