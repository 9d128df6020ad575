"""How a run computes: mixed precision, memory layout, compilation; the same flags in every tool.

``--amp auto|bf16|fp16|off`` (``auto``: bf16 on a CUDA device that supports it, fp16 on an older one,
off on the CPU; ``--amp bf16`` also runs on the CPU), ``--channels-last`` (NHWC activations and
weights: the layout tensor cores and oneDNN prefer) and ``--compile`` (``torch.compile``).  A tool
resolves them once against its device (:func:`resolve_speed`) and passes the :class:`Speed` value
on; nothing else reads the flags.  fp16 needs loss scaling (:meth:`Speed.grad_scaler`), bf16 does not.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .errors import ConfigError

AMP_MODES = ("auto", "bf16", "fp16", "off")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def amp_mode(value) -> str:
    """An ``--amp`` value, also as run folders before this flag took a mode stored it (a bool, or None
    for the device's default): ``True`` meant float16 on CUDA."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "fp16" if value else "off"
    value = str(value).lower()
    if value not in AMP_MODES:
        raise argparse.ArgumentTypeError(f"--amp takes one of {', '.join(AMP_MODES)}, got {value!r}")
    return value


def add_speed_arguments(group) -> None:
    """--amp [MODE] (--no-amp: off), --channels-last, --compile: the same in every tool."""
    group.add_argument("--amp", nargs="?", const="auto", default="auto", type=amp_mode, metavar="MODE",
                       help="mixed precision: auto (bf16 on CUDA devices that support it, fp16 on older ones, off "
                            "on the CPU), bf16 (also on the CPU), fp16 (CUDA), off (default: auto)")
    group.add_argument("--no-amp", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS)
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                       help="channels-last (NHWC) memory layout of the network and its inputs (default: off)")
    group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                       help="torch.compile the network (the first steps compile; needs a C++ compiler on the "
                            "CPU, Triton on CUDA) (default: off)")


def cuda_bf16_supported(device: torch.device) -> bool:
    """bfloat16 at full speed: compute capability 8.0 (Ampere) or newer."""
    return torch.cuda.get_device_capability(device)[0] >= 8


@dataclass(frozen=True)
class Speed:
    """The resolved flags of one run on one device."""

    device: torch.device
    amp: Optional[torch.dtype] = None  # autocast dtype, None: full precision
    channels_last: bool = False
    compile: bool = False

    @property
    def amp_name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "off"}[self.amp]

    def autocast(self):
        """The forward's autocast context (a no-op context without mixed precision)."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16; a pass-through scaler otherwise (same calls, no scaling)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` moved to the device in the chosen layout (in place, returned)."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def compiled(self, module):
        """``torch.compile(module)`` when --compile, else ``module``."""
        return torch.compile(module) if self.compile else module

    def describe(self) -> str:
        return (f"amp {self.amp_name}, {'channels-last' if self.channels_last else 'contiguous'} layout, "
                f"{'compiled' if self.compile else 'eager'}")


def resolve_speed(device: torch.device, amp="auto", channels_last: bool = False, compile: bool = False) -> Speed:
    """Check the flags against ``device``; one :class:`ConfigError` line for what cannot work there.

    Also turns on ``cudnn.benchmark`` on CUDA (the input sizes of these runs are fixed).
    """
    mode = amp_mode(amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if mode == "auto":
            mode = "bf16" if cuda_bf16_supported(device) else "fp16"
        elif mode == "bf16" and not cuda_bf16_supported(device):
            major, minor = torch.cuda.get_device_capability(device)
            raise ConfigError(f"--amp bf16: {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}) "
                              f"has no bfloat16 support (needs 8.0 or newer); use --amp fp16")
    else:
        if mode == "auto":
            mode = "off"
        elif mode == "fp16":
            raise ConfigError(f"--amp fp16 needs a CUDA device (this run is on {device.type}); "
                              f"use --amp bf16 or --amp off")
    if compile:
        check_compile(device)
    return Speed(device, _DTYPES[mode], bool(channels_last), bool(compile))


def check_compile(device: torch.device) -> None:
    """torch.compile's inductor needs a C++ compiler for the CPU and Triton for CUDA."""
    from torch._dynamo import is_dynamo_supported

    if not is_dynamo_supported():
        raise ConfigError("--compile: torch.compile does not support this Python / platform; drop --compile")
    if device.type == "cpu":
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            raise ConfigError(f"--compile on the CPU needs a C++ compiler for torch.compile ({cxx} not found; "
                              f"install g++ or set CXX), or drop --compile")
    elif device.type == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            raise ConfigError("--compile on CUDA needs Triton (pip install triton matching this torch), "
                              "or drop --compile")
