"""The one training driver of every tool and benchmark that trains a classifier: ``train_cls`` (timm
backbones, chain architectures), ``train_cell`` (DARTS-space cell networks) and the standalone
trainings of ``bench/search_quality.py``.  What differs between them is a recipe (the :class:`Parts`
built for a network and a number of updates per epoch) and a few :class:`TrainOptions`; the loop,
DDP, precision, accumulation, metrics, checkpoints and resume are written once, here.

* **One network on every rank.**  The tool builds the network with the same seed on every rank
  (per-rank seeds are for data and augmentation only); :class:`Trainer` wraps it in
  ``DistributedDataParallel`` (bucketed all-reduce overlapped with the backward; it also broadcasts
  rank 0's weights and buffers), with SyncBN as an option.  The checkpoint holds the one network.
* **Batch semantics that hold on 1 to 64 GPUs.**  ``batch_size`` is the total over all processes and
  accumulation steps: each process runs ``batch_size / (processes x accum_steps)`` images a forward,
  and one update follows ``accum_steps`` of them (DDP synchronises the last only).  The recipe's lr
  belongs to the total batch.
* **Precision and layout** come from :class:`~cydas_chain.core.speed.Speed` (bf16 / fp16 with loss
  scaling / off, channels-last, ``torch.compile``).
* **No per-step host syncs or file writes**: loss and hits are summed on the device; every
  ``log_interval`` updates one copy to the host feeds the progress bar and TensorBoard; metrics.csv has
  one row per epoch.
* **One scheduler convention**: timm schedulers, ``step_update(updates)`` after every update and
  ``step(epoch)`` after every epoch (a recipe says which one it follows with ``t_in_epochs``).  The
  schedule is a function of the position and the recipe, so it is not saved: on resume it is set from
  the epoch and update reached (a longer ``--epochs`` then stretches the cosine, not an lr of 0).
* **One checkpoint format** (timm's names, weights-only loadable)::

      {"kind": "cydas_chain/train", "epoch", "step", "state_dict", "state_dict_ema"?, "optimizer",
       "scaler"?, "rng": [one state per rank], "best": {"top1", "epoch"}, "metrics", "config", **identity}

  ``best.pth`` holds the weights (and EMA) of the best epoch with ``best``, ``metrics`` and the identity.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from ..core import distributed as D
from ..core.checkpoint import load_weights, save_checkpoint
from ..core.errors import CheckpointError, ConfigError, CydasError
from ..core.loader import EpochSampler, SeededSamples, make_loader
from ..core.logging import MetricWriter, progress
from ..core.run import RunDir, load_states
from ..core.seed import restore_rank_rng, rng_state
from ..core.speed import Speed

CHECKPOINT_KIND = "cydas_chain/train"


@dataclass
class Parts:
    """What a recipe builds for a network: optimizer, timm scheduler, training loss, EMA (or None)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    ema: Any = None


@dataclass
class TrainOptions:
    epochs: int
    batch_size: int  # total over all processes and accumulation steps
    accum_steps: int = 1
    grad_clip: float = 0.0  # > 0: clip the gradient norm before each update
    aux_weight: float = 0.0  # > 0: the network's forward_all gives "aux" logits, weighted into the loss
    sync_bn: bool = False
    log_interval: int = 50  # updates between two progress / TensorBoard points
    workers: int = 0
    seed: int = 0

    def micro_batch(self, world: int) -> int:
        """Images a process runs a forward; one line when the total does not divide."""
        return D.micro_batch(self.batch_size, world, self.accum_steps)


class _WithAux(nn.Module):
    """The network's ``forward_all`` as its forward, so that DDP sees the auxiliary head's parameters."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net.forward_all(x)
        return out["logits"], out["aux"]


def eval_shard(dataset: Dataset) -> Dataset:
    """This rank's share of an evaluation set (unpadded: summed metrics count every image once)."""
    world, rank = D.get_world_size(), D.get_rank()
    return dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))


