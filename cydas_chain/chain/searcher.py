"""The chain-space search: SPOS supernet training with an introspective teacher path.

Per step (CyDAS TPAMI, Sec. 4.6.1): sample a path uniformly among those within the budget; train it
on cross-entropy plus distillation from the teacher path's soft labels (teacher forward without
gradients); every ``eval_interval`` steps, score the sampled path and the board (the teacher) on a
fixed validation subset with the same current weights and apply the replacement rule
(:mod:`.board`).  The final teacher is the searched architecture.

BatchNorm: in a supernet the running statistics of a block mix the statistics of every path it ran
in, so they describe no single path.  Scores and teacher soft labels therefore use batch statistics
(train-mode BN on a fixed batch of the validation subset, or on the training batch), which is what
recalibrating the statistics would estimate, at no extra cost; the running statistics are not
touched by these forwards (:func:`frozen_bn_stats`) and are only kept so that an extracted child has
sensible ones to start from.

Determinism, for an exact ``--resume``: the data order is a seeded permutation per epoch, each
image's augmentation is seeded by (seed, epoch, index) (``core.loader``; the BN-calibration images by a
fixed key of their own, so a resumed run recalibrates on the crops an uninterrupted one sees), paths
come from the sampler's own seeded generator (identical on every DDP rank, so every rank trains the
same path), and the checkpoint holds everything else that changes (weights, optimizer, scheduler,
scaler, sampler, board, RNGs).

Speed: batches arrive as uint8 and are normalised on the device (``core.loader``); mixed precision and
channels-last come from :class:`~cydas_chain.core.speed.Speed`; no step syncs with the host except
to score (every ``eval_interval`` steps) and to log (every ``log_interval`` steps).  ``--compile``
compiles the fixed parts (stem, first stage, last stage and head): the searched layers run another
op every step, and compiling each (layer, op) would make 126 graphs a resolution.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.optim import create_optimizer_v2
from timm.scheduler import PolyLRScheduler
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.checkpoint import atomic_write, load_checkpoint, save_checkpoint, write_json
from ..core.distill import soft_target_kl
from ..core.distributed import (DistInfo, agree_on_weights, all_reduce_sum, broadcast_object, is_main_process,
                                micro_batch, out_of_memory_advice, same_on_all_ranks)
from ..core.data import normalize_uint8
from ..core.errors import CheckpointError, CydasError, DataError
from ..core.loader import SeededSamples, make_loader
from ..core.logging import MetricWriter, progress
from ..core.run import RunDir, load_states
from ..core.seed import rng_state, seed_everything, set_rng_state
from ..core.speed import Speed
from ..models import DEFAULT_SLOTS, ChainSpace, create_chain_model
from .board import Board, Entry, ReplacementRule, mcnemar_p
from .evolution import Evolution, EvolutionConfig
from .cost import CostTable, build_cost_table, measure_latency_table
from .sampler import Limit, PathSampler
from .supernet import ChainSupernet, extract_child

CHECKPOINT_KIND = "cydas_chain/chain_search"


@dataclass
class SearchConfig:
    """Everything that determines the result of a search (checked again on ``--resume``)."""

    max_macs: int
    min_macs: int = 0
    max_params: Optional[int] = None
    max_latency_ms: Optional[float] = None
    board_size: int = 1
    epochs: int = 120
    warmup_epochs: float = 20.0  # supernet only: no distillation, no teacher replacement (Cream: 20 of 120)
    lr_warmup_epochs: float = 3.0  # linear lr warm-up from 0 (Cream: 3 of 120)
    batch_size: int = 1024  # total over all ranks
    img_size: int = 224  # training resolution
    cost_size: int = 224  # deployment resolution of the MACs / params / latency tables
    lr: Optional[float] = None  # None: 0.5 * batch_size / 1024
    momentum: float = 0.9
    weight_decay: float = 4e-5
    distill_weight: float = 1.0
    temperature: float = 1.0
    eval_interval: int = 100
    val_subset: int = 5000
    replace_test: str = "mcnemar"  # paired test on the validation images before a replacement, or "none"
    replace_alpha: float = 0.05
    replace_gap: Optional[float] = 5.0  # a path with more MACs replaces when this many points better (None: never)
    seed: int = 0
    slots: Tuple[int, ...] = DEFAULT_SLOTS  # layer slots of each searched stage (the space)
    weight_sharing: str = "entangled"  # or "independent" (the paper's SPOS); see supernet.py
    final: str = "teacher"  # what becomes arch.json: the last teacher (the paper) or the evolution's best
    evolution: Optional[dict] = None  # EvolutionConfig fields (None: its defaults), used with final="evolution"
    calib_batches: int = 20  # training batches that recalibrate BN before a recalibrated score
    accum_steps: int = 1  # micro-batches of batch_size / (world_size x accum_steps) images an update
    world_size: int = 1

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 0.5 * self.batch_size / 1024

    def as_dict(self) -> dict:
        return {**asdict(self), "slots": list(self.slots)}


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Train-mode BN (batch statistics) without updating the running statistics."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
        m.train()
    try:
        yield
    finally:
        for m, (momentum, training) in zip(bns, saved):
            m.momentum = momentum
            m.train(training)


class EpochOrder(Sampler):
    """This rank's ``(epoch, index)`` keys from batch ``start`` of ``epoch`` on (:class:`SeededSamples`' keys):
    the epoch's seeded permutation cut into total batches, this rank's slice of each."""

    def __init__(self, n: int, seed: int, batch_size: int, local_batch: int, rank: int, steps_per_epoch: int):
        self.n, self.seed, self.batch, self.local, self.rank = n, seed, batch_size, local_batch, rank
        self.steps = steps_per_epoch
        self.epoch = self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        epoch, order, r = self.epoch, epoch_order(self.n, self.seed, self.epoch), self.rank * self.local
        return ((epoch, int(i)) for k in range(self.start, self.steps)
                for i in order[k * self.batch + r:k * self.batch + r + self.local])

    def __len__(self) -> int:
        return (self.steps - self.start) * self.local


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class ChainSearch:
    """One search run; ``run()`` trains, evaluates, checkpoints and writes the outputs."""

    def __init__(self, cfg: SearchConfig, train_set: Dataset, train_transform, val_set: Dataset,
                 classes: Sequence[str], out_dir: Path | RunDir, dist: DistInfo, logger, workers: int = 0,
                 save_interval: int = 500, data_desc: str = "", latency_cache: Optional[Path] = None,
                 speed: Optional[Speed] = None,
                 normalize: Tuple[Sequence[float], Sequence[float]] = (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
                 log_interval: int = 50):
        """``train_set`` gives PIL images that ``train_transform`` turns into uint8 tensors, ``val_set``
        uint8 tensors (``core.data.build_transforms``); ``normalize`` = (mean, std) of the device-side
        normalisation."""
        self.run_dir = out_dir if isinstance(out_dir, RunDir) else RunDir(out_dir)  # RunDir.open: the tool's guard
        self.cfg, self.classes, self.out, self.dist, self.log = cfg, list(classes), self.run_dir.out, dist, logger
        self.workers, self.save_interval, self.data_desc = workers, save_interval, data_desc
        self.log_interval = max(1, log_interval)
        self.device = dist.device
        self.speed = speed or Speed(self.device)
        self.mean, self.std = (tuple(v) for v in normalize)
        self.micro_batch = micro_batch(cfg.batch_size, dist.world_size, cfg.accum_steps)  # images of one forward
        self.local_batch = self.micro_batch * cfg.accum_steps  # this rank's images of one update
        self.train_set = SeededSamples(train_set, cfg.seed, train_transform)
        self.steps_per_epoch = len(train_set) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"the training set has {len(train_set)} images, fewer than one batch of "
                            f"{cfg.batch_size}; lower --batch-size")
        self.total_steps = self.steps_per_epoch * cfg.epochs

        seed_everything(cfg.seed)
        self.space = ChainSpace(cfg.slots)
        self.supernet = ChainSupernet(num_classes=len(self.classes), space=self.space,
                                      weight_sharing=cfg.weight_sharing)
        self.table: CostTable = build_cost_table(self.space, len(self.classes), cfg.cost_size)
        limits = []
        if cfg.max_params is not None:
            limits.append(Limit("params", self.table.params.astype(np.float64), self.table.fixed_params,
                                cfg.max_params))
        self.latency = None
        if cfg.max_latency_ms is not None:
            self.log.info("measuring the per-layer latency table on %s (cached) ...", self.device)
            # measured once, on the main process; every rank samples with that one table
            table, fixed = broadcast_object(measure_latency_table(
                self.space, len(self.classes), cfg.cost_size, self.device, cache_dir=latency_cache)
                if is_main_process() else None)
            self.latency = Limit("latency", table, fixed, cfg.max_latency_ms, "ms")
            limits.append(self.latency)
        self.sampler = PathSampler(self.table, cfg.max_macs, cfg.min_macs, limits, seed=cfg.seed)
        self.speed.prepare(self.supernet)
        if self.speed.compile:  # the fixed parts; the searched layers switch ops every step (module doc)
            self.supernet.forward_stem = torch.compile(self.supernet.forward_stem)
            self.supernet.forward_head = torch.compile(self.supernet.forward_head)
        first = tuple(int(c) for c in self.sampler.sample())
        self.board = Board(Entry(first, int(self.table.path_macs(first))), cfg.board_size,
                           ReplacementRule(cfg.replace_test, cfg.replace_alpha, cfg.replace_gap))
        self.evaluations: List[dict] = []
        self.warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))

        # SGD with momentum, no weight decay on BN and biases; linear warm-up, then linear decay to 0.
        self.optimizer = create_optimizer_v2(self.supernet, "momentum", lr=cfg.base_lr,
                                             weight_decay=cfg.weight_decay, momentum=cfg.momentum)
        self.scheduler = PolyLRScheduler(self.optimizer, t_initial=self.total_steps, power=1.0, t_in_epochs=False,
                                         warmup_t=int(round(cfg.lr_warmup_epochs * self.steps_per_epoch)))
        self.scaler = self.speed.grad_scaler()
        self.model = self.supernet
        if dist.distributed:  # every rank trains the same path; the other blocks get no gradient
            self.model = nn.parallel.DistributedDataParallel(
                self.supernet, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.order = EpochOrder(len(train_set), cfg.seed, cfg.batch_size, self.local_batch, dist.rank,
                                self.steps_per_epoch)
        self.train_loader = make_loader(self.train_set, self.local_batch, device=self.device, mean=self.mean,
                                        std=self.std, sampler=self.order, drop_last=True, workers=workers)
        self.val_batches = self._load_val_subset(val_set)
        self._calib: Optional[List[torch.Tensor]] = None  # loaded on first use (evolution, benchmarks)
        self.step = 0
        # loss, ce, kd, acc summed on the device over the steps since the last metrics row (checkpointed, so a
        # resumed run's rows are the uninterrupted one's)
        self.interval, self.interval_steps = torch.zeros(4, device=self.device), 0

    # ---- data ---------------------------------------------------------------------------------
    def _load_val_subset(self, val_set: Dataset):
        """The fixed validation subset (this rank's share), preloaded as normalised batches on the device."""
        n = min(self.cfg.val_subset, len(val_set))
        self.val_count = n
        # A fixed random subset in random order: scoring uses batch statistics, so a batch must mix
        # the classes (ImageFolder lists them class by class).
        idx = np.random.default_rng([self.cfg.seed, 7]).permutation(len(val_set))[:n]
        idx = idx[self.dist.rank::self.dist.world_size]
        loader = make_loader(torch.utils.data.Subset(val_set, idx.tolist()), self.micro_batch, device=self.device,
                             mean=self.mean, std=self.std, workers=self.workers)
        return [(self.speed.inputs(x), y) for x, y in loader]

    def batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's training batches (normalised, on the device) from the step reached to the last: the
        caller counts ``self.step`` up by one a batch."""
        while self.step < self.total_steps:
            self.order.set_position(*divmod(self.step, self.steps_per_epoch))
            yield from self.train_loader

    # ---- one training step --------------------------------------------------------------------
    def _autocast(self):
        return self.speed.autocast()

    def train_step(self, x: torch.Tensor, y: torch.Tensor, path: Sequence[int]) -> Dict[str, torch.Tensor]:
        """One update of ``path`` on this rank's batch ``x`` (``accum_steps`` micro-batches, DDP synchronising
        the last): cross-entropy plus distillation from the teacher after the warm-up.  Returns the batch's
        loss, ce, kd and acc (%) as device tensors: no host sync."""
        cfg = self.cfg
        self.supernet.train()
        distil = cfg.distill_weight > 0 and self.step >= self.warmup_steps
        self.optimizer.zero_grad(set_to_none=True)  # blocks off the path get no update, no decay
        sums = torch.zeros(4, device=x.device)  # loss, ce, kd, hits
        chunks = list(zip(x.split(self.micro_batch), y.split(self.micro_batch)))
        for k, (xb, yb) in enumerate(chunks):
            xb = self.speed.inputs(xb)
            last = k == len(chunks) - 1
            sync = self.model.no_sync() if self.dist.distributed and not last else contextlib.nullcontext()
            with sync, out_of_memory_advice(len(yb)):
                with self._autocast():
                    teacher_logits = None
                    if distil:
                        with torch.no_grad(), frozen_bn_stats(self.supernet):
                            teacher_logits = self.supernet(xb, self.board.teacher.path)
                    logits = self.model(xb, path)
                    ce = F.cross_entropy(logits, yb)
                    kd = soft_target_kl(logits.float(), teacher_logits.float(), cfg.temperature) \
                        if teacher_logits is not None else torch.zeros((), device=x.device)
                    loss = ce + cfg.distill_weight * kd
                self.scaler.scale(loss / len(chunks)).backward()
            sums += torch.stack([loss.detach().float(), ce.detach().float(), kd.detach().float(),
                                 (logits.detach().argmax(1) == yb).float().mean() * 100])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step_update(self.step + 1)
        loss, ce, kd, acc = sums / len(chunks)
        return {"loss": loss, "ce": ce, "kd": kd, "acc": acc}

    @torch.no_grad()
    def correct(self, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """Whether each path gets each image of this rank's validation subset right: (paths, images)."""
        with frozen_bn_stats(self.supernet), self._autocast():
            return torch.stack([torch.cat([self.supernet(x, p).argmax(1) == y for x, y in self.val_batches])
                                for p in paths])

    def score(self, paths: Sequence[Sequence[int]]) -> List[float]:
        """Top-1 accuracy (%) of each path on the validation subset, with the current weights."""
        correct = all_reduce_sum(self.correct(paths).sum(1).float())
        return (correct / self.val_count * 100).tolist()

    @torch.no_grad()
    def val_loss(self, paths: Sequence[Sequence[int]]) -> List[float]:
        """Mean cross-entropy of each path on the validation subset, measured as :meth:`score` measures:
        a continuous score (lower is better) with less sampling noise than a top-1 count on a small
        subset (benchmarks)."""
        with frozen_bn_stats(self.supernet), self._autocast():
            total = torch.stack([sum(F.cross_entropy(self.supernet(x, p).float(), y, reduction="sum")
                                     for x, y in self.val_batches) for p in paths])
        return (all_reduce_sum(total) / self.val_count).tolist()

    # ---- scores after BN recalibration (evolution, benchmarks) ----------------------------------
    CALIBRATION_EPOCH = -1  # the augmentation key of the calibration images: fixed, whatever the epoch reached

    def _calibration_batches(self) -> Iterator[torch.Tensor]:
        """Fixed, augmented training batches (the same on every rank, so every rank recalibrates alike), normalised
        on the device one at a time: they are kept as uint8 in host memory (pinned on CUDA), a quarter of their
        float32 size and none of the device's."""
        if self._calib is None:
            n = min(self.cfg.calib_batches * self.local_batch, len(self.train_set))
            idx = np.random.default_rng([self.cfg.seed, 13]).permutation(len(self.train_set))[:n]
            keys = [(self.CALIBRATION_EPOCH, int(i)) for i in idx]
            loader = DataLoader(self.train_set, batch_size=self.local_batch, sampler=keys, num_workers=self.workers)
            pin = self.device.type == "cuda"
            self._calib = [x.pin_memory() if pin else x for x, _ in loader]
        for x in self._calib:
            yield self.speed.inputs(normalize_uint8(x.to(self.device, non_blocking=True), self.mean, self.std))

    @torch.no_grad()
    def recalibrated_correct(self, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """Like :meth:`correct`, but each path runs as its standalone child network in eval mode, with BN
        statistics recomputed on the calibration batches (SPOS's "BN recalibration"): the score of
        the network as it would be deployed with the supernet's weights."""
        from torch.nn.modules.batchnorm import _BatchNorm

        out = []
        for p in paths:
            child = extract_child(self.supernet, p)
            for m in child.modules():
                if isinstance(m, _BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None  # a cumulative average over the calibration batches
            child.train()
            with self._autocast():
                for x in self._calibration_batches():
                    child(x)
                child.eval()
                out.append(torch.cat([child(x).argmax(1) == y for x, y in self.val_batches]))
        return torch.stack(out)

    def recalibrated_score(self, paths: Sequence[Sequence[int]]) -> List[float]:
        """Top-1 accuracy (%) of each path's child network after BN recalibration."""
        if not len(paths):
            return []
        correct = all_reduce_sum(self.recalibrated_correct(paths).sum(1).float())
        return (correct / self.val_count * 100).tolist()

    def evolve(self, cfg: Optional[EvolutionConfig] = None) -> dict:
        """Evolutionary search on the trained supernet within the budget (:mod:`.evolution`)."""
        cfg = cfg or EvolutionConfig(**(self.cfg.evolution or {}), seed=self.cfg.seed)
        evolution = Evolution(self.sampler, cfg)
        bar = progress(total=cfg.generations, desc="evolution", unit="gen")

        def log(msg):
            bar.update(1)
            self.log.info(msg)

        result = evolution.run(self.recalibrated_score, log)
        bar.close()
        return result

    def evaluate(self, path: Sequence[int]) -> dict:
        """Score the sampled path and the board with the same weights, on the same images; apply the rule."""
        board_paths = self.board.paths()
        right = self.correct([*board_paths, path])
        cand_right, board_right = right[-1], right[:-1]
        scores = (all_reduce_sum(right.sum(1).float()) / self.val_count * 100).tolist()
        wins = all_reduce_sum((cand_right & ~board_right).sum(1).float()).tolist()
        losses = all_reduce_sum((~cand_right & board_right).sum(1).float()).tolist()
        disagreements = {p: (int(w), int(n)) for p, w, n in zip(board_paths, wins, losses)}
        self.board.rescore(scores[:-1])
        cand = Entry(tuple(int(c) for c in path), int(self.table.path_macs(path)), scores[-1], self.step)
        teacher, incumbent = self.board.teacher, self.board.entries[-1]
        entered = self.board.offer(cand, disagreements)
        wins, losses = disagreements[incumbent.path]
        # outputs name every network by its canonical path (skips last in their stage), as arch.json does
        record = {"step": self.step, "path": self.space.path_str(self.space.canonical(cand.path)), "macs": cand.macs,
                  "score": cand.score,
                  "teacher_score": teacher.score, "teacher_macs": teacher.macs, "wins": wins, "losses": losses,
                  "p_value": round(mcnemar_p(wins, losses), 6), "entered": int(entered)}
        self.evaluations.append(record)
        if entered and self.board.teacher == cand:
            self.log.info("step %d: new teacher %s  %.1fM MACs, score %.2f (was %.2f at %.1fM)", self.step,
                          self.space.path_str(self.space.canonical(cand.path)), cand.macs / 1e6, cand.score,
                          teacher.score, teacher.macs / 1e6)
        return record

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": CHECKPOINT_KIND, "space": "cydas_chain", "config": self.cfg.as_dict(),
                "classes": self.classes, "step": self.step, "model": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "sampler": self.sampler.state_dict(),
                "board": self.board.state_dict(), "evaluations": self.evaluations, "rng": rng_state(),
                "interval": self.interval.cpu(), "interval_steps": self.interval_steps}

    def save(self) -> None:
        if is_main_process():
            save_checkpoint(self.state_dict(), self.run_dir.last)

    def load(self, path: Path) -> None:
        """Continue the search of checkpoint ``path``; its settings must be this search's."""
        state = load_checkpoint(path, map_location=self.device, kind=(CHECKPOINT_KIND, "chain-space search"))
        self.run_dir.start(self.cfg.as_dict(), state.get("config", {}), source=f"checkpoint {path}")
        if state.get("classes") != self.classes:
            raise CheckpointError(f"checkpoint {path} was made on other classes ({len(state.get('classes', []))} "
                                  f"classes, now {len(self.classes)})")
        load_states({"model": self.supernet, "optimizer": self.optimizer, "scheduler": self.scheduler,
                     "scaler": self.scaler, "sampler": self.sampler, "board": self.board}, state, f"checkpoint {path}")
        self.evaluations = list(state["evaluations"])
        self.step = int(state["step"])
        if "interval" in state:
            self.interval, self.interval_steps = state["interval"].to(self.device), int(state["interval_steps"])
        set_rng_state(state["rng"])

    # ---- the loop -----------------------------------------------------------------------------
    def run(self, resume: Optional[Path] = None) -> dict:
        """Search (continuing checkpoint ``resume``, default: the run folder's ``--resume``), then
        write the outputs."""
        cfg = self.cfg
        resume = resume if resume is not None else self.run_dir.resume
        if resume is not None:
            self.load(resume)
        else:
            self.run_dir.start(cfg.as_dict())
        metrics = MetricWriter(self.out)
        if resume is not None:
            metrics.truncate_after(self.step)
            self.log.info("resumed from %s at step %d/%d", resume, self.step, self.total_steps)
        lo, hi = self.table.macs_range()
        self.log.info("space: %s (the paper's 3.69e16 counts 4 slots a stage); %.1fM..%.1fM MACs at %dx%d; "
                      "%s weights", self.space.describe(), lo / 1e6, hi / 1e6, *self.table.input_size,
                      cfg.weight_sharing)
        self.log.info("sampling %s (%.2e paths in the relaxed set)", self.sampler.describe(),
                      self.sampler.relaxed_count)
        self.log.info("%d steps (%d epochs x %d), batch %d (%d per process), lr %.4g (warm-up %d steps); "
                      "supernet only for %d steps, then distillation (weight %g) and the teacher rule every %d "
                      "steps on %d validation images (board %d, %s; more MACs %s)", self.total_steps, cfg.epochs,
                      self.steps_per_epoch, cfg.batch_size, self.local_batch, cfg.base_lr,
                      self.scheduler.warmup_t, self.warmup_steps, cfg.distill_weight, cfg.eval_interval,
                      self.val_count, cfg.board_size,
                      "paired McNemar test at %g" % cfg.replace_alpha if cfg.replace_test == "mcnemar"
                      else "the paper's bare rule",
                      "never" if cfg.replace_gap is None else "when > %g points better" % cfg.replace_gap)
        bar = progress(total=self.total_steps, initial=self.step, desc="search", unit="step")
        digest = 0
        for x, y in self.batches():
            path = tuple(int(c) for c in self.sampler.sample())
            for c in path:  # a running digest of the sampled paths, compared across ranks at each save
                digest = (digest * 31 + c + 1) % _DIGEST_MOD
            m = self.train_step(x, y, path)
            self.interval += torch.stack([m["loss"], m["ce"], m["kd"], m["acc"]])
            self.interval_steps += 1
            self.step += 1
            bar.update(1)
            evaluated = self.step >= self.warmup_steps and (self.step % cfg.eval_interval == 0
                                                            or self.step == self.total_steps)
            record = self.evaluate(path) if evaluated else None
            if evaluated or self.step % self.log_interval == 0 or self.step == self.total_steps:
                # one row an interval (and at every application of the rule): the means since the last row
                loss, ce, kd, acc = (self.interval / self.interval_steps).tolist()
                teacher = self.board.teacher
                row = {"loss": loss, "ce": ce, "kd": kd, "acc": acc, "steps": self.interval_steps,
                       "path": self.space.path_str(path), "lr": self.optimizer.param_groups[0]["lr"],
                       "macs": self.table.path_macs(path) / 1e6, "teacher_macs": teacher.macs / 1e6}
                if record is not None:
                    row.update(score=record["score"], teacher_score=teacher.score)
                metrics.write(self.step, row)
                self.interval.zero_()
                self.interval_steps = 0
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}",
                                teacher=f"{teacher.macs / 1e6:.0f}M/{_fmt_score(teacher.score)}")
            if self.step % self.save_interval == 0 or self.step == self.total_steps:
                if not same_on_all_ranks(torch.tensor([digest], device=self.device)):
                    raise CydasError(f"by step {self.step} the {self.dist.world_size} processes sampled "
                                     f"different paths (their samplers diverged); restart from the last checkpoint")
                agree_on_weights("supernet weights", self.supernet)
                self.save()
        bar.close()
        metrics.close()
        if self.dist.world_size > 1:
            self.log.info("the %d processes trained the same path at every step and held the same weights at every "
                          "checkpoint", self.dist.world_size)
        return self.finish()

    # ---- outputs ------------------------------------------------------------------------------
    def finish(self) -> dict:
        """Write arch.json, teacher_history.json, evaluations.csv, search.png and, with
        ``final="evolution"``, evolution.json (the evolution runs on every rank; files on the main one)."""
        teacher = self.board.teacher
        evolution = None
        if self.cfg.final == "evolution":
            evolution = self.evolve()
            teacher_recalibrated = self.recalibrated_score([teacher.path])[0]
        if not is_main_process():
            return {}
        from ..core.flops import count_macs

        if evolution is None:
            path, score = teacher.path, teacher.score
            metric = f"top-1 % on the {self.val_count}-image validation subset, supernet weights, batch-statistics BN"
        else:
            path, score = tuple(evolution["top"][0]["path"]), evolution["top"][0]["score"]
            metric = (f"top-1 % on the {self.val_count}-image validation subset, supernet weights, BN recalibrated "
                      f"on {self.cfg.calib_batches} training batches")
            for top in evolution["top"]:
                top["path"] = list(self.space.canonical(top["path"]))
            evolution["teacher"] = {"path": list(self.space.canonical(teacher.path)), "score": teacher.score,
                                    "recalibrated_score": teacher_recalibrated, "macs": teacher.macs}
            write_json(self.out / "evolution.json", evolution)
        macs = int(self.table.path_macs(path))
        arch = self.space.arch(path)
        cost = count_macs(create_chain_model("cydas_chain", arch, num_classes=len(self.classes)),
                          self.cfg.cost_size)
        info = {**arch.to_dict(), "params": cost.params, "fvcore_macs": cost.fvcore_macs,
                "thop_macs": cost.thop_macs, "input_size": self.cfg.cost_size, "num_classes": len(self.classes),
                "score": score, "score_metric": metric, "chance": 100.0 / len(self.classes),
                "chosen_by": self.cfg.final,
                "budget": {"max_macs": self.cfg.max_macs, "macs": macs, "used": round(macs / self.cfg.max_macs, 4)},
                "teacher": {"path": list(self.space.canonical(teacher.path)), "score": teacher.score,
                            "macs": teacher.macs},
                "search": {**self.cfg.as_dict(), "steps": self.total_steps, "data": self.data_desc}}
        if self.latency is not None:
            info["latency_ms_estimate"] = float(self.latency.values(np.asarray([path]))[0])
        history = [{**h, "path": list(self.space.canonical(h["path"]))} for h in self.board.history]
        write_json(self.out / "arch.json", info)
        write_json(self.out / "teacher_history.json", history)
        self._write_evaluations()
        from .plot import plot_search
        plot_search(self.board.history, self.evaluations, self.cfg, self.out / "search.png")
        self.log.info("searched architecture (%s, the %s): %s | %.1fM MACs (fvcore; %.0f%% of the %.0fM budget), "
                      "%.1fM (thop), %.3fM params", self.out / "arch.json",
                      "last teacher" if evolution is None else "evolution's best", arch, cost.fvcore_macs / 1e6,
                      100 * macs / self.cfg.max_macs, self.cfg.max_macs / 1e6, cost.thop_macs / 1e6,
                      cost.params / 1e6)
        self.log.info("final score: %.1f%% top-1 on the %d validation images (chance %.1f%%)", score,
                      self.val_count, 100.0 / len(self.classes))
        return info

    def _write_evaluations(self) -> None:
        import csv
        import io

        buf = io.StringIO()
        fields = ["step", "path", "macs", "score", "teacher_score", "teacher_macs", "wins", "losses", "p_value",
                  "entered"]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(self.evaluations)
        data = buf.getvalue().encode()
        atomic_write(self.out / "evaluations.csv", lambda f: f.write(data))


_DIGEST_MOD = 2 ** 61 - 1  # a prime: the digest of the sampled paths fits an int64 tensor


def _fmt_score(s: float) -> str:
    return "-" if math.isnan(s) else f"{s:.1f}"


