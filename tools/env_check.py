#!/usr/bin/env python
"""What this machine can run: torch, CUDA, cuDNN and NCCL versions, the driver and GPUs, bf16, mmcv's
ops on the CPU and the GPU, data loader workers per process, and in plain words what will and will
not work.  Start here on a GPU machine (`./run doctor` runs it in the project's venv).

Exit status: 0, or 1 when something is broken (GPUs that torch cannot use, mmcv ops that fail);
with --require, 1 when a requirement is not met (the line says what to do).

Examples:
  python tools/env_check.py
  python tools/env_check.py --json
  python tools/env_check.py --require cuda --require mmcv-cuda-ops    # what ./run asks on a GPU machine
"""
import argparse
import json
import sys

from cydas_chain.core.cli import run_tool
from cydas_chain.core.envcheck import REQUIREMENTS, collect, problems, report, require


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")
    parser.add_argument("--no-mm", action="store_true", help="leave out mmcv / mmdet / mmseg")
    parser.add_argument("--require", action="append", choices=REQUIREMENTS, default=[],
                        help="check only this (repeatable): torch can use the GPUs (cuda), a CUDA toolkit of torch's CUDA "
                             "version is there to compile mmcv (nvcc), mmcv was compiled with CUDA ops "
                             "(mmcv-cuda-build), mmcv's CUDA nms and sigmoid_focal_loss run (mmcv-cuda-ops)")
    args = parser.parse_args(argv)

    if args.require:
        failed = 0
        for name in args.require:
            problem = require(name)
            if problem:
                print(f"error: {name}: {problem}", file=sys.stderr)
                failed += 1
            else:
                print(f"ok: {name}")
        return 1 if failed else 0
    facts = collect(mm=not args.no_mm)
    print(json.dumps(facts, indent=1) if args.json else report(facts))
    return 1 if problems(facts) else 0


if __name__ == "__main__":
    run_tool(main)
