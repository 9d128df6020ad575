"""Official CyDAS / Cream checkpoints -> plain state dicts of our timm models.

The released ImageNet weights were written by the official code (``Cream/tools/retrain.py`` with
timm 0.1.x's ``CheckpointSaver``): a dict holding ``state_dict`` (keys prefixed ``module.`` when
saved from a DistributedDataParallel wrapper), ``state_dict_ema`` when EMA was on, ``optimizer``,
``epoch``, ``version``, and the run's arguments under ``args`` -- an ``argparse.Namespace`` (or a
yacs config) that ``torch.load(weights_only=True)`` refuses.  Some files are a bare state dict.

Parameter names.  The official ``ChildNet`` (``Cream/lib/models/structures/childnet.py``,
``CDARTS_detection/.../backbones/mobilenetv3.py``) was built by timm 0.1.x's EfficientNet
builder, and timm 1.0's ``MobileNetV3`` kept every name: ``conv_stem``, ``bn1``, ``blocks.<stage>.
<block>.{conv_pw, bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}`` (the first
stage's depthwise-separable block: ``conv_dw, bn1, se.*, conv_pw, bn2``), the head block
``blocks.6.0.{conv, bn1}``, ``conv_head`` (with bias, no norm) and ``classifier``.  timm 1.0 fuses
BN and activation into ``BatchNormAct2d`` with the same tensors (``weight, bias, running_mean,
running_var, num_batches_tracked``); activations and the SE gate hold no tensors.  So the only
rename is dropping the ``module.`` prefix; every other key and shape is checked against the target.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.errors import CheckpointError, CheckpointObjectsError, CydasError, first_line
from .chain_arch import LAYOUT, PUBLISHED, ArchLike, ChainArch, resolve_arch
from .cydas import create_chain_model

__all__ = ["UnsafeLoadWarning", "Conversion", "load_trusted_checkpoint", "select_weights",
           "official_to_timm", "check_state_dict", "convert_official", "default_output"]

PathLike = Union[str, os.PathLike]
WRAPPER_PREFIX = "module."
OFFICIAL_HEAD_WIDTHS = (LAYOUT.head_width, 320)  # classification/detection code, segmentation code
EMA_KEYS = ("state_dict_ema",)
RAW_KEYS = ("state_dict", "model")


class UnsafeLoadWarning(UserWarning):
    """A checkpoint the user named was loaded with ``weights_only=False``."""


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_official` did."""

    src: Path
    dst: Path
    weights: str          # where the weights came from: 'state_dict_ema', 'state_dict', ... or 'bare state dict'
    has_ema: bool         # the file holds EMA weights (used unless use_ema=False)
    num_tensors: int
    arch: ChainArch
    head_width: int
    unsafe_load: bool     # weights_only refused the file and it was loaded with weights_only=False


def load_trusted_checkpoint(path: PathLike) -> Tuple[dict, bool]:
    """Load a checkpoint the user named and trusts; return it and whether the load was unsafe.

    First ``weights_only=True`` (:func:`~cydas_chain.core.checkpoint.load_checkpoint`).  Only if
    that refused the file for holding non-tensor objects (e.g. the ``args`` Namespace the official
    code saves) is it loaded again with ``weights_only=False``, for this one call and with a
    :class:`UnsafeLoadWarning`.  A missing, empty or corrupt file is a :class:`CheckpointError`.
    """
    path = Path(path)
    try:
        return load_checkpoint(path), False
    except CheckpointObjectsError as e:  # a readable file holding objects (core tells it from a corrupt one)
        refused = e.objects or "Python objects"
    warnings.warn(
        f"{path} holds non-tensor objects ({refused}) that a weights_only load refuses; "
        f"loading it with weights_only=False, which can run code stored in the file: convert only "
        f"files you trust", UnsafeLoadWarning, stacklevel=2)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: it stores objects of module '{e.name}', "
                              f"which is not installed (pip install {e.name.split('.')[0]})") from e
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(e)}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state, True


def _is_state_dict(d: Any) -> bool:
    return isinstance(d, Mapping) and bool(d) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def select_weights(ckpt: Mapping[str, Any], use_ema: bool = True, where: str = "checkpoint") -> Tuple[Mapping, str, bool]:
    """The weights of an official checkpoint: ``(state_dict, where they came from, has EMA)``.

    EMA weights (``state_dict_ema``) when present and ``use_ema``, else ``state_dict`` / ``model``,
    else the file itself if it is a bare state dict.
    """
    has_ema = any(_is_state_dict(ckpt.get(k)) for k in EMA_KEYS)
    for key in (EMA_KEYS if use_ema else ()) + RAW_KEYS:
        if _is_state_dict(ckpt.get(key)):
            return ckpt[key], key, has_ema
    if _is_state_dict(ckpt):
        return ckpt, "bare state dict", False
    if not use_ema and has_ema:
        raise CheckpointError(f"{where} holds only EMA weights ('state_dict_ema'), no raw 'state_dict': "
                              f"drop --no-ema (use_ema=False)")
    keys = ", ".join(repr(k) for k in list(ckpt)[:6]) or "none"
    raise CheckpointError(f"{where} holds no weights: expected a state dict, or a checkpoint with "
                          f"'state_dict' / 'state_dict_ema' of tensors (its keys: {keys})")


