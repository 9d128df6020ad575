"""The cyclic search (CyDAS Algorithm 1) in the DARTS and NAS-Bench-201 cell spaces.

Two networks are trained in turn:

* the **search network** (mixed ops weighted by softmax(alpha)), weights ``w_S``;
* the **evaluation network**, built from the discretized alpha, weights ``w_E``.

Every ``update_every`` steps (S_U) alpha is discretized; when the genotype changed, the evaluation
network is rebuilt and inherits the trained weights of every (cell, edge, op) it shares with any
earlier one (a weight bank keyed by parameter name, see :mod:`cydas_chain.models.darts.eval_net`); it is
then trained for S_E (``eval_steps`` steps, or ``eval_epochs`` epochs) on the val split (Eq. 7).  Every step then:

1. on a val batch, alpha and ``w_E`` are updated jointly by Adam, minimising
   ``L^S_val + L^E_val + lambda * L^{S,E}_val + lambda' * ||alpha_skip||_1`` (Eq. 8, 11), where
   ``L^{S,E}`` is the stage-wise KL of the search network's embeddings to the evaluation network's
   soft targets at T=2, x T² (Eq. 9-10, the teacher detached);
2. on a train batch, ``w_S`` is updated by SGD with cross-entropy (Eq. 6).

The teacher's embedding heads are probes: they read detached features and are trained with
cross-entropy alongside ``w_E``; the student's embedding heads are trained with alpha.
``cyclic=False`` switches the evaluation network and the distillation off, which leaves
first-order DARTS (the benchmark's baseline).

``batch_size`` is the total over all processes: each of W processes loads ``batch_size / W`` images a
step and the gradients are averaged (bucketed: a few collectives a step, not one a tensor), so ``w_lr``
is the learning rate of the total batch whatever W.  Every rank holds the same networks: the search
network is built from the seed, each evaluation network from (seed, step) and then broadcast from rank
0, and every image's augmentation is seeded by (seed, epoch, index) (``core.loader``), so no rank's
random stream depends on how many random numbers its images' crops drew.  Mixed precision, channels-last
and ``torch.compile`` come from :class:`~cydas_chain.core.speed.Speed`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.data import CIFAR_MEAN, CIFAR_STD
from ..core.distill import DISTILL_REDUCTIONS, stage_distillation_loss
from ..core.distributed import (agree_on_weights, average_gradients, broadcast_module, get_rank, get_world_size,
                                is_main_process)
from ..core.errors import CheckpointError, CydasError
from ..core.loader import EpochSampler, SeededSamples, make_loader
from ..core.logging import progress
from ..core.run import load_states
from ..core.seed import rng_state, set_rng_state
from ..core.speed import Speed
from ..models.darts.eval_net import inherit_weights
from .spaces import cell_space

__all__ = ["SearchConfig", "CyclicSearcher", "l1_weight_at", "PRESETS"]


@dataclass
class SearchConfig:
    space: str = "darts"  # darts | nb201
    num_classes: int = 10
    stem: str = "cifar"  # cifar | imagenet (DARTS space)
    # search network (DARTS: 8 cells, C=16; NB201: 5 cells a stage, C=16)
    c: int = 16
    layers: int = 8
    # evaluation network (DARTS: CIFAR 20 cells C=36, ImageNet 14 cells C=48; NB201: like the search net)
    eval_c: int = 36
    eval_layers: int = 20
    embed_hidden: int = 128
    # schedule
    epochs: int = 30  # search epochs
    pretrain_epochs: int = 0  # epochs before them that train w_S only (ImageNet: 10)
    update_every: int = 0  # S_U in steps; 0 = one epoch
    eval_steps: int = 0  # S_E in steps; 0 = eval_epochs epochs
    eval_epochs: int = 1  # S_E in epochs when eval_steps is 0 (paper: CIFAR 1, ImageNet 3)
    # w_S (and w_E in its S_E phase): SGD, cosine to w_lr_min over the epochs; w_lr is the rate of
    # the total batch (the tool scales a preset's rate linearly when --batch-size changes it)
    w_lr: float = 0.1
    w_lr_min: float = 1e-3
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # alpha and w_E jointly: Adam
    arch_lr: float = 3e-4
    arch_betas: Tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 3e-4
    # losses
    distill_weight: float = 4.0  # lambda
    # how the stage KL is reduced: "released" = the released code's element-wise mean (the scale the
    # published lambda was tuned with), "batchmean" = per-sample KL summed over the stages (S x C larger)
    distill_reduction: str = "released"
    temperature: float = 2.0
    l1_weight: float = 5.0  # lambda' at the start (DARTS space only)
    l1_decay_fraction: float = 2 / 3  # lambda' reaches 0 after this share of the epochs (20 of 30)
    cyclic: bool = True  # False: first-order DARTS (no evaluation network, no distillation)
    # data
    batch_size: int = 64  # total over all processes
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"unknown search-config key(s): {', '.join(unknown)}")
        d = dict(d)
        # checkpoints written before the reduction was a setting used the per-sample sum
        d.setdefault("distill_reduction", "batchmean")
        if "arch_betas" in d:
            d["arch_betas"] = tuple(d["arch_betas"])
        return cls(**d)

    def __post_init__(self):
        if self.distill_reduction not in DISTILL_REDUCTIONS:
            raise CydasError(f"unknown distillation reduction '{self.distill_reduction}' "
                             f"(one of {', '.join(DISTILL_REDUCTIONS)})")

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.epochs

    @property
    def use_l1(self) -> bool:
        """NAS-Bench-201's rules forbid the skip penalty; it also belongs to the cyclic method only."""
        return self.cyclic and cell_space(self.space).skip_penalty and self.l1_weight > 0


