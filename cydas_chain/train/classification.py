"""Image classification (re)training and evaluation of a backbone with the CyDAS recipe.

One process per device; ``torchrun`` launches several (DDP).  Every rank trains on its shard of
the training set (``DistributedSampler``) and evaluates its shard of the validation set; the
metrics are summed over ranks.  Rank 0 writes the output folder::

    OUT/config.json             the resolved settings (checked on --resume)   OUT/arch.json  (chain models)
    OUT/checkpoints/last.pth    weights, EMA, optimizer, scheduler, RNG: what --resume continues from
    OUT/checkpoints/best.pth    weights and EMA of the epoch with the best validation top-1
    OUT/metrics.csv             one row per epoch (TensorBoard events in OUT/tb)    OUT/log.txt

The run folder, ``--resume`` and the config check are :mod:`cydas_chain.core.run`'s.

Checkpoints follow timm's convention: model weights under ``state_dict``, EMA weights under
``state_dict_ema``; they hold tensors and plain values only (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch.distributed as dist
from torch import nn

from ..core import distributed as D
from ..core.checkpoint import atomic_write, load_checkpoint, load_model_weights, load_weights, save_checkpoint
from ..core.data import build_transforms, default_data_root, make_shapes_folder, train_val_folders
from ..core.errors import ArchError, CheckpointError, CydasError, DataError
from ..core.flops import count_params
from ..core.logging import MetricWriter, get_logger
from ..core.loop import evaluate, sharded_loaders, train_one_epoch
from ..core.run import RunDir, load_states
from ..core.seed import rng_state, seed_everything, set_rng_state
from ..models.chain_arch import resolve_arch
from .recipe import BASE_BATCH, Recipe, scaled_lr

__all__ = ["TrainConfig", "build_model", "evaluate", "evaluate_checkpoint", "train"]

DEFAULT_MODEL = "cydas_b"

# Defaults that depend on the data: a real ImageNet-style folder, or the small embedded set.
IMAGENET_DEFAULTS = dict(epochs=450, batch_size=1024, img_size=224)  # the paper's 8 GPUs x 128
EMBEDDED_DEFAULTS = dict(epochs=10, batch_size=64, img_size=32)


@dataclass
class TrainConfig:
    model: Optional[str] = None  # a timm model name (default cydas_b)
    arch: Optional[str] = None  # an arch.json of the chain space: model 'cydas_chain'
    data: Optional[str] = None  # ImageNet-style folder; None: the embedded shapes set
    out: str = "runs/train_cls"
    epochs: Optional[int] = None  # None: IMAGENET_DEFAULTS / EMBEDDED_DEFAULTS
    batch_size: Optional[int] = None  # total over all processes
    img_size: Optional[int] = None
    lr: Optional[float] = None  # None: recipe.base_lr scaled to the total batch
    workers: int = 4
    seed: int = 0
    device: Optional[str] = None
    amp: bool = False
    val_fraction: float = 0.1  # held out of train/ when there is no val/
    resume: Optional[str] = None  # a checkpoint path; "" = OUT/checkpoints/last.pth (see core.run)
    checkpoint: Optional[str] = None  # evaluation only
    recipe: Recipe = field(default_factory=Recipe)

    def resolved(self) -> "TrainConfig":
        """A copy with the data-dependent defaults filled in."""
        defaults = EMBEDDED_DEFAULTS if self.data is None else IMAGENET_DEFAULTS
        cfg = TrainConfig(**{**asdict(self), "recipe": self.recipe})
        for k, v in defaults.items():
            if getattr(cfg, k) is None:
                setattr(cfg, k, v)
        if cfg.arch is None and cfg.model is None:
            cfg.model = DEFAULT_MODEL
        for name in ("epochs", "batch_size", "img_size"):
            if getattr(cfg, name) <= 0:
                raise CydasError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
        check_network(cfg.model, cfg.arch)  # a bad name or arch file fails before any data is read
        return cfg

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Model and data
# ------------------------------------------------------------------------------------------------
def check_network(model: Optional[str], arch) -> None:
    """One-line errors for an unknown model name or a malformed / foreign arch file."""
    import timm

    if arch is not None:
        if model not in (None, "cydas_chain"):
            raise CydasError("give either --model or --arch, not both")
        resolve_arch(arch)
    elif not timm.is_model(model or DEFAULT_MODEL):
        raise ArchError(f"unknown model '{model}': give a timm model name (e.g. cydas_a, cydas_b, "
                        f"mobilenetv3_large_100) or --arch path/to/arch.json")


def build_model(model: Optional[str], arch, num_classes: int, recipe: Recipe, **kwargs) -> nn.Module:
    """``timm.create_model('cydas_chain', arch=...)`` for an arch file, else the named timm model."""
    import timm

    check_network(model, arch)
    kwargs = dict(num_classes=num_classes, drop_rate=recipe.drop_rate,
                  drop_path_rate=recipe.drop_path_rate, **kwargs)
    if arch is not None:
        return timm.create_model("cydas_chain", arch=resolve_arch(arch), **kwargs)
    return timm.create_model(model or DEFAULT_MODEL, **kwargs)


def model_identity(model: nn.Module, cfg: TrainConfig) -> dict:
    """What a checkpoint records about its network, to rebuild it for evaluation."""
    arch = getattr(model, "chain_arch", None)
    return {"model": "cydas_chain" if cfg.arch is not None else cfg.model,
            "arch": arch.to_dict() if arch is not None else None}


def data_root(cfg: TrainConfig) -> Path:
    if cfg.data is not None:
        return Path(cfg.data)
    root = default_data_root()
    if D.is_main_process():
        make_shapes_folder(root)
    D.barrier()
    return root


def model_data_config(model: Optional[str], arch) -> dict:
    """Normalisation and crop of the network's timm pretrained config (known before it is built)."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    pretrained_cfg = get_pretrained_cfg("cydas_chain" if arch is not None else model or DEFAULT_MODEL)
    return resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})


