#!/usr/bin/env python
"""Search a mobile backbone in the CyDAS chain space under a FLOPs budget.

SPOS supernet training with an introspective teacher path (CyDAS TPAMI, Sec. 4.6.1): every step
trains one path drawn among those within the budget; after --distill-start epochs of supernet-only
training, each step is also distilled from the teacher path, and a sampled path that scores higher on
images held out of train/ with no more MACs replaces the teacher.  The last teacher (or, with --final
evolution, the best path of an evolution on the trained supernet) is the result: OUT/arch.json,
buildable with timm.create_model('cydas_chain', arch='OUT/arch.json'), and OUT/weights.pth, that
network with the supernet's weights (BN recalibrated), which timm, train_cls.py --init-weights and the
mm backbone load.  tools/select_chain.py selects more networks (other budgets) from the same run.

Presets (--preset; docs/chain.md has every value with its source):
  default   ours: weight-entangled ops, slots 4,4,5,4,4, a paired test before a replacement, the rule
            every 100 steps; every deviation from the paper measured in docs/chain.md
  paper     the TPAMI text (Sec. 4.6.1): independent SPOS blocks, 4 slots a stage, uniform sampling, the
            bare rule every batch, SGD 0.9, wd 4e-5, lr 0.5 per 1024 decayed linearly, 120 epochs, 224 px
  released  the released supernet code (microsoft/Cream): PRE_PROB sampling without skip, a board of 10
            scored on the training batch, 0.75 CE + 0.25 KD, Nesterov lr 1.0, wd 1e-4, smoothing 0.1
Options given on the command line override the preset.

Data: --data DIR is an ImageFolder tree: DIR/train/<class>/* and, optionally, DIR/val/<class>/*.
The paths are scored on --holdout images held out of train/ (stratified, never trained on); val/ is
used only to report the result's accuracy at the end, never to select.  Without --data the search
runs on the embedded default: the 1,797 real 8x8 handwritten digits shipped inside the package
(scikit-learn's digits; 1,438 train + 359 val images, 10 classes, upscaled to 32x32), written once as
PNG folders to ~/.cache/cydas_chain/digits.  It runs end to end in a few minutes on a 2-core CPU and
its result is far above chance, but it is small: architectures found on it say nothing about ImageNet.

Budgets are MACs at --cost-size (224) counted by --counter: thop (default; CyDAS-a 296.4M, CyDAS-b
386.6M: within --flops 300 / 400, as the paper's 294M / 394M) or fvcore (308.2M / 403.4M).

Sizes (--data DIR | embedded): --epochs 120 | 10, --batch-size 1024 | 64 (total over all processes),
--lr 0.5 x sqrt(batch / 1024) (paper: x batch / 1024; released: 1.0 x batch / 1024) | 0.1, --img-size 224 | 32,
--eval-interval 100 (paper, released: 1) | 8 steps, --holdout 5000, at most 10% of train/ | 0.2 (a
share below 1, else images), --save-interval 1000 | 50 steps.  For small images the default preset
adapts: crops of the whole image below 64 px (--crop-scale), an lr warm-up of at least one epoch, and
distillation that waits while the supernet is still at chance (--distill-onset); docs/chain.md, "Small
data at 32 px".

Examples:
  python tools/search_chain.py --flops 400                           # embedded data set, CPU, minutes
  python tools/search_chain.py --data /data/imagenet --flops 400     # ImageNet, the default preset
  torchrun --nproc_per_node 8 tools/search_chain.py --data /data/imagenet --flops 400 --preset paper
  python tools/search_chain.py --flops 400 --resume                  # continue OUT/checkpoints/last.pth
"""
import argparse
import os
from pathlib import Path

from cydas_chain.chain.board import gap_points
from cydas_chain.chain.presets import PRESET_NAMES
from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import CydasError
from cydas_chain.core.run import add_run_arguments, parse_run_args

# The embedded digits' sizes (170 steps).  Distillation and the teacher rule start after 3 of 10 epochs: the
# supernet's training loss is below chance from about step 35 on (docs/chain.md, "Presets").
EMBEDDED_SIZES = dict(epochs=10, batch_size=64, lr=0.1, img_size=32, eval_interval=8, holdout=0.2,
                      holdout_max_share=None, distill_start=3.0,
                      warmup_epochs=0.25, save_interval=50, population=16, generations=6, parents=4)