@torch.no_grad()
def evaluate(model: nn.Module, loader, speed: Speed, desc: str = "eval") -> Dict[str, float]:
    """Loss, top-1 and top-5 accuracy (%) over the loader (normalised batches), summed over all ranks."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=speed.device)  # loss, top-1, top-5, images
    for x, y in progress(loader, desc=desc, leave=False):
        with speed.autocast():
            logits = model(speed.inputs(x))
        logits = logits.float()
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(y[:, None])
        sums[0] += F.cross_entropy(logits, y, reduction="sum")
        sums[1] += hits[:, 0].sum()
        sums[2] += hits.sum()
        sums[3] += len(y)
    D.all_reduce_sum(sums)
    model.train(was_training)
    loss, top1, top5, n = sums.tolist()
    n = max(n, 1.0)
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "images": int(n)}


def gather_rng_states() -> List[dict]:
    """Every rank's RNG state (rank order): each rank resumes its own augmentation stream."""
    state = rng_state()
    if not D.is_dist():
        return [state]
    states = [None] * D.get_world_size()
    dist.all_gather_object(states, state)
    return states


def upgrade_checkpoint(state: Mapping) -> dict:
    """A checkpoint of train_cell before the one format (weights under "model", "best_top1") in today's
    names; others unchanged."""
    state = dict(state)
    if "state_dict" not in state and isinstance(state.get("model"), Mapping):
        state["state_dict"] = state.pop("model")
    if "best" not in state and "best_top1" in state:
        state["best"] = {"top1": float(state.pop("best_top1")), "epoch": int(state.get("epoch", 0))}
    if isinstance(state.get("rng"), Mapping):  # one process's state, before states were gathered per rank
        state["rng"] = [state["rng"]]
    return state


