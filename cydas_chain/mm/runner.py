"""What ``tools/train.py`` and ``tools/test.py`` do: an mm config through mmengine's Runner.

The config's ``default_scope`` (``mmdet`` or ``mmseg``) picks the library.  Before anything is
built, the paths the config names (data roots, annotation files, image folders, pretrained backbone
weights, the checkpoint to test) are checked, so a wrong path is one line, not a traceback from a
dataloader worker half an hour later.
"""
from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ..core.checkpoint import load_checkpoint
from ..core.errors import CheckpointError, DataError, first_line
from .errors import ConfigError

SCOPES = ("mmdet", "mmseg")


def parse_tool_args(parser: argparse.ArgumentParser, argv, data_root_help: str, cfg_example: str):
    """Add the options tools/train.py and tools/test.py share (--data-root, --cfg-options, --launcher and
    the hidden --local_rank of torch.distributed.launch), parse ``argv``, pass --local_rank on as LOCAL_RANK."""
    from mmengine.config import DictAction

    parser.add_argument("--data-root", help=data_root_help)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help=f"override config entries, e.g. {cfg_example}")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher: 'pytorch' under torchrun (default: none)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def load_config(path, cfg_options: Optional[dict] = None, data_root: Optional[str] = None):
    """The mmengine ``Config`` of ``path`` with ``--cfg-options`` and ``--data-root`` applied."""
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config not found: {path}")
    try:
        cfg = Config.fromfile(str(path))
    except (SyntaxError, KeyError, NameError, ImportError) as e:
        raise ConfigError(f"cannot read config {path}: {first_line(e)}") from e
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    scope_of(cfg, path)
    return cfg


def scope_of(cfg, path="config") -> str:
    scope = cfg.get("default_scope")
    if scope not in SCOPES:
        raise ConfigError(f"{path}: default_scope is {scope!r}; these tools run mmdet or mmseg configs")
    return scope


def register_scope(scope: str) -> None:
    """Register the library's modules and make it the default scope (and import our backbone)."""
    if scope == "mmdet":
        from mmdet.utils import register_all_modules

        from . import mmdet_backbone  # noqa: F401
    else:
        from mmseg.utils import register_all_modules

        from . import mmseg_backbone  # noqa: F401
    register_all_modules(init_default_scope=True)


# ---- paths named by the config ----------------------------------------------------------------
def _leaf_datasets(dataset) -> Iterator[dict]:
    """The datasets holding files, through wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset, dict):
        return
    if "datasets" in dataset:
        for d in dataset["datasets"]:
            yield from _leaf_datasets(d)
    elif "dataset" in dataset:
        yield from _leaf_datasets(dataset["dataset"])
    else:
        yield dataset


def _split_datasets(cfg, splits: Sequence[str]) -> Iterator[tuple]:
    for split in splits:
        loader = cfg.get(f"{split}_dataloader")
        if loader:
            for ds in _leaf_datasets(loader.get("dataset")):
                yield split, ds


def _evaluators(cfg, splits: Sequence[str]) -> Iterator[dict]:
    for split in splits:
        ev = cfg.get(f"{split}_evaluator")
        for e in (ev if isinstance(ev, (list, tuple)) else [ev]):
            if isinstance(e, dict):
                yield e


def set_data_root(cfg, data_root: str) -> None:
    """Point every dataset of the config, and the annotation files of its evaluators, at ``data_root``."""
    old_roots = set()
    for _, ds in _split_datasets(cfg, ("train", "val", "test")):
        if ds.get("data_root"):
            old_roots.add(str(ds["data_root"]))
        ds["data_root"] = data_root
    for ev in _evaluators(cfg, ("val", "test")):
        ann = ev.get("ann_file")
        for old in old_roots:
            if isinstance(ann, str) and ann.startswith(old):
                ev["ann_file"] = os.path.join(data_root, ann[len(old):].lstrip("/"))


def check_data(cfg, splits: Sequence[str]) -> None:
    """One-line :class:`DataError` for a missing data root, annotation file or image folder."""
    for split, ds in _split_datasets(cfg, splits):
        root = ds.get("data_root") or ""
        hint = f"(--data-root DIR, or --cfg-options {split}_dataloader.dataset.data_root=DIR)"
        if root and not Path(root).is_dir():
            raise DataError(f"{split} data root not found: {root} {hint}")
        ann = ds.get("ann_file")
        if ann and not Path(root, ann).is_file():
            raise DataError(f"{split} annotation file not found: {Path(root, ann)}")
        for key, prefix in (ds.get("data_prefix") or {}).items():
            if prefix and not Path(root, prefix).is_dir():
                raise DataError(f"{split} folder {key}={prefix!r} not found under the data root {root or '.'}")
    for ev in _evaluators(cfg, splits):
        ann = ev.get("ann_file")
        if ann and not Path(ann).is_file():
            raise DataError(f"annotation file of the {ev.get('type')} evaluator not found: {ann}")


def check_pretrained(cfg) -> None:
    """The backbone's pretrained weights must exist before hours of training start from them."""
    init = (cfg.model.get("backbone") or {}).get("init_cfg")
    if isinstance(init, dict) and init.get("type") == "Pretrained":
        ckpt = init.get("checkpoint")
        if ckpt and "://" not in str(ckpt) and not Path(ckpt).is_file():
            raise CheckpointError(
                f"pretrained backbone weights not found: {ckpt} (train them with tools/train_cls.py, "
                f"see docs/mm.md; or start from random weights with --cfg-options model.backbone.init_cfg=None)")


