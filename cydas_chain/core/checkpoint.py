"""Atomic file writes, checkpoint save, and one strict checkpoint loader.

A file is written to a temporary file in the target folder, flushed to disk, given the mode a
plain ``open(path, "w")`` would give it, then renamed over the target: a kill at any moment leaves
either the old file or the new one, never a torn one.
Our checkpoints hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``: loading one never executes pickled code.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import nn

from .errors import CheckpointError, first_line

PathLike = Union[str, os.PathLike]


# ---- file modes ------------------------------------------------------------------------------
def _read_umask() -> int:
    """The process umask without changing it: Linux (>= 4.7) reports it in /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


# Elsewhere the umask can only be read by setting it (os.umask sets and returns the old value) and
# setting it back.  The umask is process-wide, so a thread creating a file between the two calls
# would get mode 0666/0777: do it once, here at import time (normally before any worker thread
# exists), never per write.  A umask changed later is then seen only where /proc is readable.
_IMPORT_UMASK = os.umask(0o022)
os.umask(_IMPORT_UMASK)


def _final_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` gives: an existing file keeps its mode, a new one gets 0666 & ~umask."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~_read_umask()


def atomic_write(path: PathLike, write_fn) -> Path:
    """Call ``write_fn(fileobj)`` on a temporary file and atomically rename it to ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give: a new file ``0o666 & ~umask``
    (0644 under the usual umask 022, so colleagues can read results), an existing file keeps its
    mode (its owner becomes the writer, as the file is replaced, not rewritten).  If ``write_fn``
    raises (Ctrl-C included), ``path`` keeps its old content and the temporary file is removed; a
    SIGKILL can leave a ``.<name>.*.tmp`` beside it, but never a torn ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fchmod(f.fileno(), _final_mode(path))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; a no-op where folders cannot be opened or synced."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save_checkpoint(state: Mapping[str, Any], path: PathLike) -> Path:
    """Atomically save ``state`` (tensors and plain values) with ``torch.save``."""
    return atomic_write(path, lambda f: torch.save(dict(state), f))


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint` (or any weights-only checkpoint).

    Raises :class:`CheckpointError` with a one-line reason for a missing, empty or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises a zoo of types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(e)}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def extract_state_dict(state: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The model weights of a checkpoint: a bare state dict or one under a conventional key."""
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            return state[key]
    return state


def load_model_weights(model: nn.Module, path: PathLike, strict: bool = True) -> None:
    """Load model weights from ``path`` and fail with one line if they do not fit ``model``."""
    state_dict = extract_state_dict(load_checkpoint(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k, v in state_dict.items()
                  if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        k = mismatched[0]
        raise CheckpointError(
            f"checkpoint {path} does not match the model: {len(mismatched)} tensors differ in shape, "
            f"e.g. {k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}")
    if strict and (missing or unexpected):
        example = (missing or unexpected)[0]
        raise CheckpointError(
            f"checkpoint {path} does not match the model: {len(missing)} missing and "
            f"{len(unexpected)} unexpected keys, e.g. {example!r}")
    model.load_state_dict(state_dict, strict=strict)