class Trainer:
    """Trains ``model`` on ``train_set``, evaluating ``eval_sets`` after every epoch.

    ``model`` is the raw network, built with the same seed on every rank; ``make_parts(model,
    updates_per_epoch)`` builds the recipe's optimizer, scheduler, loss and EMA for it.  ``eval_sets``
    maps a metric prefix ("val", "eval", "test") to a data set; the first one (of the EMA weights when
    there is an EMA) picks ``best.pth``.  With ``run`` (a :class:`~cydas_chain.core.run.RunDir`), rows go
    to metrics.csv / TensorBoard and checkpoints to ``run.last`` / ``run.best`` on the main process;
    ``identity`` (the network's description: model, arch, genotype, classes ...) and ``config`` go into
    them.  ``on_epoch_start(epoch, model)`` runs before each epoch (DARTS' drop-path ramp).
    """

    def __init__(self, model: nn.Module, train_set: Dataset, eval_sets: Mapping[str, Dataset], *,
                 mean: Sequence[float], std: Sequence[float], make_parts: Callable[[nn.Module, int], Parts],
                 options: TrainOptions, speed: Speed, log, run: Optional[RunDir] = None,
                 identity: Optional[dict] = None, config: Optional[dict] = None,
                 on_epoch_start: Optional[Callable[[int, nn.Module], None]] = None):
        self.opts, self.speed, self.log, self.run = options, speed, log, run
        self.identity, self.config, self.on_epoch_start = dict(identity or {}), dict(config or {}), on_epoch_start
        self.world, self.rank = D.get_world_size(), D.get_rank()
        device = speed.device
        micro = options.micro_batch(self.world)
        if len(train_set) < options.batch_size:
            raise ConfigError(f"the training set has {len(train_set)} images: fewer than the batch size "
                              f"{options.batch_size} (lower --batch-size)")
        # each image's augmentation seeded by (seed, epoch, index): the same whatever the loader processes,
        # the number of ranks or a resume
        sampler = EpochSampler(DistributedSampler(train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                                  seed=options.seed))
        self.train_loader = make_loader(SeededSamples(train_set, options.seed), micro, device=device, mean=mean,
                                        std=std, sampler=sampler, drop_last=True, workers=options.workers)
        self.eval_loaders = {name: make_loader(eval_shard(ds), micro, device=device, mean=mean, std=std,
                                               workers=options.workers)
                             for name, ds in eval_sets.items()}
        self.updates_per_epoch = len(self.train_loader) // options.accum_steps
        if self.updates_per_epoch < 1:
            raise ConfigError(f"one epoch of {len(train_set)} images holds no update of {options.batch_size}")

        if options.sync_bn and device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA devices (torch's SyncBatchNorm); drop it on the CPU")
        if options.sync_bn and D.is_dist():
            from timm.layers import convert_sync_batchnorm
            model = convert_sync_batchnorm(model)
        self.model = speed.prepare(model)
        self.parts = make_parts(self.model, self.updates_per_epoch)
        self.scaler = speed.grad_scaler()
        net = _WithAux(self.model) if options.aux_weight > 0 else self.model
        self.ddp = D.wrap_ddp(net, device)  # rank 0's weights and buffers on every rank from here on
        if self.parts.ema is not None and D.is_dist():
            self.parts.ema.set(self.model)  # the EMA starts from the broadcast weights
        self.train_model = speed.compiled(self.ddp)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.epoch, self.step = 0, 0
        self.best = {"top1": -1.0, "epoch": 0}
        self.writer: Optional[MetricWriter] = None
        self.history: List[Dict[str, float]] = []  # this invocation's epoch rows

    # ---- resume ---------------------------------------------------------------------------------
    def resume(self, state: Mapping, source) -> None:
        """Continue from a checkpoint of this format (or train_cell's former one)."""
        state = upgrade_checkpoint(state)
        missing = [k for k in ("epoch", "state_dict", "optimizer") if k not in state]
        if missing:
            raise CheckpointError(f"{source} is not a training checkpoint (no {', '.join(missing)})")
        load_weights(self.model, state["state_dict"], source, "model weights of")
        ema = self.parts.ema
        if ema is not None:
            if "state_dict_ema" not in state:
                raise CheckpointError(f"{source} has no EMA weights (trained with --no-ema): resume with --no-ema")
            load_weights(ema.module, state["state_dict_ema"], source, "EMA weights of")
        load_states({"optimizer": self.parts.optimizer,
                     **({"scaler": self.scaler} if "scaler" in state and self.scaler.is_enabled() else {})},
                    state, source)
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", self.epoch * self.updates_per_epoch))
        self.best = dict(state.get("best") or self.best)
        rngs = state.get("rng") or []
        if not restore_rank_rng(list(rngs), self.rank, self.world, self.opts.seed + 1000 * self.epoch):
            self.log.warning(f"{source} was written by {len(rngs)} process(es), this run has {self.world}: the "
                             f"data and augmentation streams are re-seeded, not continued")

    # ---- the loop -------------------------------------------------------------------------------
    def _set_schedule(self) -> None:
        sched = self.parts.scheduler
        if sched is not None:
            sched.step(self.epoch)
            sched.step_update(num_updates=self.step)

    def train_epoch(self) -> Dict[str, float]:
        o, speed, parts = self.opts, self.speed, self.parts
        opt, sched, criterion = parts.optimizer, parts.scheduler, parts.criterion
        self.train_loader.sampler.set_epoch(self.epoch)
        self.ddp.train()
        sums = torch.zeros(3, dtype=torch.float64, device=speed.device)  # loss x images, hits, images
        interval = torch.zeros(3, dtype=torch.float64, device=speed.device)
        micro_steps = self.updates_per_epoch * o.accum_steps
        bar = progress(total=self.updates_per_epoch, desc=f"epoch {self.epoch + 1}/{o.epochs}", unit="step")
        opt.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(self.train_loader):
            if i == micro_steps:
                break
            last = (i + 1) % o.accum_steps == 0
            sync = self.ddp.no_sync() if D.is_dist() and not last else contextlib.nullcontext()
            with sync, D.out_of_memory_advice(len(y)):
                with speed.autocast():
                    out = self.train_model(speed.inputs(x))
                    if o.aux_weight > 0:
                        logits, aux = out
                        loss = criterion(logits, y)
                        if aux is not None:
                            loss = loss + o.aux_weight * criterion(aux, y)
                    else:
                        logits, loss = out, criterion(out, y)
                self.scaler.scale(loss / o.accum_steps).backward()
            n = len(y)
            interval[0] += loss.detach().double() * n
            interval[1] += logits.detach().argmax(1).eq(y).sum()
            interval[2] += n
            if not last:
                continue
            if o.grad_clip > 0:
                self.scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(self.params, o.grad_clip)
            self.scaler.step(opt)
            self.scaler.update()
            opt.zero_grad(set_to_none=True)
            self.step += 1
            if sched is not None:
                sched.step_update(num_updates=self.step)
            if parts.ema is not None:
                parts.ema.update(self.model, step=self.step)
            bar.update(1)
            if self.step % o.log_interval == 0 or (i + 1) == micro_steps:
                sums += interval
                loss_sum, hits, images = D.all_reduce_sum(interval.clone()).tolist()  # one sync an interval
                interval.zero_()
                self._check_finite(loss_sum)
                point = {"train_loss": loss_sum / images, "train_top1": 100.0 * hits / images,
                         "lr": opt.param_groups[0]["lr"]}
                bar.set_postfix(loss=f"{point['train_loss']:.3f}", lr=f"{point['lr']:.2e}")
                if self.writer is not None:
                    self.writer.scalars(self.step, {f"interval/{k}": v for k, v in point.items()})
        bar.close()
        loss_sum, hits, images = D.all_reduce_sum(sums).tolist()
        images = max(images, 1.0)
        return {"train_loss": loss_sum / images, "train_top1": 100.0 * hits / images}

    def _check_finite(self, loss_sum: float) -> None:
        if not math.isfinite(loss_sum):
            raise CydasError(f"epoch {self.epoch + 1}: the training loss is not finite (try a lower --lr, "
                             f"--amp bf16 or --amp off)")

    def evaluate(self, name: str, ema: bool = False) -> Dict[str, float]:
        model = self.parts.ema.module if ema else self.model
        return evaluate(model, self.eval_loaders[name], self.speed, desc=f"{'ema ' if ema else ''}{name}")

    def fit(self, evaluate: Optional[Sequence[str]] = None) -> Dict[str, float]:
        """Epochs from the one reached to ``options.epochs``, evaluating the sets named in ``evaluate`` (default:
        all) after each; returns the last epoch's metrics row (every row is in ``history``)."""
        o, parts = self.opts, self.parts
        writer = self.writer = MetricWriter(self.run.out) if self.run is not None else None
        if writer is not None and self.epoch:
            writer.truncate_after(self.epoch)
        self._set_schedule()
        first = next(iter(self.eval_loaders), None)
        row: Dict[str, float] = {}
        while self.epoch < o.epochs:
            t0 = time.time()
            if self.on_epoch_start is not None:
                self.on_epoch_start(self.epoch, self.model)
            row = self.train_epoch()
            self.epoch += 1
            if parts.scheduler is not None:
                parts.scheduler.step(self.epoch)
            row["lr"] = parts.optimizer.param_groups[0]["lr"]
            for name in (self.eval_loaders if evaluate is None else evaluate):
                row.update({f"{name}_{k}": v for k, v in self.evaluate(name).items() if k != "images"})
            if parts.ema is not None and first is not None and (evaluate is None or first in evaluate):
                row.update({f"ema_{k}": v for k, v in self.evaluate(first, ema=True).items() if k != "images"})
            score = row.get("ema_top1" if parts.ema is not None else f"{first}_top1", float("nan"))
            is_best = score > self.best["top1"]
            if is_best:
                self.best = {"top1": score, "epoch": self.epoch}
            row["epoch_time_s"] = time.time() - t0
            self.history.append(dict(row))
            self._save(row, is_best, writer)
            self.log.info(f"epoch {self.epoch}/{o.epochs}: " + " ".join(
                f"{k} {v:.4g}" for k, v in row.items() if k != "epoch_time_s") + (" *best" if is_best else ""))
        if writer is not None:
            writer.close()
        self.writer = None
        if D.is_dist() and self.run is not None:
            self.log.info(f"the {self.world} processes held the same weights at every checkpoint")
        return row

    def weights(self) -> dict:
        """The network's (and the EMA's) weights under timm's checkpoint names."""
        ema = self.parts.ema
        return {"state_dict": self.model.state_dict(),
                **({"state_dict_ema": ema.module.state_dict()} if ema is not None else {})}

    def _save(self, row: dict, is_best: bool, writer: Optional[MetricWriter]) -> None:
        if self.run is None:
            return
        D.agree_on_weights("network weights", self.model, *([self.parts.ema.module] if self.parts.ema else []))
        rngs = gather_rng_states()  # a collective: every rank takes part
        if D.is_main_process():
            # the row first: a kill between the two leaves a row that --resume drops, never a lost one
            writer.write(self.epoch, row)
            state = {"kind": CHECKPOINT_KIND, "epoch": self.epoch, "step": self.step, **self.identity,
                     **self.weights(), "metrics": dict(row), "best": dict(self.best)}
            if is_best:  # first: a crash between the two saves re-does this epoch on resume
                save_checkpoint(state, self.run.best)
            save_checkpoint({**state, "optimizer": self.parts.optimizer.state_dict(),
                             **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}),
                             "rng": rngs, "config": self.config}, self.run.last)
        D.barrier()