# The paper's settings (CyDAS, TPAMI 2022, Sec. 4 and Table 1; the NAS-Bench-201 column from its
# NAS-Bench-201 paragraph); the tool applies one and lets options override it.  Every value, with its
# source and the released code's value, is in the preset table of docs/darts.md, which
# tests/test_darts_search.py compares with this dict.  batch_size is the total over all processes and
# w_lr the learning rate of that total batch.
_PAPER_COMMON = dict(
    c=16, layers=8, epochs=30, update_every=0, eval_steps=0, w_lr_min=1e-3, w_momentum=0.9, grad_clip=5.0,
    arch_lr=3e-4, arch_betas=(0.5, 0.999), distill_weight=4.0, distill_reduction="released", temperature=2.0,
    l1_weight=5.0, l1_decay_fraction=2 / 3, embed_hidden=128)
PRESETS: Dict[str, Dict[str, Any]] = {
    "cifar": dict(_PAPER_COMMON, space="darts", stem="cifar", eval_c=36, eval_layers=20, pretrain_epochs=0,
                  eval_epochs=1, w_lr=0.1, w_weight_decay=3e-4, arch_weight_decay=3e-4, batch_size=64),
    "imagenet": dict(_PAPER_COMMON, space="darts", stem="imagenet", eval_c=48, eval_layers=14, pretrain_epochs=10,
                     eval_epochs=3, w_lr=0.8, w_weight_decay=3e-5, arch_weight_decay=3e-5, batch_size=1024),
    "nb201": dict(_PAPER_COMMON, space="nb201", stem="cifar", layers=5, eval_c=16, eval_layers=5, epochs=50,
                  pretrain_epochs=0, eval_epochs=1, w_lr=0.1, w_weight_decay=3e-4, arch_weight_decay=3e-4,
                  batch_size=64),
    # the embedded default: a couple of minutes on a CPU; a smoke run, not a search
    "tiny": dict(stem="cifar", c=8, layers=5, eval_c=8, eval_layers=5, embed_hidden=32, epochs=4,
                 batch_size=32, w_lr=0.05),
}


def l1_weight_at(epoch: int, cfg: SearchConfig) -> float:
    """lambda' of Eq. 11: linear from ``l1_weight`` at epoch 0 to 0 at ``l1_decay_fraction`` of the
    epochs, then 0 (5 -> 0 over the first 20 of 30 epochs)."""
    if not cfg.use_l1:
        return 0.0
    decay_epochs = cfg.l1_decay_fraction * cfg.epochs
    if decay_epochs <= 0 or epoch >= decay_epochs:
        return 0.0
    return cfg.l1_weight * (1.0 - epoch / decay_epochs)