DATA_SIZES = dict(save_interval=1000, population=50, generations=20, parents=10)


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(description=__doc__)
    g = p.add_argument_group("budget (MACs at --cost-size, counted by --counter)")
    g.add_argument("--flops", type=float, required=True, help="largest MACs of a path, in millions (e.g. 400)")
    g.add_argument("--flops-min", type=float, default=0.0, help="smallest MACs, in millions (default: 0)")
    g.add_argument("--counter", choices=("thop", "fvcore"), default="thop",
                   help="the MACs counter of the budget: thop (CyDAS-a 296.4M, CyDAS-b 386.6M) or fvcore (308.2M, "
                        "403.4M) (default: thop)")
    g.add_argument("--params", type=float, default=None, help="largest parameter count, in millions (optional)")
    g.add_argument("--latency", type=float, default=None,
                   help="largest latency in ms, summed from a per-layer table: --latency-table FILE (measured on the "
                        "target by tools/latency_table.py), else measured here on --device and cached (optional)")
    g.add_argument("--latency-table", type=Path, default=None, metavar="FILE",
                   help="a latency table measured on the target device (tools/latency_table.py)")
    g.add_argument("--cost-size", type=int, default=224, help="deployment resolution of the budget (default: 224)")
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None, help="ImageFolder root (default: the embedded data set)")
    g.add_argument("--img-size", type=int, default=None, help="training resolution (224 | 32)")
    g.add_argument("--crop-scale", type=float, default=None,
                   help="--data: smallest area share of the random-resized training crop (default: 0.08 from 64 px "
                        "up, 1.0 below, where 8%% of the image is a few pixels; paper, released: 0.08)")
    g.add_argument("--holdout", type=float, default=None,
                   help="images of train/ held out of supernet training to score paths, stratified: a share below 1 "
                        "or a number of images (5000 | 0.2); val/ only reports the result")
    g.add_argument("--val-subset", dest="holdout", type=float, help=argparse.SUPPRESS)  # the former name
    g = p.add_argument_group("search (defaults: the preset's)")
    g.add_argument("--preset", choices=PRESET_NAMES, default="default",
                   help="default (ours), paper (the TPAMI text), released (the released code) (default: default)")
    g.add_argument("--epochs", type=int, default=None, help="(120 | 10)")
    g.add_argument("--distill-start", type=float, default=None, metavar="EPOCHS",
                   help="supernet-only epochs before distillation and the teacher rule start (default: epochs/6 | 3; "
                        "released: 21 of 120)")
    g.add_argument("--distill-onset", choices=("fixed", "learned"), default=None,
                   help="fixed: at --distill-start; learned: at --distill-start or, while the supernet's training "
                        "loss is still near chance, when it has learned (at the latest half-way) (default: learned; "
                        "paper, released: fixed)")
    g.add_argument("--warmup-epochs", type=float, default=None,
                   help="linear lr warm-up epochs, as in the training tools (default: epochs/40, at least 1; paper "
                        "and released: 0)")
    g.add_argument("--lr-warmup-epochs", dest="warmup_epochs", type=float, help=argparse.SUPPRESS)  # former name
    g.add_argument("--batch-size", type=int, default=None,
                   help="total batch over all processes (and accumulation steps) (1024 | 64)")
    g.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: the preset's rate per 1024 images x sqrt(batch / 1024) | 0.1; "
                        "paper, released: x batch / 1024)")
    g.add_argument("--smoothing", type=float, default=None, help="label smoothing (default 0; released 0.1)")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum (released: on)")
    g.add_argument("--eval-interval", type=int, default=None,
                   help="steps between applications of the teacher rule (100 | 8; paper, released: 1 = every batch)")
    g.add_argument("--score-on", choices=("holdout", "batch"), default=None,
                   help="what scores a path: the held-out images (default) or the training batch (released)")
    g.add_argument("--replace-test", choices=("mcnemar", "none"), default=None,
                   help="mcnemar: a candidate must also win an exact paired test on the held-out images it and the "
                        "teacher disagree on; none: the bare rule (default: mcnemar; paper, released: none)")
    g.add_argument("--replace-alpha", type=float, default=0.05, help="level of the paired test (default: 0.05)")
    g.add_argument("--replace-gap", type=gap_or_preset, default="preset", metavar="POINTS",
                   help="a path with more MACs (within the budget) also replaces the teacher when it scores more "
                        "than POINTS higher: the released code's acc_gap (default: 5; paper: none, under which the "
                        "teacher can only shrink from its random start)")
    g.add_argument("--weight-sharing", choices=("entangled", "independent"), default=None,
                   help="entangled: the ops of a slot share one block (kernel and channel slices, OFA-style), which "
                        "trains in hundreds of steps; independent: one block per op, SPOS (default: entangled; "
                        "paper, released: independent)")
    g.add_argument("--slots", default=None, help="layer slots of each searched stage (default: 4,4,5,4,4; paper, "
                                                 "released: 4,4,4,4,4)")
    g.add_argument("--board-size", type=int, default=None,
                   help="1: the paper's single teacher; K > 1: keep the K best paths (Cream's prioritized board), "
                        "distil from the best (default: 1; released: 10)")
    g.add_argument("--distill-weight", type=float, default=None, help="weight of the distillation loss (1; released "
                                                                      "0.25)")
    g.add_argument("--ce-weight", type=float, default=None, help="weight of the cross-entropy (1; released 0.75)")
    g.add_argument("--temperature", type=float, default=None, help="distillation temperature (default: 1)")
    g = p.add_argument_group("final choice (after supernet training)")
    g.add_argument("--final", choices=("teacher", "evolution"), default="teacher",
                   help="teacher: the last teacher becomes arch.json (the paper); evolution: an evolutionary search "
                        "on the trained supernet within the budget, scoring each path after BN recalibration, and "
                        "its best becomes arch.json (SPOS / OFA practice; writes evolution.json) (default: teacher)")
    g.add_argument("--population", type=int, default=None, help="evolution: paths a generation (50 | 16)")
    g.add_argument("--generations", type=int, default=None, help="evolution: generations (20 | 6)")
    g.add_argument("--parents", type=int, default=None, help="evolution: best paths kept as parents (10 | 4)")
    g.add_argument("--mutation-prob", type=float, default=0.1,
                   help="evolution: chance of redrawing each choice of a mutated parent (default: 0.1)")
    g.add_argument("--crossover-share", type=float, default=0.5,
                   help="evolution: share of a generation made by crossover, the rest by mutation (default: 0.5)")
    g.add_argument("--calib-batches", type=int, default=20,
                   help="training batches that recalibrate BN before a path is exported, reported or scored by the "
                        "evolution (default: 20)")
    g = add_run_arguments(p, "runs/search_chain", "with --data: on a GPU the cores of this process's share but one, "
                                                  "up to 12, on the CPU 1; 0 on the embedded data", accumulation=True)
    g.add_argument("--save-interval", type=int, default=None, help="steps between checkpoints (1000 | 50)")
    return p


