"""Atomic file writes, checkpoint save, and one strict checkpoint loader.

A file is written to a temporary file in the target folder, flushed to disk, given the mode a
plain ``open(path, "w")`` would give it, then renamed over the target: a kill at any moment leaves
either the old file or the new one, never a torn one.
Our checkpoints hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``: loading one never executes pickled code.  When a load fails,
:func:`classify_load_error` is the one place that tells a corrupt file from a readable one that
holds Python objects a safe load refuses.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn

from .errors import CheckpointError, CheckpointObjectsError, CorruptCheckpointError, first_line

PathLike = Union[str, os.PathLike]


# ---- file modes ------------------------------------------------------------------------------
def _read_umask() -> int:
    """The process umask without changing it: Linux (>= 4.7) reports it in /proc/self/status."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return _IMPORT_UMASK


# Elsewhere the umask can only be read by setting it (os.umask sets and returns the old value) and
# setting it back.  The umask is process-wide, so a thread creating a file between the two calls
# would get mode 0666/0777: do it once, here at import time (normally before any worker thread
# exists), never per write.  A umask changed later is then seen only where /proc is readable.
_IMPORT_UMASK = os.umask(0o022)
os.umask(_IMPORT_UMASK)


def _final_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` gives: an existing file keeps its mode, a new one gets 0666 & ~umask."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; a no-op where folders cannot be opened or synced."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_json(path: PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented standard JSON (non-finite floats as null, Paths as strings),
    with lists of numbers on one line so that paths and tables stay readable."""
    from .logging import json_safe

    text = json.dumps(json_safe(obj), indent=1, default=str)
    text = re.sub(r"\[[\s\d,.eE+-]*\]", lambda m: re.sub(r"\s+", " ", m.group(0)).replace("[ ", "[").replace(" ]", "]"),
                  text)
    return atomic_write(path, lambda f: f.write((text + "\n").encode()))


def save_checkpoint(state: Mapping[str, Any], path: PathLike) -> Path:
    """Atomically save ``state`` (tensors and plain values) with ``torch.save``."""
    return atomic_write(path, lambda f: torch.save(dict(state), f))


# ---- loading ---------------------------------------------------------------------------------
def numpy_safe_globals() -> list:
    """What files holding numpy values (mmengine's message hub, NAS-Bench-201 files of older code) need
    allow-listed for a weights-only load: arrays, dtypes, and numpy's array and scalar rebuild functions."""
    import numpy as np

    multiarray = np._core.multiarray
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
               np.uint64, np.float16, np.float32, np.float64)
    allowed = [np.ndarray, np.dtype, *(type(np.dtype(t)) for t in numeric)]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        allowed.append(fn)
        # numpy 1.x wrote these as numpy.core.multiarray.* (e.g. checkpoints made elsewhere).
        allowed.append((fn, f"numpy.core.multiarray.{fn.__name__}"))
    return allowed


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6: a zip archive
# The legacy (pre-1.6) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_REFUSED = re.compile(r"Unsupported global: GLOBAL ([A-Za-z_][\w.]*) was not an allowed global")
_BLOCKED = re.compile(r"unsupported GLOBAL ([A-Za-z_][\w.]*) whose module \S+ is blocked")
_WO_DETAIL = re.compile(r"WeightsUnpickler error: *(.*)", re.S)
_CORRUPT_TYPES = (pickle.UnpicklingError, EOFError, IndexError, KeyError, ValueError, zipfile.BadZipFile,
                  UnicodeDecodeError, OverflowError)


class LoadFailure(NamedTuple):
    """Why ``torch.load(weights_only=True)`` failed, as :func:`classify_load_error` tells it.

    ``kind`` is one of
      'refused' -- a readable torch file holding Python objects that a safe load refuses;
                   ``detail`` names the first one ('argparse.Namespace').  Only such a file may be
                   worth a trusted (``weights_only=False``) load, and only of a file the user trusts.
      'blocked' -- a torch file that references a blocked module ('os.system'): never load it.
      'corrupt' -- not a torch checkpoint, truncated or damaged; ``detail`` says how.
      'other'   -- a readable file that fails for another reason (e.g. a CUDA tensor without CUDA);
                   ``detail`` is torch's first line.
    """

    kind: str
    detail: str


def _header(path: Optional[Path]) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read(len(LEGACY_MAGIC))
    except (OSError, TypeError):
        return None


def _torch_detail(e: BaseException) -> str:
    """Torch's own reason, without its boilerplate (and its advice to load unsafely)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    m = _WO_DETAIL.search(text)
    if m:
        text = m.group(1)
    elif text.startswith("Weights only load failed."):
        text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    text = text.strip()
    line = text.splitlines()[0].strip() if text else ""
    line = re.sub(r"\. This is an internal miniz error.*", "", line)
    if not line or "weights_only" in line:
        line = type(e).__name__
    return line


def classify_load_error(e: BaseException, path: Optional[PathLike] = None) -> LoadFailure:
    """Classify an exception of ``torch.load(path, weights_only=True)`` (see :class:`LoadFailure`).

    With ``path``, the file's first bytes are checked too: torch reports a text file that starts
    with ``c`` as an "Unsupported global", but only a zip archive or a legacy torch file can hold
    a refused object.
    """
    path = Path(path) if path is not None else None
    head = _header(path) if path is not None else None
    is_zip = head is not None and head.startswith(ZIP_MAGIC)
    is_legacy = head is not None and head.startswith(LEGACY_MAGIC)
    if head is not None and not (is_zip or is_legacy):
        return LoadFailure("corrupt", f"not a torch checkpoint: it starts with {head[:8]!r}")
    if is_zip and not zipfile.is_zipfile(path):
        return LoadFailure("corrupt", "a zip archive cut short or damaged: no central directory at its end")
    text = str(e)
    if isinstance(e, pickle.UnpicklingError):
        m = _REFUSED.search(text)
        if m:
            return LoadFailure("refused", m.group(1))
        m = _BLOCKED.search(text)
        if m:
            return LoadFailure("blocked", m.group(1))
        if "must be imported to load" in text:  # NJTs / DTensors: torch names the module to import
            return LoadFailure("other", _torch_detail(e))
    if isinstance(e, _CORRUPT_TYPES) or "PytorchStreamReader" in text or "corrupt" in text:
        return LoadFailure("corrupt", _torch_detail(e))
    return LoadFailure("other", _torch_detail(e))


def load_checkpoint(path: PathLike, map_location: Any = "cpu", *, trusted_hint: Optional[str] = None,
                    kind: Optional[Tuple[str, str]] = None) -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint` (or any weights-only checkpoint).

    Raises :class:`CheckpointError` with a one-line reason for a missing, empty, corrupt or
    truncated file (:class:`CorruptCheckpointError`), and :class:`CheckpointObjectsError` for a
    readable file holding Python objects that a safe load refuses; ``trusted_hint`` (e.g.
    "convert it with tools/convert_official.py") is appended to that message only, where the
    caller has a trusted way to load such a file.  The error's ``__cause__`` is torch's exception.
    ``kind`` = (the ``"kind"`` a checkpoint records, what such checkpoints are called) refuses any other
    checkpoint, e.g. ``("cydas_cell_search", "cell-search")``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, expected a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises a zoo of types for corrupt files
        kind, detail = classify_load_error(e, path)
        if kind == "refused":
            advice = trusted_hint or "cydas_chain loads only checkpoints of tensors and plain values"
            raise CheckpointObjectsError(
                f"cannot read checkpoint {path}: it holds Python objects that a safe load refuses "
                f"({detail}); {advice}", objects=detail) from e
        if kind == "blocked":
            raise CheckpointObjectsError(
                f"cannot read checkpoint {path}: it refers to {detail}, which no checkpoint needs and a "
                f"safe load refuses; do not load this file", objects=detail) from e
        if kind == "corrupt":
            raise CorruptCheckpointError(
                f"cannot read checkpoint {path}: it is corrupt or truncated ({detail}); copy it again "
                f"or use another checkpoint") from e
        raise CheckpointError(f"cannot read checkpoint {path}: {detail}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    if kind is not None and state.get("kind") != kind[0]:
        found = state.get("kind") or state.get("space") or "an unknown kind"
        raise CheckpointError(f"checkpoint {path} is not a {kind[1]} checkpoint ({found})")
    return state


def extract_state_dict(state: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The model weights of a checkpoint: a bare state dict or one under a conventional key."""
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if key in state and isinstance(state[key], Mapping):
            return state[key]
    return state


def load_weights(module: nn.Module, state_dict: Mapping[str, Any], source: PathLike,
                 what: str = "checkpoint", strict: bool = True) -> None:
    """Load ``state_dict`` (read from ``source``) into ``module``; one line when they do not fit.

    The one strict weights loader: every load of weights into a network goes through it (or through
    :func:`load_model_weights`, which reads the file first).  ``what`` names the weights in the
    message ("checkpoint", "EMA weights of", ...).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k, v in state_dict.items()
                  if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        k = mismatched[0]
        raise CheckpointError(
            f"{what} {source} does not match the model: {len(mismatched)} tensors differ in shape, "
            f"e.g. {k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}")
    if strict and (missing or unexpected):
        example = (missing or unexpected)[0]
        raise CheckpointError(
            f"{what} {source} does not match the model: {len(missing)} missing and "
            f"{len(unexpected)} unexpected keys, e.g. {example!r}")
    try:
        module.load_state_dict(state_dict, strict=strict)
    except RuntimeError as e:  # anything the checks above do not see
        raise CheckpointError(f"{what} {source} does not match the model: {first_line(e)}") from None


def load_model_weights(model: nn.Module, path: PathLike, strict: bool = True) -> None:
    """Load model weights from ``path`` and fail with one line if they do not fit ``model``."""
    load_weights(model, extract_state_dict(load_checkpoint(path)), path, strict=strict)


def check_pretrained_file(variant: str, kwargs: Mapping[str, Any], advice: str) -> None:
    """timm's ``pretrained=True`` for our models: nothing is downloaded, so a local file must be given
    (``pretrained_cfg_overlay=dict(file=...)``) and be readable by the strict loader."""
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    cfg = kwargs.get("pretrained_cfg")
    file = overlay.get("file") or (cfg.get("file") if isinstance(cfg, dict) else getattr(cfg, "file", None))
    if not file:
        raise CheckpointError(f"{variant}: {advice}")
    load_checkpoint(file)  # one-line error for a missing, empty or corrupt file
