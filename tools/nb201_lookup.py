#!/usr/bin/env python
"""What a NAS-Bench-201 cell is worth: its accuracies in the benchmark file you have.

Examples:
  python tools/nb201_lookup.py NAS-Bench-201-v1_1-096897.pth "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
  python tools/nb201_lookup.py NAS-Bench-201-v1_0-e61699.pth runs/nb201/genotype.json
  python tools/nb201_lookup.py NATS-tss-v1_0-3ffb9-simple runs/nb201/genotype.json --json   # needs nats_bench

FILE is the NAS-Bench-201 API file (.pth; read by the nas-bench-201 package when installed, else
here) or a NATS-Bench topology file or folder (needs the nats_bench package: pip install .[nb201]).
CELL is the benchmark's string |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or a genotype.json written by
tools/search_cell.py --space nb201.  Prints the cell's index and its CIFAR-10, CIFAR-100 and
ImageNet16-120 validation and test accuracy (200-epoch schedule, mean over the trained seeds).
Nothing is downloaded.
"""
import json
from pathlib import Path

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import ArchError


def parse_args(argv=None):
    p = ToolParser(description=__doc__)
    p.add_argument("file", type=Path, help="NAS-Bench-201 .pth file, or a NATS-Bench topology file/folder")
    p.add_argument("cell", help="|op~0|+|op~0|op~1|+|op~0|op~1|op~2| or a genotype.json of search_cell.py")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


def resolve_cell(text: str):
    from cydas_chain.models.darts.nb201 import NB201Genotype

    if text.lstrip().startswith("|"):
        return NB201Genotype.from_arch_str(text)
    path = Path(text)
    if not path.is_file():
        raise ArchError(f"'{text}' is neither a NAS-Bench-201 cell string nor a genotype file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchError(f"{path} is not valid JSON ({e})") from None
    return NB201Genotype.from_dict(data, source=str(path))


def main(argv=None) -> int:
    args = parse_args(argv)
    from cydas_chain.darts.nb201_bench import BENCH_DATASETS, NB201Bench

    cell = resolve_cell(args.cell)  # a malformed cell fails before the (large) file is read
    result = NB201Bench(args.file).lookup(cell)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"cell {result['index']}: {result['arch_str']}")
    for name in BENCH_DATASETS:
        v, t = result[name]["valid"], result[name]["test"]
        print(f"{name:15s} valid {'n/a' if v is None else f'{v:6.2f}'}   test {'n/a' if t is None else f'{t:6.2f}'}")
    return 0


if __name__ == "__main__":
    run_tool(main)
