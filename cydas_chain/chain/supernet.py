"""The SPOS supernet of the chain space, made of timm blocks.

Each layer slot of the space holds the choices of that slot in one of two weight-sharing schemes:

- ``"entangled"`` (default): one timm block of the largest op (kernel 7, expansion 6) whose weights
  every op of the slot shares, as in OFA / BigNAS / AutoFormer: a kernel-k op uses the centre k x k
  of the depthwise kernel, an expansion-e op the first ``in * e`` expanded channels (the 1x1 convs,
  BN and SE sliced alike).  Ops of a slot differ little from each other, so the many independently
  sampled slots of a path do not have to co-adapt from scratch: the supernet learns in a few hundred
  steps where the independent scheme stays at chance (docs/chain.md has the curves).
- ``"independent"``: one timm block per op (the paper's SPOS supernet, and Cream's).

Either way the stem, the first stage and the head are those of the standalone timm ``MobileNetV3``
under the same parameter names, and the weights of any path copy into ``create_chain_model``
exactly (:meth:`ChainSupernet.child_state_dict`, :func:`extract_child`): the child computes what the
supernet computes for that path.  ``forward(x, path)`` runs only the path's blocks (``SKIP`` is the
identity), so a training step costs what the child network's step costs.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from timm.models._efficientnet_builder import efficientnet_init_weights
from torch import nn

from ..core.errors import ArchError
from ..models import DEFAULT_SPACE, LAYOUT, OPS, SKIP, ChainArch, ChainSpace, create_chain_model
from ..models.cydas import build_block

WEIGHT_SHARING = ("entangled", "independent")

# The path used to build the fixed parts (any path has the same stem, first stage and head).
_TEMPLATE = ChainArch(((0,),) * LAYOUT.num_stages)
_LARGEST = max(range(len(OPS)), key=lambda i: (OPS[i].kernel, OPS[i].expansion))


class IndependentLayer(nn.Module):
    """One timm block per op (no sharing between the ops of a slot)."""

    def __init__(self, space: ChainSpace, layer: int, **model_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(build_block(space, layer, op, **model_kwargs) for op in range(len(OPS)))

    def forward(self, x: torch.Tensor, op: int) -> torch.Tensor:
        return self.blocks[op](x)

    def block_state_dict(self, op: int) -> Dict[str, torch.Tensor]:
        return self.blocks[op].state_dict()


def _batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, n: int) -> torch.Tensor:
    """``bn`` (timm's BatchNormAct2d) on the first ``n`` channels: its running statistics, weight and
    bias sliced as views, so batch statistics update the shared buffers in place (OFA's dynamic BN)."""
    use_batch = bn.training or bn.running_mean is None
    x = F.batch_norm(x, bn.running_mean[:n], bn.running_var[:n], bn.weight[:n], bn.bias[:n], use_batch,
                     0.0 if bn.momentum is None else bn.momentum, bn.eps)
    return bn.act(bn.drop(x))


class EntangledLayer(nn.Module):
    """The largest block of a slot; every op of the slot runs on a slice of its weights."""

    def __init__(self, space: ChainSpace, layer: int, **model_kwargs):
        super().__init__()
        self.block = build_block(space, layer, _LARGEST, **model_kwargs)
        # The shapes of each op's own timm block: expanded and SE-reduced widths, as timm rounds them.
        shapes = []
        for op in range(len(OPS)):
            b = build_block(space, layer, op, **model_kwargs)
            shapes.append((b.conv_dw.weight.shape[-1], b.conv_pw.out_channels, b.se.conv_reduce.out_channels))
        self.shapes = tuple(shapes)
        self.stride = self.block.conv_dw.stride

    def forward(self, x: torch.Tensor, op: int) -> torch.Tensor:
        b, (k, mid, rd) = self.block, self.shapes[op]
        shortcut = x
        x = _batch_norm(b.bn1, F.conv2d(x, b.conv_pw.weight[:mid]), mid)
        c = (b.conv_dw.weight.shape[-1] - k) // 2
        x = F.conv2d(x, b.conv_dw.weight[:mid, :, c:c + k, c:c + k], stride=self.stride, padding=k // 2,
                     groups=mid)
        x = _batch_norm(b.bn2, x, mid)
        se = b.se
        s = F.conv2d(x.mean((2, 3), keepdim=True), se.conv_reduce.weight[:rd, :mid], se.conv_reduce.bias[:rd])
        s = F.conv2d(se.act1(s), se.conv_expand.weight[:mid, :rd], se.conv_expand.bias[:mid])
        x = x * se.gate(s)
        x = _batch_norm(b.bn3, F.conv2d(x, b.conv_pwl.weight[:, :mid]), b.bn3.num_features)
        if b.has_skip:
            x = b.drop_path(x) + shortcut
        return x

    def block_state_dict(self, op: int) -> Dict[str, torch.Tensor]:
        """The op's weights under the names of its own timm block."""
        k, mid, rd = self.shapes[op]
        c = (self.block.conv_dw.weight.shape[-1] - k) // 2
        out = {}
        for name, t in self.block.state_dict().items():
            module, _, kind = name.rpartition(".")
            if t.ndim == 0:  # num_batches_tracked
                out[name] = t.clone()
            elif module == "conv_dw":
                out[name] = t[:mid, :, c:c + k, c:c + k].clone()
            elif module in ("conv_pw", "bn1", "bn2") or (module == "se.conv_expand" and kind == "bias"):
                out[name] = t[:mid].clone()
            elif module == "se.conv_reduce":
                out[name] = (t[:rd, :mid] if kind == "weight" else t[:rd]).clone()
            elif module == "se.conv_expand":
                out[name] = t[:mid, :rd].clone()
            elif module == "conv_pwl":
                out[name] = t[:, :mid].clone()
            else:  # bn3: the output width, whatever the op
                out[name] = t.clone()
        return out


class ChainSupernet(nn.Module):
    """All choices of the searched layer slots between the fixed stem and head."""

    def __init__(self, num_classes: int = 1000, space: ChainSpace = DEFAULT_SPACE,
                 weight_sharing: str = "entangled", **model_kwargs):
        super().__init__()
        if weight_sharing not in WEIGHT_SHARING:
            raise ArchError(f"weight sharing must be one of {', '.join(WEIGHT_SHARING)}, got {weight_sharing!r}")
        model_kwargs = {"drop_rate": 0.0, "drop_path_rate": 0.0, **model_kwargs}
        self.model_kwargs = dict(model_kwargs)
        self.num_classes, self.space, self.weight_sharing = num_classes, space, weight_sharing
        template = create_chain_model("cydas_chain", _TEMPLATE, num_classes=num_classes, **model_kwargs)
        self.drop_rate = template.drop_rate
        self.conv_stem, self.bn1 = template.conv_stem, template.bn1
        self.first_stage, self.last_stage = template.blocks[0], template.blocks[-1]
        self.global_pool, self.conv_head = template.global_pool, template.conv_head
        self.norm_head, self.act2 = template.norm_head, template.act2
        self.flatten, self.classifier = template.flatten, template.classifier
        layer_cls = EntangledLayer if weight_sharing == "entangled" else IndependentLayer
        self.layers = nn.ModuleList(layer_cls(space, layer, **model_kwargs) for layer in range(space.num_layers))
        efficientnet_init_weights(self.layers)
        # A zero classifier starts every path at the uniform prediction.  timm's init draws it from
        # U(+-1/sqrt(classes)): with 10 classes the first logits have a std of ~3, the first losses are
        # 4-10 and the first steps of a supernet diverge.
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

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
                x = layer(x, choice)
        return self.forward_head(x)

    # ---- the standalone child network of a path ------------------------------------------------
    def child_state_dict(self, path: Sequence[int]) -> Dict[str, torch.Tensor]:
        """The path's weights under the parameter names of ``create_chain_model``'s network."""
        arch = self.space.arch(path)  # validates the path
        out = {}
        for name, t in self.state_dict().items():
            head, _, rest = name.partition(".")
            if head == "first_stage":
                out[f"blocks.0.{rest}"] = t
            elif head == "last_stage":
                out[f"blocks.{LAYOUT.num_stages + 1}.{rest}"] = t
            elif head != "layers":
                out[name] = t
        kept = [0] * LAYOUT.num_stages  # blocks kept so far in each stage
        for layer, choice in enumerate(path):
            if choice == SKIP:
                continue
            stage = self.space.layer_stage[layer]
            for name, t in self.layers[layer].block_state_dict(int(choice)).items():
                out[f"blocks.{stage + 1}.{kept[stage]}.{name}"] = t
            kept[stage] += 1
        assert kept == [len(s) for s in arch.stages]
        return out


def extract_child(supernet: ChainSupernet, path: Sequence[int], **model_kwargs) -> nn.Module:
    """The standalone timm network of ``path`` with the supernet's weights (same outputs in eval)."""
    kwargs = {**supernet.model_kwargs, **model_kwargs}
    child = create_chain_model("cydas_chain", supernet.space.arch(path), num_classes=supernet.num_classes,
                               **kwargs)
    child.load_state_dict(supernet.child_state_dict(path), strict=True)
    return child.to(next(supernet.parameters()).device)
