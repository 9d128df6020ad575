#!/usr/bin/env python
"""Parameters and multiply-adds (MACs) of a model, counted by fvcore and by thop.

Examples:
  python tools/flops.py cydas_b                       # a timm model name
  python tools/flops.py runs/search_chain/arch.json   # an architecture found by the chain search
  python tools/flops.py cydas_a --input-size 320 --num-classes 10
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cydas_chain.core.cli import run_tool  # noqa: E402
from cydas_chain.core.errors import CydasError  # noqa: E402


def build_model(target: str, num_classes: int):
    """A model from a timm model name or an architecture JSON file."""
    import timm

    import cydas_chain  # noqa: F401  (registers our timm models)

    if target.endswith(".json") or Path(target).is_file():
        return timm.create_model("cydas_chain", arch=target, num_classes=num_classes)
    if not timm.is_model(target):
        known = ", ".join(timm.list_models("cydas*"))
        raise CydasError(f"unknown model '{target}' (ours: {known}; or any timm model name, or an arch.json path)")
    return timm.create_model(target, num_classes=num_classes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="timm model name (e.g. cydas_b) or path of an arch.json")
    parser.add_argument("--input-size", type=int, nargs="+", default=[224],
                        help="input resolution: one side or H W (default: 224)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier size (default: 1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if len(args.input_size) not in (1, 2):
        raise CydasError("--input-size takes one side or H W")

    from cydas_chain.core.flops import count_macs

    size = args.input_size[0] if len(args.input_size) == 1 else tuple(args.input_size)
    cost = count_macs(build_model(args.target, args.num_classes), size)
    if args.json:
        print(json.dumps({"target": args.target, "input_size": args.input_size, **cost.as_dict()}))
    else:
        hw = "x".join(str(s) for s in (args.input_size * 2)[:2])
        print(f"{args.target} at {hw}:")
        print(f"  parameters   {cost.params:>14,d}  ({cost.params / 1e6:.3f} M)")
        print(f"  MACs fvcore  {cost.fvcore_macs:>14,d}  ({cost.fvcore_macs / 1e6:.1f} M)")
        print(f"  MACs thop    {cost.thop_macs:>14,d}  ({cost.thop_macs / 1e6:.1f} M)")
    return 0


if __name__ == "__main__":
    run_tool(main)