def _cycle(loader_fn: Callable[[int], Any]) -> Iterator:
    """Batches of successive passes (pass k built by ``loader_fn(k)``), forever."""
    k = 0
    while True:
        yield from loader_fn(k)
        k += 1


class CyclicSearcher:
    """Runs Algorithm 1 on ``train_set`` (w_S) and ``val_set`` (alpha, w_E); see the module doc."""

    def __init__(self, cfg: SearchConfig, train_set: Dataset, val_set: Dataset,
                 device: torch.device | str = "cpu", num_workers: int = 0, speed: Optional[Speed] = None,
                 mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD, log_interval: int = 50):
        """``train_set`` / ``val_set`` give uint8 images (``core.data.build_transforms``), normalised on the
        device with ``mean`` / ``std``; ``speed`` (default: full precision on ``device``) says how to compute."""
        self.cfg, self.device = cfg, torch.device(device)
        self.speed = speed or Speed(self.device)
        self.mean, self.std, self.log_interval = tuple(mean), tuple(std), max(1, log_interval)
        self.space = cell_space(cfg.space)
        self.train_set, self.val_set = train_set, val_set
        world = get_world_size()
        if cfg.batch_size < world or cfg.batch_size % world:
            raise CydasError(f"the total batch {cfg.batch_size} does not divide into {world} processes: "
                             f"use a multiple of {world}")
        self.local_batch = cfg.batch_size // world  # what each process loads a step
        self.num_workers = num_workers
        torch.manual_seed(cfg.seed)
        self.search_net = self.speed.prepare(self.space.search_net(cfg, cfg.embed_hidden if cfg.cyclic else None))
        self.search_forward = self.speed.compiled(self.search_net.forward_all)
        student_heads = list(self.search_net.embed.parameters()) if self.search_net.embed is not None else []
        head_ids = {id(p) for p in student_heads}
        self.w_params = [p for p in self.search_net.weight_parameters() if id(p) not in head_ids]
        self.w_opt = torch.optim.SGD(self.w_params, cfg.w_lr, momentum=cfg.w_momentum,
                                     weight_decay=cfg.w_weight_decay)
        self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, max(1, cfg.total_epochs),
                                                                  eta_min=cfg.w_lr_min)
        # alpha (and the student's embedding heads) by Adam; w_E gets the same Adam in _make_eval_opts
        self.arch_opt = torch.optim.Adam(self.search_net.arch_parameters() + student_heads, lr=cfg.arch_lr,
                                         betas=cfg.arch_betas, weight_decay=cfg.arch_weight_decay)
        self.eval_net: Optional[nn.Module] = None
        self.eval_genotype = None
        self.eval_sgd = self.eval_adam = None
        self.weight_bank: Dict[str, torch.Tensor] = {}
        self.epoch, self.global_step = 0, 0
        self.alpha_history: List[Dict[str, Any]] = []
        self.genotype_history: List[Dict[str, Any]] = []
        self.last_inheritance: Dict[str, list] = {"inherited": [], "fresh": []}
        self.eval_forward = None
        # loss scaling (fp16 only) for each of the three updates
        self.scalers = {k: self.speed.grad_scaler() for k in ("weight", "arch", "eval")}

    # ---- networks -----------------------------------------------------------------------------
    def _make_eval_opts(self) -> None:
        c = self.cfg
        params = list(self.eval_net.parameters())
        lr = self.w_opt.param_groups[0]["lr"]
        self.eval_sgd = torch.optim.SGD(params, lr, momentum=c.w_momentum, weight_decay=c.w_weight_decay)
        self.eval_adam = torch.optim.Adam(params, c.arch_lr, betas=c.arch_betas, weight_decay=c.arch_weight_decay)

    def regenerate(self, genotype) -> bool:
        """Build the evaluation network of ``genotype`` (inheriting shared weights); False if unchanged."""
        if self.eval_net is not None and genotype == self.eval_genotype:
            return False
        if self.eval_net is not None:
            self.weight_bank.update({k: v.detach().clone() for k, v in self.eval_net.state_dict().items()})
        with torch.random.fork_rng(devices=[]):  # the same initialisation on every rank, whatever each drew
            torch.manual_seed(self.cfg.seed * 1_000_003 + self.global_step)
            net = self.speed.prepare(self.space.eval_net(genotype, self.cfg))
        self.last_inheritance = inherit_weights(net, self.weight_bank)
        broadcast_module(net)  # and rank 0's, to be sure
        self.eval_net, self.eval_genotype = net, genotype
        self.eval_forward = self.speed.compiled(net.forward_all)
        self._make_eval_opts()
        return True

    # ---- data ---------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, seed: int, epoch: int):
        """This rank's batches of one pass, normalised on the device; each image's augmentation seeded by
        (seed, epoch, index)."""
        sampler = EpochSampler(DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(),
                                                  shuffle=True, seed=seed, drop_last=True))
        sampler.set_epoch(epoch)
        return make_loader(SeededSamples(dataset, seed), self.local_batch, device=self.device, mean=self.mean,
                           std=self.std, sampler=sampler, drop_last=True, workers=self.num_workers)

    def steps_per_epoch(self) -> int:
        per_rank = min(len(self.train_set), len(self.val_set)) // get_world_size()
        return per_rank // self.local_batch

    # ---- one step of each kind ----------------------------------------------------------------
    def train_eval_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. 7: w_E (and its embedding probes) by SGD with cross-entropy on a val batch."""
        self.eval_net.train()
        with self.speed.autocast():
            out = self.eval_forward(x)
            loss = F.cross_entropy(out["logits"], y) + sum(F.cross_entropy(s, y) for s in out["stages"])
        self._update(loss, [self.eval_sgd], list(self.eval_net.parameters()), "eval", clip=True)
        return loss.detach()

    def _update(self, loss: torch.Tensor, optimizers, params, scaler: str, clip: bool = False,
                clip_params=None) -> None:
        """Backward, average the gradients of ``params`` over ranks, clip ``clip_params`` (default
        ``params``) to ``grad_clip``, step every optimizer; with fp16 loss scaling."""
        scale = self.scalers[scaler]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        scale.scale(loss).backward()
        average_gradients(params)
        if clip:
            for opt in optimizers:
                scale.unscale_(opt)
            nn.utils.clip_grad_norm_(clip_params if clip_params is not None else params, self.cfg.grad_clip)
        for opt in optimizers:
            scale.step(opt)
        scale.update()

    def distillation(self, student_stages, teacher_stages) -> torch.Tensor:
        """L^{S,E} of Eq. 9-10 (before lambda), reduced as ``cfg.distill_reduction`` says."""
        return stage_distillation_loss(student_stages, teacher_stages, self.cfg.temperature,
                                       self.cfg.distill_reduction)

    def arch_step(self, x: torch.Tensor, y: torch.Tensor, l1_weight: float) -> Dict[str, torch.Tensor]:
        """Eq. 8 (+ Eq. 11): alpha and w_E jointly by Adam on a val batch.  Logs are device tensors."""
        self.search_net.train()
        with self.speed.autocast():
            out_s = self.search_forward(x)
            loss_s = F.cross_entropy(out_s["logits"], y)
            logs = {"loss_search_val": loss_s.detach(), "acc_search_val": _acc(out_s["logits"], y)}
            loss = loss_s
            params = list(self.search_net.arch_parameters())
            if self.cfg.cyclic:
                self.eval_net.train()
                out_e = self.eval_forward(x)
                loss_e = F.cross_entropy(out_e["logits"], y)
                probes = sum(F.cross_entropy(s, y) for s in out_e["stages"])
                distill = self.distillation([t.float() for t in out_s["stages"]],
                                            [t.float() for t in out_e["stages"]])
                loss = loss + loss_e + probes + self.cfg.distill_weight * distill
                logs.update(loss_eval_val=loss_e.detach(), acc_eval_val=_acc(out_e["logits"], y),
                            loss_distill=distill.detach())
                params += list(self.search_net.embed.parameters()) + list(self.eval_net.parameters())
            if l1_weight > 0:
                l1 = self.search_net.skip_alpha_l1()
                loss = loss + l1_weight * l1
                logs["alpha_skip_l1"] = l1.detach()
        optimizers = [self.arch_opt] + ([self.eval_adam] if self.cfg.cyclic else [])
        # only w_E is clipped (alpha's Adam step is not, as in the released code)
        self._update(loss, optimizers, params, "arch", clip=self.cfg.cyclic,
                     clip_params=list(self.eval_net.parameters()) if self.cfg.cyclic else None)
        return logs

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Eq. 6: w_S by SGD with cross-entropy on a train batch (alpha fixed).  Logs are device tensors."""
        self.search_net.train()
        with self.speed.autocast():
            logits = self.search_forward(x)["logits"]
            loss = F.cross_entropy(logits, y)
        self._update(loss, [self.w_opt], self.w_params, "weight", clip=True)
        for p in self.search_net.arch_parameters():  # the w_S loss must not leave gradients on alpha
            p.grad = None
        return {"loss_search_train": loss.detach(), "acc_search_train": _acc(logits, y)}

    # ---- the loop -----------------------------------------------------------------------------
    def _record_genotype(self, genotype, changed: bool) -> None:
        self.genotype_history.append({"epoch": self.epoch, "step": self.global_step, "changed": changed,
                                      "genotype": genotype.to_dict()})

    def train_eval_phase(self, steps: int, val_batches: Iterator) -> float:
        total = 0.0
        for _ in range(steps):
            x, y = next(val_batches)
            total = total + self.train_eval_step(self.speed.inputs(x), y)
        return total / max(1, steps)

    def run_epoch(self) -> Dict[str, float]:
        cfg, epoch = self.cfg, self.epoch
        n_steps = self.steps_per_epoch()
        update_every = cfg.update_every or n_steps
        eval_steps = cfg.eval_steps or cfg.eval_epochs * n_steps
        searching = epoch >= cfg.pretrain_epochs
        search_start = cfg.pretrain_epochs * n_steps  # S_U counts from the first search step
        l1_w = l1_weight_at(epoch - cfg.pretrain_epochs, cfg) if searching else 0.0
        train_it = iter(self._loader(self.train_set, cfg.seed, epoch))
        val_it = iter(self._loader(self.val_set, cfg.seed + 1, epoch))
        # the S_E phase draws its own passes over the val split
        eval_it = _cycle(lambda k: self._loader(self.val_set, cfg.seed + 2, epoch * 1000 + k))
        sums: Dict[str, float] = {}
        eval_phase_losses = []
        bar = progress(range(n_steps), desc=f"epoch {epoch + 1}/{cfg.total_epochs}", unit="step")
        for _ in bar:
            if searching and cfg.cyclic and (self.eval_net is None
                                             or (self.global_step - search_start) % update_every == 0):
                genotype = self.search_net.genotype()
                changed = self.regenerate(genotype)
                self._record_genotype(genotype, changed)
                eval_phase_losses.append(self.train_eval_phase(eval_steps, eval_it))
            xv, yv = next(val_it)
            xt, yt = next(train_it)
            logs = self.arch_step(self.speed.inputs(xv), yv, l1_w) if searching else {}
            logs.update(self.weight_step(self.speed.inputs(xt), yt))
            for k, v in logs.items():  # summed on the device: no host sync a step
                sums[k] = sums.get(k, 0.0) + v
            self.global_step += 1
            if self.global_step % self.log_interval == 0:
                bar.set_postfix(loss=f"{float(logs['loss_search_train']):.3f}")
        bar.close()
        self.w_sched.step()
        for group in (self.eval_sgd.param_groups if self.eval_sgd else []):
            group["lr"] = self.w_opt.param_groups[0]["lr"]
        metrics = {k: float(v) / max(1, n_steps) for k, v in sums.items()}
        if eval_phase_losses:
            metrics["loss_eval_phase"] = float(sum(eval_phase_losses)) / len(eval_phase_losses)
        metrics.update(lr=self.w_opt.param_groups[0]["lr"], l1_weight=l1_w)
        self.epoch += 1
        self.alpha_history.append({"epoch": self.epoch, **{k: v.cpu() for k, v in self.search_net.alphas().items()}})
        return metrics

    def run(self, checkpoint: Optional[Path] = None,
            on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None):
        """Run to ``cfg.total_epochs``: after every epoch ``on_epoch(epoch, metrics)`` (which logs), then a
        checkpoint: a kill between the two leaves logged rows that a resume re-does, never lost ones."""
        while self.epoch < self.cfg.total_epochs:
            metrics = self.run_epoch()
            if on_epoch is not None:
                on_epoch(self.epoch, metrics)
            agree_on_weights("search and evaluation networks", self.search_net,
                             *([self.eval_net] if self.eval_net is not None else []))
            if checkpoint is not None and is_main_process():
                save_checkpoint(self.state_dict(), checkpoint)
        return self.search_net.genotype()

    # ---- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        state = {
            "kind": "cydas_cell_search", "config": asdict(self.cfg), "epoch": self.epoch,
            "global_step": self.global_step, "search_net": self.search_net.state_dict(),
            "w_opt": self.w_opt.state_dict(), "w_sched": self.w_sched.state_dict(),
            "arch_opt": self.arch_opt.state_dict(), "weight_bank": dict(self.weight_bank),
            "alpha_history": self.alpha_history, "genotype_history": self.genotype_history,
            "rng": rng_state(),
        }
        state["config"]["arch_betas"] = list(self.cfg.arch_betas)
        if self.eval_net is not None:
            state.update(eval_genotype=self.eval_genotype.to_dict(), eval_net=self.eval_net.state_dict(),
                         eval_sgd=self.eval_sgd.state_dict(), eval_adam=self.eval_adam.state_dict())
        return state

    def _stretch_schedule(self) -> None:
        """After a resume with more --epochs: the cosine runs to the new length from the epoch reached.  The
        restored scheduler keeps the old length, past which torch's cosine climbs back to w_lr."""
        sched, length = self.w_sched, max(1, self.cfg.total_epochs)
        if sched.T_max == length:  # unchanged: keep the restored state exactly (resume equals no kill)
            return
        sched.T_max = length
        t = sched.last_epoch
        for group, base in zip(self.w_opt.param_groups, sched.base_lrs):
            group["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * t / length)) / 2

    def resume(self, path: Path) -> None:
        """Continue the search of checkpoint ``path``; its network and space must be this search's."""
        state = load_checkpoint(path, kind=("cydas_cell_search", "cell-search"))
        saved = SearchConfig.from_dict(state["config"])
        structural = ("space", "num_classes", "stem", "c", "layers", "eval_c", "eval_layers", "embed_hidden",
                      "cyclic")
        diff = [k for k in structural if getattr(saved, k) != getattr(self.cfg, k)]
        if diff:
            k = diff[0]
            raise CheckpointError(f"{path} was written by a different search ({k}: "
                                  f"{getattr(saved, k)!r} there, {getattr(self.cfg, k)!r} now)")
        load_states({"search_net": self.search_net, "w_opt": self.w_opt, "w_sched": self.w_sched,
                     "arch_opt": self.arch_opt}, state, path)
        self._stretch_schedule()
        self.weight_bank = dict(state["weight_bank"])
        if "eval_genotype" in state:
            self.eval_net = None
            self.regenerate(self.space.genotype_type.from_dict(state["eval_genotype"]))
            load_states({"eval_net": self.eval_net, "eval_sgd": self.eval_sgd, "eval_adam": self.eval_adam}, state,
                        path)
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.alpha_history, self.genotype_history = list(state["alpha_history"]), list(state["genotype_history"])
        set_rng_state(state["rng"])


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Top-1 of a batch in percent, as every accuracy of the suite (a device tensor: no host sync)."""
    return 100.0 * (logits.detach().argmax(1) == y).float().mean()
