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
image's augmentation is seeded by (seed, epoch, index), paths come from the sampler's own seeded
generator (identical on every DDP rank, so every rank trains the same path), and the checkpoint
holds everything else that changes (weights, optimizer, scheduler, scaler, sampler, board, RNGs).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import PolyLRScheduler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..core.checkpoint import atomic_write, load_checkpoint, save_checkpoint, write_json
from ..core.distill import soft_target_kl
from ..core.distributed import DistInfo, all_reduce_sum, is_main_process, same_on_all_ranks
from ..core.errors import CheckpointError, CydasError, DataError
from ..core.logging import MetricWriter, progress
from ..core.run import RunDir, load_states
from ..core.seed import rng_state, seed_everything, set_rng_state
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
    amp: bool = False
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


class SeededAugment(Dataset):
    """Applies ``transform`` with the torch RNG seeded by (seed, epoch, index): the augmentation of
    an image does not depend on the worker, the batch position or an interrupted run."""

    def __init__(self, dataset: Dataset, transform, seed: int):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        img, target = self.dataset[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, int(i))) & 0x7FFF_FFFF_FFFF_FFFF)
            return self.transform(img), target


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class ChainSearch:
    """One search run; ``run()`` trains, evaluates, checkpoints and writes the outputs."""

    def __init__(self, cfg: SearchConfig, train_set: Dataset, train_transform, val_set: Dataset,
                 classes: Sequence[str], out_dir: Path | RunDir, dist: DistInfo, logger, workers: int = 0,
                 save_interval: int = 500, data_desc: str = "", latency_cache: Optional[Path] = None):
        self.run_dir = out_dir if isinstance(out_dir, RunDir) else RunDir(out_dir)  # RunDir.open: the tool's guard
        self.cfg, self.classes, self.out, self.dist, self.log = cfg, list(classes), self.run_dir.out, dist, logger
        self.workers, self.save_interval, self.data_desc = workers, save_interval, data_desc
        self.device = dist.device
        if cfg.batch_size % dist.world_size:
            raise CydasError(f"--batch-size {cfg.batch_size} is not divisible by the {dist.world_size} processes")
        self.local_batch = cfg.batch_size // dist.world_size
        self.train_set = SeededAugment(train_set, train_transform, cfg.seed)
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
            table, fixed = measure_latency_table(self.space, len(self.classes), cfg.cost_size, self.device,
                                                 cache_dir=latency_cache)
            self.latency = Limit("latency", table, fixed, cfg.max_latency_ms, "ms")
            limits.append(self.latency)
        self.sampler = PathSampler(self.table, cfg.max_macs, cfg.min_macs, limits, seed=cfg.seed)
        self.supernet.to(self.device)
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
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp)
        self.model = self.supernet
        if dist.distributed:  # every rank trains the same path; the other blocks get no gradient
            self.model = nn.parallel.DistributedDataParallel(
                self.supernet, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.val_batches = self._load_val_subset(val_set)
        self._calib: Optional[List[torch.Tensor]] = None  # loaded on first use (evolution, benchmarks)
        self.step = 0

    # ---- data ---------------------------------------------------------------------------------
    def _load_val_subset(self, val_set: Dataset):
        """The fixed validation subset (this rank's share), preloaded as batches on the device."""
        n = min(self.cfg.val_subset, len(val_set))
        self.val_count = n
        # A fixed random subset in random order: scoring uses batch statistics, so a batch must mix
        # the classes (ImageFolder lists them class by class).
        idx = np.random.default_rng([self.cfg.seed, 7]).permutation(len(val_set))[:n]
        idx = idx[self.dist.rank::self.dist.world_size]
        loader = DataLoader(torch.utils.data.Subset(val_set, idx.tolist()), batch_size=self.local_batch,
                            num_workers=self.workers)
        return [(x.to(self.device), y.to(self.device)) for x, y in loader]

    def _loader(self, epoch: int, start: int) -> DataLoader:
        """This rank's batches of ``epoch`` from batch ``start`` on."""
        self.train_set.epoch = epoch
        order = epoch_order(len(self.train_set), self.cfg.seed, epoch)
        b, r = self.cfg.batch_size, self.dist.rank * self.local_batch
        idx = [int(i) for k in range(start, self.steps_per_epoch)
               for i in order[k * b + r:k * b + r + self.local_batch]]
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=idx, drop_last=True,
                          num_workers=self.workers, pin_memory=self.device.type == "cuda")

    # ---- one training step --------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.cfg.amp)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, path: Sequence[int]) -> Dict[str, float]:
        cfg = self.cfg
        self.supernet.train()
        with self._autocast():
            teacher_logits = None
            if cfg.distill_weight > 0 and self.step >= self.warmup_steps:
                with torch.no_grad(), frozen_bn_stats(self.supernet):
                    teacher_logits = self.supernet(x, self.board.teacher.path)
            logits = self.model(x, path)
            ce = F.cross_entropy(logits, y)
            kd = soft_target_kl(logits.float(), teacher_logits.float(), cfg.temperature) \
                if teacher_logits is not None else torch.zeros((), device=x.device)
            loss = ce + cfg.distill_weight * kd
        self.optimizer.zero_grad(set_to_none=True)  # blocks off the path get no update, no decay
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step_update(self.step + 1)
        acc = (logits.argmax(1) == y).float().mean().item() * 100
        return {"loss": loss.item(), "ce": ce.item(), "kd": kd.item(), "acc": acc}

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
    def _calibration_batches(self) -> List[torch.Tensor]:
        """Fixed training batches (the same on every rank, so every rank recalibrates alike)."""
        if self._calib is None:
            n = min(self.cfg.calib_batches * self.local_batch, len(self.train_set))
            idx = np.random.default_rng([self.cfg.seed, 13]).permutation(len(self.train_set))[:n]
            loader = DataLoader(torch.utils.data.Subset(self.train_set, idx.tolist()), batch_size=self.local_batch,
                                num_workers=self.workers)
            self._calib = [x.to(self.device) for x, _ in loader]
        return self._calib

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
                "board": self.board.state_dict(), "evaluations": self.evaluations, "rng": rng_state()}

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
        last_eval = self.evaluations[-1] if self.evaluations else None
        digest = 0
        while self.step < self.total_steps:
            epoch, start = divmod(self.step, self.steps_per_epoch)
            for x, y in self._loader(epoch, start):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                path = tuple(int(c) for c in self.sampler.sample())
                for c in path:  # a running digest of the sampled paths, compared across ranks at each save
                    digest = (digest * 31 + c + 1) % _DIGEST_MOD
                lr = self.optimizer.param_groups[0]["lr"]
                m = self.train_step(x, y, path)
                self.step += 1
                teacher = self.board.teacher
                row = {**m, "path": self.space.path_str(path), "lr": lr, "macs": self.table.path_macs(path) / 1e6,
                       "teacher_macs": teacher.macs / 1e6}
                if self.step >= self.warmup_steps and (self.step % cfg.eval_interval == 0
                                                       or self.step == self.total_steps):
                    last_eval = self.evaluate(path)
                    teacher = self.board.teacher
                    row.update(score=last_eval["score"], teacher_score=teacher.score,
                               teacher_macs=teacher.macs / 1e6)
                metrics.write(self.step, row)
                bar.update(1)
                bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['acc']:.1f}",
                                teacher=f"{teacher.macs / 1e6:.0f}M/{_fmt_score(teacher.score)}")
                if self.step % self.save_interval == 0 or self.step == self.total_steps:
                    if not same_on_all_ranks(torch.tensor([digest], device=self.device)):
                        raise CydasError(f"by step {self.step} the {self.dist.world_size} processes sampled "
                                         f"different paths (their samplers diverged); restart from the last checkpoint")
                    self.save()
        bar.close()
        metrics.close()
        if self.dist.world_size > 1:
            self.log.info("the %d processes trained the same path at every step", self.dist.world_size)
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


