"""Readable logs, metrics (CSV always, TensorBoard when installed) and progress bars.

Only the main process writes files and draws progress bars; other ranks are silent.  Off a
terminal a progress bar is a periodic plain line (see :func:`progress`).
"""
from __future__ import annotations

import csv
import logging
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Mapping, Optional

from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

from .distributed import is_main_process
from .errors import ConfigError

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


PROGRESS_INTERVAL_ENV = "CYDAS_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL = 30.0  # seconds between two progress lines when stderr is not a terminal


def progress_interval() -> float:
    """Seconds between progress lines off a terminal: ``$CYDAS_PROGRESS_INTERVAL`` or 30."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or math.isinf(value):
        raise ConfigError(f"{PROGRESS_INTERVAL_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def progress(iterable: Optional[Iterable] = None, **kwargs) -> tqdm:
    """A tqdm progress bar, disabled on non-main ranks and when ``disable=True``.

    On a terminal (or in a notebook) it is tqdm's bar.  Written to a log file, a pipe or CI
    (``file``, default stderr, is not a TTY), it is a :class:`LogProgress`: the same tqdm object,
    which instead of redrawing the bar with carriage returns writes one plain line every
    ``$CYDAS_PROGRESS_INTERVAL`` seconds (default 30) and, unless ``leave=False``, one at close.
    """
    kwargs["disable"] = kwargs.get("disable", False) or not is_main_process()
    kwargs.setdefault("leave", True)
    out = kwargs.get("file") or sys.stderr
    if kwargs["disable"] or _is_tty(out) or _NOTEBOOK:
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kwargs)
    return LogProgress(iterable, **kwargs)


# tqdm.auto picked its notebook widget (stderr is no TTY there, but the widget redraws in place)
_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)


def _is_tty(f) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class _Discard:
    """Where tqdm's own carriage-return drawing goes in a :class:`LogProgress`."""

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


class LogProgress(std_tqdm):
    """tqdm's interface and counting, drawn as a periodic plain line for logs.

    ``update``, ``set_postfix``, iteration, ``n``, ``total``, ``close``, ``with`` ... are tqdm's.
    A line is written when ``$CYDAS_PROGRESS_INTERVAL`` seconds (default 30) have passed since the
    previous one (or since the start), and at ``close`` unless ``leave=False``; never a carriage
    return.  tqdm's own drawing goes nowhere; the lines go to ``file`` (default stderr).  A line reads, e.g.::

        search: 120/220 steps (55%) 1.2 s/step, eta 2 min | loss=0.412, acc=86.0
        search: 220/220 steps (100%) 1.2 s/step, took 4 min | loss=0.398, acc=88.1
    """

    def __init__(self, iterable=None, *args, **kwargs):
        self._out = kwargs.pop("file", None) or sys.stderr
        self.interval = progress_interval()
        self._closing = False
        self._last_line: Optional[float] = None  # None until tqdm has set start_t
        # tqdm counts and times; it calls display() at most every `interval` s from update() or
        # iteration, and at every set_postfix(); display() writes only when a line is due.
        kwargs.update(file=_Discard(), mininterval=self.interval, maxinterval=max(self.interval, 10.0),
                      dynamic_ncols=False, ncols=0)
        super().__init__(iterable, *args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "" or not hasattr(self, "start_t"):  # tqdm clearing the bar, or drawing it at start
            return True
        now = self._time()
        if self._last_line is None:
            self._last_line = self.start_t
        if not self._closing and now - self._last_line < self.interval:
            return True
        self._last_line = now
        self._out.write(self.line(final=self._closing) + "\n")
        self._out.flush()
        return True

    def close(self):
        self._closing = True
        super().close()

    def line(self, final: bool = False) -> str:
        """The progress line now: counts, percentage, pace, eta (or time taken, when final), postfix."""
        d = self.format_dict
        n, total, unit = d["n"], d["total"], d["unit"] or "it"
        one = (total or n) == 1
        units = unit if unit == "it" or one else unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")
        text = f"{d['prefix']}: " if d["prefix"] else ""
        text += f"{_num(n)}/{_num(total)} {units}" if total else f"{_num(n)} {units}"
        if total:
            text += f" ({100 * n / total:.0f}%)"
        done, elapsed = n - (d["initial"] or 0), d["elapsed"]
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        if rate:
            text += f" {_pace(rate)} {unit}/s" if rate >= 1 else f" {_pace(1 / rate)} s/{unit}"
        if final:
            text += f", took {_duration(elapsed)}"
        elif rate and total and total > n:
            text += f", eta {_duration((total - n) / rate)}"
        if d["postfix"]:
            text += f" | {d['postfix']}"
        return text


def _pace(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
        self.scalars(step, metrics)

    def scalars(self, step: int, metrics: Mapping[str, float]) -> None:
        """TensorBoard only (points between two rows of metrics.csv, e.g. every --log-interval steps)."""
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


def json_safe(obj):
    """``obj`` with non-finite floats (a score not measured yet, an undefined statistic) as None, so
    that ``json.dumps`` writes standard JSON (``null``) instead of ``NaN``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
