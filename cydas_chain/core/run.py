"""One run skeleton for every search and training tool: run folder, ``--resume``, config check, names.

A run folder ``OUT`` holds, whatever the tool::

    config.json            the run's settings: the package's config, and the command line's under "args"
    checkpoints/last.pth   what --resume continues from (written atomically)
    checkpoints/best.pth   the best weights, where a tool keeps a best (the training tools)
    log.txt  metrics.csv  tb/
    ... and the tool's results (arch.json, genotype.json, ...)

The rules, the same in every tool:

* A new run refuses a folder that already holds a run's checkpoint (one error line that names the
  folder and ``--resume``).
* ``--resume`` alone continues ``OUT/checkpoints/last.pth`` (a checkpoint of the layout before
  issue 13, ``OUT/last.pth`` or ``OUT/checkpoint.pt``, is found too); ``--resume CKPT`` continues
  that file; a missing one is one error line saying where it looked.
* On ``--resume`` a setting not given on the command line takes the run's saved value
  (:func:`parse_run_args`); the resolved config is then compared with the one the checkpoint holds,
  and any difference in a setting that changes the result is one error listing the keys.  Each tool
  declares what may change (e.g. the number of data-loading processes).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import ConfigError, CydasError

LAST = Path("checkpoints") / "last.pth"
BEST = Path("checkpoints") / "best.pth"
CONFIG = "config.json"
LOG = "log.txt"
METRICS = "metrics.csv"
TENSORBOARD = "tb"
LEGACY_LAST = ("last.pth", "checkpoint.pt")  # train_cls / search_cell and train_cell before issue 13
# never compared on resume: where the run is, and how it is executed
RUN_KEYS = frozenset({"out", "resume", "workers", "device", "args"})


def add_run_arguments(parser: argparse.ArgumentParser, out: str, workers: int | None, workers_help: str = "",
                      device: bool = True, amp: Optional[str] = None) -> argparse._ArgumentGroup:
    """The group "run" of every tool: --out, --resume [CKPT], --seed, --workers, --device, --amp.

    ``amp``: None for a tool without mixed precision, else the help text of its default.
    Returns the group, so that a tool can add its own run options (e.g. --save-interval).
    """
    g = parser.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path(out), help="run folder (default: %(default)s)")
    g.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue the run in OUT from OUT/checkpoints/last.pth, or from CKPT; settings not "
                        "given take the run's (OUT/config.json), given ones must equal them")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--workers", type=int, default=workers,
                   help=f"data-loading processes per process ({workers_help or f'default: {workers}'})")
    if device:
        g.add_argument("--device", default="auto",
                       help="auto (this process's GPU if any, else CPU), cpu, cuda, cuda:1 (default: auto)")
    if amp is not None:
        g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help=f"float16 mixed precision, CUDA only ({amp})")
    return g


def given_options(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> set:
    """The dests of the options given in ``argv`` (not left at their defaults)."""
    saved = [(a, a.default, a.required) for a in parser._actions]
    try:
        for a, _, _ in saved:
            a.default, a.required = argparse.SUPPRESS, False
        ns, _ = parser.parse_known_args(argv)
    finally:
        for a, default, required in saved:
            a.default, a.required = default, required
    return set(vars(ns))


def parse_run_args(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None,
                   fresh: Iterable[str] = ()) -> Tuple[argparse.Namespace, "RunDir"]:
    """Parse ``argv`` and open the run folder (:meth:`RunDir.open`).

    On ``--resume`` every option not given takes the value saved in the run's ``config.json``
    (except ``fresh`` ones, e.g. --eval-only), so ``--resume`` alone continues the run as it was.
    """
    args = parser.parse_args(argv)
    run = RunDir.open(args.out, args.resume)
    if run.resume is not None:
        saved = run.saved_config().get("args", {})
        given = given_options(parser, argv) | {"out", "resume", *fresh}
        types = {a.dest: a.type for a in parser._actions}
        for k, v in saved.items():
            if k not in given and hasattr(args, k):
                if isinstance(v, str) and callable(types.get(k)):
                    v = types[k](v)
                setattr(args, k, v)
    run.args = {k: v for k, v in vars(args).items() if k not in fresh}
    return args, run


def _plain(obj) -> Any:
    """``obj`` as JSON gives it back (Paths as strings, tuples as lists)."""
    return json.loads(json.dumps(obj, default=str))


def _flat(d: Mapping, prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(saved: Mapping, now: Mapping, may_change: Iterable[str] = ()) -> List[str]:
    """``key=saved (now new)`` for every setting of ``now`` that differs from ``saved``.

    Nested dicts compare key by key (``recipe.lr``); keys of :data:`RUN_KEYS` or ``may_change`` (or
    their parents) and keys the saved config lacks (an older run did not record them) are skipped.
    """
    skip = RUN_KEYS | set(may_change)
    old, new = _flat(_plain(saved)), _flat(_plain(now))
    return [f"{k}={old[k]!r} (now {v!r})" for k, v in new.items()
            if k in old and old[k] != v and not any(k == s or k.startswith(s + ".") for s in skip)]


@dataclass
class RunDir:
    """The run folder of one invocation; ``resume`` is the checkpoint it continues, or None."""

    out: Path
    resume: Optional[Path] = None
    args: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)

    @property
    def last(self) -> Path:
        return self.out / LAST

    @property
    def best(self) -> Path:
        return self.out / BEST

    @property
    def config_path(self) -> Path:
        return self.out / CONFIG

    def existing_checkpoint(self) -> Optional[Path]:
        """The run's last checkpoint, in the current layout or the one before it, or None."""
        for p in (self.last, *(self.out / name for name in LEGACY_LAST)):
            if p.exists():
                return p
        return None

    @classmethod
    def open(cls, out, resume: Optional[str] = None) -> "RunDir":
        """Refuse a folder holding a run unless resumed; resolve ``--resume`` ("" = the run's last)."""
        run = cls(out)
        found = run.existing_checkpoint()
        if resume is None:
            if found is not None:
                raise CydasError(f"{run.out} already holds a run ({found}): continue it with --resume, "
                                 f"or choose another --out")
        elif resume == "":
            if found is None:
                raise CydasError(f"nothing to resume: no checkpoint in {run.out} (looked for {run.last})")
            run.resume = found
        else:
            run.resume = Path(resume)
            if not run.resume.is_file():
                raise CydasError(f"nothing to resume: checkpoint not found: {run.resume}")
        return run

    def saved_config(self) -> dict:
        """The resumed run's config.json (OUT's, else the one beside or above ``resume``), or {}."""
        places = [self.out] + ([self.resume.parent, self.resume.parent.parent] if self.resume is not None else [])
        for folder in places:
            try:
                return json.loads((folder / CONFIG).read_text())
            except (OSError, ValueError):
                continue
        return {}

    def start(self, config: Mapping, saved: Optional[Mapping] = None, may_change: Iterable[str] = (),
              source=None) -> dict:
        """Check ``config`` against the resumed run's (``saved``, e.g. the checkpoint's; else config.json),
        then write it, with the command line's settings, to OUT/config.json (main process only).
        Returns ``config`` as plain JSON values (for a checkpoint that loads with weights_only)."""
        from .checkpoint import atomic_write
        from .distributed import is_main_process

        if saved is None and self.resume is not None:
            saved = self.saved_config()
        diff = config_diff(saved or {}, config, may_change)
        if diff:
            raise ConfigError(f"{source or self.resume} was made with other settings: {', '.join(diff)}; resume "
                              f"with the settings of that run, or start a new run in another --out")
        config = _plain(config)
        if is_main_process():
            text = json.dumps({**config, "args": _plain(self.args)}, indent=1)
            atomic_write(self.config_path, lambda f: f.write(text.encode()))
        return config
