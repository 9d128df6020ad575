#!/usr/bin/env python
"""Cyclic differentiable architecture search (CyDAS) of a cell: DARTS or NAS-Bench-201 space.

Examples:
  python tools/search_cell.py                                   # embedded synthetic data, tiny, ~minutes on CPU
  python tools/search_cell.py --dataset cifar10 --data ~/data/cifar10       # the paper's CIFAR-10 setting
  python tools/search_cell.py --space nb201 --dataset cifar10 --data ~/data/cifar10 \
      --nb201-api NAS-Bench-201-v1_1-096897.pth       # + the found cell's benchmark accuracies
  torchrun --standalone --nproc_per_node 8 tools/search_cell.py --dataset imagenet --data ~/data/imagenet
  python tools/search_cell.py --out runs/search_cell --resume   # continue a killed search with its settings

Writes to --out: genotype.json (the final cell), genotype_history.json, alpha_history.json,
normal.png / reduce.png (NB201: cell.png), metrics.csv, tb/ (TensorBoard), log.txt, config.json,
checkpoints/last.pth (what --resume continues; --epochs may grow on --resume, the cosine then runs to the new
length; nothing else may change).
With --nb201-api, genotype.json and every entry of genotype_history.json also hold the cell's
NAS-Bench-201 accuracies ("nas_bench_201"), and metrics.csv and the log show them after every epoch.

Without --data the search runs on a small synthetic 10-class "shapes" set with a tiny network
(preset 'tiny'): it shows the tool working end to end, it is not a search result.  With --data the
paper's setting of the dataset is the default (preset cifar / imagenet / nb201; docs/darts.md lists
every value with its source); every option below overrides its preset value.

--batch-size is the total batch over all processes (torchrun --nproc_per_node W: each process loads
batch / W images a step and the gradients are averaged), as in tools/search_chain.py.  The learning
rate follows the total batch: a preset's rate belongs to its batch (CIFAR 0.1 per 64 images, ImageNet
0.8 per 1024) and is scaled linearly when --batch-size changes the batch; --lr sets it outright.
"""
import argparse
from dataclasses import asdict
from pathlib import Path

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import CydasError
from cydas_chain.core.run import add_run_arguments, parse_run_args


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(description=__doc__)
    p.add_argument("--space", choices=("darts", "nb201"), default="darts", help="cell search space (default: darts)")
    p.add_argument("--dataset", choices=("cifar10", "cifar100", "imagenet"), default="cifar10",
                   help="cifar10/cifar100: python pickle batches; imagenet: DIR/train/<class>/ (default: cifar10)")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder; absent: the embedded synthetic set with the 'tiny' preset")
    p.add_argument("--preset", choices=("tiny", "cifar", "imagenet", "nb201"), default=None,
                   help="default settings (default: tiny without --data, else the dataset's/space's paper setting)")
    p.add_argument("--epochs", type=int, help="search epochs, after the pretraining ones (paper: 30; NB201: 50)")
    p.add_argument("--pretrain-epochs", type=int, help="epochs training w_S only (paper ImageNet: 10)")
    p.add_argument("--batch-size", type=int,
                   help="total batch over all processes (paper: CIFAR 64, ImageNet 1024)")
    p.add_argument("--lr", type=float, help="SGD learning rate of w_S and w_E for the total batch "
                                            "(default: the preset's, scaled linearly with --batch-size; "
                                            "paper: CIFAR 0.1 at 64, ImageNet 0.8 at 1024)")
    p.add_argument("--weight-decay", type=float, help="SGD weight decay (paper: CIFAR 3e-4, ImageNet 3e-5)")
    p.add_argument("--channels", type=int, help="search network channels (paper: 16)")
    p.add_argument("--layers", type=int, help="search cells (DARTS: 8) or cells a stage (NB201: 5)")
    p.add_argument("--eval-channels", type=int, help="evaluation network channels (CIFAR 36, ImageNet 48)")
    p.add_argument("--eval-layers", type=int, help="evaluation network cells (CIFAR 20, ImageNet 14)")
    p.add_argument("--update-every", type=int, help="S_U: steps between discretizations (default: one epoch)")
    p.add_argument("--eval-steps", type=int, help="S_E in steps: evaluation-network steps after each "
                                                  "(default: --eval-epochs epochs)")
    p.add_argument("--eval-epochs", type=int, help="S_E in epochs, when --eval-steps is not given "
                                                   "(paper: CIFAR 1, ImageNet 3)")
    p.add_argument("--arch-weight-decay", type=float,
                   help="Adam weight decay of the joint alpha / w_E step (paper: CIFAR 3e-4, ImageNet 3e-5)")
    p.add_argument("--distill-weight", type=float, help="lambda of the distillation term (paper: 4)")
    p.add_argument("--distill-reduction", choices=("released", "batchmean"),
                   help="scale of the distillation KL that lambda multiplies: 'released' = the released code's "
                        "element-wise mean (default; what the published lambda was tuned with), 'batchmean' = "
                        "per-sample KL summed over the 3 stages (3 x classes times larger)")
    p.add_argument("--l1-weight", type=float, help="initial lambda' of the skip L1 term (paper: 5; NB201: unused)")
    p.add_argument("--first-order-darts", action="store_true",
                   help="switch the evaluation network and distillation off (first-order DARTS baseline)")
    p.add_argument("--img-size", type=int, help="input size (default: 32 CIFAR, 224 ImageNet, 16 embedded)")
    p.add_argument("--image-size", dest="img_size", type=int, help=argparse.SUPPRESS)  # the former spelling
    p.add_argument("--subset-fraction", type=float,
                   help="share of every class used before the half/half split "
                        "(default: imagenet 0.2, i.e. 10%% + 10%% as in the paper; otherwise 1)")
    p.add_argument("--nb201-api", type=Path, default=None,
                   help="NAS-Bench-201 API file (.pth) or NATS-Bench topology file/folder you have "
                        "(--space nb201): report the found cell's CIFAR-10 / CIFAR-100 / ImageNet16-120 "
                        "accuracies after every epoch and in the result files (see tools/nb201_lookup.py)")
    add_run_arguments(p, "runs/search_cell")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def build_config(args, num_classes: int):
    from cydas_chain.darts.searcher import PRESETS, SearchConfig
    from cydas_chain.darts.spaces import cell_space

    space = cell_space(args.space)
    preset = args.preset or ("tiny" if args.data is None else space.default_preset(args.dataset))
    values = dict(PRESETS[preset])
    preset_batch, preset_lr = values["batch_size"], values["w_lr"]
    space.adapt_preset(values, preset)
    overrides = dict(epochs=args.epochs, pretrain_epochs=args.pretrain_epochs, batch_size=args.batch_size,
                     w_lr=args.lr, w_weight_decay=args.weight_decay, c=args.channels, layers=args.layers,
                     eval_c=args.eval_channels, eval_layers=args.eval_layers, update_every=args.update_every,
                     eval_steps=args.eval_steps, eval_epochs=args.eval_epochs,
                     arch_weight_decay=args.arch_weight_decay, distill_weight=args.distill_weight,
                     distill_reduction=args.distill_reduction, l1_weight=args.l1_weight)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if args.lr is None:  # the preset's rate belongs to the preset's total batch: linear scaling
        values["w_lr"] = preset_lr * values["batch_size"] / preset_batch
    if space.eval_like_search and args.eval_layers is None and args.layers is not None:
        values["eval_layers"] = values["layers"]
    values.update(num_classes=num_classes, seed=args.seed, cyclic=not args.first_order_darts)
    cfg = SearchConfig(**values)
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise CydasError("--epochs and --batch-size must be at least 1")
    for name, v in (("--update-every", cfg.update_every), ("--eval-steps", cfg.eval_steps),
                    ("--eval-epochs", cfg.eval_epochs), ("--pretrain-epochs", cfg.pretrain_epochs)):
        if v < 0 or (name == "--eval-epochs" and v < 1):
            raise CydasError(f"{name} must be {'at least 1' if name == '--eval-epochs' else '0 or more'}, got {v}")
    return cfg, preset


