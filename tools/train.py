#!/usr/bin/env python
"""Train an MMDetection or MMSegmentation config with the mmengine Runner (as their tools/train.py).

The config's default_scope ('mmdet' or 'mmseg') picks the library.

Examples:
  python tools/train.py mm_configs/retinanet_cydas_b.py --auto-scale-lr    # one GPU: lr x 2/16
  python tools/train.py mm_configs/retinanet_cydas_b.py --data-root /datasets/coco/ --resume
  torchrun --nproc_per_node 8 tools/train.py mm_configs/retinanet_cydas_b.py --launcher pytorch
  python tools/train.py mm_configs/fpn_cydas_b_cityscapes.py --cfg-options \\
      model.backbone.arch=runs/search_chain/arch.json model.backbone.init_cfg.checkpoint=runs/x/checkpoints/best.pth
"""
import argparse

from cydas_chain.core.cli import run_tool


def main(argv=None) -> int:
    from cydas_chain.mm import runner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="mm config file (e.g. mm_configs/retinanet_cydas_b.py)")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                        help="continue the run in the work dir from its latest checkpoint (mmengine's), "
                             "or from CKPT")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                        help="float16 mixed precision, CUDA only (default: off)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale the config's learning rate by the run's total batch (GPUs x "
                             "train_dataloader.batch_size) over the config's auto_scale_lr.base_batch_size, as "
                             "mmdet's tools/train.py: for fewer (or more) GPUs than the schedule assumes")
    args = runner.parse_tool_args(parser, argv, "dataset folder for every split (default: the config's, e.g. "
                                  "data/coco/)", "train_cfg.max_epochs=1 model.backbone.init_cfg=None")

    runner.train(args.config, work_dir=args.work_dir, resume=args.resume, amp=args.amp,
                 cfg_options=args.cfg_options, data_root=args.data_root, launcher=args.launcher,
                 auto_scale_lr=args.auto_scale_lr)
    return 0


if __name__ == "__main__":
    run_tool(main)
