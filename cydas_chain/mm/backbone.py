"""The CyDAS chain-space networks as an OpenMMLab backbone (``type='CyDAS'``).

The network is timm's (``cydas_chain.models.create_chain_model(..., features_only=True)``): its
stem and blocks become this module's children under timm's own names, so a timm classification
checkpoint of the same architecture loads key for key.  This module needs only mmengine and timm;
``mmdet_backbone`` and ``mmseg_backbone`` register it with each library.

The five feature levels (``out_indices`` 0..4) are the outputs of the stages at reductions
2, 4, 8, 16, 32 with 16, 24, 40, 96 and 960 channels (the last level is after the 1x1 head conv;
``head_width=320`` makes it 320 wide, as in the official segmentation code's backbone).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.layers import convert_sync_batchnorm
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ..core.checkpoint import extract_state_dict, load_checkpoint
from ..core.errors import CheckpointError
from ..models import create_chain_model, resolve_arch
from .errors import ConfigError

NUM_LEVELS = 5
NORM_TYPES = ("BN", "SyncBN")


class CyDAS(BaseModule):
    """CyDAS backbone for MMDetection / MMSegmentation.

    Args:
        arch: ``'cydas_a'``, ``'cydas_b'``, or the path of an ``arch.json`` written by the chain search.
        out_indices: feature levels to return, increasing, from 0..4 (reductions 2, 4, 8, 16, 32).
        frozen_stages: -1 freezes nothing, 0 the stem, ``k`` the stem and the stages of levels
            0..k-1 (parameters fixed, their norm layers in eval mode), as in mmdet's ResNet.
        norm_eval: keep every norm layer in eval mode (frozen statistics) during training.
        norm_cfg: ``dict(type='BN' | 'SyncBN', requires_grad=True)``.  SyncBN is converted with
            timm's ``convert_sync_batchnorm``, which keeps the activation timm fuses into its
            ``BatchNormAct2d`` (torch's conversion, and mmengine's revert to BN, would drop it);
            outside a distributed run SyncBN means BN, as mmengine's Runner does.
        output_stride: 32, or 16 / 8 to dilate the later stages (as mmseg's dilated backbones).
        head_width: channels of the 1x1 conv after the last stage (the last level): 960 as the
            classification networks, or 320 as the backbone of the official CyDAS segmentation
            code, whose weights then load unchanged (``tools/convert_official.py --head-width 320``).
        drop_path_rate: stochastic depth of the blocks (0 by default for dense tasks).
        with_cp: gradient checkpointing of each block (less memory, slower).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, prefix=None)`` loads a timm
            classification checkpoint of the same architecture (a state dict, possibly under
            ``'state_dict'`` / ``'model'``), or with ``prefix='backbone.'`` a detector/segmentor
            checkpoint.  Every backbone tensor must be found: anything else is a
            :class:`~cydas_chain.core.errors.CheckpointError`, never a half-random backbone.
    """

    def __init__(self,
                 arch: str = "cydas_b",
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 output_stride: int = 32,
                 head_width: int = 960,
                 drop_path_rate: float = 0.0,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        self.out_indices = _check_out_indices(out_indices)
        if not (isinstance(frozen_stages, int) and -1 <= frozen_stages <= NUM_LEVELS):
            raise ConfigError(f"frozen_stages must be an int in -1..{NUM_LEVELS}, got {frozen_stages!r}")
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        norm_cfg = dict(norm_cfg or dict(type="BN", requires_grad=True))
        norm_type, requires_grad = norm_cfg.pop("type", "BN"), norm_cfg.pop("requires_grad", True)
        if norm_type not in NORM_TYPES or norm_cfg:
            raise ConfigError(f"norm_cfg must be dict(type='BN' or 'SyncBN', requires_grad=bool), "
                              f"got type={norm_type!r}" + (f" and {sorted(norm_cfg)}" if norm_cfg else ""))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.arch = resolve_arch(arch)  # ArchError (a ValueError) for an unknown name or a bad file

        net = create_chain_model("cydas_chain", self.arch, features_only=True, out_indices=self.out_indices,
                                 drop_path_rate=drop_path_rate, output_stride=output_stride,
                                 head_width=head_width)
        if norm_type == "SyncBN":
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                net = convert_sync_batchnorm(net)
            else:
                # What mmengine's Runner does for SyncBN outside a distributed run, but without
                # its revert_sync_batchnorm, which would drop the activations timm fuses into BN.
                print_log("CyDAS: SyncBN without a distributed run, using BN", logger="current")
        info = net.feature_info.info
        self.level_channels = tuple(f["num_chs"] for f in info)
        self.level_strides = tuple(f["reduction"] for f in info)
        self.level_ends = tuple(f["stage"] for f in info)  # block count after which each level is taken
        # timm's names, so that timm checkpoints load key for key.
        self.conv_stem, self.bn1, self.act1, self.blocks = net.conv_stem, net.bn1, net.act1, net.blocks
        if not requires_grad:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.requires_grad_(False)
        self._freeze_stages()

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of the returned feature maps (the ``in_channels`` of a neck)."""
        return tuple(self.level_channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[int, ...]:
        return tuple(self.level_strides[i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        outs, take = [], {self.level_ends[i] for i in self.out_indices}
        for i, block in enumerate(self.blocks[:max(take)]):
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if i + 1 in take:
                outs.append(x)
        return tuple(outs)

    # ---- frozen stages and norm_eval ---------------------------------------------------------
    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield from (self.conv_stem, self.bn1)
        if self.frozen_stages > 0:
            yield from self.blocks[:self.level_ends[self.frozen_stages - 1]]

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            m.requires_grad_(False)

    def train(self, mode: bool = True) -> "CyDAS":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ---- pretrained weights ------------------------------------------------------------------
    def init_weights(self) -> None:
        """timm initialised the network; ``init_cfg=dict(type='Pretrained', ...)`` loads weights."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            self.load_pretrained(cfg["checkpoint"], prefix=cfg.get("prefix"))
            self._is_init = True
        else:
            super().init_weights()

    def load_pretrained(self, path: str, prefix: Optional[str] = None) -> int:
        """Load every backbone tensor from ``path``; return how many were loaded.

        Raises :class:`CheckpointError` when the checkpoint lacks any backbone tensor (keys that do
        not line up, e.g. a wrapper's ``module.`` prefix, or another architecture) or a shape differs.
        """
        state = extract_state_dict(load_checkpoint(path))
        example = next(iter(state), None)
        if prefix:
            prefix = prefix if prefix.endswith(".") else prefix + "."
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        own = self.state_dict()
        found = {k: v for k, v in state.items() if k in own}
        where = f"checkpoint {path}" + (f" (prefix '{prefix}')" if prefix else "")
        if not found:
            raise CheckpointError(
                f"{where}: none of its keys match the CyDAS backbone (its keys look like {example!r}, "
                f"the backbone's like {next(iter(own))!r}); set init_cfg.prefix to what comes before 'conv_stem'")
        missing = [k for k in own if k not in found]
        if missing:
            raise CheckpointError(f"{where} lacks {len(missing)} of the backbone's {len(own)} tensors, "
                                  f"e.g. {missing[0]!r}: is it a checkpoint of arch {self.arch}?")
        bad = [k for k, v in found.items() if tuple(v.shape) != tuple(own[k].shape)]
        if bad:
            raise CheckpointError(f"{where} does not match the backbone's architecture: {len(bad)} tensors "
                                  f"differ in shape, e.g. {bad[0]}: {tuple(found[bad[0]].shape)} vs "
                                  f"{tuple(own[bad[0]].shape)}")
        self.load_state_dict(found, strict=True)
        print_log(f"CyDAS backbone: loaded {len(found)} tensors from {where}, "
                  f"ignored {len(state) - len(found)} other keys", logger="current")
        return len(found)


def _check_out_indices(out_indices) -> Tuple[int, ...]:
    try:
        idx = tuple(out_indices)
    except TypeError:
        idx = None
    if (not idx or any(not isinstance(i, int) or isinstance(i, bool) for i in idx)
            or any(not 0 <= i < NUM_LEVELS for i in idx) or list(idx) != sorted(set(idx))):
        raise ConfigError(f"out_indices must be increasing feature levels in 0..{NUM_LEVELS - 1} "
                          f"(reductions 2, 4, 8, 16, 32), got {out_indices!r}")
    return idx
