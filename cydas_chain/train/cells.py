"""Retraining a DARTS-space cell network from scratch (DARTS / CyDAS recipes), and its evaluation.

The network is timm's ``cydas_darts_cifar`` / ``cydas_darts_imagenet`` of a genotype; the epochs, DDP,
precision, accumulation and checkpoints are the one training driver's (:mod:`.driver`).  What the
DARTS recipes add are driver options (the auxiliary head's loss weight, gradient clipping) and the
drop-path ramp set before each epoch.  Accuracies are in percent.  The run folder
(:mod:`cydas_chain.core.run`) holds checkpoints/last.pth, checkpoints/best.pth (best top-1), config.json,
metrics.csv, tb/ and log.txt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import timm
from torch import nn
from torch.utils.data import Dataset

from ..core import distributed as D
from ..core.checkpoint import load_checkpoint, load_model_weights
from ..core.data import (CELL_DATASETS, CELL_SHAPES_SIZE, CIFAR_CLASSES, Transforms, build_transforms,
                         cell_shapes_root, cifar_dataset, train_val_folders)
from ..core.errors import DataError
from ..core.loader import make_loader
from ..core.logging import get_logger
from ..core.run import RunDir
from ..core.seed import seed_everything
from ..core.speed import resolve_speed
from ..models.darts.genotypes import resolve_genotype
from .driver import Parts, Trainer, TrainOptions, eval_shard, evaluate


# The recipes (the tool's defaults).  batch_size is the total over all processes and accumulation
# steps, lr the rate of that total batch (scaled linearly when --batch-size changes it).  CIFAR: DARTS /
# CyDAS, one GPU.  ImageNet: the released CyDAS retraining (8 GPUs x 128 = 1024 at lr 0.5, 5 warm-up
# epochs, SyncBN; docs/darts.md gives the sources).
_SGD = dict(batch_size=128, lr=0.025, momentum=0.9, weight_decay=5e-4, warmup_epochs=0, aux_weight=0.4,
            label_smoothing=0.0, image_size=32, grad_clip=5.0, sync_bn=False)
RECIPES: Dict[str, Dict] = {
    "cifar": dict(_SGD, epochs=600, drop_path=0.3, cutout=16, channels=36, layers=20),
    "imagenet": dict(_SGD, epochs=250, batch_size=1024, lr=0.5, weight_decay=3e-5, warmup_epochs=5, drop_path=0.0,
                     cutout=0, label_smoothing=0.1, channels=48, layers=14, image_size=224, sync_bn=True),
    # the embedded default: a smoke run on the synthetic set, minutes on a CPU
    "tiny": dict(_SGD, epochs=2, batch_size=32, drop_path=0.1, cutout=8, channels=8, layers=5),
}


@dataclass
class RetrainConfig:
    genotype: Any = "cydas_cifar"  # a published name, a genotype file or a Genotype; None: the checkpoint's
    dataset: str = "cifar10"  # cifar10 | cifar100 | imagenet
    data: Optional[Path] = None  # None: the embedded synthetic set and the 'tiny' recipe
    out: Path = Path("runs/train_cell")
    overrides: Dict[str, Any] = field(default_factory=dict)  # recipe values given on the command line
    seed: int = 0
    device: str = "auto"
    workers: Optional[int] = None  # None: core.distributed.default_workers
    amp: str = "auto"
    channels_last: bool = False
    compile: bool = False
    accum_steps: Optional[int] = None
    device_batch: Optional[int] = None
    log_interval: int = 50
    checkpoint: Optional[Path] = None  # evaluate_checkpoint's weights

    @property
    def kind(self) -> str:
        return "tiny" if self.data is None else ("imagenet" if self.dataset == "imagenet" else "cifar")

    def recipe(self, saved: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The recipe of ``kind``, a checkpoint's network size (``saved``), then the overrides; the lr
        follows a changed batch linearly unless it is given too."""
        r = dict(RECIPES[self.kind])
        base_batch, base_lr = r["batch_size"], r["lr"]
        r.update({k: v for k, v in (saved or {}).items() if k in ("channels", "layers", "aux_weight")})
        given = {k: v for k, v in self.overrides.items() if k in r and v is not None}
        r.update(given)
        if "lr" not in given:
            r["lr"] = base_lr * r["batch_size"] / base_batch
        return r


