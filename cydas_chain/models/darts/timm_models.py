"""DARTS-space evaluation networks as timm models.

    import cydas_chain, timm
    timm.create_model("cydas_darts_cifar", genotype="dartsv2", num_classes=10)     # 20 cells, C=36
    timm.create_model("cydas_darts_imagenet", genotype="cydas_imagenet")           # 14 cells, C=48

``genotype`` is a published name (see ``cydas_chain.darts.PUBLISHED_NAMES``), a genotype JSON path,
the official ``Genotype(...)`` text, a dict or a :class:`Genotype`.  ``auxiliary=True`` adds DARTS'
auxiliary head (returned by ``forward_all``, never by ``forward``); ``drop_path_rate`` is DARTS'
drop-path probability (the training tool ramps it linearly).

They follow timm's model contract as the chain models do: builder keywords (``device``, ``dtype``,
``pretrained_cfg`` / ``pretrained_cfg_overlay``; ``pretrained=True`` loads a local file given as
``pretrained_cfg_overlay=dict(file=...)``, e.g. a ``best.pt`` of ``tools/train_cell.py``),
``features_only=True`` (one level per resolution: CIFAR 3 levels at strides 1/2/4, ImageNet 5 at
2/4/8/16/32, through timm's ``FeatureGetterNet``), ``forward_features`` / ``forward_head`` /
``forward_intermediates``, and ``torch.jit.script``.
"""
from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ...core.checkpoint import check_pretrained_file
from ...core.data import CIFAR_MEAN, CIFAR_STD
from .eval_net import DartsEvalNetwork
from .genotypes import resolve_genotype


def _create(variant: str, pretrained: bool, genotype, defaults: dict, **kwargs) -> DartsEvalNetwork:
    if pretrained:
        check_pretrained_file(variant, kwargs, "no pretrained weights are distributed; train with "
                              "tools/train_cell.py and pass its checkpoint with "
                              "pretrained_cfg_overlay=dict(file='.../best.pt')")
    for k, v in defaults.items():
        kwargs.setdefault(k, v)
    levels = 5 if kwargs["stem"] == "imagenet" else 3  # one feature level per resolution
    return build_model_with_cfg(DartsEvalNetwork, variant, pretrained=pretrained,
                                feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(levels))),
                                genotype=resolve_genotype(genotype), **kwargs)


def _cfg(**kwargs) -> dict:
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
            "crop_pct": 0.875, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD, "first_conv": "stem.stem0.0", "classifier": "classifier",
            "license": "mit", **kwargs}


default_cfgs = generate_default_cfgs({
    "cydas_darts_cifar": _cfg(num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0,
                              mean=CIFAR_MEAN, std=CIFAR_STD, paper_ids="arXiv:1806.09055"),
    "cydas_darts_imagenet": _cfg(paper_ids="arXiv:1806.09055"),
})


@register_model
def cydas_darts_cifar(pretrained: bool = False, genotype="cydas_cifar", **kwargs) -> DartsEvalNetwork:
    """DARTS CIFAR evaluation network: 20 cells, 36 channels, one-conv stem."""
    return _create("cydas_darts_cifar", pretrained, genotype,
                   dict(c=36, layers=20, stem="cifar", auxiliary=False, num_classes=10), **kwargs)


@register_model
def cydas_darts_imagenet(pretrained: bool = False, genotype="cydas_imagenet", **kwargs) -> DartsEvalNetwork:
    """DARTS ImageNet (mobile setting) evaluation network: 14 cells, 48 channels, 3-conv stem 224 -> 28."""
    return _create("cydas_darts_imagenet", pretrained, genotype,
                   dict(c=48, layers=14, stem="imagenet", auxiliary=False, num_classes=1000), **kwargs)