def gap_or_preset(text: str):
    """--replace-gap: points, none, or (not given) the preset's."""
    return "preset" if text == "preset" else gap_points(text)


# command-line option -> SearchConfig field, where the names differ
_FIELD = {"smoothing": "label_smoothing"}


def search_config(args, world_size: int, accum: int):
    """The SearchConfig of the parsed options: the preset, the sizes of the data, then what was given."""
    from cydas_chain.chain.evolution import EvolutionConfig
    from cydas_chain.chain.presets import preset_values
    from cydas_chain.chain.searcher import SearchConfig

    values = preset_values(args.preset)
    sizes = EMBEDDED_SIZES if args.data is None else DATA_SIZES
    values.update({k: v for k, v in sizes.items() if k in values or k == "lr"})
    if args.data is None:
        values["augment"] = "embedded"  # the 8x8 digits are not augmented (docs/chain.md)
    for opt in ("epochs", "distill_start", "distill_onset", "warmup_epochs", "batch_size", "lr", "smoothing", "nesterov",
                "eval_interval", "score_on", "replace_test", "weight_sharing", "board_size", "distill_weight",
                "ce_weight", "temperature", "img_size", "crop_scale", "holdout"):
        if getattr(args, opt) is not None:
            values[_FIELD.get(opt, opt)] = getattr(args, opt)
    if args.holdout is not None:
        values["holdout_max_share"] = None  # as given
    if args.replace_gap != "preset":
        values["replace_gap"] = args.replace_gap
    if args.slots is not None:
        try:
            values["slots"] = tuple(int(n) for n in args.slots.split(","))
        except ValueError:
            raise CydasError(f"--slots takes comma-separated integers like 4,4,5,4,4, got {args.slots!r}") from None
    if args.data is not None and args.preset == "default":  # relative to the length, as 20 and 3 of 120
        if args.distill_start is None:
            values["distill_start"] = values["epochs"] / 6
        if args.warmup_epochs is None:
            values["warmup_epochs"] = min(max(values["epochs"] / 40, 1.0), values["epochs"] / 4)
    for k in ("epochs", "batch_size", "img_size", "eval_interval", "board_size"):
        if values[k] < 1:
            raise CydasError(f"--{k.replace('_', '-')} must be >= 1, got {values[k]}")
    for k in ("distill_start", "warmup_epochs"):
        if not 0 <= values[k] < values["epochs"]:
            raise CydasError(f"--{k.replace('_', '-')} must be in [0, --epochs={values['epochs']}), got {values[k]:g}")
    if values["crop_scale"] is not None and not 0.0 < values["crop_scale"] <= 1.0:
        raise CydasError(f"--crop-scale must be in (0, 1], got {values['crop_scale']}")
    evolution = {k: getattr(args, k) if getattr(args, k) is not None else sizes[k]
                 for k in ("population", "generations", "parents")}
    evolution.update(mutation_prob=args.mutation_prob, crossover_share=args.crossover_share)
    EvolutionConfig(**evolution)  # check the evolution settings before the search, not after it
    return SearchConfig(max_macs=int(round(args.flops * 1e6)), min_macs=int(round(args.flops_min * 1e6)),
                        max_params=None if args.params is None else int(round(args.params * 1e6)),
                        max_latency_ms=args.latency, counter=args.counter, preset=args.preset,
                        cost_size=args.cost_size, replace_alpha=args.replace_alpha, seed=args.seed,
                        final=args.final, evolution=evolution, calib_batches=args.calib_batches, accum_steps=accum,
                        world_size=world_size, **values)


