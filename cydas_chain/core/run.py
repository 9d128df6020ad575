"""The run skeleton of every search and training tool: run folder, ``--resume``, config check, file names.

A run folder holds config.json, checkpoints/last.pth (what --resume continues), checkpoints/best.pth
(where a tool keeps a best), log.txt, metrics.csv, tb/ and the tool's results; docs/architecture.md
gives the rules.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .errors import CheckpointError, ConfigError, CydasError, first_line

LAST, BEST, CONFIG = Path("checkpoints/last.pth"), Path("checkpoints/best.pth"), "config.json"
LEGACY_LAST = ("last.pth", "checkpoint.pt")  # train_cls / search_cell and train_cell before issue 13
# never compared on resume: where and how a run computes, not what it computes
RUN_KEYS = frozenset({"out", "resume", "workers", "device", "args", "amp", "channels_last", "compile",
                      "log_interval", "accum_steps", "device_batch"})


def add_run_arguments(parser: argparse.ArgumentParser, out: str, workers_help: str = "",
                      accumulation: bool = False, log_interval: int = 50) -> argparse._ArgumentGroup:
    """The group "run" of every tool: --out, --resume [CKPT], --seed, --workers, --device, the speed flags
    (--amp, --channels-last, --compile: :mod:`.speed`), --log-interval and, with ``accumulation``,
    --accum-steps / --device-batch.  Returns the group for a tool's own options."""
    from .speed import add_speed_arguments

    g = parser.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path(out), help="run folder (default: %(default)s)")
    g.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue the run in OUT from OUT/checkpoints/last.pth, or from CKPT; settings not "
                        "given take the run's (OUT/config.json), given ones must equal them")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--workers", type=int, default=None,
                   help="data-loading processes per training process (default: " +
                        (workers_help or "on a GPU the cores of this process's share but one, up to 12; "
                                         "on the CPU 1, 0 with a single core") + ")")
    g.add_argument("--device", default="auto",
                   help="auto (this process's GPU if any, else CPU), cpu, cuda, cuda:1 (default: auto)")
    add_speed_arguments(g)
    g.add_argument("--log-interval", type=int, default=log_interval,
                   help="steps between two progress and TensorBoard points (default: %(default)s)")
    if accumulation:
        g.add_argument("--accum-steps", type=int, default=None,
                       help="gradient accumulation: each process runs --batch-size / (processes x K) images a "
                            "forward and updates after K of them; same result as one step of the total batch "
                            "(up to batch statistics) (default: 1)")
        g.add_argument("--device-batch", type=int, default=None,
                       help="images a process runs a forward; sets --accum-steps = --batch-size / (processes x "
                            "DEVICE_BATCH), for a total batch that does not fit the device")
    return g