# ---- the runner -------------------------------------------------------------------------------
def _is_config_mistake(e: BaseException) -> bool:
    """An error of building a registered class from a config: an unknown type or keyword."""
    msg = first_line(e)
    if isinstance(e, KeyError):
        return " registry" in msg and "is not in the" in msg
    if isinstance(e, TypeError):
        return "unexpected keyword argument" in msg or "required positional argument" in msg
    return False


@contextmanager
def _config_mistakes(config):
    """Turn registry build errors (unknown type, wrong keyword) into a one-line ConfigError."""
    try:
        yield
    except (KeyError, TypeError) as e:
        if _is_config_mistake(e):
            raise ConfigError(f"{config}: {first_line(e)}") from e
        raise


def build_runner(cfg, config_path):
    from mmengine.runner import Runner

    register_scope(scope_of(cfg))
    with _config_mistakes(config_path):
        if "runner_type" in cfg:
            from mmengine.registry import RUNNERS

            return RUNNERS.build(cfg)
        return Runner.from_cfg(cfg)


def _common(cfg, config, work_dir, launcher):
    import torch

    if not torch.cuda.is_available():
        from ..core.gpu import cuda_unavailable_reason, nvidia_smi_gpus

        if launcher != "none":
            raise ConfigError(f"--launcher {launcher} needs CUDA GPUs (mmengine 0.10.7 binds each process to a "
                              f"GPU), and CUDA is unavailable: {cuda_unavailable_reason()}; on a CPU run without "
                              f"--launcher")
        if nvidia_smi_gpus():  # mmengine would train on the CPU in silence, next to GPUs it cannot use
            raise ConfigError(f"this machine has GPUs (nvidia-smi lists them) but torch cannot use them: "
                              f"{cuda_unavailable_reason()}; fix that (tools/env_check.py says more), or hide the GPUs "
                              f"(CUDA_VISIBLE_DEVICES=) to train on the CPU on purpose")
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(config).stem)


def enable_auto_scale_lr(cfg, config="config") -> None:
    """``--auto-scale-lr`` as in mmdet's tools/train.py: mmengine's Runner then multiplies the learning rate by
    (processes x ``train_dataloader.batch_size``) / ``auto_scale_lr.base_batch_size`` (``Runner.scale_lr``)."""
    asl = cfg.get("auto_scale_lr")
    base = asl.get("base_batch_size") if isinstance(asl, dict) else None
    if isinstance(base, bool) or not isinstance(base, int) or base < 1:
        raise ConfigError(f"{config}: --auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in the config, "
                          f"N the total batch its learning rate is set for (found {asl!r})")
    cfg.auto_scale_lr = {**asl, "enable": True}


def train(config, work_dir=None, resume: Optional[str] = None, amp: bool = False,
          cfg_options: Optional[dict] = None, data_root: Optional[str] = None, launcher: str = "none",
          auto_scale_lr: bool = False):
    """Train as mmdet/mmseg's ``tools/train.py``; ``resume`` is ``'auto'`` (the work dir's latest) or a path;
    ``auto_scale_lr`` scales the learning rate to the run's total batch (:func:`enable_auto_scale_lr`)."""
    cfg = load_config(config, cfg_options, data_root)
    _common(cfg, config, work_dir, launcher)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg, config)
    if amp:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper)")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        load_checkpoint(resume)  # one line for a missing or unreadable file
        cfg.resume, cfg.load_from = True, str(resume)
    elif cfg.get("load_from"):
        load_checkpoint(cfg.load_from)
    check_data(cfg, ("train", "val") if cfg.get("val_cfg") else ("train",))
    if not (resume or cfg.get("load_from")):
        check_pretrained(cfg)
    runner = build_runner(cfg, config)
    with _config_mistakes(config):
        runner.train()
    return runner


def test(config, checkpoint, work_dir=None, show_dir: Optional[str] = None,
         cfg_options: Optional[dict] = None, data_root: Optional[str] = None, launcher: str = "none"):
    """Evaluate ``checkpoint`` on the config's test split; returns the metrics dict."""
    cfg = load_config(config, cfg_options, data_root)
    _common(cfg, config, work_dir, launcher)
    load_checkpoint(checkpoint)  # one line for a missing, corrupt or not weights-only-loadable file
    cfg.load_from = str(checkpoint)
    if show_dir:
        hook = cfg.default_hooks.get("visualization")
        if hook is None:
            raise ConfigError(f"{config}: --show-dir needs a 'visualization' hook in default_hooks")
        hook["draw"] = True
        if scope_of(cfg) == "mmdet":
            hook["test_out_dir"] = str(show_dir)
        else:
            hook["interval"] = 1
            cfg.visualizer["save_dir"] = str(show_dir)
    check_data(cfg, ("test",))
    runner = build_runner(cfg, config)
    with _config_mistakes(config):
        return runner.test()