def build_data(cfg: TrainConfig, dist_info: D.DistInfo, for_training: bool = True):
    """(train loader, val loader, classes); every rank gets its shard of both sets."""
    data_cfg, r = model_data_config(cfg.model, cfg.arch), cfg.recipe
    train_tf, val_tf = build_transforms(cfg.img_size, "timm", auto_augment=r.auto_augment, crop_scale=r.crop_scale,
                                        interpolation=r.interpolation, mean=data_cfg["mean"], std=data_cfg["std"],
                                        crop_pct=data_cfg["crop_pct"])
    train_set, val_set, classes = train_val_folders(data_root(cfg), train_tf, val_tf,
                                                    val_fraction=cfg.val_fraction, seed=0)
    world = dist_info.world_size
    if cfg.batch_size % world:
        raise CydasError(f"--batch-size {cfg.batch_size} (the total batch) is not divisible by the {world} processes")
    if for_training and len(train_set) < cfg.batch_size:
        raise DataError(f"the training set has {len(train_set)} images: fewer than the batch size "
                        f"{cfg.batch_size} (lower --batch-size)")
    return (*sharded_loaders(train_set, val_set, cfg.batch_size // world, cfg.workers, cfg.seed, dist_info.device),
            classes)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------
def gather_rng_states() -> List[dict]:
    """Every rank's RNG state (rank order): each rank resumes its own augmentation stream."""
    state = rng_state()
    if not D.is_dist():
        return [state]
    states = [None] * D.get_world_size()
    dist.all_gather_object(states, state)
    return states


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, run: Optional[RunDir] = None) -> Dict[str, float]:
    """Train (or continue training) in the run folder ``run`` (default: ``cfg.out`` with ``cfg.resume``)
    and return the last epoch's metrics.

    A resumed run must have the settings of the checkpoint's run (:meth:`RunDir.start`); the tool
    fills the settings not given from the run's config.json.  Without ``--model``/``--arch`` the
    network is the one the checkpoint records.
    """
    run = run or RunDir.open(cfg.out, "" if cfg.resume == "last" else cfg.resume)  # "last": the former spelling
    ckpt = None
    if run.resume is not None:
        ckpt = load_checkpoint(run.resume)
        if cfg.model is None and cfg.arch is None and ckpt.get("model"):  # the network it recorded
            cfg.model, cfg.arch = ckpt["model"], ckpt.get("arch") if ckpt["model"] == "cydas_chain" else None
    cfg = cfg.resolved()
    with D.process_group(cfg.device) as info:
        return _train(cfg, run, ckpt, info)


