#!/usr/bin/env python
"""Retrain a DARTS-space cell network from scratch with the paper's recipe, or evaluate a checkpoint.

Examples:
  python tools/train_cell.py --genotype cydas_cifar                     # embedded synthetic data, tiny
  python tools/train_cell.py --genotype runs/search_cell/genotype.json --dataset cifar10 --data ~/data/cifar10
  torchrun --standalone --nproc_per_node 8 tools/train_cell.py --genotype cydas_imagenet --dataset imagenet --data ~/data/imagenet
  python tools/train_cell.py --genotype cydas_cifar --dataset cifar10 --data ~/data/cifar10 \\
      --eval-only --checkpoint runs/train_cell/checkpoints/best.pth
  python tools/train_cell.py --out runs/train_cell --resume --epochs 700   # continue (here: a longer schedule)

Recipes (defaults; every option overrides):
  CIFAR:    600 epochs, batch 128, SGD momentum 0.9, lr 0.025 cosine to 0, weight decay 5e-4,
            drop-path 0.3 (ramped linearly), auxiliary weight 0.4, cutout 16, 36 channels, 20 cells
  ImageNet: 250 epochs, total batch 1024 (8 GPUs x 128), lr 0.5 cosine with 5 warmup epochs, weight
            decay 3e-5, label smoothing 0.1, auxiliary weight 0.4, 48 channels, 14 cells, 224 px, SyncBN
            (the released CyDAS retraining; docs/darts.md has the sources)
  tiny:     (no --data) 2 epochs on the embedded 32 px 'shapes' set, 8 channels, 5 cells: a smoke run

--genotype: a published name (dartsv1, dartsv2, pdarts, pcdarts_cifar, pcdarts_imagenet, cydas_cifar,
cydas_imagenet), a genotype.json written by search_cell.py, or an official genotype file.
--batch-size is the total batch over all processes and accumulation steps (each of W processes runs
batch / (W x --accum-steps) images a forward), as in every tool; the recipe's lr belongs to its total
batch and follows a changed --batch-size linearly; --lr is used as given.
Writes to --out: checkpoints/last.pth (what --resume continues; --epochs may change on --resume, nothing
else may: the cosine then runs to the new length from the epoch reached), checkpoints/best.pth (best top-1), config.json, metrics.csv, tb/, log.txt; accuracies in percent.
"""
import argparse
import sys
from pathlib import Path

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import CydasError
from cydas_chain.core.run import add_run_arguments, parse_run_args


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(description=__doc__)
    p.add_argument("--genotype", default="cydas_cifar", help="published name or genotype JSON (default: cydas_cifar)")
    p.add_argument("--dataset", choices=("cifar10", "cifar100", "imagenet"), default="cifar10",
                   help="cifar10/cifar100: python pickle batches; imagenet: DIR/train + DIR/val (default: cifar10)")
    p.add_argument("--data", type=Path, default=None, help="dataset folder; absent: embedded synthetic set, 'tiny' recipe")
    p.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on the test/val set")
    p.add_argument("--checkpoint", type=Path, help="weights to evaluate (with --eval-only)")
    # flags named as in the other tools (timm's names): flag -> (recipe key, former spelling)
    renamed = {"smoothing": ("label_smoothing", "label-smoothing"), "img-size": ("image_size", "image-size")}
    for name, kind, text in [
        ("epochs", int, "training epochs"), ("batch-size", int, "total batch over all processes"),
        ("lr", float, "initial learning rate"), ("momentum", float, "SGD momentum"),
        ("weight-decay", float, "weight decay"), ("warmup-epochs", int, "linear warmup epochs"),
        ("drop-path", float, "final drop-path probability"), ("aux-weight", float, "auxiliary loss weight (0: no head)"),
        ("cutout", int, "cutout square size (0: off)"), ("smoothing", float, "label smoothing"),
        ("channels", int, "initial channels"), ("layers", int, "cells"), ("img-size", int, "input size"),
        ("grad-clip", float, "gradient-norm clip"),
    ]:
        dest, former = renamed.get(name, (name.replace("-", "_"), None))
        p.add_argument(f"--{name}", dest=dest, type=kind, metavar=name.replace("-", "_").upper(),
                       help=f"{text} (default: the recipe's)")
        if former:  # the former spelling, still accepted
            p.add_argument(f"--{former}", dest=dest, type=kind, help=argparse.SUPPRESS)
    p.add_argument("--sync-bn", dest="sync_bn", action=argparse.BooleanOptionalAction, default=None,
                   help="synchronise batch-norm statistics over the processes (default: the recipe's; ImageNet on)")
    add_run_arguments(p, "runs/train_cell", accumulation=True)
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args, run = parse_run_args(build_parser(), argv, fresh=("checkpoint",), no_run="eval_only")
    from cydas_chain.train.cells import RetrainConfig, evaluate_checkpoint, retrain
    from cydas_chain.models.darts.genotypes import resolve_genotype

    genotype = resolve_genotype(args.genotype)  # bad names / files fail before anything starts
    if args.eval_only and "--genotype" not in (argv or sys.argv):
        genotype = None  # the checkpoint's
    cfg = RetrainConfig(genotype=genotype, dataset=args.dataset, data=args.data, out=args.out,
                        overrides=vars(args), seed=args.seed, device=args.device,  # the recipe's keys are used
                        workers=args.workers, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                        accum_steps=args.accum_steps, device_batch=args.device_batch,
                        log_interval=args.log_interval, checkpoint=args.checkpoint)
    if args.eval_only and args.checkpoint is None:
        raise CydasError("--eval-only needs --checkpoint PATH")
    if args.eval_only:
        m = evaluate_checkpoint(cfg)
        print(" ".join(f"{k}={v:.4f}" for k, v in m.items()))
    else:
        retrain(cfg, run)
    return 0


if __name__ == "__main__":
    run_tool(main)
