#!/usr/bin/env python
"""Cost of a CyDAS search epoch against a first-order DARTS epoch, side by side in one run.

Both use our searcher on the same search network (same seed, same initial weights) and the same
in-memory batches; DARTS is the searcher with the evaluation network and the distillation switched
off (``cyclic=False``).  A CyDAS epoch includes its evaluation-network work: regeneration, S_E steps of
its training on the val split, and its forward/backward in every joint alpha/w_E step.  The paper
states about 1.3x.  Step-level times (median of repeats on one batch) are printed too.

  python bench/bench_darts.py                       # CPU, reduced sizes (see --config)
  python bench/bench_darts.py --device cuda --config paper --batch-size 64 --steps 50
"""
import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

from cydas_chain.darts.searcher import CyclicSearcher, SearchConfig

CONFIGS = {
    # the paper's CIFAR-10 search: 8 cells C=16 searched, 20 cells C=36 evaluated, 32 px
    "paper": dict(c=16, layers=8, eval_c=36, eval_layers=20, image_size=32),
    # CPU-sized: the same depth ratio at a quarter of the widths and half the resolution
    "small": dict(c=8, layers=8, eval_c=16, eval_layers=20, image_size=16),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_searcher(cyclic: bool, net: dict, args, data, device) -> CyclicSearcher:
    cfg = SearchConfig(num_classes=10, c=net["c"], layers=net["layers"], eval_c=net["eval_c"],
                       eval_layers=net["eval_layers"], epochs=args.epochs + 1, batch_size=args.batch_size,
                       cyclic=cyclic, seed=0)
    return CyclicSearcher(cfg, data, data, device)


def time_epochs(searcher: CyclicSearcher, epochs: int, device) -> list:
    times = []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        searcher.run_epoch()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def time_steps(searcher: CyclicSearcher, x, y, repeats: int, device) -> dict:
    def median(fn):
        fn()  # warm-up
        ts = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    out = {"alpha step": median(lambda: searcher.arch_step(x, y, 0.0)),
           "w_S step": median(lambda: searcher.weight_step(x, y))}
    if searcher.cfg.cyclic:
        out["w_E step (S_E phase)"] = median(lambda: searcher.train_eval_step(x, y))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="small", help="network sizes (default: small)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16; paper: 64)")
    p.add_argument("--steps", type=int, default=4, help="steps per epoch (default: 4)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch (default: 2)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the step-level timings (default: 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = CONFIGS[args.config]
    g = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    data = TensorDataset(torch.randint(0, 256, (n, 3, net["image_size"], net["image_size"]), generator=g,
                                       dtype=torch.uint8),  # uint8, normalised on the device as every tool's
                         torch.randint(0, 10, (n,), generator=g))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name} | torch {torch.__version__} | config {args.config} {net} | batch {args.batch_size}, "
          f"{args.steps} steps an epoch, S_U = S_E = one epoch")

    darts, cydas = (make_searcher(c, net, args, data, device) for c in (False, True))
    # the same search network: identical weights of stem, cells and classifier (CyDAS adds embedding heads)
    sd_d, sd_c = darts.search_net.state_dict(), cydas.search_net.state_dict()
    same = all(torch.equal(v, sd_c[k]) for k, v in sd_d.items() if k.startswith(("stem", "cells", "classifier")))
    print(f"search networks: {sum(v.numel() for v in sd_d.values())} vs {sum(v.numel() for v in sd_c.values())} "
          f"values (CyDAS: + embedding heads); shared weights identical: {same}")
    results = {}
    for label, s in (("first-order DARTS", darts), ("CyDAS", cydas)):
        time_epochs(s, 1, device)  # warm-up epoch (allocations, first regeneration)
        results[label] = time_epochs(s, args.epochs, device)
    from cydas_chain.core.data import normalize_uint8
    x = normalize_uint8(data.tensors[0][:args.batch_size].to(device), darts.mean, darts.std)
    y = data.tensors[1][:args.batch_size].to(device)
    steps = {label: time_steps(s, x, y, args.repeats, device) for label, s in (("first-order DARTS", darts),
                                                                              ("CyDAS", cydas))}
    print(f"\n{'':20s} {'epoch (s), mean':>16s} {'per step (s)':>13s}")
    for label, ts in results.items():
        mean = statistics.mean(ts)
        print(f"{label:20s} {mean:16.3f} {mean / args.steps:13.3f}")
    ratio = statistics.mean(results["CyDAS"]) / statistics.mean(results["first-order DARTS"])
    print(f"\nCyDAS / first-order DARTS, amortized over an epoch: {ratio:.2f}x (paper: ~1.3x)")
    print("\nstep-level medians (s):")
    for label, d in steps.items():
        print(f"  {label:18s} " + ", ".join(f"{k} {v:.3f}" for k, v in d.items()))
    d, c = steps["first-order DARTS"], steps["CyDAS"]
    print(f"  modelled epoch ratio from steps: {(c['alpha step'] + c['w_S step'] + c['w_E step (S_E phase)']) / (d['alpha step'] + d['w_S step']):.2f}x")


if __name__ == "__main__":
    main()