def drop_path_at(epoch: int, epochs: int, drop_path: float) -> float:
    """DARTS' schedule: drop-path probability ramps linearly from 0 to ``drop_path`` over training."""
    return drop_path * epoch / max(1, epochs)


def train_test_sets(dataset: str, data: Optional[Path], image_size: int,
                    cutout: int = 0) -> Tuple[Dataset, Dataset, list, str, Transforms]:
    """Training and test sets of the retraining: CIFAR train/test batches (or the embedded set) with the
    CIFAR transforms, DIR/train + DIR/val with timm's.  Returns (train, test, classes, description,
    transforms)."""
    if dataset not in CELL_DATASETS:
        raise DataError(f"unknown dataset '{dataset}' (one of {', '.join(CELL_DATASETS)})")
    imagenet = data is not None and not dataset.startswith("cifar")
    tf = build_transforms(image_size, "timm" if imagenet else "cifar", cutout=cutout)
    if data is not None and dataset.startswith("cifar"):
        n = CIFAR_CLASSES[dataset]
        train = cifar_dataset(data, n, train=True, transform=tf.train)
        test = cifar_dataset(data, n, train=False, transform=tf.eval)
        return train, test, list(train.classes), f"{dataset} from {data}", tf
    root = D.main_first(lambda: cell_shapes_root(image_size)) if data is None else Path(data)
    if not (root / "val").is_dir():
        raise DataError(f"ImageNet-style data needs {root}/train/<class>/ and {root}/val/<class>/")
    train, test, classes = train_val_folders(root, tf.train, tf.eval)
    return train, test, list(classes), (f"embedded synthetic 'shapes' set ({root})" if data is None else
                                        f"ImageNet-style folder {data}"), tf


def build_network(cfg: RetrainConfig, genotype, r: Dict[str, Any], num_classes: int) -> nn.Module:
    """The evaluation network of ``genotype``, seeded by ``cfg.seed`` alone: the same on every rank."""
    seed_everything(cfg.seed)
    return timm.create_model("cydas_darts_imagenet" if cfg.kind == "imagenet" else "cydas_darts_cifar",
                             genotype=genotype, num_classes=num_classes, c=r["channels"], layers=r["layers"],
                             auxiliary=r["aux_weight"] > 0)


