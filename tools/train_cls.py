#!/usr/bin/env python
"""Train a backbone on image classification from scratch with the CyDAS recipe, or evaluate one.

The default recipe (docs/train_cls.md gives every value's source: the paper, the released retraining
configs, or ours): RMSProp (TF style, momentum 0.9, decay 0.9, eps 1e-3), weight decay 1e-5, dropout
0.2 (the paper's) and drop-path 0.2 (ours), lr 0.04 for a total batch of 1024 (8 GPUs x 128) scaled
linearly with YOUR total batch (lr = 0.04 x --batch-size / 1024; --batch-size is the total over all
processes, as in every tool), 3 lr warm-up epochs then cosine, AutoAugment, EMA of the weights; label
smoothing 0.1 (timm); 350 epochs on ImageNet (the paper's).

Data: --data DIR in the ImageNet folder layout (DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg;
without val/, 10% of train/ is held out).  Without --data, a small synthetic 10-class "shapes"
set embedded in the package (600 train / 200 val images of 32 px, written to ~/.cache/cydas_chain)
is used with small defaults, so a run finishes in a few minutes on a CPU; it is a smoke test of the
pipeline, not a benchmark.

Outputs in --out: checkpoints/last.pth (resume point), checkpoints/best.pth (best validation top-1
of the EMA weights), metrics.csv + tb/ (TensorBoard), log.txt, config.json, arch.json (chain models).
Checkpoints keep weights under 'state_dict' and EMA weights under 'state_dict_ema' (timm's convention):
  timm.create_model('cydas_b', pretrained=True, pretrained_cfg_overlay=dict(file='out/checkpoints/best.pth'))

Examples:
  python tools/train_cls.py --out runs/cls_shapes                      # embedded set, CPU, minutes
  torchrun --nproc_per_node 8 tools/train_cls.py --model cydas_b --data /data/imagenet \\
      --out runs/cydas_b_in1k                                         # the default recipe, bf16 on the GPUs
  python tools/train_cls.py --arch runs/search_chain/arch.json --data /data/imagenet --out runs/x
  python tools/train_cls.py --out runs/cydas_b_in1k --resume           # continue with the run's settings
  python tools/train_cls.py --eval-only --checkpoint runs/x/checkpoints/best.pth --data /data/imagenet
"""
import argparse
import json
import os

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.run import add_run_arguments, parse_run_args
from cydas_chain.train import Recipe, TrainConfig, evaluate_checkpoint, train
from cydas_chain.train.classification import EMBEDDED_DEFAULTS, IMAGENET_DEFAULTS


def data_default(name: str) -> str:
    return f"default: {IMAGENET_DEFAULTS[name]} with --data, {EMBEDDED_DEFAULTS[name]} on the embedded set"


def optimizer_name(text: str) -> str:
    """--opt: a name of timm's optimizer registry (optionally lookahead_NAME)."""
    from timm.optim import list_optimizers

    known = list_optimizers()
    if text.lower().removeprefix("lookahead_") not in known:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timm optimizer (e.g. {', '.join(known[:6])}, ...; "
                                         f"timm.optim.list_optimizers() lists {len(known)})")
    return text