def given_options(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> set:
    """The dests of the options ``argv`` gives (not left at their defaults)."""
    saved = [(a, a.default, a.required) for a in parser._actions]
    try:
        for a, _, _ in saved:
            a.default, a.required = argparse.SUPPRESS, False
        return set(vars(parser.parse_known_args(argv)[0]))
    finally:
        for a, default, required in saved:
            a.default, a.required = default, required


def parse_run_args(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None, fresh: Iterable[str] = (),
                   no_run: Optional[str] = None) -> Tuple[argparse.Namespace, Optional["RunDir"]]:
    """Parse ``argv`` and open the run folder (:meth:`RunDir.open`).  On ``--resume`` an option not
    given takes the value saved in the run's config.json (except ``fresh`` ones).  When the option
    ``no_run`` (a dest, e.g. ``eval_only``: an evaluation reads a checkpoint, it is no run) is set,
    no folder is opened: (args, None)."""
    args = parser.parse_args(argv)
    if no_run is not None and getattr(args, no_run):
        return args, None
    run = RunDir.open(args.out, args.resume)
    if run.resume is not None:
        given = given_options(parser, argv) | {"out", "resume", *fresh}
        types = {a.dest: a.type for a in parser._actions}
        for k, v in run.saved_config().get("args", {}).items():
            if k not in given and hasattr(args, k):
                setattr(args, k, types[k](v) if isinstance(v, str) and callable(types.get(k)) else v)
    run.args = {k: v for k, v in vars(args).items() if k not in fresh}
    return args, run


def _plain(obj) -> Any:
    """``obj`` as JSON gives it back (Paths as strings, tuples as lists)."""
    return json.loads(json.dumps(obj, default=str))


def _flat(d: Mapping, prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


def config_diff(saved: Mapping, now: Mapping, may_change: Iterable[str] = ()) -> List[str]:
    """``key=saved (now new)`` for every setting of ``now`` that differs from ``saved``; nested dicts
    compare key by key (``recipe.lr``).  Skipped: :data:`RUN_KEYS`, ``may_change`` (and their
    sub-keys), and keys the saved config lacks (an older run did not record them)."""
    skip = RUN_KEYS | set(may_change)
    old, new = _flat(_plain(saved)), _flat(_plain(now))
    return [f"{k}={old[k]!r} (now {v!r})" for k, v in new.items()
            if k in old and old[k] != v and not any(k == s or k.startswith(s + ".") for s in skip)]


def load_states(targets: Mapping[str, Any], state: Mapping, source) -> None:
    """``obj.load_state_dict(state[key])`` for each ``key: obj``; one error line when they do not fit."""
    try:
        for key, obj in targets.items():
            obj.load_state_dict(state[key])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]  # torch: "Error(s) in loading ...:" first
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else first_line(e)
        raise CheckpointError(f"{source} does not match this run: {detail}") from None


@dataclass
class RunDir:
    """The run folder of one invocation; ``resume`` is the checkpoint it continues, or None."""

    out: Path
    resume: Optional[Path] = None
    args: Dict[str, Any] = field(default_factory=dict)  # the command line's settings, saved in config.json

    def __post_init__(self):
        self.out = Path(self.out)
        self.last, self.best, self.config_path = self.out / LAST, self.out / BEST, self.out / CONFIG

    @classmethod
    def open(cls, out, resume: Optional[str] = None) -> "RunDir":
        """Refuse a folder holding a run unless resumed; resolve ``--resume`` ("": the run's last checkpoint,
        also of the layout before issue 13)."""
        run = cls(out)
        found = next((p for p in (run.last, *(run.out / n for n in LEGACY_LAST)) if p.exists()), None)
        if resume is None and found is not None:
            raise CydasError(f"{run.out} already holds a run ({found}): continue it with --resume, "
                             f"or choose another --out")
        if resume == "" and found is None:
            raise CydasError(f"nothing to resume: no checkpoint in {run.out} (looked for {run.last})")
        if resume:
            found = Path(resume)
            if not found.is_file():
                raise CydasError(f"nothing to resume: checkpoint not found: {found}")
        run.resume = None if resume is None else found
        return run

    def saved_config(self) -> dict:
        """The resumed run's config.json (OUT's, else the one beside or above ``resume``), or {}."""
        for folder in [self.out] + ([self.resume.parent, self.resume.parent.parent] if self.resume else []):
            try:
                return json.loads((folder / CONFIG).read_text())
            except (OSError, ValueError):
                continue
        return {}

    def start(self, config: Mapping, saved: Optional[Mapping] = None, may_change: Iterable[str] = (),
              source=None) -> dict:
        """Refuse a ``config`` that differs from the resumed run's (``saved``, e.g. the checkpoint's; else
        config.json), then write it with the command line's settings to OUT/config.json (main process).
        Returns ``config`` as plain JSON values (for a checkpoint that loads with weights_only)."""
        from .checkpoint import write_json
        from .distributed import is_main_process

        if saved is None and self.resume is not None:
            saved = self.saved_config()
        diff = config_diff(saved or {}, config, may_change)
        if diff:
            raise ConfigError(f"{source or self.resume} was made with other settings: {', '.join(diff)}; resume "
                              f"with the settings of that run, or start a new run in another --out")
        config = _plain(config)
        if is_main_process():
            write_json(self.config_path, {**config, "args": _plain(self.args)})
        return config