def sgd_cosine(r: Dict[str, Any]):
    """The driver's ``make_parts`` of the DARTS recipes: SGD with momentum, cosine per epoch (warm-up from
    1% of the lr), cross-entropy with the recipe's label smoothing."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    def make(model: nn.Module, updates_per_epoch: int) -> Parts:
        optimizer = create_optimizer_v2(model, "momentum", lr=r["lr"], weight_decay=r["weight_decay"],
                                        momentum=r["momentum"])
        scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=r["epochs"], min_lr=0.0,
                                           warmup_epochs=r["warmup_epochs"], warmup_lr=r["lr"] * 0.01)
        return Parts(optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"]))
    return make


def evaluate_checkpoint(cfg: RetrainConfig) -> Dict[str, float]:
    """Loss, top-1 and top-5 (%) of ``cfg.checkpoint`` on the test/val set.  The network is the
    checkpoint's (genotype, channels, layers) unless the config says otherwise."""
    saved = load_checkpoint(cfg.checkpoint)  # one line for a missing or corrupt file
    genotype = resolve_genotype(cfg.genotype if cfg.genotype is not None else saved.get("genotype", "cydas_cifar"))
    r = cfg.recipe(saved.get("recipe"))
    with D.process_group(cfg.device) as info:
        speed = resolve_speed(info.device, cfg.amp, cfg.channels_last)
        _, test_set, classes, _, tf = train_test_sets(cfg.dataset if cfg.data is not None else "cifar10", cfg.data,
                                                      r["image_size"], r["cutout"])
        model = speed.prepare(build_network(cfg, genotype, r, len(classes)))
        load_model_weights(model, cfg.checkpoint)
        workers = D.default_workers(info.device) if cfg.workers is None else cfg.workers
        loader = make_loader(eval_shard(test_set), max(1, r["batch_size"] // info.world_size), device=info.device,
                             mean=tf.mean, std=tf.std, workers=workers)
        return {f"eval_{k}": v for k, v in evaluate(model, loader, speed).items() if k != "images"}


def retrain(cfg: RetrainConfig, run: Optional[RunDir] = None) -> float:
    """Train the network of ``cfg.genotype`` in the run folder ``run`` (default: a new run in ``cfg.out``),
    continuing ``run.resume`` when it names a checkpoint; returns the best top-1 (%)."""
    genotype = resolve_genotype(cfg.genotype if cfg.genotype is not None else "cydas_cifar")
    r, run = cfg.recipe(), run or RunDir.open(cfg.out)
    with D.process_group(cfg.device) as info:
        speed = resolve_speed(info.device, cfg.amp, cfg.channels_last, cfg.compile)
        # the ImageNet recipe's SyncBN is CUDA's: on the CPU each process keeps its own, unless --sync-bn asks
        sync_bn = r["sync_bn"] and (info.device.type == "cuda" or cfg.overrides.get("sync_bn") is not None)
        accum = D.accumulation_steps(r["batch_size"], info.world_size, cfg.accum_steps, cfg.device_batch)
        options = TrainOptions(epochs=r["epochs"], batch_size=r["batch_size"], accum_steps=accum,
                               grad_clip=r["grad_clip"], aux_weight=r["aux_weight"], sync_bn=sync_bn,
                               log_interval=cfg.log_interval, seed=cfg.seed,
                               workers=D.default_workers(info.device) if cfg.workers is None else cfg.workers)
        options.micro_batch(info.world_size)  # one line for a total that does not divide, before any data
        config = {"genotype": genotype.to_dict(), "dataset": cfg.dataset,
                  "data": None if cfg.data is None else str(cfg.data), "recipe": r}
        config = run.start(config, may_change=("recipe.epochs",))  # the settings of a resumed run, or refused
        log = get_logger("cydas.train_cell", run.out)  # log.txt: main process
        train_set, test_set, classes, desc, tf = train_test_sets(
            cfg.dataset if cfg.data is not None else "cifar10", cfg.data, r["image_size"], r["cutout"])
        model = build_network(cfg, genotype, r, len(classes))
        seed_everything(cfg.seed + info.rank)  # each rank's own dropout / drop-path stream
        log.info("data: %s | genotype %s", desc, genotype)
        log.info("recipe %s: %s | %d process(es) x %d accumulation step(s) x %d images, %s", cfg.kind, r,
                 info.world_size, accum, options.micro_batch(info.world_size), speed.describe())

        def ramp_drop_path(epoch: int, net: nn.Module) -> None:
            net.drop_path_prob = drop_path_at(epoch, r["epochs"], r["drop_path"])

        trainer = Trainer(model, train_set, {"eval": test_set}, mean=tf.mean, std=tf.std, make_parts=sgd_cosine(r),
                          options=options, speed=speed, log=log, run=run,
                          identity={"genotype": genotype.to_dict(), "recipe": r, "classes": list(classes)},
                          config=config, on_epoch_start=ramp_drop_path)
        if run.resume is not None:
            trainer.resume(load_checkpoint(run.resume), run.resume)
            log.info("resumed after epoch %d", trainer.epoch)
        trainer.fit()
        log.info("best top-1 %.2f%%; weights in %s", trainer.best["top1"], run.best)
        return trainer.best["top1"]


__all__ = ["CELL_SHAPES_SIZE", "RECIPES", "RetrainConfig", "drop_path_at", "evaluate_checkpoint", "retrain",
           "train_test_sets"]