def _train(cfg: TrainConfig, run: RunDir, ckpt: Optional[dict], info: D.DistInfo) -> Dict[str, float]:
    device, recipe, out, resume_path = info.device, cfg.recipe, run.out, run.resume
    if cfg.amp and device.type != "cuda":
        raise CydasError("--amp needs a CUDA device")
    log = get_logger("cydas.train_cls", out)

    # The model is initialised identically on every rank; augmentation streams differ per rank.
    train_loader, val_loader, classes = build_data(cfg, info)
    seed_everything(cfg.seed)
    raw_model = build_model(cfg.model, cfg.arch, len(classes), recipe).to(device)
    seed_everything(cfg.seed + info.rank)

    lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.batch_size, recipe.base_lr)  # the total batch
    optimizer = recipe.optimizer(raw_model, lr)
    scheduler = recipe.scheduler(optimizer, cfg.epochs, len(train_loader))
    scaler = None
    if cfg.amp:
        from timm.utils import NativeScaler
        scaler = NativeScaler(device="cuda")
    criterion = recipe.train_loss().to(device)
    model = raw_model
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = recipe.model_ema(raw_model)  # after DDP's broadcast of rank 0's weights

    identity = model_identity(raw_model, cfg)
    config = {**cfg.as_dict(), "world_size": info.world_size, "total_batch": cfg.batch_size, "lr": lr,
              "classes": classes, **identity}
    # the processes, an evaluation's checkpoint and the arch file's path may change; the arch itself may not
    saved = None if ckpt is None else ckpt.get("config", {})
    if saved is not None and "total_batch" not in saved:  # before issue 13: unresolved settings were None
        saved = {k: v for k, v in saved.items() if v is not None and k != "batch_size"}
    config = run.start(config, saved, source=f"checkpoint {resume_path}", may_change=("world_size", "checkpoint"))
    start_epoch, step, best = 0, 0, {"top1": -1.0, "epoch": 0}
    if resume_path is not None:
        start_epoch, step, best = _resume(ckpt, resume_path, cfg, raw_model, ema, optimizer, scheduler, scaler,
                                          info, log)
    writer = MetricWriter(out)
    if resume_path is not None:
        writer.truncate_after(start_epoch)

    if info.is_main:
        arch = getattr(raw_model, "chain_arch", None)
        if arch is not None:
            atomic_write(out / "arch.json", lambda f: f.write(arch.to_json().encode()))
    rule = ("given by --lr" if cfg.lr is not None else
            f"= {recipe.base_lr} x {cfg.batch_size} / {BASE_BATCH}, scaled to the total batch")
    log.info(f"model {identity['model']}" + (f" [{raw_model.chain_arch}]" if identity["arch"] else "") +
             f": {count_params(raw_model) / 1e6:.3f}M params, {len(classes)} classes, "
             f"{cfg.img_size}px, device {device}, {info.world_size} process(es)")
    log.info(f"data {cfg.data or 'embedded shapes (' + str(default_data_root()) + ')'}: "
             f"{len(train_loader.dataset)} train / {len(val_loader.dataset.dataset)} val images")
    if resume_path is None:
        log.info(f"lr {lr:.4g} {rule} ({cfg.batch_size // info.world_size} per process x {info.world_size}); "
                 f"{recipe.opt}, "
                 f"wd {recipe.weight_decay}, warmup {recipe.warmup_epochs} epochs then cosine to epoch "
                 f"{cfg.epochs}, AutoAugment {recipe.auto_augment}, "
                 f"EMA {recipe.ema_decay if recipe.ema else 'off'}")
    else:
        log.info(f"resumed from {resume_path} after epoch {start_epoch} (step {step}): optimizer and "
                 f"{cfg.epochs}-epoch schedule continue from their saved states")

    row: Dict[str, float] = {}
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        train_loader.sampler.set_epoch(epoch)
        row, step = train_one_epoch(model, train_loader, criterion, optimizer, device, scheduler=scheduler,
                                    step=step, scaler=scaler, ema=ema, amp=cfg.amp,
                                    desc=f"epoch {epoch + 1}/{cfg.epochs}")
        scheduler.step(epoch + 1)
        row["lr"] = optimizer.param_groups[0]["lr"]
        row.update({f"val_{k}": v for k, v in evaluate(raw_model, val_loader, device, cfg.amp).items()
                    if k != "images"})
        if ema is not None:
            row.update({f"ema_{k}": v for k, v in evaluate(ema.module, val_loader, device, cfg.amp).items()
                        if k != "images"})
        score = row["ema_top1"] if ema is not None else row["val_top1"]
        is_best = score > best["top1"]
        if is_best:
            best = {"top1": score, "epoch": epoch + 1}
        rngs = gather_rng_states()  # collective: every rank takes part
        if info.is_main:
            # the row first: a kill between the two leaves a row that --resume drops, never a lost one
            row["epoch_time_s"] = time.time() - t0
            writer.write(epoch + 1, row)
            state = {"epoch": epoch + 1, "step": step, **identity, "num_classes": len(classes),
                     "classes": list(classes), "img_size": cfg.img_size,
                     "state_dict": raw_model.state_dict(),
                     **({"state_dict_ema": ema.module.state_dict()} if ema is not None else {}),
                     "metrics": dict(row), "best": dict(best)}
            if is_best:  # first: a crash between the two saves re-does this epoch on resume
                save_checkpoint(state, run.best)
            save_checkpoint({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                             "rng": rngs, "config": config}, run.last)
        D.barrier()
        log.info(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2f} | "
                 f"val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.2f} top-5 {row['val_top5']:.2f}" +
                 (f" | EMA top-1 {row['ema_top1']:.2f} top-5 {row['ema_top5']:.2f}" if ema is not None else "") +
                 f" | lr {row['lr']:.3g}" + (" *best" if is_best else ""))
    writer.close()
    log.info(f"done: best {'EMA ' if ema is not None else ''}top-1 {best['top1']:.2f} at epoch "
             f"{best['epoch']}; weights in {run.best} and {run.last}")
    return row


