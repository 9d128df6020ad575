"""CyDAS chain-space networks as timm models: ``cydas_a``, ``cydas_b`` and ``cydas_chain(arch=...)``.

Built by timm's EfficientNet builder from block strings into timm's ``MobileNetV3`` class (its
"efficient head" -- pool, then a 1x1 conv with bias -- is the CyDAS head), so timm's blocks, SE,
feature extraction, pretrained loading and every timm tool apply unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models._efficientnet_builder import resolve_act_layer
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._builder import pretrained_cfg_for_features
# Private timm modules: timm is pinned in setup.py for that reason.
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import (EfficientNetBuilder, decode_arch_def, resolve_bn_args,
                                               round_channels)
from timm.models.mobilenetv3 import MobileNetV3, MobileNetV3Features
from torch import nn

from ..core.checkpoint import check_pretrained_file
from ..core.errors import ArchError
from .chain_arch import LAYOUT, PUBLISHED, ArchLike, ChainArch, ChainSpace, resolve_arch

__all__ = ["create_chain_model", "chain_model_kwargs", "build_block", "SE_LAYER"]

# SE as in the released CyDAS code: reduction of the expanded width, ReLU inside, hard-sigmoid gate,
# reduced channels rounded to a multiple of 8.
SE_LAYER = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU,
                   rd_round_fn=round_channels)


def chain_model_kwargs(arch: ChainArch, head_width: Optional[int] = None, **kwargs) -> dict:
    """Keyword arguments of timm's ``MobileNetV3`` for ``arch`` (training defaults included).

    ``head_width`` replaces the width of the 1x1 conv after the last stage (960): the official
    segmentation code's backbone has 320 there.
    """
    kwargs.setdefault("drop_rate", 0.2)
    kwargs.setdefault("drop_path_rate", 0.2)
    arch_def = list(arch.arch_def())
    if head_width is not None:
        if isinstance(head_width, bool) or not isinstance(head_width, int) or head_width < 1:
            raise ArchError(f"head_width must be a positive int (960, or 320 as the official segmentation "
                            f"backbone), got {head_width!r}")
        arch_def[-1] = [replace(LAYOUT, head_width=head_width).head_block()]
    return dict(
        block_args=decode_arch_def(arch_def),
        num_features=LAYOUT.num_features,
        stem_size=LAYOUT.stem_width,
        head_bias=True,
        norm_layer=kwargs.pop("norm_layer", None) or partial(nn.BatchNorm2d, **resolve_bn_args(kwargs)),
        act_layer=resolve_act_layer(kwargs, "swish"),
        se_layer=SE_LAYER,
        **kwargs,
    )


def build_block(space: ChainSpace, layer: int, op: int, **model_kwargs) -> nn.Module:
    """The timm block of op ``op`` at ``layer`` of ``space``, exactly as ``create_chain_model`` builds it
    inside a network with the same ``model_kwargs`` (norm, act, SE, drop path)."""
    kw = chain_model_kwargs(PUBLISHED["cydas_a"], **model_kwargs)
    builder = EfficientNetBuilder(act_layer=kw["act_layer"], norm_layer=kw["norm_layer"], se_layer=kw["se_layer"],
                                  se_from_exp=True, drop_path_rate=kw["drop_path_rate"])
    in_chs = space.layer_channels(layer)[0]
    return builder(in_chs, decode_arch_def([[space.block_string(layer, op)]]))[0][0]


def create_chain_model(variant: str, arch: ArchLike, pretrained: bool = False, **kwargs) -> MobileNetV3:
    """Build a chain-space network with timm (``features_only`` as in timm's MobileNetV3)."""
    arch = resolve_arch(arch)
    if pretrained:
        check_pretrained_file(variant, kwargs, f"no weights can be downloaded here; pass a local file with "
                              f"pretrained_cfg_overlay=dict(file='path/to/{variant}.pth')")
    model_cls, features_mode, kwargs_filter = MobileNetV3, "", None
    if kwargs.pop("features_only", False):
        if "feature_cfg" in kwargs or "feature_cls" in kwargs:
            features_mode = "cfg"
        else:
            model_cls, features_mode = MobileNetV3Features, "cls"
            kwargs_filter = ("num_classes", "num_features", "head_conv", "head_bias", "head_norm",
                             "global_pool", "drop_rate")
    model = build_model_with_cfg(
        model_cls, variant, pretrained,
        features_only=features_mode == "cfg",
        pretrained_strict=features_mode != "cls",
        kwargs_filter=kwargs_filter,
        **chain_model_kwargs(arch, **kwargs),
    )
    if features_mode == "cls":
        model.default_cfg = pretrained_cfg_for_features(model.default_cfg)
    model.chain_arch = arch  # what it was built from, for tools and the mm backbone
    return model


def _cfg(**kwargs) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD, "first_conv": "conv_stem", "classifier": "classifier",
        "license": "mit", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "cydas_a.in1k": _cfg(paper_ids="arXiv:2006.10724", origin_url="https://github.com/microsoft/Cream"),
    "cydas_b.in1k": _cfg(paper_ids="arXiv:2006.10724", origin_url="https://github.com/microsoft/Cream"),
    "cydas_chain": _cfg(),
})


@register_model
def cydas_a(pretrained: bool = False, **kwargs) -> MobileNetV3:
    """CyDAS-a (ImageNet, 294M MACs at 224x224 in the paper)."""
    return create_chain_model("cydas_a", PUBLISHED["cydas_a"], pretrained, **kwargs)


@register_model
def cydas_b(pretrained: bool = False, **kwargs) -> MobileNetV3:
    """CyDAS-b as released (five blocks in the 80-channel stage; ImageNet, 394M MACs at 224x224 in the
    paper)."""
    return create_chain_model("cydas_b", PUBLISHED["cydas_b"], pretrained, **kwargs)


@register_model
def cydas_chain(pretrained: bool = False, arch: ArchLike = "cydas_b", **kwargs) -> MobileNetV3:
    """Any architecture of the chain space: ``arch`` is an ``arch.json`` path, a dict, or a name."""
    return create_chain_model("cydas_chain", arch, pretrained, **kwargs)
