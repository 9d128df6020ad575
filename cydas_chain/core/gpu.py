"""The machine's NVIDIA GPUs as ``nvidia-smi`` sees them, and why this torch cannot use them.

``--device auto`` (:func:`cydas_chain.core.distributed.resolve_device`) asks here before it would
fall back to the CPU, and ``tools/env_check.py`` prints the same facts.  ``nvidia-smi`` is asked
with a short timeout and its absence is a normal answer (a machine without NVIDIA GPUs).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional

import torch

NVIDIA_SMI_TIMEOUT_S = 5.0
# The oldest Linux driver each CUDA major version runs on (NVIDIA's CUDA release notes, minor
# version compatibility): what "driver too old" means for this torch's CUDA.
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
# CUDA_VISIBLE_DEVICES values that hide every device from CUDA
_HIDING = ("", "-1", "none", "nodevfiles")


def nvidia_smi(*args: str, timeout: float = NVIDIA_SMI_TIMEOUT_S) -> Optional[str]:
    """``nvidia-smi ARGS``'s output; None when it is not on PATH, fails or does not answer in time."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def nvidia_smi_gpus() -> Optional[list]:
    """The lines of ``nvidia-smi -L`` (``GPU 0: NVIDIA H100 ... (UUID: ...)``); None without nvidia-smi.

    nvidia-smi lists every GPU of the machine, whatever ``CUDA_VISIBLE_DEVICES`` says."""
    out = nvidia_smi("-L")
    if out is None:
        return None
    return [line.strip() for line in out.splitlines() if line.strip().startswith("GPU ")]


def driver_version() -> Optional[str]:
    out = nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader")
    lines = [line.strip() for line in (out or "").splitlines() if line.strip()]
    return lines[0] if lines else None


def hides_all_devices(value: Optional[str]) -> bool:
    """Whether a ``CUDA_VISIBLE_DEVICES`` value leaves CUDA no device (unset: no)."""
    if value is None:
        return False
    first = value.split(",")[0].strip().lower()
    return first in _HIDING or first.startswith("-")


def torch_build() -> str:
    """``torch 2.14.1+cu130 (CUDA 13.0)`` or ``torch 2.14.1+cpu (CPU only)``."""
    cuda = torch.version.cuda
    return f"torch {torch.__version__} ({f'CUDA {cuda}' if cuda else 'CPU only'})"


def cuda_unavailable_reason() -> Optional[str]:
    """Why ``torch.cuda.is_available()`` is False, with what to do, on one line; None when it is True."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return (f"this torch is built without CUDA ({torch_build()}): install a CUDA build of torch, or "
                f"keep the site's (CYDAS_SITE_TORCH=1 ./run ..., see README 'GPU machines')")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = nvidia_smi_gpus()
    if hides_all_devices(visible):
        listed = f" (nvidia-smi lists {len(gpus)})" if gpus else ""
        return f"no visible device: CUDA_VISIBLE_DEVICES={visible!r} hides every GPU{listed}; unset it or name the GPUs"
    if gpus:
        driver = driver_version()
        major = int(torch.version.cuda.split(".")[0])
        need = f" (CUDA {major}.x needs driver >= {MIN_DRIVER[major]})" if major in MIN_DRIVER else ""
        also = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return (f"nvidia-smi lists {len(gpus)} GPU(s){also}, driver {driver or 'unknown'}, but {torch_build()} "
                f"cannot use them: the driver is likely too old for CUDA {torch.version.cuda}{need}; update the "
                f"driver, or use a torch built for the driver's CUDA (keep the site's: CYDAS_SITE_TORCH=1 ./run ...)")
    if gpus is None:
        return "no NVIDIA GPU on this machine (nvidia-smi is not on PATH)"
    return "no NVIDIA GPU on this machine (nvidia-smi lists none)"