def _resume(ckpt: dict, path: Path, cfg: TrainConfig, raw_model, ema, optimizer, scheduler, scaler,
            info: D.DistInfo, log):
    missing = [k for k in ("epoch", "step", "state_dict", "optimizer", "scheduler", "rng") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint of train_cls (no {', '.join(missing)})")
    load_weights(raw_model, ckpt["state_dict"], path, "model weights of")
    if ema is not None:
        if "state_dict_ema" not in ckpt:
            raise CheckpointError(f"{path} has no EMA weights (trained with --no-ema): resume with --no-ema")
        load_weights(ema.module, ckpt["state_dict_ema"], path, "EMA weights of")
    load_states({"optimizer": optimizer, "scheduler": scheduler,
                 **({"scaler": scaler} if scaler is not None and "scaler" in ckpt else {})}, ckpt, path)
    rngs = ckpt["rng"]
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank])
    else:
        seed_everything(cfg.seed + info.rank + 1000 * ckpt["epoch"])
        log.warning(f"{path} was written by {len(rngs)} process(es), this run has {info.world_size}: "
                    f"the data augmentation stream is re-seeded, not continued")
    return int(ckpt["epoch"]), int(ckpt["step"]), dict(ckpt.get("best", {"top1": -1.0, "epoch": 0}))


# ------------------------------------------------------------------------------------------------
# Evaluation of a checkpoint
# ------------------------------------------------------------------------------------------------
def evaluate_checkpoint(cfg: TrainConfig) -> Dict[str, float]:
    """Top-1/top-5 of ``cfg.checkpoint`` on the validation set (EMA weights when it has them).

    The network is ``--model``/``--arch`` when given, else the one the checkpoint records.
    """
    run = RunDir(cfg.out)
    legacy = run.out / "best.pth"  # the layout before issue 13
    path = Path(cfg.checkpoint) if cfg.checkpoint else legacy if legacy.is_file() and not run.best.is_file() \
        else run.best
    ckpt = load_checkpoint(path)  # one-line error for a missing, empty or corrupt file
    if cfg.model is None and cfg.arch is None and ckpt.get("model"):  # the network it recorded
        cfg.model, cfg.arch = ckpt["model"], ckpt.get("arch") if ckpt["model"] == "cydas_chain" else None
    if cfg.img_size is None and isinstance(ckpt.get("img_size"), int):
        cfg.img_size = ckpt["img_size"]  # evaluate at the training resolution unless told otherwise
    cfg = cfg.resolved()
    with D.process_group(cfg.device) as info:
        _, val_loader, classes = build_data(cfg, info, for_training=False)
        seed_everything(cfg.seed)
        model = build_model(cfg.model, cfg.arch, len(classes), cfg.recipe).to(info.device)
        load_model_weights(model, path)
        weights = next((k for k in ("state_dict_ema", "model_ema", "state_dict", "model") if k in ckpt), "file")
        metrics = evaluate(model, val_loader, info.device, cfg.amp and info.device.type == "cuda")
        log = get_logger("cydas.train_cls")
        log.info(f"{path} ({weights}): top-1 {metrics['top1']:.2f} top-5 {metrics['top5']:.2f} "
                 f"loss {metrics['loss']:.4f} on {metrics['images']} images")
        return {**metrics, "checkpoint": str(path), "weights": weights}
