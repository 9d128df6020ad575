"""Loading mmengine's checkpoints with ``torch.load(weights_only=True)``, narrowly.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``; mmengine 0.10.7 calls it without
arguments, so ``--resume``, ``load_from``, ``init_detector(cfg, ckpt)`` and ``tools/test.py`` fail on
the checkpoints mmengine itself writes.  Besides tensors and plain values these hold (found by
loading checkpoints written by the Runner, see ``tests/test_mm_detection.py``):

* numpy arrays and scalars (the message hub's logged values): ``ndarray``, ``dtype`` and the numeric
  dtype classes, and numpy's ``_reconstruct`` / ``scalar`` rebuild functions;
* mmengine's ``HistoryBuffer`` (the message hub's scalar logs), whose pickled state names its
  statistics functions as ``getattr(HistoryBuffer, 'mean')`` and so on.

Exactly these are allowlisted with ``torch.serialization.add_safe_globals``.  ``getattr`` itself is
NOT allowed: the name ``builtins.getattr`` is bound to :func:`history_buffer_statistic`, which only
returns the statistics methods of ``HistoryBuffer`` and refuses anything else.  Every other load
stays weights-only, and ``torch.load`` is not patched.
"""
from __future__ import annotations

import pickle

import torch
from mmengine.logging import HistoryBuffer

from ..core.checkpoint import numpy_safe_globals

__all__ = ["MMENGINE_SAFE_GLOBALS", "history_buffer_statistic", "allow_mmengine_checkpoints"]

_HISTORY_STATISTICS = ("min", "max", "current", "mean")


def history_buffer_statistic(owner, name: str):
    """``getattr`` as mmengine's pickled ``HistoryBuffer`` state uses it, and only that."""
    if owner is HistoryBuffer and isinstance(name, str) and (
            name in _HISTORY_STATISTICS or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"weights-only load: getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r}) is not "
        f"allowed (only HistoryBuffer statistics methods are)")


MMENGINE_SAFE_GLOBALS = [*numpy_safe_globals(), HistoryBuffer, (history_buffer_statistic, "builtins.getattr")]


def allow_mmengine_checkpoints() -> None:
    """Let weights-only ``torch.load`` read mmengine checkpoints (idempotent)."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)


allow_mmengine_checkpoints()
