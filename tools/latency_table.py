#!/usr/bin/env python
"""Measure the chain space's per-layer latency table on this machine, for a search or a selection anywhere.

Run it on the device the network will run on (a CPU server, an ARM board with Python, a GPU); it writes
one JSON file, which tools/search_chain.py and tools/select_chain.py read with --latency-table FILE on
whatever machine they run.  Every choice block of the space and the fixed parts run alone in eval mode
on the input they see in the network; the median of --repeats runs is the block's latency, and a path's
latency is estimated as the sum along it (a ranking proxy: fusion across blocks is not seen).  The file
records the device, threads, batch, input size, classes, slots and torch version; a search at another
input size, with other classes or another space refuses it with one line.

Examples:
  python tools/latency_table.py --device cpu --threads 1 --out cpu1.json
  python tools/latency_table.py --device cuda --batch 1 --out a100.json
"""
from pathlib import Path

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import CydasError


def build_parser():
    p = ToolParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--batch", type=int, default=1, help="images a forward (default: 1)")
    p.add_argument("--input-size", type=int, default=224, help="the deployment resolution, the search's --cost-size "
                                                               "(default: 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="classes of the classifier (default: 1000)")
    p.add_argument("--slots", default="4,4,5,4,4", help="layer slots of each stage (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs a block (default: 10)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for k in ("batch", "input_size", "num_classes", "repeats"):
        if getattr(args, k) < 1:
            raise CydasError(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    import torch

    from cydas_chain.chain.latency import LatencyTable
    from cydas_chain.core.distributed import resolve_device
    from cydas_chain.models import ChainSpace

    try:
        space = ChainSpace(tuple(int(n) for n in args.slots.split(",")))
    except ValueError:
        raise CydasError(f"--slots takes comma-separated integers like 4,4,5,4,4, got {args.slots!r}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    table = LatencyTable.measure(space, args.num_classes, args.input_size, device, args.batch, args.repeats)
    table.save(args.out)
    import numpy as np
    lo = table.fixed + np.where(space.choice_mask, table.table, np.inf).min(1).sum()
    hi = table.fixed + np.where(space.choice_mask, table.table, -np.inf).max(1).sum()
    print(f"{args.out}: {table.describe()}; fixed parts {table.fixed:.2f} ms, a path of the space {lo:.2f}..{hi:.2f} ms")
    return 0


if __name__ == "__main__":
    run_tool(main)
