"""Retraining an evaluation network from scratch (DARTS/CyDAS recipes), and its evaluation.

The epochs run through the one classification loop (:mod:`cydas_chain.core.loop`); what the DARTS
recipes add are its options (auxiliary head weight, gradient clipping) and the drop-path ramp set
before each epoch.  Accuracies are in percent.  The run folder (:mod:`cydas_chain.core.run`) holds
checkpoints/last.pth, checkpoints/best.pth (best top-1), config.json, metrics.csv, tb/ and log.txt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import timm
from torch import nn

from ..core.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from ..core.distributed import is_main_process, process_group
from ..core.errors import CydasError
from ..core.logging import MetricWriter, get_logger
from ..core.loop import evaluate, sharded_loaders, train_one_epoch
from ..core.run import RunDir, load_states
from ..core.seed import rng_state, seed_everything, set_rng_state
from ..models.darts.genotypes import resolve_genotype
from .data import train_test_sets

# The paper's recipes (CyDAS Sec. 4, following DARTS); the tool's defaults.
_SGD = dict(batch_size=128, lr=0.025, momentum=0.9, weight_decay=5e-4, warmup_epochs=0, aux_weight=0.4,
            label_smoothing=0.0, image_size=32, grad_clip=5.0)
RECIPES: Dict[str, Dict] = {
    "cifar": dict(_SGD, epochs=600, drop_path=0.3, cutout=16, channels=36, layers=20),
    "imagenet": dict(_SGD, epochs=250, lr=0.5, weight_decay=3e-5, warmup_epochs=5, drop_path=0.0, cutout=0,
                     label_smoothing=0.1, channels=48, layers=14, image_size=224),
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
    workers: int = 2
    checkpoint: Optional[Path] = None  # evaluate_checkpoint's weights

    @property
    def kind(self) -> str:
        return "tiny" if self.data is None else ("imagenet" if self.dataset == "imagenet" else "cifar")

    def recipe(self, saved: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The recipe of ``kind``, a checkpoint's network size (``saved``), then the overrides."""
        r = dict(RECIPES[self.kind])
        r.update({k: v for k, v in (saved or {}).items() if k in ("channels", "layers", "aux_weight")})
        r.update({k: v for k, v in self.overrides.items() if k in r and v is not None})
        return r


def drop_path_at(epoch: int, epochs: int, drop_path: float) -> float:
    """DARTS' schedule: drop-path probability ramps linearly from 0 to ``drop_path`` over training."""
    return drop_path * epoch / max(1, epochs)


def _setup(cfg: RetrainConfig, genotype, r: Dict[str, Any], dist, log_dir: Optional[Path]):
    """Train loader, network, test loader (this rank's shard, unpadded) and logger."""
    seed_everything(cfg.seed + dist.rank)
    train_set, test_set, classes, desc = train_test_sets(cfg.dataset if cfg.data is not None else "cifar10",
                                                         cfg.data, r["image_size"], r["cutout"])
    model = timm.create_model("cydas_darts_imagenet" if cfg.kind == "imagenet" else "cydas_darts_cifar",
                              genotype=genotype, num_classes=len(classes), c=r["channels"], layers=r["layers"],
                              auxiliary=r["aux_weight"] > 0).to(dist.device)
    log = get_logger("cydas.train_cell", log_dir)
    log.info("data: %s | genotype %s", desc, genotype)
    if r["batch_size"] % dist.world_size:
        raise CydasError(f"--batch-size {r['batch_size']} (the total) is not divisible by {dist.world_size} processes")
    train_loader, test_loader = sharded_loaders(train_set, test_set, r["batch_size"] // dist.world_size, cfg.workers,
                                                cfg.seed, dist.device)
    return train_loader, model, test_loader, log


def _eval_metrics(model, loader, device) -> Dict[str, float]:
    return {f"eval_{k}": v for k, v in evaluate(model, loader, device).items() if k != "images"}


def evaluate_checkpoint(cfg: RetrainConfig) -> Dict[str, float]:
    """Loss, top-1 and top-5 (%) of ``cfg.checkpoint`` on the test/val set.  The network is the
    checkpoint's (genotype, channels, layers) unless the config says otherwise."""
    saved = load_checkpoint(cfg.checkpoint)  # one line for a missing or corrupt file
    genotype = resolve_genotype(cfg.genotype if cfg.genotype is not None else saved.get("genotype", "cydas_cifar"))
    r = cfg.recipe(saved.get("recipe"))
    with process_group(cfg.device) as dist:
        _, model, test_loader, _ = _setup(cfg, genotype, r, dist, None)
        load_model_weights(model, cfg.checkpoint)
        return _eval_metrics(model, test_loader, dist.device)


def retrain(cfg: RetrainConfig, run: Optional[RunDir] = None) -> float:
    """Train the network of ``cfg.genotype`` in the run folder ``run`` (default: a new run in ``cfg.out``),
    continuing ``run.resume`` when it names a checkpoint; returns the best top-1 (%)."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    genotype = resolve_genotype(cfg.genotype if cfg.genotype is not None else "cydas_cifar")
    r, run = cfg.recipe(), run or RunDir.open(cfg.out)
    with process_group(cfg.device) as dist:
        train_loader, model, test_loader, log = _setup(cfg, genotype, r, dist, run.out)  # log.txt: main process
        log.info("recipe %s: %s", cfg.kind, r)
        optimizer = create_optimizer_v2(model, "momentum", lr=r["lr"], weight_decay=r["weight_decay"],
                                        momentum=r["momentum"])
        scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=r["epochs"], min_lr=0.0,
                                           warmup_epochs=r["warmup_epochs"], warmup_lr=r["lr"] * 0.01)
        criterion = nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"])
        start, best = 0, 0.0
        metrics = MetricWriter(run.out)
        if run.resume is not None:
            state = load_checkpoint(run.resume)
            # No scheduler state: timm's cosine is a function of the epoch and the recipe, and its saved state
            # would bring back the old length when --epochs grows on resume (the added epochs at lr 0).
            load_states({"model": model, "optimizer": optimizer}, state, run.resume)
            start, best = int(state["epoch"]), float(state["best_top1"])
            set_rng_state(state["rng"])
            metrics.truncate_after(start)
            log.info("resumed after epoch %d", start)
        scheduler.step(start)  # stepped per epoch (the loop's per-update stepping is not used)
        for epoch in range(start, r["epochs"]):
            model.drop_path_prob = drop_path_at(epoch, r["epochs"], r["drop_path"])
            train_loader.sampler.set_epoch(epoch)
            m, _ = train_one_epoch(model, train_loader, criterion, optimizer, dist.device, aux_weight=r["aux_weight"],
                                   grad_clip=r["grad_clip"], desc=f"epoch {epoch + 1}/{r['epochs']}")
            m.update(_eval_metrics(model, test_loader, dist.device), lr=optimizer.param_groups[0]["lr"])
            scheduler.step(epoch + 1)
            best = max(best, m["eval_top1"])
            metrics.write(epoch + 1, m)
            log.info("epoch %d/%d %s", epoch + 1, r["epochs"], " ".join(f"{k}={v:.4g}" for k, v in m.items()))
            if is_main_process():
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                         "best_top1": best,
                         "genotype": genotype.to_dict(), "recipe": r, "rng": rng_state()}
                if m["eval_top1"] >= best:
                    save_checkpoint({"model": state["model"], "genotype": state["genotype"], "epoch": epoch + 1,
                                     "top1": best, "recipe": r}, run.best)
                save_checkpoint(state, run.last)
        metrics.close()
        log.info("best top-1 %.2f%%; weights in %s", best, run.best)
        return best
