#!/usr/bin/env python
"""Search a mobile backbone in the CyDAS chain space under a FLOPs budget.

SPOS supernet training with an introspective teacher path (CyDAS TPAMI, Sec. 4.6.1): every step
trains one path drawn uniformly among those within the budget; after a warm-up of supernet-only
training, each step is also distilled from the teacher path, and a sampled path that scores higher on
a held-out validation subset with no more MACs (and wins a paired test on the same images) replaces
the teacher; so does a path with more MACs within the budget that scores more than --replace-gap
points higher (the released code's acc_gap: without it the teacher could only shrink from its random
start).  The last teacher is the result: OUT/arch.json, buildable with
timm.create_model('cydas_chain', arch='OUT/arch.json').  The space has 4,4,5,4,4 layer slots
(the released supernet's); the ops of a slot share one weight-entangled block by default.

Examples:
  python tools/search_chain.py --flops 400                          # embedded data set, CPU, minutes
  python tools/search_chain.py --data /data/imagenet --flops 400    # paper settings
  torchrun --nproc_per_node 8 tools/search_chain.py --data /data/imagenet --flops 400
  python tools/search_chain.py --flops 400 --resume                 # continue OUT/checkpoints/last.pth

Data: --data DIR is an ImageFolder tree: DIR/train/<class>/* and DIR/val/<class>/* (without val/,
a stratified 10%% of train/ is held out).  Without --data the search runs on the embedded default:
the 1,797 real 8x8 handwritten digits shipped inside the package (UCI / scikit-learn's digits; 1,438
train + 359 val images, 10 classes, upscaled to 32x32), written once as PNG folders to
~/.cache/cydas_chain/digits.  It runs end to end in about 3 minutes on a 2-core CPU and its result
is far above chance, but it is small: architectures found on it say nothing about ImageNet.

Defaults (--data DIR | embedded):  --epochs 120 | 8, --warmup-epochs epochs/6 (Cream: 20 of 120),
--lr-warmup-epochs epochs/40 (Cream: 3 of 120), --batch-size 1024 | 64 (total over all processes),
--lr 0.5 * batch / 1024 | 0.1, --img-size 224 | 32, --eval-interval 100 | 8 steps, --val-subset
5000 | 359 (all) images, --workers (cores per process - 1 on a GPU) | 0, --save-interval 1000 | 50 steps.  The
paper's settings on ImageNet: SGD momentum 0.9, weight decay 4e-5, lr 0.5 per 1024 images of total
batch (scaled linearly), linear decay to 0.  MACs are always counted at the deployment resolution
--cost-size (224), whatever --img-size.
"""
import argparse
import os
from dataclasses import fields
from pathlib import Path

from cydas_chain.chain.board import gap_points
from cydas_chain.core.cli import run_tool
from cydas_chain.core.errors import CydasError
from cydas_chain.core.run import add_run_arguments, parse_run_args

REAL_DEFAULTS = dict(epochs=120, batch_size=1024, img_size=224, eval_interval=100, val_subset=5000,
                     save_interval=1000, population=50, generations=20, parents=10)
EMBEDDED_DEFAULTS = dict(epochs=8, batch_size=64, lr=0.1, img_size=32, eval_interval=8, val_subset=359,
                         workers=0, save_interval=50, population=16, generations=6, parents=4)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("budget (MACs counted by fvcore at --cost-size)")
    g.add_argument("--flops", type=float, required=True, help="largest MACs of a path, in millions (e.g. 400)")
    g.add_argument("--flops-min", type=float, default=0.0, help="smallest MACs, in millions (default: 0)")
    g.add_argument("--params", type=float, default=None, help="largest parameter count, in millions (optional)")
    g.add_argument("--latency", type=float, default=None,
                   help="largest latency in ms, batch 1 at --cost-size, summed from a per-layer table measured "
                        "on --device and cached in ~/.cache/cydas_chain/latency (optional)")
    g.add_argument("--cost-size", type=int, default=224, help="deployment resolution of the budget (default: 224)")
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None, help="ImageFolder root (default: the embedded data set)")
    g.add_argument("--img-size", type=int, default=None, help="training resolution (224 | 32)")
    g.add_argument("--crop-scale", type=float, default=0.08,
                   help="--data: smallest area share of the random-resized training crop (default: 0.08, the "
                        "Inception crop of ImageNet training; small data learns faster with e.g. 0.5)")
    g = p.add_argument_group("search")
    g.add_argument("--epochs", type=int, default=None, help="(120 | 8)")
    g.add_argument("--warmup-epochs", type=float, default=None,
                   help="NOT an lr warm-up (that is --lr-warmup-epochs): supernet-only epochs before distillation "
                        "and the teacher rule start (default: epochs/6, Cream's 20 of 120)")
    g.add_argument("--lr-warmup-epochs", type=float, default=None,
                   help="linear lr warm-up from 0, what --warmup-epochs means in the training tools "
                        "(default: epochs/40, Cream's 3 of 120)")
    g.add_argument("--batch-size", type=int, default=None, help="total batch over all processes (1024 | 64)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (0.5 * batch / 1024 | 0.1)")
    g.add_argument("--eval-interval", type=int, default=None,
                   help="steps between applications of the teacher rule (100 | 8; 1 = every batch, the "
                        "paper's literal rule)")
    g.add_argument("--val-subset", type=int, default=None, help="validation images scoring the paths (5000 | 359)")
    g.add_argument("--replace-test", choices=("mcnemar", "none"), default="mcnemar",
                   help="mcnemar: a candidate must also win an exact paired test on the validation images it and "
                        "the teacher disagree on; none: the paper's bare rule (default: mcnemar)")
    g.add_argument("--replace-alpha", type=float, default=0.05, help="level of the paired test (default: 0.05)")
    g.add_argument("--replace-gap", type=gap_points, default=5.0, metavar="POINTS",
                   help="a path with more MACs (within the budget) also replaces the teacher when it scores more "
                        "than POINTS higher: the released code's acc_gap (default: 5; none: never, the paper's text, "
                        "under which the teacher can only shrink from its random start)")
    g.add_argument("--weight-sharing", choices=("entangled", "independent"), default="entangled",
                   help="entangled: the ops of a slot share one block (kernel and channel slices, OFA-style), "
                        "which trains in hundreds of steps; independent: one block per op, the paper's SPOS "
                        "(default: entangled)")
    g.add_argument("--slots", default="4,4,5,4,4", help="layer slots of each searched stage (default: %(default)s)")
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
                   help="training batches that recalibrate BN before a path is scored by the evolution (default: 20)")
    g.add_argument("--board-size", type=int, default=1,
                   help="1: the paper's single teacher; K > 1: keep the K best paths (Cream's prioritized "
                        "board), distil from the best (default: 1)")
    g.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss (default: 1)")
    g.add_argument("--temperature", type=float, default=1.0, help="distillation temperature (default: 1)")
    g = add_run_arguments(p, "runs/search_chain", "with --data: on a GPU the cores of this process's share but one, up "
                                                  "to 12, on the CPU 1; 0 on the embedded data", accumulation=True)
    g.add_argument("--save-interval", type=int, default=None, help="steps between checkpoints (1000 | 50)")
    return p


