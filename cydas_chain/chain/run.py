"""The run of a chain search: folder, config check, resume, the training loop's checkpoints and metrics,
the learning check, the final choice and the output files.  The algorithm is :mod:`.searcher`'s.

Outputs in the run folder (``--out``): ``arch.json`` (the result, its MACs by both counters, its scores
and what they were measured on, the learning check), ``weights.pth`` (the result with the supernet's
weights and recalibrated BN: ``timm.create_model('cydas_chain', arch=..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` and the mm backbone's ``init_cfg`` load it), ``teacher_history.json``,
``evaluations.csv``, ``search.png``, ``evolution.json`` (``final="evolution"``), ``metrics.csv``, ``tb/``,
``log.txt``, ``config.json``, ``checkpoints/last.pth``.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.checkpoint import atomic_write, load_checkpoint, save_checkpoint, write_json
from ..core.distributed import agree_on_weights, all_reduce_sum, is_main_process, same_on_all_ranks
from ..core.errors import CydasError
from ..core.loader import make_loader
from ..core.logging import MetricWriter, progress
from ..core.run import RunDir
from ..core.stats import binomial_upper_tail
from ..models import create_chain_model
from .searcher import CHECKPOINT_KIND, ChainSearcher

WEIGHTS = "weights.pth"
WEIGHTS_KIND = "cydas_chain/child_weights"
_DIGEST_MOD = 2 ** 61 - 1  # a prime: the digest of the sampled paths fits an int64 tensor
CHANCE_SHARE = 0.9  # a training loss above 90% of chance's (ln C) has not clearly learned
CHANCE_P = 0.01  # a result score this likely at chance is indistinguishable from chance


def search_data(cfg, data: Optional[Path]):
    """(splits, transforms, description) of a search: ``data`` (an ImageFolder root) or, None, the embedded
    digits (written once, by the main process): the training / held-out / report images
    (``core.data.selection_splits``) and the transforms of ``cfg.augment`` at ``cfg.img_size``."""
    from ..core import data as cdata
    from ..core.distributed import main_first

    if data is None:
        root = main_first(lambda: cdata.make_digits_folder(cdata.embedded_data_root()))
        desc = f"embedded handwritten digits ({root})"
    else:
        root, desc = Path(data), str(data)
    tf = cdata.build_transforms(cfg.img_size, cfg.augment, crop_scale=cfg.crop_min)
    return cdata.selection_splits(root, cfg.holdout, tf.eval, seed=cfg.seed, max_share=cfg.holdout_max_share), tf, desc


@dataclass
class RunOptions:
    save_interval: int = 1000
    log_interval: int = 50
    data_desc: str = ""
    advice: str = ""  # what the tool would change when the supernet does not learn (named options)


def learned(ce: float, num_classes: int) -> bool:
    return ce < CHANCE_SHARE * math.log(num_classes)


def export_weights(searcher: ChainSearcher, path_choices, file: Path, extra: Optional[dict] = None) -> Path:
    """Write the network of ``path_choices`` with the supernet's weights and recalibrated BN as a checkpoint
    timm, ``train_cls --init-weights`` and the mm backbone read (``state_dict`` + its architecture)."""
    child = searcher.child(path_choices)
    arch = searcher.space.arch(path_choices)
    state = {"kind": WEIGHTS_KIND, "state_dict": {k: v.detach().cpu() for k, v in child.state_dict().items()},
             "arch": arch.to_dict(), "model": "cydas_chain", "num_classes": len(searcher.classes),
             "classes": list(searcher.classes), "img_size": searcher.cfg.img_size, **(extra or {})}
    return save_checkpoint(state, file)


class ChainSearchRun:
    """A search in a run folder: ``run()`` starts or continues it, trains, chooses and writes the outputs."""

    def __init__(self, searcher: ChainSearcher, run_dir: RunDir, log, options: RunOptions,
                 report_set: Optional[Dataset] = None):
        self.s, self.run_dir, self.out, self.log, self.opts = searcher, run_dir, run_dir.out, log, options
        self.report_set = report_set
        # loss, ce, kd, acc summed on the device over the steps since the last metrics row (checkpointed, so a
        # resumed run's rows are the uninterrupted one's)
        self.interval, self.interval_steps = torch.zeros(4, device=searcher.device), 0
        self.window = torch.full((self._window_len(),), math.nan, device=searcher.device)  # recent CEs
        self.learning: Dict[str, Optional[float]] = {"ce_at_distill_start": None, "ce_at_end": None}
        self.evolution_state: Optional[dict] = None

    def _window_len(self) -> int:
        return max(1, min(50, self.s.total_steps // 10))

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**self.s.state_dict(), "interval": self.interval.cpu(), "interval_steps": self.interval_steps,
                "window": self.window.cpu(), "learning": dict(self.learning),
                **({"evolution": self.evolution_state} if self.evolution_state is not None else {})}

    def save(self) -> None:
        if is_main_process():
            save_checkpoint(self.state_dict(), self.run_dir.last)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.s.device, kind=(CHECKPOINT_KIND, "chain-space search"))
        self.s.check_version(state, f"checkpoint {path}")
        self.run_dir.start(self.s.cfg.as_dict(), state.get("config", {}), source=f"checkpoint {path}")
        self.s.load_state_dict(state, f"checkpoint {path}")
        self.interval = state["interval"].to(self.s.device)
        self.interval_steps = int(state["interval_steps"])
        self.window = state["window"].to(self.s.device)
        self.learning = dict(state["learning"])
        self.evolution_state = state.get("evolution")

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> dict:
        s, cfg, resume = self.s, self.s.cfg, self.run_dir.resume
        if resume is not None:
            self.load(resume)
        else:
            self.run_dir.start(cfg.as_dict())
        metrics = MetricWriter(self.out)
        if resume is not None:
            metrics.truncate_after(s.step)
            self.log.info("resumed from %s at step %d/%d", resume, s.step, s.total_steps)
        self._describe()
        bar = progress(total=s.total_steps, initial=s.step, desc="search", unit="step")
        digest = 0
        for x, y in s.batches():
            path = tuple(int(c) for c in s.sampler.sample())
            for c in path:  # a running digest of the sampled paths, compared across ranks at each save
                digest = (digest * 31 + c + 1) % _DIGEST_MOD
            m = s.train_step(x, y, path)
            self.interval += torch.stack([m["loss"], m["ce"], m["kd"], m["acc"]])
            self.interval_steps += 1
            self.window[s.step % len(self.window)] = m["ce"]
            s.step += 1
            bar.update(1)
            if s.step == s.distill_steps:
                self._distillation_onset()
            if s.step == s.total_steps:
                self._check_learning("ce_at_end")
            evaluated = s.step >= s.distill_steps and (s.step % cfg.eval_interval == 0 or s.step == s.total_steps)
            if evaluated and cfg.score_on == "batch":
                s.last_batch_acc = float(all_reduce_sum(m["acc"].detach().clone()) / s.dist.world_size)
            record = s.evaluate(path) if evaluated else None
            if evaluated or s.step % self.opts.log_interval == 0 or s.step == s.total_steps:
                self._row(metrics, bar, path, record)
            if s.step % self.opts.save_interval == 0 or s.step == s.total_steps:
                if not same_on_all_ranks(torch.tensor([digest], device=s.device)):
                    raise CydasError(f"by step {s.step} the {s.dist.world_size} processes sampled "
                                     f"different paths (their samplers diverged); restart from the last checkpoint")
                agree_on_weights("supernet weights", s.supernet)
                self.save()
        bar.close()
        metrics.close()
        if s.dist.world_size > 1:
            self.log.info("the %d processes trained the same path at every step and held the same weights at every "
                          "checkpoint", s.dist.world_size)
        return self.finish()

    def _describe(self) -> None:
        s, cfg = self.s, self.s.cfg
        lo, hi = s.table.macs_range()
        self.log.info("preset %s; space: %s; %.1fM..%.1fM MACs (%s) at %dx%d; %s weights", cfg.preset,
                      s.space.describe(), lo / 1e6, hi / 1e6, cfg.counter, *s.table.input_size, cfg.weight_sharing)
        self.log.info("sampling %s", s.sampler.describe())
        self.log.info("%d steps (%d epochs x %d), batch %d (%d per process), lr %.4g (warm-up %d steps); "
                      "supernet only for %s steps, then distillation (%g KD + %g CE) and the teacher rule every %d "
                      "steps on %s (board %d, %s; more MACs %s)", s.total_steps, cfg.epochs,
                      s.steps_per_epoch, cfg.batch_size, s.local_batch, cfg.base_lr,
                      s.scheduler.warmup_t, s.distill_steps if cfg.distill_onset == "fixed" or s.step > s.distill_steps
                      else f"{s.distill_steps} (or, while its loss is near chance, up to {s.latest_distill_steps})",
                      cfg.distill_weight, cfg.ce_weight, cfg.eval_interval,
                      "the training batch" if cfg.score_on == "batch" else f"{s.score_count} held-out images",
                      cfg.board_size,
                      "paired McNemar test at %g" % cfg.replace_alpha if cfg.replace_test == "mcnemar"
                      else "the bare rule",
                      "never" if cfg.replace_gap is None else "when > %g points better" % cfg.replace_gap)

    def _row(self, metrics: MetricWriter, bar, path, record) -> None:
        """One metrics row: the means since the last row (a host sync an interval), the last path, the rule's
        scores when it was applied."""
        s = self.s
        loss, ce, kd, acc = (self.interval / self.interval_steps).tolist()
        teacher = s.board.teacher
        row = {"loss": loss, "ce": ce, "kd": kd, "acc": acc, "steps": self.interval_steps,
               "path": s.space.path_str(path), "lr": s.optimizer.param_groups[0]["lr"],
               "macs": s.table.path_macs(path) / 1e6, "teacher_macs": teacher.macs / 1e6}
        if record is not None:
            row.update(score=record["score"], teacher_score=teacher.score)
        metrics.write(s.step, row)
        self.interval.zero_()
        self.interval_steps = 0
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.1f}",
                        teacher=f"{teacher.macs / 1e6:.0f}M/{'-' if math.isnan(teacher.score) else f'{teacher.score:.1f}'}")

    def _recent_ce(self) -> float:
        """The training cross-entropy of the last steps, averaged over the ranks (one host sync)."""
        w = self.window[~torch.isnan(self.window)]
        if not len(w):
            return math.nan
        return float(all_reduce_sum(w.mean().reshape(1))) / self.s.dist.world_size

    def _distillation_onset(self) -> None:
        """At the planned start of distillation and the teacher rule: with distill_onset="learned", wait (a
        quarter epoch at a time, at the latest half-way) while the supernet's loss is near chance, since
        scores at chance cannot tell a better teacher; then check the learning (a warning if it has not)."""
        s, cfg = self.s, self.s.cfg
        ce = self._recent_ce()
        if (cfg.distill_onset == "learned" and not learned(ce, len(s.classes))
                and s.step < s.latest_distill_steps):
            if self.learning.get("distill_planned_step") is None:
                self.learning["distill_planned_step"] = s.step
                self.log.info("step %d: the supernet has not learned yet (training cross-entropy %.3f, chance %.3f): "
                              "distillation and the teacher rule wait until it has (at the latest step %d)",
                              s.step, ce, math.log(len(s.classes)), s.latest_distill_steps)
            s.distill_steps = min(s.step + max(1, s.steps_per_epoch // 4), s.latest_distill_steps)
            return
        self.learning["distill_step"] = s.step
        if self.learning.get("distill_planned_step") is not None and learned(ce, len(s.classes)):
            self.log.info("step %d: the supernet has learned (training cross-entropy %.3f): distillation and the "
                          "teacher rule start", s.step, ce)
        self._check_learning("ce_at_distill_start", ce)

    def _check_learning(self, key: str, ce: Optional[float] = None) -> None:
        """Training cross-entropy of the last steps against chance's (ln C); one warning line naming the likely
        causes and the options when it is not clearly below (recorded in arch.json)."""
        ce = self._recent_ce() if ce is None else ce
        self.learning[key] = ce
        chance = math.log(len(self.s.classes))
        if not learned(ce, len(self.s.classes)) and is_main_process():  # the same value on every rank: one line
            when = (f"by the start of distillation (step {self.s.step})" if key == "ce_at_distill_start"
                    else "by the end")
            self.log.warning(f"the supernet has not learned {when} (training cross-entropy {ce:.3f}, chance "
                             f"{chance:.3f}): its scores do not tell paths apart. {self.opts.advice}")

    # ---- the result ---------------------------------------------------------------------------
    def finish(self) -> dict:
        """Choose the result (the last teacher, or the evolution's best), report it, write the outputs."""
        s, cfg = self.s, self.s.cfg
        teacher = s.board.teacher
        evolution = None
        if cfg.final == "evolution":
            evo = s.evolution()
            if self.evolution_state is not None:
                evo.load_state_dict(self.evolution_state)
                self.log.info("evolution resumed after generation %d", evo.generation)

            def checkpoint(e):  # every generation: a killed evolution continues where it stopped
                self.evolution_state = e.state_dict()
                self.save()

            evolution = s.evolve(evo, checkpoint)
            teacher_recalibrated = s.recalibrated_score([teacher.path])[0]
        if evolution is None:
            path, score = teacher.path, teacher.score
        else:
            path, score = tuple(evolution["top"][0]["path"]), evolution["top"][0]["score"]
        # the result as exported (recalibrated BN) on the held-out images: what the chance check reads
        selection = s.recalibrated_score([path])[0] if evolution is None else score
        report = self.report(path)
        weights = self.out / WEIGHTS
        if is_main_process():
            export_weights(s, path, weights, {"selection_score": selection, "report": report})
        if not is_main_process():
            return {}
        return self.write_outputs(path, score, selection, report, evolution,
                                  None if evolution is None else teacher_recalibrated)

    def report(self, path) -> Optional[dict]:
        """Top-1 of the result, as exported (recalibrated BN), on the report images (val/), or None."""
        if self.report_set is None:
            return None
        s = self.s
        child = s.child(path)
        world, rank = s.dist.world_size, s.dist.rank
        shard = torch.utils.data.Subset(self.report_set, range(rank, len(self.report_set), world))
        loader = make_loader(shard, s.micro_batch, device=s.device, mean=s.mean, std=s.std, workers=s.workers)
        sums = torch.zeros(2, device=s.device, dtype=torch.float64)
        with torch.no_grad(), s.speed.autocast():
            for x, y in loader:
                sums[0] += (child(s.speed.inputs(x)).argmax(1) == y).sum()
                sums[1] += len(y)
        right, n = all_reduce_sum(sums).tolist()
        return {"top1": 100.0 * right / max(n, 1.0), "images": int(n), "set": "val/",
                "metric": "top-1 % of the result as exported (supernet weights, BN recalibrated on training "
                          "batches) on val/, which the search never used"}

    def write_outputs(self, path, score, selection, report, evolution, teacher_recalibrated) -> dict:
        from ..core.flops import count_macs

        s, cfg = self.s, self.s.cfg
        teacher = s.board.teacher
        if evolution is not None:
            for top in evolution["top"]:
                top["path"] = list(s.space.canonical(top["path"]))
            evolution["teacher"] = {"path": list(s.space.canonical(teacher.path)), "score": teacher.score,
                                    "recalibrated_score": teacher_recalibrated, "macs": teacher.macs}
            write_json(self.out / "evolution.json", {k: v for k, v in evolution.items() if k != "scores"})
        macs = int(s.table.path_macs(path))
        arch = s.space.arch(path)
        cost = count_macs(create_chain_model("cydas_chain", arch, num_classes=len(s.classes)), cfg.cost_size)
        n_score = s.score_count
        chance = 100.0 / len(s.classes)
        right = int(round(selection / 100 * n_score))
        p_chance = binomial_upper_tail(right, n_score, 1.0 / len(s.classes))
        at_chance = p_chance > CHANCE_P
        learning = {**self.learning, "chance_ce": math.log(len(s.classes)),
                    "learned": all(self.learning.get(k) is not None and learned(self.learning[k], len(s.classes))
                                   for k in ("ce_at_distill_start", "ce_at_end")),
                    "selection_score": selection, "selection_p_at_chance": p_chance, "at_chance": at_chance}
        if report is not None:
            final, metric = report["top1"], report["metric"]
        else:
            final = selection
            metric = (f"top-1 % on the {n_score} held-out images of train/ that also selected the result (no val/ "
                      f"to report it on): supernet weights, BN recalibrated")
        if at_chance:
            metric = "AT CHANCE, not a search result (the scores that chose it do not differ from chance): " + metric
        # supernet_path: the slots the weights came from (``path`` is the canonical one: skips last in a stage)
        info = {**arch.to_dict(), "supernet_path": [int(c) for c in path], "params": cost.params,
                "fvcore_macs": cost.fvcore_macs, "thop_macs": cost.thop_macs,
                "input_size": cfg.cost_size, "num_classes": len(s.classes),
                "score": final, "score_metric": metric, "chance": chance, "at_chance": at_chance,
                "chosen_by": cfg.final,
                "selection": {"score": selection, "images": n_score, "on": cfg.score_on,
                              "search_score": score,
                              "metric": "top-1 % on images held out of train/, BN recalibrated"},
                "report": report, "learning": learning, "weights": WEIGHTS, "counter": cfg.counter,
                "preset": cfg.preset,
                "budget": {"counter": cfg.counter, "max_macs": cfg.max_macs, "macs": macs,
                           "used": round(macs / cfg.max_macs, 4)},
                "teacher": {"path": list(s.space.canonical(teacher.path)), "score": teacher.score,
                            "macs": teacher.macs},
                "search": {**cfg.as_dict(), "steps": s.total_steps, "data": self.opts.data_desc}}
        if s.latency is not None:
            info["latency_ms_estimate"] = float(s.latency.path_ms(np.asarray([path]))[0])
            info["latency_table"] = s.latency.describe()
        history = [{**h, "path": list(s.space.canonical(h["path"]))} for h in s.board.history]
        write_json(self.out / "arch.json", info)
        write_json(self.out / "teacher_history.json", history)
        self._write_evaluations()
        from .plot import plot_search
        plot_search(s.board.history, s.evaluations, cfg, self.out / "search.png")
        self.log.info("searched architecture (%s, the %s): %s | %.1fM MACs (%s; %.0f%% of the %.0fM budget), "
                      "fvcore %.1fM, thop %.1fM, %.3fM params; weights in %s", self.out / "arch.json",
                      "last teacher" if evolution is None else "evolution's best", arch, macs / 1e6, cfg.counter,
                      100 * macs / cfg.max_macs, cfg.max_macs / 1e6, cost.fvcore_macs / 1e6, cost.thop_macs / 1e6,
                      cost.params / 1e6, self.out / WEIGHTS)
        if at_chance:
            self.log.warning(f"the result was chosen on scores indistinguishable from chance ({selection:.1f}% on "
                             f"{n_score} held-out images, chance {chance:.1f}%, p = {p_chance:.2g}): it is not a "
                             f"search result (arch.json: at_chance). {self.opts.advice}")
        self.log.info("selection score: %.1f%% top-1 on %d images held out of train/ (chance %.1f%%)", selection,
                      n_score, chance)
        if report is not None:
            self.log.info("final score: %.1f%% top-1 on the %d images of val/, which the search never used "
                          "(chance %.1f%%)", report["top1"], report["images"], chance)
        else:
            self.log.info("final score: %.1f%% (the selection's own score: give DIR/val/ for an unbiased one)",
                          selection)
        return info

    def _write_evaluations(self) -> None:
        buf = io.StringIO()
        fields = ["step", "path", "macs", "score", "teacher_score", "teacher_macs", "wins", "losses", "p_value",
                  "entered"]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(self.s.evaluations)
        data = buf.getvalue().encode()
        atomic_write(self.out / "evaluations.csv", lambda f: f.write(data))
