"""The chain-space search algorithm: an SPOS supernet trained with an introspective teacher path.

Per step (CyDAS TPAMI, Sec. 4.6.1): sample a path among those within the budget; train it on
cross-entropy plus distillation from the teacher path's soft labels (teacher forward without
gradients); every ``eval_interval`` steps, score the sampled path and the board (the teacher) with the
same current weights and apply the replacement rule (:mod:`.board`).  The final teacher is the searched
architecture (or, with ``final="evolution"``, the best path of an evolution on the trained supernet).

This module is the algorithm only: :class:`ChainSearcher` holds the supernet, the sampler, the board,
the optimizer and the data it scores with, and steps, scores and evolves.  Its run (folder, config
check, resume, the loop's checkpoints and metrics, the output files) is :mod:`.run`'s, and selecting
more networks from a finished supernet is :mod:`.select`'s.

Scores are measured on ``score_set``: images held out of the supernet's training set (a stratified share
of ``train/``, ``core.data.selection_splits``), never the images a user reports accuracy on.  With
``score_on="batch"`` (the released code) a path's score is its top-1 on the training batch instead.

BatchNorm: in a supernet the running statistics of a block mix the statistics of every path it ran
in, so they describe no single path.  Scores and teacher soft labels therefore use batch statistics
(train-mode BN on a fixed batch of the scoring images, or on the training batch), which is what
recalibrating the statistics would estimate, at no extra cost; the running statistics are not
touched by these forwards (:func:`frozen_bn_stats`).  A network as it is exported or reported
(:meth:`ChainSearcher.child`) has its statistics recalibrated on fixed training batches.

Determinism, for an exact resume: the data order is a seeded permutation per epoch, each image's
augmentation is seeded by (seed, epoch, index) (``core.loader``; the BN-calibration images by a fixed
key of their own), paths come from the sampler's own seeded generator (identical on every DDP rank, so
every rank trains the same path), and :meth:`ChainSearcher.state_dict` holds everything else that
changes.

Speed: batches arrive as uint8 and are normalised on the device; mixed precision and channels-last come
from :class:`~cydas_chain.core.speed.Speed`; no step syncs with the host except to score.  ``compile``
compiles the fixed parts (stem, first stage, last stage and head): the searched layers run another op
every step, and compiling each (layer, op) would make 126 graphs a resolution.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.optim import create_optimizer_v2
from timm.scheduler import PolyLRScheduler
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.data import normalize_uint8
from ..core.distill import soft_target_kl
from ..core.distributed import DistInfo, all_reduce_sum, micro_batch, out_of_memory_advice, wrap_ddp
from ..core.errors import CheckpointError, ConfigError, DataError
from ..core.loader import SeededSamples, make_loader
from ..core.logging import progress
from ..core.run import load_states
from ..core.seed import rng_state, seed_everything, set_rng_state
from ..core.speed import Speed
from ..models import DEFAULT_SLOTS, ChainSpace
from .board import Board, Entry, ReplacementRule, mcnemar_p
from .cost import CostTable, build_cost_table
from .evolution import Evolution, EvolutionConfig
from .latency import LatencyTable
from .sampler import Limit, PathSampler
from .supernet import ChainSupernet, extract_child

CHECKPOINT_KIND = "cydas_chain/chain_search"
CHECKPOINT_VERSION = 2  # 2: presets, held-out scoring images, counters (2026-12-06)
SCORE_ON = ("holdout", "batch")
DISTILL_ONSETS = ("fixed", "learned")
LR_SCALINGS = ("linear", "sqrt")
LOW_RESOLUTION = 64  # below this many pixels a side, crop_scale=None keeps whole images (crop_min)


@dataclass
class SearchConfig:
    """Everything that determines the result of a search (checked again on ``--resume``).  Presets
    (:mod:`.presets`) fill the method settings; the tool the sizes."""

    max_macs: int
    min_macs: int = 0
    max_params: Optional[int] = None
    max_latency_ms: Optional[float] = None
    counter: str = "thop"  # the MACs counter of the budget: thop or fvcore (core.flops)
    preset: str = "default"
    board_size: int = 1
    epochs: int = 120
    distill_start: float = 20.0  # supernet-only epochs: no distillation, no teacher rule before
    distill_onset: str = "fixed"  # or "learned": later than distill_start while the supernet is at chance
    warmup_epochs: float = 3.0  # linear lr warm-up from 0
    batch_size: int = 1024  # total over all ranks and accumulation steps
    img_size: int = 224  # training resolution
    cost_size: int = 224  # deployment resolution of the MACs / params / latency tables
    lr: Optional[float] = None  # None: lr_per_1024 scaled to batch_size by lr_scaling
    lr_per_1024: float = 0.5
    lr_scaling: str = "linear"  # x batch/1024, or "sqrt": x sqrt(batch/1024), which does not starve small batches
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    ce_weight: float = 1.0
    distill_weight: float = 1.0
    temperature: float = 1.0
    eval_interval: int = 100
    score_on: str = "holdout"  # held-out images of train/, or the training batch (the released code)
    holdout: float = 5000  # images of train/ held out to score paths: a share (< 1) or a count
    holdout_max_share: Optional[float] = None  # at most this share of train/ (a default count on a small set)
    replace_test: str = "mcnemar"  # paired test on the held-out images before a replacement, or "none"
    replace_alpha: float = 0.05
    replace_gap: Optional[float] = 5.0  # a path with more MACs replaces when this many points better (None: never)
    strictly_fewer: bool = False  # the released rule: higher with strictly fewer MACs
    op_probs: Optional[Tuple[float, ...]] = None  # per-op sampling probabilities (ops, then skip); None: uniform
    seed: int = 0
    slots: Tuple[int, ...] = DEFAULT_SLOTS  # layer slots of each searched stage (the space)
    weight_sharing: str = "entangled"  # or "independent" (the paper's SPOS); see supernet.py
    augment: str = "imagenet"  # core.data.build_transforms kind (+ "released": colour jitter, random erasing)
    crop_scale: Optional[float] = 0.08  # random-resized crops' smallest area; None: by resolution (crop_min)
    final: str = "teacher"  # what becomes arch.json: the last teacher (the paper) or the evolution's best
    evolution: Optional[dict] = None  # EvolutionConfig fields (None: its defaults), used with final="evolution"
    calib_batches: int = 20  # training batches that recalibrate BN (evolution, exported weights, the report)
    accum_steps: int = 1  # micro-batches of batch_size / (world_size x accum_steps) images an update
    world_size: int = 1

    def __post_init__(self):
        if self.distill_onset not in DISTILL_ONSETS:
            raise ConfigError(f"distill_onset must be one of {', '.join(DISTILL_ONSETS)}, got {self.distill_onset!r}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ConfigError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}")
        if self.score_on not in SCORE_ON:
            raise ConfigError(f"score_on must be one of {', '.join(SCORE_ON)}, got {self.score_on!r}")
        if self.op_probs is not None:
            self.op_probs = tuple(float(p) for p in self.op_probs)
        self.slots = tuple(int(n) for n in self.slots)

    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        share = self.batch_size / 1024
        return self.lr_per_1024 * (math.sqrt(share) if self.lr_scaling == "sqrt" else share)

    @property
    def crop_min(self) -> float:
        """The smallest crop area of the random-resized crops: ``crop_scale``, or with None ImageNet's 0.08
        from 64 px up and whole images (1.0, aspect jitter only) below: 8% of 32 px is 9 px a side."""
        if self.crop_scale is not None:
            return self.crop_scale
        return 0.08 if self.img_size >= LOW_RESOLUTION else 1.0

    def as_dict(self) -> dict:
        d = asdict(self)
        return {**d, "slots": list(self.slots), "op_probs": None if self.op_probs is None else list(self.op_probs)}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


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


class ChainSearcher:
    """The supernet, sampler, board and optimizer of one search, and the steps of the algorithm.

    ``train_set`` gives PIL images that ``train_transform`` turns into uint8 tensors; ``score_set`` gives
    uint8 tensors (images held out of ``train_set``); ``normalize`` = (mean, std) of the device-side
    normalisation; ``latency`` a :class:`~.latency.LatencyTable` for ``max_latency_ms``.
    """

    CALIBRATION_EPOCH = -1  # the augmentation key of the calibration images: fixed, whatever the epoch reached

    def __init__(self, cfg: SearchConfig, train_set: Dataset, train_transform, score_set: Dataset,
                 classes: Sequence[str], dist: DistInfo, log, *, workers: int = 0, speed: Optional[Speed] = None,
                 normalize: Tuple[Sequence[float], Sequence[float]] = (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
                 latency: Optional[LatencyTable] = None, table: Optional[CostTable] = None):
        self.cfg, self.classes, self.dist, self.log, self.workers = cfg, list(classes), dist, log, workers
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
        self.table: CostTable = table or build_cost_table(self.space, len(self.classes), cfg.cost_size, cfg.counter)
        self.latency = latency
        self.sampler = PathSampler(self.table, cfg.max_macs, cfg.min_macs, self.limits(), seed=cfg.seed,
                                   op_probs=cfg.op_probs)
        self.speed.prepare(self.supernet)
        if self.speed.compile:  # the fixed parts; the searched layers switch ops every step (module doc)
            self.supernet.forward_stem = torch.compile(self.supernet.forward_stem)
            self.supernet.forward_head = torch.compile(self.supernet.forward_head)
        first = tuple(int(c) for c in self.sampler.sample())
        self.board = Board(Entry(first, int(self.table.path_macs(first))), cfg.board_size,
                           ReplacementRule(cfg.replace_test, cfg.replace_alpha, cfg.replace_gap, cfg.strictly_fewer))
        self.evaluations: List[dict] = []
        # distillation and the teacher rule start here (the run postpones it while the supernet is at chance
        # with distill_onset="learned", to the latest half-way: a teacher picked on chance scores teaches noise)
        self.distill_steps = int(round(cfg.distill_start * self.steps_per_epoch))
        self.latest_distill_steps = max(self.distill_steps, self.total_steps // 2)

        # SGD with momentum (Nesterov as an option), no weight decay on BN and biases; linear warm-up, then
        # linear decay to 0.
        self.optimizer = create_optimizer_v2(self.supernet, "nesterov" if cfg.nesterov else "momentum",
                                             lr=cfg.base_lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
        self.scheduler = PolyLRScheduler(self.optimizer, t_initial=self.total_steps, power=1.0, t_in_epochs=False,
                                         warmup_t=int(round(cfg.warmup_epochs * self.steps_per_epoch)))
        self.scaler = self.speed.grad_scaler()
        # every rank trains the same path; the other blocks get no gradient
        self.model = wrap_ddp(self.supernet, self.device, find_unused_parameters=True)
        self.order = EpochOrder(len(train_set), cfg.seed, cfg.batch_size, self.local_batch, dist.rank,
                                self.steps_per_epoch)
        self.train_loader = make_loader(self.train_set, self.local_batch, device=self.device, mean=self.mean,
                                        std=self.std, sampler=self.order, drop_last=True, workers=workers)
        self.score_batches = self._load_score_set(score_set)
        self._calib: Optional[List[torch.Tensor]] = None  # loaded on first use
        self.step = 0
        self.last_batch_acc = math.nan  # the training batch's top-1 of the last step (score_on="batch")

    def limits(self) -> List[Limit]:
        """The sampler's limits besides MACs: parameters and latency."""
        cfg, out = self.cfg, []
        if cfg.max_params is not None:
            out.append(Limit("params", self.table.params.astype(np.float64), self.table.fixed_params, cfg.max_params))
        if cfg.max_latency_ms is not None:
            if self.latency is None:
                raise ConfigError("a latency limit needs a latency table")
            out.append(Limit("latency", self.latency.table, self.latency.fixed, cfg.max_latency_ms, "ms"))
        return out

    # ---- data ---------------------------------------------------------------------------------
    def _load_score_set(self, score_set: Dataset):
        """The held-out scoring images (this rank's share), in a fixed random order (scoring uses batch
        statistics, so a batch must mix the classes), kept on the device as normalised batches."""
        self.score_count = len(score_set)
        idx = np.random.default_rng([self.cfg.seed, 7]).permutation(len(score_set))
        idx = idx[self.dist.rank::self.dist.world_size]
        loader = make_loader(torch.utils.data.Subset(score_set, idx.tolist()), self.micro_batch, device=self.device,
                             mean=self.mean, std=self.std, workers=self.workers)
        return [(self.speed.inputs(x), y) for x, y in loader]

    def batches(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's training batches (normalised, on the device) from the step reached to the last: the
        caller counts ``self.step`` up by one a batch."""
        while self.step < self.total_steps:
            self.order.set_position(*divmod(self.step, self.steps_per_epoch))
            yield from self.train_loader

    def calibration_batches(self) -> Iterator[torch.Tensor]:
        """Fixed, augmented training batches (the same on every rank, so every rank recalibrates alike),
        normalised on the device one at a time: they are kept as uint8 in host memory (pinned on CUDA), a
        quarter of their float32 size and none of the device's."""
        if self._calib is None:
            n = min(self.cfg.calib_batches * self.local_batch, len(self.train_set))
            idx = np.random.default_rng([self.cfg.seed, 13]).permutation(len(self.train_set))[:n]
            keys = [(self.CALIBRATION_EPOCH, int(i)) for i in idx]
            loader = DataLoader(self.train_set, batch_size=self.local_batch, sampler=keys, num_workers=self.workers)
            pin = self.device.type == "cuda"
            self._calib = [x.pin_memory() if pin else x for x, _ in loader]
        for x in self._calib:
            yield self.speed.inputs(normalize_uint8(x.to(self.device, non_blocking=True), self.mean, self.std))

    # ---- one training step --------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor, path: Sequence[int]) -> Dict[str, torch.Tensor]:
        """One update of ``path`` on this rank's batch ``x`` (``accum_steps`` micro-batches, DDP synchronising
        the last): cross-entropy plus distillation from the teacher after ``distill_start``.  Returns the
        batch's loss, ce, kd and acc (%) as device tensors: no host sync."""
        cfg = self.cfg
        self.supernet.train()
        distil = cfg.distill_weight > 0 and self.step >= self.distill_steps
        self.optimizer.zero_grad(set_to_none=True)  # blocks off the path get no update, no decay
        sums = torch.zeros(4, device=x.device)  # loss, ce, kd, acc
        chunks = list(zip(x.split(self.micro_batch), y.split(self.micro_batch)))
        for k, (xb, yb) in enumerate(chunks):
            xb = self.speed.inputs(xb)
            last = k == len(chunks) - 1
            sync = self.model.no_sync() if self.dist.distributed and not last else contextlib.nullcontext()
            with sync, out_of_memory_advice(len(yb)):
                with self.speed.autocast():
                    teacher_logits = None
                    if distil:
                        with torch.no_grad(), frozen_bn_stats(self.supernet):
                            teacher_logits = self.supernet(xb, self.board.teacher.path)
                    logits = self.model(xb, path)
                    ce = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                    kd = soft_target_kl(logits.float(), teacher_logits.float(), cfg.temperature) \
                        if teacher_logits is not None else torch.zeros((), device=x.device)
                    loss = cfg.ce_weight * ce + cfg.distill_weight * kd
                self.scaler.scale(loss / len(chunks)).backward()
            sums += torch.stack([loss.detach().float(), ce.detach().float(), kd.detach().float(),
                                 (logits.detach().argmax(1) == yb).float().mean() * 100])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step_update(self.step + 1)
        loss, ce, kd, acc = sums / len(chunks)
        return {"loss": loss, "ce": ce, "kd": kd, "acc": acc}

    # ---- scores -----------------------------------------------------------------------------------
    @torch.no_grad()
    def correct(self, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """Whether each path gets each image of this rank's scoring share right: (paths, images)."""
        with frozen_bn_stats(self.supernet), self.speed.autocast():
            return torch.stack([torch.cat([self.supernet(x, p).argmax(1) == y for x, y in self.score_batches])
                                for p in paths])

    def score(self, paths: Sequence[Sequence[int]]) -> List[float]:
        """Top-1 accuracy (%) of each path on the held-out scoring images, with the current weights."""
        correct = all_reduce_sum(self.correct(paths).sum(1).float())
        return (correct / self.score_count * 100).tolist()

    @torch.no_grad()
    def val_loss(self, paths: Sequence[Sequence[int]]) -> List[float]:
        """Mean cross-entropy of each path on the scoring images, measured as :meth:`score` measures: a
        continuous score (lower is better) with less sampling noise than a top-1 count (benchmarks)."""
        with frozen_bn_stats(self.supernet), self.speed.autocast():
            total = torch.stack([sum(F.cross_entropy(self.supernet(x, p).float(), y, reduction="sum")
                                     for x, y in self.score_batches) for p in paths])
        return (all_reduce_sum(total) / self.score_count).tolist()

    @torch.no_grad()
    def child(self, path: Sequence[int]) -> nn.Module:
        """The standalone timm network of ``path`` with the supernet's weights and BN statistics recalibrated
        on the calibration batches (SPOS's "BN recalibration"), in eval mode: the network as it is exported."""
        from torch.nn.modules.batchnorm import _BatchNorm

        child = extract_child(self.supernet, path)
        self.speed.prepare(child)
        for m in child.modules():
            if isinstance(m, _BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration batches
        child.train()
        with self.speed.autocast():
            for x in self.calibration_batches():
                child(x)
        for m in child.modules():
            if isinstance(m, _BatchNorm):
                m.momentum = 0.1  # timm's default again, for whoever trains the exported network
        return child.eval()

    @torch.no_grad()
    def recalibrated_correct(self, paths: Sequence[Sequence[int]]) -> torch.Tensor:
        """Like :meth:`correct`, but each path runs as its recalibrated standalone child (:meth:`child`) in eval
        mode: the score of the network as it would be deployed with the supernet's weights."""
        out = []
        for p in paths:
            child = self.child(p)
            with self.speed.autocast():
                out.append(torch.cat([child(x).argmax(1) == y for x, y in self.score_batches]))
        return torch.stack(out)

    def recalibrated_score(self, paths: Sequence[Sequence[int]]) -> List[float]:
        """Top-1 accuracy (%) on the scoring images of each path's child network after BN recalibration."""
        if not len(paths):
            return []
        correct = all_reduce_sum(self.recalibrated_correct(paths).sum(1).float())
        return (correct / self.score_count * 100).tolist()

    def evolution(self, cfg: Optional[EvolutionConfig] = None, sampler: Optional[PathSampler] = None) -> Evolution:
        """An evolutionary search on the trained supernet (:mod:`.evolution`) within ``sampler``'s limits
        (default: the search's budget), scoring paths by :meth:`recalibrated_score`."""
        cfg = cfg or EvolutionConfig(**(self.cfg.evolution or {}), seed=self.cfg.seed)
        return Evolution(sampler or self.sampler, cfg)

    def evolve(self, evolution: Optional[Evolution] = None, on_generation=None) -> dict:
        """Run ``evolution`` (default: :meth:`evolution`) to its end with a progress bar; ``on_generation``
        (e.g. a checkpoint) after each generation."""
        evolution = evolution or self.evolution()
        bar = progress(total=evolution.cfg.generations, initial=evolution.generation, desc="evolution", unit="gen")

        def log(msg):
            bar.update(1)
            self.log.info(msg)

        result = evolution.run(self.recalibrated_score, log, on_generation)
        bar.close()
        return result

    def evaluate(self, path: Sequence[int]) -> dict:
        """Score the sampled path and the board with the same weights, on the same images, and apply the rule.
        With ``score_on="batch"`` the sampled path's score is its training batch's top-1 (the released code)
        and the board keeps the scores its entries had when they entered."""
        cand_path = tuple(int(c) for c in path)
        if self.cfg.score_on == "batch":
            scores = [self.last_batch_acc]
            disagreements = {p: (0, 0) for p in self.board.paths()}
        else:
            board_paths = self.board.paths()
            right = self.correct([*board_paths, cand_path])
            cand_right, board_right = right[-1], right[:-1]
            scores = (all_reduce_sum(right.sum(1).float()) / self.score_count * 100).tolist()
            wins = all_reduce_sum((cand_right & ~board_right).sum(1).float()).tolist()
            losses = all_reduce_sum((~cand_right & board_right).sum(1).float()).tolist()
            disagreements = {p: (int(w), int(n)) for p, w, n in zip(board_paths, wins, losses)}
            self.board.rescore(scores[:-1])
        cand = Entry(cand_path, int(self.table.path_macs(cand_path)), scores[-1], self.step)
        teacher, incumbent = self.board.teacher, self.board.entries[-1]
        entered = self.board.offer(cand, disagreements)
        wins, losses = disagreements.get(incumbent.path, (0, 0))
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

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "space": "cydas_chain",
                "config": self.cfg.as_dict(), "classes": self.classes, "step": self.step,
                "total_steps": self.total_steps,
                "model": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "sampler": self.sampler.state_dict(), "board": self.board.state_dict(),
                "evaluations": self.evaluations, "rng": rng_state(), "last_batch_acc": self.last_batch_acc,
                "distill_steps": self.distill_steps}

    @staticmethod
    def check_version(state: dict, source) -> None:
        if int(state.get("version", 1)) != CHECKPOINT_VERSION:
            raise CheckpointError(f"{source} was written by an older chain search (before presets and held-out "
                                  f"scoring images): it cannot be continued; start a new search in another --out")

    def load_state_dict(self, state: dict, source) -> None:
        """Continue from ``state`` (a :meth:`state_dict` of this search; the caller compared the settings)."""
        self.check_version(state, source)
        if state.get("classes") != self.classes:
            raise CheckpointError(f"{source} was made on other classes ({len(state.get('classes', []))} "
                                  f"classes, now {len(self.classes)})")
        load_states({"model": self.supernet, "optimizer": self.optimizer, "scheduler": self.scheduler,
                     "scaler": self.scaler, "sampler": self.sampler, "board": self.board}, state, source)
        self.evaluations = list(state["evaluations"])
        self.step = int(state["step"])
        self.distill_steps = int(state.get("distill_steps", self.distill_steps))
        self.last_batch_acc = float(state.get("last_batch_acc", math.nan))
        set_rng_state(state["rng"])
