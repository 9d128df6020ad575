#!/usr/bin/env python
"""Does the chain supernet learn?  Training curves of several supernet settings, side by side.

Each setting trains the supernet of ``tools/search_chain.py`` through its own code
(``ChainSearch.train_step``, uniform budget-feasible paths, no distillation) on the same batches of
the embedded real digits (1,438 train / 359 val, 32x32, batch 64), and every ``--every`` steps
records the mean training cross-entropy of the last steps and the validation accuracy of five fixed
random paths of the budget (batch-statistics BN, as the search scores).  Chance: CE ln 10 = 2.30,
accuracy 10%.

Settings (``--settings``, any of):
  before       the project before the fix: independent blocks per op (the paper's SPOS), timm's
               classifier init, lr 0.5 x 64 / 1024 = 0.031, no warm-up
  independent  independent blocks with the fixes (zero classifier, lr 0.1, warm-up)
  entangled    the default now: weight-entangled ops of a slot, zero classifier, lr 0.1, warm-up

Writes OUT/chain_learning.json and OUT/chain_learning.png.
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

SETTINGS = {
    "before": dict(weight_sharing="independent", lr=0.5 * 64 / 1024, lr_warmup_epochs=0.0, timm_classifier=True),
    "independent": dict(weight_sharing="independent", lr=0.1, lr_warmup_epochs=0.25, timm_classifier=False),
    "entangled": dict(weight_sharing="entangled", lr=0.1, lr_warmup_epochs=0.25, timm_classifier=False),
}


def curve(name: str, steps: int, every: int, out: Path) -> list:
    from cydas_chain.chain.searcher import ChainSearcher, SearchConfig
    from cydas_chain.core import data as cdata
    from cydas_chain.core.distributed import DistInfo
    from cydas_chain.core.logging import get_logger


    s = SETTINGS[name]
    root = cdata.make_digits_folder(cdata.embedded_data_root())
    tf = cdata.build_transforms(32, "embedded")
    train, val, classes = cdata.train_val_folders(root, None, tf.eval)
    epochs = -(-steps // (len(train) // 64)) + 1
    cfg = SearchConfig(max_macs=int(400e6), counter="fvcore", epochs=epochs, batch_size=64, img_size=32, lr=s["lr"],
                       warmup_epochs=s["lr_warmup_epochs"], distill_start=epochs - 1, eval_interval=10 ** 9,
                       weight_sharing=s["weight_sharing"], distill_weight=0.0, seed=0)
    search = ChainSearcher(cfg, train, tf.train, val, classes, DistInfo(), get_logger("bench"),
                           normalize=(tf.mean, tf.std))
    if s["timm_classifier"]:  # timm's EfficientNet init of the classifier, U(+-1/sqrt(classes))
        r = 1 / math.sqrt(len(classes))
        torch.nn.init.uniform_(search.supernet.classifier.weight, -r, r)
    probe = [tuple(int(c) for c in p) for p in search.sampler.sample(5)]
    rows, ces, t0 = [], [], time.time()
    for x, y in search.batches():
        path = tuple(int(c) for c in search.sampler.sample())
        ces.append(float(search.train_step(x, y, path)["ce"]))
        search.step += 1
        if search.step % every == 0:
            rows.append({"step": search.step, "train_ce": float(np.mean(ces[-every:])),
                         "val_top1": float(np.mean(search.score(probe))), "seconds": time.time() - t0})
            print(f"{name:12s} step {search.step:4d}  train CE {rows[-1]['train_ce']:.3f}  "
                  f"val top-1 {rows[-1]['val_top1']:5.1f}%", flush=True)
        if search.step >= steps:
            break
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("runs/bench_chain_learning"))
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"device": f"CPU, 1 thread, torch {torch.__version__}", "date": time.strftime("%Y-%m-%d"),
              "steps": args.steps, "curves": {n: curve(n, args.steps, args.every, args.out) for n in args.settings}}
    (args.out / "chain_learning.json").write_text(json.dumps(result, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in result["curves"].items():
        steps = [r["step"] for r in rows]
        a.plot(steps, [r["train_ce"] for r in rows], marker="o", label=name)
        b.plot(steps, [r["val_top1"] for r in rows], marker="o", label=name)
    a.axhline(math.log(10), color="gray", ls="--", lw=1, label="chance")
    b.axhline(10, color="gray", ls="--", lw=1, label="chance")
    a.set(xlabel="step", ylabel="training cross-entropy", title="supernet training loss (uniform paths)")
    b.set(xlabel="step", ylabel="val top-1 of 5 fixed paths (%)", title="embedded digits, 400M budget")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(args.out / "chain_learning.png", dpi=110)
    print(f"wrote {args.out / 'chain_learning.json'} and .png")


if __name__ == "__main__":
    main()