def build_parser() -> argparse.ArgumentParser:
    r = Recipe()
    p = ToolParser(description=__doc__)
    net = p.add_mutually_exclusive_group()
    net.add_argument("--model", help="a timm model name: cydas_a, cydas_b (default), or any other timm model; "
                                     "--eval-only and --resume default to the network the checkpoint records")
    net.add_argument("--arch", help="an arch.json of the chain space (from tools/search_chain.py): "
                                    "trains timm.create_model('cydas_chain', arch=ARCH)")
    p.add_argument("--data", help="ImageNet-style folder (train/ and val/); default: the embedded shapes set")
    p.add_argument("--epochs", type=int, help=f"total epochs of the schedule; may grow on --resume, the cosine then "
                                              f"runs to the new length ({data_default('epochs')})")
    p.add_argument("--batch-size", type=int,
                   help=f"total batch over all processes (and accumulation steps): the images of one update, "
                        f"whatever the number of GPUs; the default lr follows it linearly "
                        f"({data_default('batch_size')})")
    p.add_argument("--img-size", type=int, help=f"training and evaluation resolution ({data_default('img_size')})")
    p.add_argument("--lr", type=float, help=f"peak learning rate, used as given (default: {r.base_lr} x "
                                            f"--batch-size / 1024)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="start from these weights (e.g. weights.pth of tools/search_chain.py or select_chain.py, with "
                        "its --arch): every tensor must fit, except a classifier of another number of classes")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of train/ held out for validation when DIR has no val/ (default: 0.1)")
    p.add_argument("--eval-only", action="store_true", help="evaluate a checkpoint on the validation set and "
                                                            "print top-1/top-5 as JSON")
    p.add_argument("--checkpoint", help="the checkpoint of --eval-only (default: OUT/checkpoints/best.pth); its "
                                        "EMA weights are used when it has them")

    rec = p.add_argument_group("recipe (docs/train_cls.md gives the source of each default)")
    rec.add_argument("--opt", type=optimizer_name, default=r.opt,
                     help="timm optimizer name, e.g. rmsproptf, momentum (SGD), sgd (Nesterov), adamw (default: "
                          "%(default)s)")
    rec.add_argument("--weight-decay", type=float, default=r.weight_decay, help="(default: %(default)s)")
    rec.add_argument("--warmup-epochs", type=int, default=r.warmup_epochs,
                     help="linear lr warm-up epochs (default: %(default)s)")
    rec.add_argument("--drop", type=float, default=r.drop_rate, help="dropout before the classifier "
                                                                     "(default: %(default)s)")
    rec.add_argument("--drop-path", type=float, default=r.drop_path_rate, help="(default: %(default)s)")
    rec.add_argument("--aa", default=r.auto_augment, help="timm auto-augment policy, 'none' to disable "
                                                          "(default: %(default)s = AutoAugment's ImageNet policy)")
    rec.add_argument("--crop-scale", type=float, default=r.crop_scale,
                     help="smallest area share of the random-resized crop (default: %(default)s)")
    rec.add_argument("--smoothing", type=float, default=r.smoothing, help="label smoothing (default: %(default)s)")
    rec.add_argument("--ema-decay", type=float, default=r.ema_decay, help="(default: %(default)s)")
    rec.add_argument("--no-ema", action="store_true", help="no EMA of the weights")
    g = add_run_arguments(p, "runs/train_cls", accumulation=True)
    g.add_argument("--sync-bn", action="store_true",
                   help="synchronise batch-norm statistics over the processes (timm's SyncBatchNorm)")
    return p


def main(argv=None) -> int:
    args, run = parse_run_args(build_parser(), argv, fresh=("checkpoint",), no_run="eval_only")
    recipe = Recipe(opt=args.opt, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                    drop_rate=args.drop, drop_path_rate=args.drop_path,
                    auto_augment=None if args.aa in (None, "", "none") else args.aa, crop_scale=args.crop_scale,
                    smoothing=args.smoothing, ema=not args.no_ema, ema_decay=args.ema_decay)
    cfg = TrainConfig(model=args.model, arch=args.arch, data=args.data, out=args.out, epochs=args.epochs,
                      batch_size=args.batch_size, img_size=args.img_size, lr=args.lr, workers=args.workers,
                      seed=args.seed, device=args.device, amp=args.amp, channels_last=args.channels_last,
                      compile=args.compile, accum_steps=args.accum_steps, device_batch=args.device_batch,
                      sync_bn=args.sync_bn, log_interval=args.log_interval, init_weights=args.init_weights,
                      val_fraction=args.val_fraction,
                      resume=args.resume, checkpoint=args.checkpoint, recipe=recipe)
    if args.eval_only:
        metrics = evaluate_checkpoint(cfg)
        if int(os.environ.get("RANK", 0)) == 0:
            print(json.dumps(metrics))
    else:
        train(cfg, run)
    return 0


if __name__ == "__main__":
    run_tool(main)
