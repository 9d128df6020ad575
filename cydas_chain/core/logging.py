"""Readable logs, metrics (CSV always, TensorBoard when installed) and progress bars.

Only the main process writes files and draws progress bars; other ranks are silent.
"""
from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Iterable, Mapping, Optional

from tqdm.auto import tqdm

from .distributed import is_main_process

_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def get_logger(name: str = "cydas", out_dir: Optional[Path] = None, filename: str = "log.txt") -> logging.Logger:
    """A logger printing to stderr (main process only) and, given ``out_dir``, to a file there."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter(_FORMAT, datefmt="%H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logger.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        logger.addHandler(h)
    if out_dir is not None and is_main_process():
        path = str(Path(out_dir) / filename)
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == path for h in logger.handlers):
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(path)
            fh.setFormatter(fmt)
            logger.addHandler(fh)
    return logger


def progress(iterable: Optional[Iterable] = None, **kwargs) -> tqdm:
    """A tqdm progress bar, disabled on non-main ranks and when ``disable=True``."""
    kwargs["disable"] = kwargs.get("disable", False) or not is_main_process()
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", True)
    return tqdm(iterable, **kwargs)


class MetricWriter:
    """Append scalar metrics to ``metrics.csv`` and, if available, TensorBoard event files.

    The CSV file is opened in append mode, so a resumed run keeps the rows already written.
    Rows may carry different keys; the header is the union seen first, new keys are appended as
    extra columns in a rewritten header only when the file is still empty.
    """

    def __init__(self, out_dir: Path, filename: str = "metrics.csv", tensorboard: bool = True):
        self.enabled = is_main_process()
        self.path = Path(out_dir) / filename
        self._fields: Optional[list] = None
        self._tb = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                self._fields = next(csv.reader(f), None)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **metrics}
        if self._fields is None:
            self._fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run re-does those steps)."""
        if not self.enabled or not self.path.exists() or self._fields is None:
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if int(float(r["step"])) <= step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields)
            w.writeheader()
            w.writerows(kept)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