def main(argv=None) -> int:
    args, run = parse_run_args(build_parser(), argv)
    embedded = args.data is None
    for k, v in (EMBEDDED_DEFAULTS if embedded else REAL_DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k in ("epochs", "batch_size", "img_size", "eval_interval", "val_subset", "save_interval", "board_size"):
        if getattr(args, k) < 1:
            raise CydasError(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    for k, share in (("warmup_epochs", 6), ("lr_warmup_epochs", 40)):  # defaults: epochs/6, epochs/40
        if getattr(args, k) is None:
            setattr(args, k, args.epochs / share)
        if not 0 <= getattr(args, k) < args.epochs:
            raise CydasError(f"--{k.replace('_', '-')} must be in [0, --epochs={args.epochs}), "
                             f"got {getattr(args, k):g}")
    try:
        slots = tuple(int(n) for n in args.slots.split(","))
    except ValueError:
        raise CydasError(f"--slots takes comma-separated integers like 4,4,5,4,4, got {args.slots!r}") from None

    from cydas_chain.core import data as cdata
    from cydas_chain.core.distributed import accumulation_steps, default_workers, main_first, process_group
    from cydas_chain.core.logging import get_logger
    from cydas_chain.chain.evolution import EvolutionConfig
    from cydas_chain.chain.searcher import ChainSearch, SearchConfig

    if embedded and "OMP_NUM_THREADS" not in os.environ:
        # 32 px images make small tensors: a second intra-op thread gains little, and on a machine whose
        # cores are busy with other work its spin-waits made steps 10-20x slower (measured).
        import torch
        torch.set_num_threads(1)
    from cydas_chain.core.speed import resolve_speed

    with process_group(args.device) as dist:
        speed = resolve_speed(dist.device, args.amp, args.channels_last, args.compile)
        accum = accumulation_steps(args.batch_size, dist.world_size, args.accum_steps, args.device_batch)
        workers = args.workers if args.workers is not None else 0 if embedded else default_workers(dist.device)
        if embedded:
            root = main_first(lambda: cdata.make_digits_folder(cdata.embedded_data_root()))
            data_desc = f"embedded handwritten digits ({root})"
        else:
            root, data_desc = args.data, str(args.data)
        if not 0.0 < args.crop_scale <= 1.0:
            raise CydasError(f"--crop-scale must be in (0, 1], got {args.crop_scale}")
        tf = cdata.build_transforms(args.img_size, "embedded" if embedded else "imagenet", crop_scale=args.crop_scale)
        train_set, val_set, classes = cdata.train_val_folders(root, None, tf.eval, seed=args.seed)

        # the options named as a field (--epochs, --batch-size, --lr, --seed, ...) as given, then the others
        named = {f.name: getattr(args, f.name) for f in fields(SearchConfig) if hasattr(args, f.name)}
        cfg = SearchConfig(**{**named, **dict(
            max_macs=int(round(args.flops * 1e6)), min_macs=int(round(args.flops_min * 1e6)),
            max_params=None if args.params is None else int(round(args.params * 1e6)),
            max_latency_ms=args.latency,
            slots=slots, evolution=dict(population=args.population, generations=args.generations,
                                        parents=args.parents, mutation_prob=args.mutation_prob,
                                        crossover_share=args.crossover_share),
            accum_steps=accum, world_size=dist.world_size)})
        EvolutionConfig(**cfg.evolution)  # check the evolution settings before the search, not after it
        log = get_logger("cydas.search_chain", run.out)
        log.info("data: %s, %d classes, %d train / %d val images; device %s x %d (%s), %d loader process(es) each",
                 data_desc, len(classes), len(train_set), len(val_set), dist.device, dist.world_size,
                 speed.describe(), workers)
        search = ChainSearch(cfg, train_set, tf.train, val_set, classes, run, dist, log, workers=workers,
                             save_interval=args.save_interval, data_desc=data_desc,
                             latency_cache=cdata.embedded_data_root().parent / "latency", speed=speed,
                             normalize=(tf.mean, tf.std), log_interval=args.log_interval)
        search.run()
    return 0


if __name__ == "__main__":
    run_tool(main)