def main(argv=None) -> int:
    args, run = parse_run_args(build_parser(), argv)
    from cydas_chain.core.distributed import default_workers, is_main_process, process_group
    from cydas_chain.core.logging import get_logger
    from cydas_chain.darts.data import EMBEDDED_IMAGE_SIZE, search_splits
    from cydas_chain.darts.nb201_bench import NB201Bench
    from cydas_chain.darts.run import CellSearchRun
    from cydas_chain.darts.searcher import CyclicSearcher
    from cydas_chain.darts.spaces import cell_space

    if args.nb201_api is not None and not cell_space(args.space).benchmark:
        raise CydasError("--nb201-api needs --space nb201")
    from cydas_chain.core.speed import resolve_speed

    with process_group(args.device) as dist:
        speed = resolve_speed(dist.device, args.amp, args.channels_last, args.compile)
        # the benchmark file is read once, before the search, by the process that writes the results
        bench = NB201Bench(args.nb201_api) if args.nb201_api is not None and is_main_process() else None
        image_size = args.img_size or (EMBEDDED_IMAGE_SIZE if args.data is None else
                                         224 if args.dataset == "imagenet" else 32)
        fraction = args.subset_fraction or (0.2 if args.dataset == "imagenet" and args.data else 1.0)
        if not 0.0 < fraction <= 1.0:
            raise CydasError(f"--subset-fraction must be in (0, 1], got {fraction}")
        train, val, classes, desc, tf = search_splits(args.dataset, args.data, image_size, args.seed, fraction)
        cfg, preset = build_config(args, len(classes))
        run.start({**asdict(cfg), "dataset": args.dataset, "data": args.data, "img_size": image_size,
                   "subset_fraction": fraction}, may_change=("epochs",))
        log = get_logger("cydas.search_cell", args.out)  # log.txt: main process
        log.info("data: %s", desc)
        if bench is not None:
            log.info("NAS-Bench-201: %d cells in %s (%s)", len(bench), args.nb201_api, bench.source)
        log.info("preset %s, device %s (%s), %d process(es) of %d images a step (total batch %d, lr %.4g): %s",
                 preset, dist.device, speed.describe(), dist.world_size, cfg.batch_size // dist.world_size,
                 cfg.batch_size, cfg.w_lr, asdict(cfg))
        workers = default_workers(dist.device) if args.workers is None else args.workers
        searcher = CyclicSearcher(cfg, train, val, dist.device, num_workers=workers, speed=speed, mean=tf.mean,
                                  std=tf.std, log_interval=args.log_interval)
        if searcher.steps_per_epoch() < 1:
            raise CydasError(f"the total batch of {cfg.batch_size} is larger than the split "
                             f"({min(len(train), len(val))} images): lower --batch-size")
        CellSearchRun(searcher, run, log, bench).run()
    return 0


if __name__ == "__main__":
    run_tool(main)
