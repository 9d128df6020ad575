"""Image classification (re)training and evaluation of a backbone with the CyDAS recipe.

One process per device; ``torchrun`` launches several (DDP).  Every rank trains on its shard of
the training set (``DistributedSampler``) and evaluates its shard of the validation set; the
metrics are summed over ranks.  Rank 0 writes the output folder::

    OUT/config.json             the resolved settings (checked on --resume)   OUT/arch.json  (chain models)
    OUT/checkpoints/last.pth    weights, EMA, optimizer, scheduler, RNG: what --resume continues from
    OUT/checkpoints/best.pth    weights and EMA of the epoch with the best validation top-1
    OUT/metrics.csv             one row per epoch (TensorBoard events in OUT/tb)    OUT/log.txt

The run folder, ``--resume`` and the config check are :mod:`cydas_chain.core.run`'s; the epochs, DDP,
precision, accumulation and the checkpoints are the one training driver's (:mod:`.driver`).

Checkpoints follow timm's convention: model weights under ``state_dict``, EMA weights under
``state_dict_ema``; they hold tensors and plain values only (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional

from torch import nn

from ..core import distributed as D
from ..core.checkpoint import atomic_write, load_checkpoint, load_model_weights
from ..core.data import build_transforms, default_data_root, make_shapes_folder, train_val_folders
from ..core.errors import ArchError, CydasError
from ..core.flops import count_params
from ..core.loader import make_loader
from ..core.logging import get_logger
from ..core.run import RunDir
from ..core.seed import seed_everything
from ..core.speed import resolve_speed
from ..models.chain_arch import resolve_arch
from .driver import Parts, Trainer, TrainOptions, eval_shard, evaluate
from .recipe import BASE_BATCH, Recipe, scaled_lr

__all__ = ["TrainConfig", "build_model", "evaluate", "evaluate_checkpoint", "train"]

DEFAULT_MODEL = "cydas_b"

# Defaults that depend on the data: a real ImageNet-style folder, or the small embedded set.
IMAGENET_DEFAULTS = dict(epochs=350, batch_size=1024, img_size=224)  # the paper's 350 epochs; 8 GPUs x 128
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
    workers: Optional[int] = None  # None: core.distributed.default_workers for the device
    seed: int = 0
    device: Optional[str] = None
    amp: str = "auto"  # core.speed: auto | bf16 | fp16 | off
    channels_last: bool = False
    compile: bool = False
    accum_steps: Optional[int] = None  # None: 1, or derived from device_batch
    device_batch: Optional[int] = None
    sync_bn: bool = False
    log_interval: int = 50
    init_weights: Optional[str] = None  # weights to start from (e.g. select_chain's weights.pth)
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
    return D.main_first(lambda: make_shapes_folder(root))  # written once, by the main process


def model_data_config(model: Optional[str], arch) -> dict:
    """Normalisation and crop of the network's timm pretrained config (known before it is built)."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    pretrained_cfg = get_pretrained_cfg("cydas_chain" if arch is not None else model or DEFAULT_MODEL)
    return resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})


def build_data(cfg: TrainConfig):
    """(train set, val set, classes, transforms): the whole sets; the driver shards them over ranks."""
    data_cfg, r = model_data_config(cfg.model, cfg.arch), cfg.recipe
    tf = build_transforms(cfg.img_size, "timm", auto_augment=r.auto_augment, crop_scale=r.crop_scale,
                          interpolation=r.interpolation, mean=data_cfg["mean"], std=data_cfg["std"],
                          crop_pct=data_cfg["crop_pct"])
    train_set, val_set, classes = train_val_folders(data_root(cfg), tf.train, tf.eval,
                                                    val_fraction=cfg.val_fraction, seed=0)
    return train_set, val_set, classes, tf


def init_from(model: nn.Module, path, log) -> None:
    """Start from the weights of ``path`` (a checkpoint or select_chain's / search_chain's ``weights.pth``):
    every tensor must fit, except a classifier of another number of classes, which keeps its initialisation."""
    from ..core.checkpoint import extract_state_dict, load_weights

    state = dict(extract_state_dict(load_checkpoint(path)))
    head = model.get_classifier()
    names = [f"{n}.{k}" for n, m in model.named_modules() if m is head for k in m.state_dict()]
    own = model.state_dict()
    if names and all(k in state and tuple(state[k].shape) != tuple(own[k].shape) for k in names):
        theirs = state[names[0]].shape[0]
        for k in names:
            state[k] = own[k]
        log.info(f"initialised from {path}; its classifier ({theirs} classes, {own[names[0]].shape[0]} here) is not "
                 f"loaded")
    else:
        log.info(f"initialised from {path}")
    load_weights(model, state, path, "initial weights")


