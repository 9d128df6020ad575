#!/usr/bin/env python
"""Convert a released (official) CyDAS ImageNet checkpoint into a state dict of our models.

SRC is a checkpoint as the official CyDAS / Cream code writes it (timm 0.1.x's CheckpointSaver):
a dict with 'state_dict' (keys maybe prefixed 'module.'), maybe 'state_dict_ema', 'optimizer',
'args' (an argparse.Namespace), 'epoch', ...; or a bare state dict. The EMA weights are taken when
the file has them (--no-ema for the raw ones). Every key and shape is checked against the target
network before DST is written. DST is a plain state dict that loads with no missing or unexpected
key into timm.create_model(MODEL, pretrained=True, pretrained_cfg_overlay=dict(file=DST)) and into
the mm backbone with init_cfg=dict(type='Pretrained', checkpoint=DST). By default DST is
checkpoints/<model>_in1k.pth, the file the mm configs load.

SRC is loaded with torch.load(weights_only=True) first. The official files also pickle their run
arguments, which that refuses; then, and only for SRC, the file is loaded with weights_only=False
(which can run code stored in it: convert only files you trust) and a warning says so.

Examples:
  python tools/convert_official.py cdarts_b.pth.tar --model cydas_b      # -> checkpoints/cydas_b_in1k.pth
  python tools/convert_official.py cdarts_a.pth.tar checkpoints/cydas_a_in1k.pth --model cydas_a
  python tools/convert_official.py seg_backbone.pth.tar --model cydas_b --head-width 320
  python tools/convert_official.py my_net.pth.tar my_net.pth --arch runs/search_chain/arch.json
"""
import sys
import warnings

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import ArchError, CydasError


def _warn_one_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("src", metavar="SRC", help="official checkpoint (.pth / .pth.tar)")
    parser.add_argument("dst", metavar="DST", nargs="?",
                        help="output state dict (default: checkpoints/<model>_in1k.pth, what the mm configs load)")
    parser.add_argument("--model", help="target network: cydas_a or cydas_b (default: cydas_b)")
    parser.add_argument("--arch", metavar="ARCH_JSON", help="target network: a searched arch.json instead")
    parser.add_argument("--head-width", type=int, default=960, metavar="C",
                        help="channels of the 1x1 conv after the last stage: 960 (default), or 320 for "
                             "the backbone of the official segmentation code")
    parser.add_argument("--no-ema", action="store_true",
                        help="take the raw weights ('state_dict') even when the file has EMA weights")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)

    from cydas_chain.models import PUBLISHED
    from cydas_chain.models.convert import convert_official

    if args.model and args.arch:
        raise CydasError("give either --model or --arch, not both")
    if args.model and args.model not in PUBLISHED:
        raise ArchError(f"unknown model '{args.model}': use one of {', '.join(PUBLISHED)}, "
                        f"or --arch for a searched arch.json")
    if args.arch and not args.dst:
        raise CydasError("with --arch, give DST (the output file)")
    with warnings.catch_warnings():  # the unsafe-load warning as one line
        warnings.simplefilter("always")
        warnings.showwarning = _warn_one_line
        result = convert_official(args.src, args.dst, args.arch or args.model or "cydas_b",
                                  head_width=args.head_width, use_ema=not args.no_ema, overwrite=args.force)
    if result.weights == "state_dict_ema":
        source = "the EMA weights ('state_dict_ema'; --no-ema for the raw ones)"
    elif result.has_ema:
        source = f"the raw weights ('{result.weights}', --no-ema)"
    elif result.weights == "bare state dict":
        source = "a bare state dict"
    else:
        source = f"'{result.weights}' (the file has no EMA weights)"
    print(f"{result.src}: converted {result.num_tensors} tensors of {source} to {result.dst}")
    return 0


if __name__ == "__main__":
    run_tool(main)
