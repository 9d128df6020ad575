"""DARTS-space evaluation networks as timm models.

    import cydas_chain, timm
    timm.create_model("cydas_darts_cifar", genotype="dartsv2", num_classes=10)     # 20 cells, C=36
    timm.create_model("cydas_darts_imagenet", genotype="cydas_imagenet")           # 14 cells, C=48

``genotype`` is a published name (see ``cydas_chain.darts.PUBLISHED_NAMES``), a genotype JSON path,
the official ``Genotype(...)`` text, a dict or a :class:`Genotype`.  ``auxiliary=True`` adds DARTS'
auxiliary head (returned by ``forward_all``, never by ``forward``); ``drop_path_rate`` is DARTS'
drop-path probability (the training tool ramps it linearly).
"""
from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..core.errors import CheckpointError
from .eval_net import DartsEvalNetwork
from .genotypes import resolve_genotype

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _create(variant: str, pretrained: bool, genotype, defaults: dict, **kwargs) -> DartsEvalNetwork:
    if pretrained:
        raise CheckpointError(f"{variant}: no pretrained weights are distributed; train with "
                              f"tools/train_cell.py and load its checkpoint")
    for k, v in defaults.items():
        kwargs.setdefault(k, v)
    return build_model_with_cfg(DartsEvalNetwork, variant, pretrained=False,
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