def advice(cfg) -> str:
    """What to change when the supernet does not learn: the options, with this run's values."""
    return (f"Likely causes and the options to change: the learning rate (--lr, now {cfg.base_lr:.3g}), augmentation "
            f"too strong for {cfg.img_size} px (--crop-scale, now {cfg.crop_min:g}), too few steps (--epochs, now "
            f"{cfg.epochs}), labels that do not follow the images; docs/chain.md, 'When the supernet does not learn'.")


def main(argv=None) -> int:
    args, run = parse_run_args(build_parser(), argv)
    embedded = args.data is None
    if args.latency_table is not None and args.latency is None:
        raise CydasError("--latency-table needs --latency MS (the limit the table's estimates are held to)")
    save_interval = args.save_interval or (EMBEDDED_SIZES if embedded else DATA_SIZES)["save_interval"]
    if save_interval < 1:
        raise CydasError(f"--save-interval must be >= 1, got {save_interval}")

    from cydas_chain.chain.latency import LatencyTable, cached_table
    from cydas_chain.chain.run import ChainSearchRun, RunOptions, search_data
    from cydas_chain.chain.searcher import ChainSearcher
    from cydas_chain.core import data as cdata
    from cydas_chain.core.distributed import (accumulation_steps, broadcast_object, default_workers, is_main_process,
                                              process_group)
    from cydas_chain.core.logging import get_logger
    from cydas_chain.core.speed import resolve_speed
    from cydas_chain.models import ChainSpace

    if embedded and "OMP_NUM_THREADS" not in os.environ:
        # 32 px images make small tensors: a second intra-op thread gains little, and on a machine whose
        # cores are busy with other work its spin-waits made steps 10-20x slower (measured).
        import torch
        torch.set_num_threads(1)
    latency = LatencyTable.load(args.latency_table) if args.latency_table is not None else None
    with process_group(args.device) as dist:
        speed = resolve_speed(dist.device, args.amp, args.channels_last, args.compile)
        batch = args.batch_size or (EMBEDDED_SIZES["batch_size"] if embedded else 1024)
        accum = accumulation_steps(batch, dist.world_size, args.accum_steps, args.device_batch)
        cfg = search_config(args, dist.world_size, accum)
        workers = args.workers if args.workers is not None else 0 if embedded else default_workers(dist.device)
        splits, tf, data_desc = search_data(cfg, args.data)
        log = get_logger("cydas.search_chain")  # stderr; the run folder's log.txt once the settings are checked
        space = ChainSpace(cfg.slots)
        if cfg.max_latency_ms is not None:
            if latency is None:  # measured once, on the main process; every rank samples with that one table
                log.info("measuring the per-layer latency table on %s (cached) ...", dist.device)
                latency = broadcast_object(cached_table(space, len(splits.classes), cfg.cost_size, dist.device,
                                                        cdata.embedded_data_root().parent / "latency")
                                           if is_main_process() else None)
            latency.check_fits(args.latency_table or "measured here", space, len(splits.classes), cfg.cost_size)
            log.info("latency table: %s", latency.describe())
        searcher = ChainSearcher(cfg, splits.train, tf.train, splits.score, splits.classes, dist, log,
                                 workers=workers, speed=speed, normalize=(tf.mean, tf.std), latency=latency)
        log = get_logger("cydas.search_chain", run.out)  # nothing is written before a budget or setting fails
        log.info("data: %s, %d classes: %s; device %s x %d (%s), %d loader process(es) each", data_desc,
                 len(splits.classes), splits.description, dist.device, dist.world_size, speed.describe(), workers)
        ChainSearchRun(searcher, run, log, RunOptions(save_interval, args.log_interval, data_desc, advice(cfg)),
                       report_set=splits.report).run()
    return 0


if __name__ == "__main__":
    run_tool(main)
