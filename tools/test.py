#!/usr/bin/env python
"""Evaluate a checkpoint on the test split of an MMDetection or MMSegmentation config.

The config's default_scope ('mmdet' or 'mmseg') picks the library; the metrics are the config's
test_evaluator (CocoMetric for COCO, IoUMetric for Cityscapes/ADE20K).

Examples:
  python tools/test.py mm_configs/retinanet_cydas_b.py work_dirs/retinanet_cydas_b/epoch_12.pth
  python tools/test.py mm_configs/fpn_cydas_b_ade20k.py work_dirs/fpn_cydas_b_ade20k/iter_160000.pth --show-dir vis
  torchrun --nproc_per_node 8 tools/test.py CONFIG CHECKPOINT --launcher pytorch
"""
import argparse

from cydas_chain.core.cli import run_tool


def main(argv=None) -> int:
    from cydas_chain.mm import runner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="mm config file")
    parser.add_argument("checkpoint", help="checkpoint written by tools/train.py")
    parser.add_argument("--work-dir", help="where the evaluation log goes (default: work_dirs/<config name>)")
    parser.add_argument("--show-dir", help="save the images with predictions drawn here "
                                           "(mmdet: under the work dir's run folder)")
    args = runner.parse_tool_args(parser, argv, "dataset folder (default: the config's)",
                                  "test_dataloader.batch_size=4")

    metrics = runner.test(args.config, args.checkpoint, work_dir=args.work_dir, show_dir=args.show_dir,
                          cfg_options=args.cfg_options, data_root=args.data_root, launcher=args.launcher)
    for name, value in (metrics or {}).items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    run_tool(main)