def official_to_timm(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official parameter names -> ours: only the DDP wrapper's ``module.`` prefix goes."""
    return {(k[len(WRAPPER_PREFIX):] if k.startswith(WRAPPER_PREFIX) else k): v for k, v in state_dict.items()}


def _mismatches(state_dict: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]):
    """(first mismatch as text, counts of missing / unexpected / reshaped keys), or (None, ...)."""
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [k for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    first = None
    for k in own:  # in the network's order: the first key that is missing or of another shape
        if k not in state_dict:
            first = f"{k} is missing"
        elif tuple(state_dict[k].shape) != tuple(own[k].shape):
            first = f"{k} has shape {tuple(state_dict[k].shape)}, the model {tuple(own[k].shape)}"
        if first:
            break
    if first is None and unexpected:
        first = f"{unexpected[0]} is not a tensor of the model"
    return first, (len(missing), len(unexpected), len(reshaped))


def check_state_dict(state_dict: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], what: str) -> None:
    """Every key of ``own`` present with its shape and nothing else, or a one-line CheckpointError."""
    first, (n_missing, n_unexpected, n_reshaped) = _mismatches(state_dict, own)
    if first:
        raise CheckpointError(f"{what}: {first} ({n_missing} missing, {n_unexpected} unexpected and "
                              f"{n_reshaped} differently shaped tensors in all)")


def _target_state(arch: ChainArch, head_width: int) -> Dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only: no memory, no init
        return create_chain_model("cydas_chain", arch, head_width=head_width).state_dict()


def _fitting_target(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """A published network (and head width) the weights fit exactly, to name in an error."""
    for name, arch in PUBLISHED.items():
        for hw in OFFICIAL_HEAD_WIDTHS:
            if _mismatches(state_dict, _target_state(arch, hw))[0] is None:
                return f"--model {name}" + (f" --head-width {hw}" if hw != LAYOUT.head_width else "")
    return None


def _arch_name(arch: ChainArch) -> str:
    return next((name for name, a in PUBLISHED.items() if a == arch), f"arch {arch}")


def default_output(arch: ArchLike, head_width: int = LAYOUT.head_width) -> Path:
    """``checkpoints/<model>_in1k.pth``: the file the mm configs' backbone ``init_cfg`` names."""
    arch = resolve_arch(arch)
    name = next((n for n, a in PUBLISHED.items() if a == arch), None)
    if name is None:
        raise CydasError("give the output file: only cydas_a and cydas_b have a default one")
    suffix = "" if head_width == LAYOUT.head_width else f"_head{head_width}"
    return Path("checkpoints") / f"{name}{suffix}_in1k.pth"


def convert_official(src: PathLike, dst: Optional[PathLike] = None, arch: ArchLike = "cydas_b", *,
                     head_width: int = LAYOUT.head_width, use_ema: bool = True,
                     overwrite: bool = False) -> Conversion:
    """Convert an official CyDAS / Cream checkpoint into a plain state dict of our model.

    Args:
        src: the official checkpoint (trusted: see :func:`load_trusted_checkpoint`).
        dst: where the state dict goes (default :func:`default_output`, the file the mm configs load).
        arch: ``'cydas_a'``, ``'cydas_b'``, an ``arch.json`` path, dict or :class:`ChainArch`.
        head_width: 960, or 320 for the official segmentation code's backbone.
        use_ema: take the EMA weights when the file has them (else the raw ``state_dict``).
        overwrite: replace an existing ``dst`` (else that is an error).

    The weights are checked key for key and shape for shape against the model before anything is
    written; ``dst`` is written atomically.  Bad input raises :class:`CheckpointError` (or
    :class:`~cydas_chain.core.errors.ArchError` for an unknown architecture) with one line.
    """
    src = Path(src)
    arch = resolve_arch(arch)
    dst = Path(dst) if dst is not None else default_output(arch, head_width)
    if dst.exists() and not overwrite:
        raise CheckpointError(f"{dst} exists; not replacing it (--force, or overwrite=True, does)")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise CheckpointError(f"the output {dst} is the source file")
    own = _target_state(arch, head_width)  # ArchError for a bad head_width, before reading SRC

    ckpt, unsafe = load_trusted_checkpoint(src)
    weights, where, has_ema = select_weights(ckpt, use_ema, where=f"checkpoint {src}")
    state_dict = official_to_timm(weights)
    # Checkpoints of torch < 0.4.1 have no BN batch counters; they only count (momentum is set).
    for k, v in own.items():
        bn = k.removesuffix(".num_batches_tracked")
        if bn != k and k not in state_dict and f"{bn}.running_mean" in state_dict:
            state_dict[k] = torch.zeros((), dtype=v.dtype)
    target = _arch_name(arch) + (f" with head width {head_width}" if head_width != LAYOUT.head_width else "")
    try:
        check_state_dict(state_dict, own, f"{src} ({where}) does not fit {target}")
    except CheckpointError as e:
        hint = _fitting_target(state_dict)
        if hint:
            raise CheckpointError(f"{e}; the weights fit {hint}") from None
        raise
    save_checkpoint({k: state_dict[k].detach().clone() for k in own}, dst)
    return Conversion(src=src, dst=dst, weights=where, has_ema=has_ema, num_tensors=len(own), arch=arch,
                      head_width=head_width, unsafe_load=unsafe)