def recipe_parts(recipe: Recipe, lr: float, epochs: int):
    """The driver's ``make_parts`` for this recipe: RMSProp-TF (or --opt), warm-up + cosine per update,
    label smoothing, EMA."""
    def make(model: nn.Module, updates_per_epoch: int) -> Parts:
        optimizer = recipe.optimizer(model, lr)
        return Parts(optimizer, recipe.scheduler(optimizer, epochs, updates_per_epoch),
                     recipe.train_loss().to(next(model.parameters()).device), recipe.model_ema(model))
    return make


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
    speed = resolve_speed(device, cfg.amp, cfg.channels_last, cfg.compile)
    accum = D.accumulation_steps(cfg.batch_size, info.world_size, cfg.accum_steps, cfg.device_batch)
    options = TrainOptions(epochs=cfg.epochs, batch_size=cfg.batch_size, accum_steps=accum, sync_bn=cfg.sync_bn,
                           log_interval=cfg.log_interval, seed=cfg.seed,
                           workers=D.default_workers(device) if cfg.workers is None else cfg.workers)
    options.micro_batch(info.world_size)  # a total batch that does not divide fails before any data is read
    log = get_logger("cydas.train_cls", out)

    train_set, val_set, classes, tf = build_data(cfg)
    seed_everything(cfg.seed)  # the same network on every rank ...
    raw_model = build_model(cfg.model, cfg.arch, len(classes), recipe)
    if cfg.init_weights is not None and resume_path is None:
        init_from(raw_model, cfg.init_weights, log)
    seed_everything(cfg.seed + info.rank)  # ... and each rank's own data and augmentation streams

    lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.batch_size, recipe.base_lr)  # the total batch
    identity = {**model_identity(raw_model, cfg), "num_classes": len(classes), "classes": list(classes),
                "img_size": cfg.img_size}
    config = {**cfg.as_dict(), "world_size": info.world_size, "total_batch": cfg.batch_size, "lr": lr,
              "classes": classes, "model": identity["model"], "arch": identity["arch"]}
    # the processes, an evaluation's checkpoint, the arch file's path and the length (the cosine then runs to the
    # new one from the step reached) may change; the arch itself may not
    saved = None if ckpt is None else ckpt.get("config", {})
    if saved is not None and "total_batch" not in saved:  # before issue 13: unresolved settings were None
        saved = {k: v for k, v in saved.items() if v is not None and k != "batch_size"}
    config = run.start(config, saved, source=f"checkpoint {resume_path}",
                       may_change=("world_size", "checkpoint", "epochs"))
    trainer = Trainer(raw_model, train_set, {"val": val_set}, mean=tf.mean, std=tf.std,
                      make_parts=recipe_parts(recipe, lr, cfg.epochs), options=options, speed=speed, log=log,
                      run=run, identity=identity, config=config)
    if resume_path is not None:
        trainer.resume(ckpt, resume_path)

    if info.is_main:
        arch = getattr(raw_model, "chain_arch", None)
        if arch is not None:
            atomic_write(out / "arch.json", lambda f: f.write(arch.to_json().encode()))
    rule = ("given by --lr" if cfg.lr is not None else
            f"= {recipe.base_lr} x {cfg.batch_size} / {BASE_BATCH}, scaled to the total batch")
    log.info(f"model {identity['model']}" + (f" [{raw_model.chain_arch}]" if identity["arch"] else "") +
             f": {count_params(raw_model) / 1e6:.3f}M params, {len(classes)} classes, "
             f"{cfg.img_size}px, device {device}, {info.world_size} process(es), {speed.describe()}")
    log.info(f"data {cfg.data or 'embedded shapes (' + str(default_data_root()) + ')'}: "
             f"{len(train_set)} train / {len(val_set)} val images, {options.workers} loader process(es) each")
    if resume_path is None:
        log.info(f"lr {lr:.4g} {rule} ({options.micro_batch(info.world_size)} per forward x {accum} "
                 f"accumulation step(s) x {info.world_size} process(es)); {recipe.opt}, "
                 f"wd {recipe.weight_decay}, warmup {recipe.warmup_epochs} epochs then cosine to epoch "
                 f"{cfg.epochs}, AutoAugment {recipe.auto_augment}, "
                 f"EMA {recipe.ema_decay if recipe.ema else 'off'}")
    else:
        log.info(f"resumed from {resume_path} after epoch {trainer.epoch} (step {trainer.step}): the optimizer "
                 f"continues from its saved state, the {cfg.epochs}-epoch schedule from the step reached")
    row = trainer.fit()
    best = trainer.best
    log.info(f"done: best {'EMA ' if recipe.ema else ''}top-1 {best['top1']:.2f} at epoch "
             f"{best['epoch']}; weights in {run.best} and {run.last}")
    return row


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
        speed = resolve_speed(info.device, cfg.amp, cfg.channels_last)
        _, val_set, classes, tf = build_data(cfg)
        workers = D.default_workers(info.device) if cfg.workers is None else cfg.workers
        loader = make_loader(eval_shard(val_set), max(1, cfg.batch_size // info.world_size), device=info.device,
                             mean=tf.mean, std=tf.std, workers=workers)
        seed_everything(cfg.seed)
        model = speed.prepare(build_model(cfg.model, cfg.arch, len(classes), cfg.recipe))
        load_model_weights(model, path)
        weights = next((k for k in ("state_dict_ema", "model_ema", "state_dict", "model") if k in ckpt), "file")
        metrics = evaluate(model, loader, speed)
        log = get_logger("cydas.train_cls")
        log.info(f"{path} ({weights}): top-1 {metrics['top1']:.2f} top-5 {metrics['top5']:.2f} "
                 f"loss {metrics['loss']:.4f} on {metrics['images']} images")
        return {**metrics, "checkpoint": str(path), "weights": weights}
