#!/usr/bin/env python
"""Chain-space search costs, measured side by side in one run (ratios printed).

1. a plain supernet training step vs the training step of the standalone child network of the
   same path (target: <= 1.05x on a GPU, batch 256, AMP);
2. a search step (teacher forward + distillation, plus the validation scoring of the sampled path
   and the teacher amortised over --eval-interval at the defaults) vs the plain supernet step
   (target: <= 1.40x);
3. the MACs table: budget-feasible sampled paths checked per second on one CPU core (target:
   >= 100k/s), and the budget sampler's rate.

  python bench/bench_chain.py --device cuda --amp --batch-size 256      # the issue's setting
  python bench/bench_chain.py --device cpu --batch-size 16              # what a CPU can do
"""
import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def timed(fn, device, warmup: int, iters: int) -> float:
    """Median seconds of ``fn()``."""
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="float16 autocast + GradScaler (CUDA)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--flops", type=float, default=400, help="budget of the sampled paths, M MACs")
    p.add_argument("--eval-interval", type=int, default=100, help="search default on real data")
    p.add_argument("--val-subset", type=int, default=5000, help="search default on real data")
    p.add_argument("--weight-sharing", choices=("entangled", "independent"), default="entangled")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--paths", type=int, default=3, help="sampled paths measured (results averaged)")
    args = p.parse_args()

    from cydas_chain.chain import PathSampler, extract_child
    from cydas_chain.models import DEFAULT_SPACE
    from cydas_chain.chain.board import Entry
    from cydas_chain.chain.searcher import ChainSearch, SearchConfig
    from cydas_chain.core.data import TensorImageDataset
    from cydas_chain.core.distributed import DistInfo
    from cydas_chain.core.logging import get_logger

    device = torch.device(args.device)
    torch.manual_seed(0)
    b, s, nc = args.batch_size, args.img_size, args.num_classes
    x = torch.randn(b, 3, s, s, device=device)
    y = torch.randint(0, nc, (b,), device=device)
    classes = [str(i) for i in range(nc)]
    tiny = TensorImageDataset(np.zeros((b, 8, 8, 3), np.uint8), [i % nc for i in range(b)],
                              lambda im: torch.zeros(3, s, s), classes)
    cfg = SearchConfig(max_macs=int(args.flops * 1e6), epochs=1000, batch_size=b, img_size=s, amp=args.amp,
                       eval_interval=args.eval_interval, val_subset=b, seed=0, weight_sharing=args.weight_sharing)
    search = ChainSearch(cfg, tiny, lambda im: torch.zeros(3, s, s), tiny, classes, Path("/tmp/bench_chain"),
                         DistInfo(device=device), get_logger("bench_chain"))
    search.val_batches = [(x, y)]  # one batch of the validation subset; scaled to --val-subset below
    search.step = search.warmup_steps  # after the warm-up: every step distils from the teacher
    net = search.supernet

    def plain_step(model, path=None):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        scaler = torch.amp.GradScaler(device.type, enabled=args.amp)

        def step():
            with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
                loss = F.cross_entropy(model(x) if path is None else model(x, path), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return step

    print(f"device: {device_name(device)}; batch {b}, {s}x{s}, AMP {args.amp}, torch {torch.__version__}; "
          f"{args.weight_sharing} weights")
    paths = search.sampler.sample(args.paths)
    teacher = tuple(int(c) for c in search.sampler.sample())  # distil from another path of the budget
    search.board.entries[0] = Entry(teacher, int(search.table.path_macs(teacher)))
    rows = []
    for path in paths:
        path = tuple(int(c) for c in path)
        child = extract_child(net, path).to(device).train()
        child.drop_rate = 0.0  # the supernet trains without dropout
        t_child = timed(plain_step(child), device, args.warmup, args.iters)
        t_super = timed(plain_step(net, path), device, args.warmup, args.iters)
        t_search = timed(lambda: search.train_step(x, y, path), device, args.warmup, args.iters)
        t_score = timed(lambda: search.score([search.board.teacher.path, path]), device, 1, max(3, args.iters // 3))
        t_eval = t_score * (args.val_subset / b) / args.eval_interval  # amortised per step
        rows.append((t_child, t_super, t_search, t_eval))
        print(f"  path {''.join(map(str, path))} ({search.table.path_macs(path) / 1e6:.0f}M MACs): child "
              f"{t_child * 1e3:.1f} ms, supernet {t_super * 1e3:.1f} ms, search step {t_search * 1e3:.1f} ms "
              f"+ eval {t_eval * 1e3:.2f} ms/step")
    t_child, t_super, t_search, t_eval = np.mean(rows, axis=0)
    print(f"(1) supernet step / child step:               {t_super / t_child:.3f}x  (target <= 1.05)")
    print(f"(2) search step (teacher + eval) / plain step: {(t_search + t_eval) / t_super:.3f}x  (target <= 1.40;"
          f" teacher+KD {t_search / t_super:.3f}x, validation every {args.eval_interval} steps on "
          f"{args.val_subset} images {t_eval / t_super * 100:.1f}%)")

    # (3) table / sampler throughput on one core
    torch.set_num_threads(1)
    table = search.table
    sampled = PathSampler(table, cfg.max_macs, seed=1).sample(200_000)
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < 1.0:
        ok = (table.path_macs(sampled) <= cfg.max_macs)
        n += len(ok)
    rate = n / (time.perf_counter() - t)
    whole = DEFAULT_SPACE.uniform_paths(np.random.default_rng(0), 200_000)
    t = time.perf_counter()
    table.path_macs(whole)
    rate_any = len(whole) / (time.perf_counter() - t)
    sampler = PathSampler(table, cfg.max_macs, seed=2)
    t = time.perf_counter()
    sampler.sample(100_000)
    rate_sampler = 100_000 / (time.perf_counter() - t)
    print(f"(3) MACs table: {rate / 1e6:.2f}M feasible sampled paths checked/s on one core "
          f"({rate_any / 1e6:.2f}M/s for uniform paths of the whole space); budget sampler draws "
          f"{rate_sampler / 1e3:.0f}k feasible paths/s  (target >= 100k/s)")


if __name__ == "__main__":
    main()
