#!/usr/bin/env python
"""Select networks for other budgets or devices from a finished chain search, without training again.

RUN is the --out folder of a finished tools/search_chain.py run.  For each budget (--flops, and
optionally --params and --latency-ms with a --latency-table measured on the target device by
tools/latency_table.py) an evolution (or --method random) among the paths within it scores each path
as it would be deployed: the standalone network with the supernet's weights and BN recalibrated on
training batches, on the images the search held out of train/.  Writes OUT (default RUN/select):

  OUT/<budget>/arch.json, OUT/<budget>/weights.pth   the selected network and its weights; they load with
      timm.create_model('cydas_chain', arch='OUT/<budget>/arch.json', pretrained=True,
                        pretrained_cfg_overlay=dict(file='OUT/<budget>/weights.pth'))
      into tools/train_cls.py --arch ... --init-weights ..., and as the mm backbone's init_cfg
  OUT/pareto.json, OUT/pareto.png   every evaluated path's score against its MACs, the front marked
  OUT/checkpoints/last.pth, OUT/config.json, OUT/log.txt   (--resume continues after a kill)

--flops 200 300 400 gives three budgets; --params and --latency-ms take one value for all or one each.

Examples:
  python tools/select_chain.py runs/search_chain --flops 200 300 400
  python tools/latency_table.py --device cpu --threads 1 --out phone_cpu.json      # on the target
  python tools/select_chain.py runs/search_chain --flops 400 --latency-table phone_cpu.json --latency-ms 15
"""
from pathlib import Path

from cydas_chain.core.cli import ToolParser, run_tool
from cydas_chain.core.errors import CydasError
from cydas_chain.core.run import add_run_arguments, parse_run_args


def build_parser():
    p = ToolParser(description=__doc__)
    p.add_argument("run_folder", type=Path, metavar="RUN", help="the --out folder of a finished chain search")
    g = p.add_argument_group("budgets (MACs counted by the search's --counter at its --cost-size)")
    g.add_argument("--flops", type=float, nargs="+", required=True, help="largest MACs of each budget, in millions")
    g.add_argument("--params", type=float, nargs="+", default=None,
                   help="largest parameters, in millions: one value for every budget or one each")
    g.add_argument("--latency-ms", type=float, nargs="+", default=None,
                   help="largest latency, ms, from --latency-table: one value for every budget or one each")
    g.add_argument("--latency-table", type=Path, default=None, metavar="FILE",
                   help="a latency table measured on the target device (tools/latency_table.py)")
    g = p.add_argument_group("selection")
    g.add_argument("--method", choices=("evolution", "random"), default="evolution",
                   help="an evolution within each budget, or the best of --samples random paths (default: evolution)")
    g.add_argument("--population", type=int, default=None,
                   help="evolution: paths a generation (default: the search's, 50 with --data, 16 on the embedded data)")
    g.add_argument("--generations", type=int, default=None, help="evolution: generations (default: the search's, 20 | 6)")
    g.add_argument("--parents", type=int, default=None, help="evolution: best paths kept as parents (default: the "
                                                              "search's, 10 | 4)")
    g.add_argument("--mutation-prob", type=float, default=None, help="evolution: chance of redrawing each choice "
                                                                     "(default: the search's, 0.1)")
    g.add_argument("--crossover-share", type=float, default=None, help="evolution: share made by crossover (default: "
                                                                       "the search's, 0.5)")
    g.add_argument("--samples", type=int, default=50, help="random: paths scored a budget (default: 50)")
    g.add_argument("--calib-batches", type=int, default=None,
                   help="training batches that recalibrate BN before a path is scored (default: the search's)")
    add_run_arguments(p, "RUN/select", "on a GPU the cores of this process's share but one, up to 12, on the CPU 1")
    return p


def per_budget(values, n: int, name: str):
    if values is None:
        return [None] * n
    if len(values) not in (1, n):
        raise CydasError(f"--{name} takes one value or one for each of the {n} --flops budgets, got {len(values)}")
    return list(values) * n if len(values) == 1 else list(values)


def main(argv=None) -> int:
    parser = build_parser()
    pre = parser.parse_args(argv)
    if str(pre.out) == "RUN/select":  # the default: inside the search's folder
        argv = [*(argv if argv is not None else __import__("sys").argv[1:]), "--out", str(pre.run_folder / "select")]
    args, run = parse_run_args(parser, argv)
    n = len(args.flops)
    params, latencies = per_budget(args.params, n, "params"), per_budget(args.latency_ms, n, "latency-ms")
    if args.latency_table is not None and args.latency_ms is None:
        raise CydasError("--latency-table needs --latency-ms (the limit of each budget)")

    from cydas_chain.chain.latency import LatencyTable
    from cydas_chain.chain.select import Budget, SelectConfig, Selection
    from cydas_chain.core.distributed import default_workers, process_group
    from cydas_chain.core.logging import get_logger
    from cydas_chain.core.speed import resolve_speed

    budgets = [Budget(int(round(f * 1e6)), None if p is None else int(round(p * 1e6)), lat)
               for f, p, lat in zip(args.flops, params, latencies)]
    if len({b.name for b in budgets}) != len(budgets):
        raise CydasError("two budgets are the same: give each --flops (and --params, --latency-ms) once")
    given = {k: getattr(args, k) for k in ("population", "generations", "parents", "mutation_prob", "crossover_share")
             if getattr(args, k) is not None}  # the others: the search's (Selection)
    cfg = SelectConfig(budgets, args.method, given, samples=args.samples, calib_batches=args.calib_batches,
                       seed=args.seed)
    latency = LatencyTable.load(args.latency_table) if args.latency_table is not None else None
    with process_group(args.device) as dist:
        speed = resolve_speed(dist.device, args.amp, args.channels_last)
        workers = default_workers(dist.device) if args.workers is None else args.workers
        log = get_logger("cydas.select_chain")
        selection = Selection(args.run_folder, cfg, run, dist, log, workers=workers, speed=speed, latency=latency,
                              latency_source=args.latency_table)
        log = get_logger("cydas.select_chain", run.out)  # nothing written before the budgets are checked
        log.info("supernet of %s (%s); %d budget(s), %s", args.run_folder, selection.data_desc, n, args.method)
        result = selection.select()
        log.info("Pareto front: %d of %d evaluated paths; %s and %s", len(result["front"]), len(result["points"]),
                 run.out / "pareto.json", run.out / "pareto.png")
    return 0


if __name__ == "__main__":
    run_tool(main)
