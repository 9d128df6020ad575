#!/usr/bin/env python
"""Parameters and multiply-adds (MACs) of a model, counted by fvcore and by thop.

Examples:
  python tools/flops.py cydas_b                        # a timm model name
  python tools/flops.py runs/search_chain/arch.json    # an architecture found by the chain search
  python tools/flops.py cydas_a --input-size 320 --num-classes 10
  python tools/flops.py mm_configs/retinanet_cydas_b.py   # an MMDetection/MMSegmentation config:
                                                         # backbone and whole model at its input size
"""
import json
from pathlib import Path

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import CydasError


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


def _si(n: int) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.1f} M"


def main(argv=None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("target", help="timm model name (e.g. cydas_b) or path of an arch.json")
    parser.add_argument("--input-size", type=int, nargs="+", default=None,
                        help="input resolution: one side or H W (default: 224; for an mm config, "
                             "its test resize or training crop)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier size (default: 1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.input_size is not None and len(args.input_size) not in (1, 2):
        raise CydasError("--input-size takes one side or H W")
    hw = None if args.input_size is None else tuple((args.input_size * 2)[:2])

    if args.target.endswith(".py"):  # an OpenMMLab config
        from cydas_chain.mm.flops import mm_config_macs

        result = mm_config_macs(args.target, input_size=hw)
        costs = {"backbone": result["backbone"], "model": result["model"]}
        hw = result["input_size"]
    else:
        from cydas_chain.core.flops import count_macs

        costs = {"model": count_macs(build_model(args.target, args.num_classes), hw or 224).as_dict()}
        hw = hw or (224, 224)
    if args.json:
        flat = costs["model"] if len(costs) == 1 else costs  # one model: its counts at top level
        print(json.dumps({"target": args.target, "input_size": list(hw), **flat}))
        return 0
    print(f"{args.target} at {hw[0]}x{hw[1]} (HxW):")
    for part, cost in costs.items():
        if len(costs) > 1:
            print(f"  {'whole model' if part == 'model' else part}:")
        print(f"  parameters   {cost['params']:>16,d}  ({cost['params'] / 1e6:.3f} M)")
        print(f"  MACs fvcore  {cost['fvcore_macs']:>16,d}  ({_si(cost['fvcore_macs'])})")
        print(f"  MACs thop    {cost['thop_macs']:>16,d}  ({_si(cost['thop_macs'])})")
    return 0


if __name__ == "__main__":
    run_tool(main)
