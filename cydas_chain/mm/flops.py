"""MACs of an mm config's model at the config's input size, counted by :mod:`cydas_chain.core.flops`.

Detection: the test pipeline's ``Resize`` scale (1333x800 for COCO), padded to the data
preprocessor's ``pad_size_divisor`` as in training and testing.  Segmentation: the training crop
(``data_preprocessor.size``, e.g. 512x1024 for Cityscapes).  The full model is the network
forward without post-processing (``model._forward``: backbone, neck and head).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from ..core.flops import count_macs, count_params, fvcore_macs, thop_macs
from .errors import ConfigError
from .runner import load_config, register_scope, scope_of

__all__ = ["mm_config_macs", "config_input_size"]


class _NetworkForward(nn.Module):
    """``model._forward(images)`` as a module, for the counters (which trace ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model._forward(x)
        # fvcore/thop want tensors: flatten the head's nested lists/tuples.
        flat = []

        def collect(o):
            if isinstance(o, torch.Tensor):
                flat.append(o)
            elif isinstance(o, (list, tuple)):
                for v in o:
                    collect(v)
        collect(out)
        return tuple(flat)


def config_input_size(cfg) -> Tuple[int, int]:
    """(H, W) the config's network sees: the test resize (detection) or the crop (segmentation)."""
    pre = cfg.model.get("data_preprocessor") or {}
    if scope_of(cfg) == "mmseg":
        size = pre.get("size") or cfg.get("crop_size")
        if not size:
            raise ConfigError("the config sets neither model.data_preprocessor.size nor crop_size")
        return int(size[0]), int(size[1])
    pipeline = cfg.test_dataloader.dataset.get("pipeline") or []
    scales = [t["scale"] for t in pipeline if t.get("type") == "Resize" and "scale" in t]
    if not scales:
        raise ConfigError("the config's test pipeline has no Resize with a scale")
    w, h = scales[0]  # mmdet scales are (W, H); keep_ratio fits the long and short sides
    w, h = max(w, h), min(w, h)
    div = pre.get("pad_size_divisor") or 1
    return int(math.ceil(h / div) * div), int(math.ceil(w / div) * div)


@torch.no_grad()
def mm_config_macs(config_path, input_size: Optional[Tuple[int, int]] = None,
                   cfg_options: Optional[dict] = None) -> dict:
    """Parameters and MACs (fvcore and thop) of the backbone and of the whole network of a config.

    Returns ``{'config', 'scope', 'input_size': (H, W), 'backbone': {...}, 'model': {...}}`` where
    each part is ``{'params', 'fvcore_macs', 'thop_macs'}``.  The backbone's pretrained weights are
    not needed (nor loaded).
    """
    cfg = load_config(config_path, cfg_options)
    scope = scope_of(cfg, config_path)
    register_scope(scope)
    cfg.model.backbone.pop("init_cfg", None)
    for key in ("backbone", "decode_head", "auxiliary_head"):  # SyncBN needs a process group
        part = cfg.model.get(key)
        if isinstance(part, dict) and isinstance(part.get("norm_cfg"), dict) and part["norm_cfg"].get("type") == "SyncBN":
            part["norm_cfg"]["type"] = "BN"
    if scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    h, w = input_size or config_input_size(cfg)
    x = torch.zeros(1, 3, h, w)
    net = _NetworkForward(model).eval()
    return {
        "config": str(config_path),
        "scope": scope,
        "input_size": (h, w),
        "backbone": count_macs(model.backbone, (h, w)).as_dict(),
        "model": {"params": count_params(model), "fvcore_macs": fvcore_macs(net, x), "thop_macs": thop_macs(net, x)},
    }
