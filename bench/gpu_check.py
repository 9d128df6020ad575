#!/usr/bin/env python
"""One command for a GPU node: how fast this project's networks, search steps and input pipeline run here.

Prints side by side (and writes ``--json``):

1. **Networks**: training and inference images/s of ``cydas_a``, ``cydas_b`` and, as the field's
   references, timm's ``efficientnet_b0`` and ``mobilenetv3_large_100``, in the variants of the speed
   flags (``core.speed``): fp32, bf16, bf16 + channels-last, and bf16 + channels-last + ``torch.compile``.
   A training step is forward, backward and an SGD update at ``--batch-size``.
2. **The chain search**: a supernet step against the step of the same path's standalone network (the
   cost of weight sharing), and a search step (teacher forward + distillation, plus the scoring of the
   sampled path and the teacher on the 5,000 validation images amortised over the default 100 steps)
   against a plain supernet step, in bf16 + channels-last; and the MACs table's rate (feasible sampled
   paths checked a second on one core, and the budget sampler's draws).
3. **The input pipeline**: ``bench/loader.py``'s images/s with this machine's cores (``--loader``).

Defaults on a GPU: batch 256 at 224 px, 20 timed steps after 5 warm-up ones; compiled variants are
measured last and skipped (and said so) once ``--budget`` seconds have passed, so the whole run stays
under 8 minutes on one H100.  On the CPU the defaults shrink (batch 8 at 64 px, 2 steps, no compile)
so that the suite can run it as a smoke test; its CPU figures are not a benchmark.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cydas_chain.core.checkpoint import write_json

MODELS = ("cydas_a", "cydas_b", "efficientnet_b0", "mobilenetv3_large_100")
VARIANTS = {  # name: (amp, channels_last, compile)
    "fp32": ("off", False, False),
    "bf16": ("bf16", False, False),
    "bf16+cl": ("bf16", True, False),
    "bf16+cl+compile": ("bf16", True, True),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, steps: int) -> float:
    """Seconds a call, the median of ``steps`` timed calls after ``warmup`` ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def network_rates(name: str, speed, batch: int, size: int, warmup: int, steps: int) -> dict:
    """(train, inference) images/s of timm model ``name`` under ``speed``."""
    import timm

    import cydas_chain  # noqa: F401  (registers cydas_a / cydas_b)

    device = speed.device
    model = speed.prepare(timm.create_model(name, num_classes=1000))
    x = speed.inputs(torch.randn(batch, 3, size, size, device=device))
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = speed.grad_scaler()
    train_model = speed.compiled(model)

    def train_step():
        with speed.autocast():
            loss = F.cross_entropy(train_model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    model.train()
    t_train = timed(train_step, device, warmup, steps)
    model.eval()
    infer_model = speed.compiled(model)

    @torch.no_grad()
    def infer():
        with speed.autocast():
            infer_model(x)

    t_infer = timed(infer, device, warmup, steps)
    return {"train": batch / t_train, "inference": batch / t_infer}


def search_ratios(speed, batch: int, size: int, warmup: int, steps: int) -> dict:
    """Supernet step / child step of the same path, and search step / plain supernet step (paths of 400M)."""
    from cydas_chain.chain import extract_child
    from cydas_chain.chain.board import Entry
    from cydas_chain.chain.searcher import ChainSearcher, SearchConfig
    from cydas_chain.core.data import TensorImageDataset
    from cydas_chain.core.distributed import DistInfo
    from cydas_chain.core.logging import get_logger

    device = speed.device
    classes = [str(i) for i in range(1000)]
    tiny = TensorImageDataset(np.zeros((batch, 8, 8, 3), np.uint8), [i % 1000 for i in range(batch)],
                              lambda im: torch.zeros(3, size, size, dtype=torch.uint8), classes)
    cfg = SearchConfig(max_macs=int(400e6), epochs=1000, batch_size=batch, img_size=size, seed=0)
    search = ChainSearcher(cfg, tiny, lambda im: torch.zeros(3, size, size, dtype=torch.uint8), tiny, classes,
                           DistInfo(device=device), get_logger("gpu_check"), speed=speed)
    search.step = search.distill_steps  # after the warm-up: every step distils from the teacher
    x = speed.inputs(torch.randn(batch, 3, size, size, device=device))
    y = torch.randint(0, 1000, (batch,), device=device)
    search.score_batches = [(x, y)]  # one batch of the scoring images; scaled to 5,000 images below
    path = tuple(int(c) for c in search.sampler.sample())
    teacher = tuple(int(c) for c in search.sampler.sample())
    search.board.entries[0] = Entry(teacher, int(search.table.path_macs(teacher)))

    def plain(model, *extra):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        scaler = speed.grad_scaler()

        def step():
            with speed.autocast():
                loss = F.cross_entropy(model(x, *extra), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return step

    child = speed.prepare(extract_child(search.supernet, path).train())
    child.drop_rate = 0.0  # the supernet trains without dropout
    t_child = timed(plain(child), device, warmup, steps)
    t_super = timed(plain(search.supernet, path), device, warmup, steps)
    t_search = timed(lambda: search.train_step(x, y, path), device, warmup, steps)
    t_score = timed(lambda: search.score([teacher, path]), device, 1, max(2, steps // 4))
    t_eval = t_score * (5000 / batch) / 100  # the rule every 100 steps on 5,000 images, amortised per step
    return {"child_step_s": t_child, "supernet_step_s": t_super, "search_step_s": t_search,
            "scoring_per_step_s": t_eval, "supernet_over_child": t_super / t_child,
            "search_over_plain": (t_search + t_eval) / t_super, "path_macs": float(search.table.path_macs(path)),
            **table_rates(search)}


def table_rates(search) -> dict:
    """Feasible sampled paths whose MACs the table checks a second, and the budget sampler's draws a second,
    on one core."""
    from cydas_chain.chain import PathSampler

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    table, budget = search.table, search.cfg.max_macs
    sampled = PathSampler(table, budget, seed=1).sample(200_000)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 1.0:
        n += len(table.path_macs(sampled) <= budget)
    checked = n / (time.perf_counter() - t)
    sampler, t = PathSampler(table, budget, seed=2), time.perf_counter()
    sampler.sample(100_000)
    drawn = 100_000 / (time.perf_counter() - t)
    torch.set_num_threads(threads)
    return {"table_paths_checked_per_s": checked, "sampler_paths_per_s": drawn}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None, help="(256 on a GPU, 8 on the CPU)")
    p.add_argument("--img-size", type=int, default=None, help="(224 on a GPU, 64 on the CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (20 on a GPU, 2 on the CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (5 on a GPU, 1 on the CPU)")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                   help="(all on a GPU; fp32 and bf16+cl on the CPU)")
    p.add_argument("--budget", type=float, default=390.0,
                   help="seconds after which the compiled variants still to come are skipped (default: 390)")
    p.add_argument("--loader", action=argparse.BooleanOptionalAction, default=None,
                   help="also run bench/loader.py (default: on a GPU)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)

    from cydas_chain.core.speed import resolve_speed

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch_size or (256 if gpu else 8)
    size = args.img_size or (224 if gpu else 64)
    steps, warmup = args.steps or (20 if gpu else 2), args.warmup or (5 if gpu else 1)
    variants = args.variants or (list(VARIANTS) if gpu else ["fp32", "bf16+cl"])
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    t_start = time.time()
    result = {"date": time.strftime("%Y-%m-%d"), "device": name, "torch": torch.__version__, "batch_size": batch,
              "img_size": size, "networks": {}, "skipped": []}
    print(f"{name}, torch {torch.__version__}, batch {batch} at {size} px, median of {steps} steps")
    print(f"{'network':24s} {'variant':16s} {'train img/s':>12s} {'inference img/s':>16s}")
    for variant in sorted(variants, key=lambda v: VARIANTS[v][2]):  # compiled variants last
        amp, channels_last, compile_ = VARIANTS[variant]
        for model in args.models:
            if compile_ and time.time() - t_start > args.budget:
                result["skipped"].append(f"{model} {variant}")
                print(f"{model:24s} {variant:16s} {'skipped (--budget)':>29s}")
                continue
            speed = resolve_speed(device, amp, channels_last, compile_)
            rates = network_rates(model, speed, batch, size, warmup, steps)
            result["networks"].setdefault(model, {})[variant] = rates
            print(f"{model:24s} {variant:16s} {rates['train']:12.0f} {rates['inference']:16.0f}")
    speed = resolve_speed(device, "bf16", True)
    ratios = search_ratios(speed, batch, size, warmup, steps)
    result["search"] = ratios
    print(f"chain search ({speed.describe()}): supernet step / child step {ratios['supernet_over_child']:.2f}x, "
          f"search step (teacher + KD + amortised scoring) / plain supernet step {ratios['search_over_plain']:.2f}x; "
          f"MACs table {ratios['table_paths_checked_per_s'] / 1e6:.1f}M feasible paths checked/s, sampler "
          f"{ratios['sampler_paths_per_s'] / 1e3:.0f}k paths/s (one core)")
    if args.loader if args.loader is not None else gpu:
        with tempfile.TemporaryDirectory() as tmp:  # not a fixed /tmp name: two runs at once must not mix
            out = Path(tmp) / "loader.json"
            subprocess.run([sys.executable, str(Path(__file__).with_name("loader.py")), "--device", str(device),
                            "--json", str(out)], check=True)
            result["loader"] = json.loads(out.read_text())
    result["seconds"] = time.time() - t_start
    print(f"took {result['seconds']:.0f} s")
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
