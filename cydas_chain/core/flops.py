"""Parameter and multiply-add (MAC) counting: the one counting function of the suite.

Two independent counters are used: fvcore (the reference) and thop (a cross-check).  They agree on
convolutions and linear layers and differ on element-wise work (fvcore ignores it; thop counts e.g.
the SE gate multiplication and activations of some kinds), so expect a few percent between them.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Sequence, Union

import torch
from torch import nn

__all__ = ["ModelCost", "count_params", "count_macs", "fvcore_macs", "thop_macs"]

InputSize = Union[int, Sequence[int]]


@dataclass(frozen=True)
class ModelCost:
    params: int
    fvcore_macs: int
    thop_macs: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"params {self.params / 1e6:.3f}M | MACs fvcore {self.fvcore_macs / 1e6:.1f}M, "
                f"thop {self.thop_macs / 1e6:.1f}M")


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _example_input(model: nn.Module, input_size: InputSize, in_chans: int) -> torch.Tensor:
    if isinstance(input_size, int):
        shape = (1, in_chans, input_size, input_size)
    elif len(input_size) == 2:
        shape = (1, in_chans, *input_size)
    else:
        shape = (1, *input_size)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    return torch.zeros(shape, device=device)


def fvcore_macs(model: nn.Module, inputs) -> int:
    """MACs counted by fvcore (one 'flop' per multiply-add for conv/linear/matmul)."""
    from fvcore.nn import FlopCountAnalysis

    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return int(analysis.total())


def thop_macs(model: nn.Module, inputs) -> int:
    """MACs counted by thop, on a copy (thop registers buffers on the modules it profiles)."""
    import thop

    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    # thop logs a line for every module type it has no rule for; those are zero-cost wrappers.
    logging.getLogger("thop").setLevel(logging.ERROR)
    macs, _ = thop.profile(copy.deepcopy(model), inputs=inputs, verbose=False)
    return int(macs)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: InputSize = 224, in_chans: int = 3) -> ModelCost:
    """Parameters and MACs of ``model`` for one image of ``input_size`` (int, (H, W) or (C, H, W)).

    The model is evaluated in eval mode and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        x = _example_input(model, input_size, in_chans)
        return ModelCost(params=count_params(model), fvcore_macs=fvcore_macs(model, x),
                         thop_macs=thop_macs(model, x))
    finally:
        model.train(was_training)
