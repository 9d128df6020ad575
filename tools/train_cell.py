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
  ImageNet: 250 epochs, batch 128, lr 0.5 cosine with 5 warmup epochs, weight decay 3e-5,
            label smoothing 0.1, auxiliary weight 0.4, 48 channels, 14 cells, 224 px
  tiny:     (no --data) 2 epochs on the embedded 32 px 'shapes' set, 8 channels, 5 cells: a smoke run

--genotype: a published name (dartsv1, dartsv2, pdarts, pcdarts_cifar, pcdarts_imagenet, cydas_cifar,
cydas_imagenet), a genotype.json written by search_cell.py, or an official genotype file.
--batch-size is the total batch over all processes (each of W processes loads batch / W images a step),
as in every tool; --lr is used as given, whatever the number of processes.
Writes to --out: checkpoints/last.pth (what --resume continues; --epochs may change on --resume, nothing
else may), checkpoints/best.pth (best top-1), config.json, metrics.csv, tb/, log.txt.
"""
import argparse
import sys
from pathlib import Path

from cydas_chain.core.cli import run_tool
from cydas_chain.core.errors import CydasError
from cydas_chain.core.run import add_run_arguments, load_states, parse_run_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    add_run_arguments(p, "runs/train_cell", 2)
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    parser = build_parser()
    args, run = parser.parse_args(argv), None
    if not args.eval_only:  # evaluation reads a checkpoint; it is no run
        args, run = parse_run_args(parser, argv, fresh=("checkpoint",))
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from cydas_chain.core.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
    from cydas_chain.core.distributed import cleanup, init_distributed, is_main_process
    from cydas_chain.core.logging import MetricWriter, get_logger
    from cydas_chain.core.seed import rng_state, seed_everything, set_rng_state
    from cydas_chain.darts.data import train_test_sets
    from cydas_chain.darts.retrain import RECIPES, build_eval_model, drop_path_at, evaluate, train_one_epoch
    from cydas_chain.models.darts.genotypes import resolve_genotype

    genotype = resolve_genotype(args.genotype)  # bad names / files fail before anything starts
    kind = "tiny" if args.data is None else ("imagenet" if args.dataset == "imagenet" else "cifar")
    r = dict(RECIPES[kind])
    r.update({k: v for k, v in vars(args).items() if k in r and v is not None})
    if args.eval_only and args.checkpoint is None:
        raise CydasError("--eval-only needs --checkpoint PATH")
    if run is not None:
        run.start({"genotype": genotype.to_dict(), "dataset": args.dataset, "data": args.data, "recipe": r},
                  may_change=("recipe.epochs",))
    if args.eval_only:  # the checkpoint's genotype and network size, unless given on the command line
        saved = load_checkpoint(args.checkpoint)  # one line for a missing or corrupt file
        if "genotype" in saved and "--genotype" not in (argv or sys.argv):
            genotype = resolve_genotype(saved["genotype"])
        for k in ("channels", "layers", "aux_weight"):
            if k in saved.get("recipe", {}) and getattr(args, k) is None:
                r[k] = saved["recipe"][k]

    dist = init_distributed(args.device)
    try:
        seed_everything(args.seed + dist.rank)
        imagenet_tf = {}
        if kind == "imagenet":
            from timm.data import create_transform
            imagenet_tf = dict(train_transform=create_transform(r["image_size"], is_training=True, color_jitter=0.4),
                               test_transform=create_transform(r["image_size"], is_training=False))
        train_set, test_set, classes, desc = train_test_sets(
            args.dataset if args.data is not None else "cifar10", args.data, r["image_size"], r["cutout"],
            **imagenet_tf)
        model = build_eval_model(genotype, "imagenet" if kind == "imagenet" else "cifar", len(classes),
                                 r["channels"], r["layers"], auxiliary=r["aux_weight"] > 0).to(dist.device)
        log = get_logger("cydas.train_cell", args.out if is_main_process() and not args.eval_only else None)
        log.info("data: %s | genotype %s", desc, genotype)
        if r["batch_size"] % dist.world_size:
            raise CydasError(f"--batch-size {r['batch_size']} (the total) is not divisible by {dist.world_size} processes")
        batch = r["batch_size"] // dist.world_size
        test_loader = DataLoader(test_set, batch_size=batch, num_workers=args.workers,
                                 sampler=DistributedSampler(test_set, shuffle=False) if dist.distributed else None)
        if args.eval_only:
            load_model_weights(model, args.checkpoint)
            m = evaluate(model, test_loader, dist.device)
            print(" ".join(f"{k}={v:.4f}" for k, v in m.items()))
            return 0

        log.info("recipe %s: %s", kind, r)
        optimizer = create_optimizer_v2(model, "momentum", lr=r["lr"], weight_decay=r["weight_decay"],
                                        momentum=r["momentum"])
        scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=r["epochs"], min_lr=0.0,
                                           warmup_epochs=r["warmup_epochs"], warmup_lr=r["lr"] * 0.01)
        sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed) if dist.distributed else None
        start, best = 0, 0.0
        metrics = MetricWriter(args.out)
        if run.resume is not None:
            state = load_checkpoint(run.resume)
            load_states({"model": model, "optimizer": optimizer, "scheduler": scheduler}, state, run.resume)
            start, best = int(state["epoch"]), float(state["best_top1"])
            set_rng_state(state["rng"])
            metrics.truncate_after(start)
            log.info("resumed after epoch %d", start)
        scheduler.step(start)
        for epoch in range(start, r["epochs"]):
            model.drop_path_prob = drop_path_at(epoch, r["epochs"], r["drop_path"])
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader = DataLoader(train_set, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                                num_workers=args.workers, drop_last=True, pin_memory=dist.device.type == "cuda")
            m = train_one_epoch(model, loader, optimizer, dist.device, r["aux_weight"], r["label_smoothing"],
                                r["grad_clip"], desc=f"epoch {epoch + 1}/{r['epochs']}")
            m.update(evaluate(model, test_loader, dist.device), lr=optimizer.param_groups[0]["lr"])
            scheduler.step(epoch + 1)
            best = max(best, m["eval_top1"])
            metrics.write(epoch + 1, m)
            log.info("epoch %d/%d %s", epoch + 1, r["epochs"], " ".join(f"{k}={v:.4g}" for k, v in m.items()))
            if is_main_process():
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best_top1": best,
                         "genotype": genotype.to_dict(), "recipe": r, "rng": rng_state()}
                if m["eval_top1"] >= best:
                    save_checkpoint({"model": state["model"], "genotype": state["genotype"], "epoch": epoch + 1,
                                     "top1": best, "recipe": r}, run.best)
                save_checkpoint(state, run.last)
        metrics.close()
        log.info("best top-1 %.4f; weights in %s", best, run.best)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    run_tool(main)
