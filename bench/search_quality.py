#!/usr/bin/env python
"""Does the chain search find good architectures?  The proof on real data, at one MACs budget.

a. Ranking: N random budget-feasible paths (uniform over the feasible set, from a sampler of their
   own seed) are scored by two supernets trained alike except for the introspective distillation
   (--distill-weight 1 and 0), each trained by --search-seeds searches of their own seeds.  Three
   scores: as the search takes it (top-1, supernet weights, batch-statistics BN, the validation
   split), after BN recalibration (the standalone child in eval mode), and the validation loss
   measured like the first.  The same paths are trained standalone with one short fixed recipe,
   once per seed, and evaluated on the held-out *test* split.  Kendall tau and Spearman rho (with
   p-values) of each score (mean over the searches) against the seed-mean standalone test accuracy
   (and its test loss, a continuous measure of the same networks), and of each search's score
   alone.  Two checks of the measuring sticks themselves: the agreement (tau) between two searches'
   scores of the same supernet, and between the seed means of the two halves of the standalone
   seeds (does the ground truth's order reproduce?), with the seed-to-seed spread next to the
   spread between architectures.
b. Selection: the searched architectures (each search's last teacher, the paper's result, and the
   best path of an evolution on that supernet) trained with the same recipe and seeds, against the
   N random paths (K = N): mean +- std of each, their rank among the random ones, and per selection
   rule the mean over its searches.
c. OUT/search_quality.json (every number), OUT/search_quality.png (score vs standalone accuracy;
   searched vs random), and a summary printed at the end.

--yardstick checks the ground truth alone, before the hours of the full run: it trains the N random
paths and the two ends of the space (its smallest and its largest path, outside the budget on
purpose: the widest contrast the space has) with the recipe and seeds, and no supernet.  It reports
whether the random paths' order reproduces between the halves of the seeds (and the reliability),
and what the recipe rewards: the ends' difference (Welch's t-test) and the tau of the random paths'
seed means with their MACs and depth.  A recipe too short for the data rewards the networks that
train fastest, the shallow ones, instead of capacity.  OUT/yardstick.json and OUT/yardstick.png;
its trainings are the full run's (same jobs), so the full run after it reuses them.

Data: by default the embedded real handwritten digits (scikit-learn's digits, 1,797 8x8 images)
with seeded Gaussian pixel noise (--noise, std 96 of 255), written once to OUT/data as a stratified
seeded 60/20/20 train/val/test ImageFolder, each test digit drawn 3 times with its own noise
(--draws): the search trains on train and scores paths on val; standalone
networks train on train and report val and test.  Why noise: on the clean digits every path of a
budget scores 96-98.6% and the seed decides their order (reliability 0, docs/chain.md); --noise 0
gives them back.  The noise does not cure it: with 4 seeds the halves of the seeds still order the
paths independently (tau 0.02, docs/chain.md), so read the summary's split-half line first; a
yardstick that passes it needs more data than a CPU hour trains on (MNIST did not either, at 3 or
10 epochs, nor Fashion-MNIST at 4: docs/chain.md; CIFAR-10 with --data on a GPU is the run).
--data DIR takes an ImageFolder with train/ and val/ (and test/; without it, val/ is split in two,
stratified; bench/make_folder.py writes MNIST, Fashion-MNIST or CIFAR so).  Transforms are
core.data.build_transforms', the search tool's by default: for the digits, resize to --img-size and
ImageNet normalisation, no augmentation; for a folder, random-resized crops and flips (--augment,
--crop-scale).

Time: standalone trainings dominate; they run in a pool of --workers processes (one math thread each
on CPU) together with the supernet searches, which start first.  The defaults (N=20 paths, 2 seeds,
10 epochs a training, 2 x 2 10-epoch searches, a 12 x 4 evolution each) take about 50 minutes on the
idle 2-core machine (each search with its evolution 4-5 min, each training 60-130 s); --device cuda
for a GPU.  Every finished job is kept in OUT/jobs: run the same command again after a kill and it
continues; add --seeds / --paths / --search-seeds and only the new jobs run.

  python bench/search_quality.py                                  # noisy digits, 400M MACs, CPU
  python bench/search_quality.py --seeds 4                        # the committed run (docs/chain.md)
  python bench/search_quality.py --device cuda --workers 4 --paths 40 --seeds 4
  python bench/make_folder.py cifar10 cifar-10-batches-py data/cifar10 --val 5000
  python bench/search_quality.py --data data/cifar10 --augment cifar --train-epochs 30 --yardstick
"""
import argparse
import itertools
import json
import logging
import math
import os
import platform
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

from cydas_chain.chain.board import gap_points
from cydas_chain.core.cli import run_tool
from cydas_chain.core.errors import CydasError, DataError

SUPERNETS = {"distill": 1.0, "no_distill": 0.0}  # name -> distill_weight (everything else equal)
# How a supernet scores a path: the search's own top-1 (supernet weights, batch-statistics BN), top-1
# after BN recalibration (the evolution's), and the validation loss measured like the search's score
# (continuous, so less sampling noise than a top-1 count; negated in the correlations: higher is better).
SCORE_KINDS = ("score", "recalibrated", "loss")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what is measured")
    g.add_argument("--flops", type=float, default=400.0, help="MACs budget in millions, at 224x224 (default: 400)")
    g.add_argument("--paths", type=int, default=20, help="random budget-feasible paths N (>= 2; the issue asks >= 20; "
                                                         "they also are the K random ones of the selection) (default: 20)")
    g.add_argument("--seeds", type=int, default=2, help="standalone trainings per architecture, seeds 0.. (>= 2) "
                                                        "(default: 2)")
    g.add_argument("--path-seed", type=int, default=1000, help="seed of the random paths' sampler (default: 1000)")
    g.add_argument("--yardstick", action="store_true",
                   help="check the ground truth only: train the random paths and the space's smallest and largest "
                        "path, no supernets; writes OUT/yardstick.json and .png (see above). The full run reuses "
                        "its trainings")
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None,
                   help="ImageFolder root with train/ and val/ [and test/] (default: the embedded digits)")
    g.add_argument("--augment", choices=("none", "cifar", "imagenet"), default=None,
                   help="training augmentation of search and standalone nets: none (resize only), cifar (pad-crop, "
                        "flip) or imagenet (random-resized crop, flip; the chain search's for a folder). Default: none "
                        "for the embedded digits, imagenet for --data (as tools/search_chain.py); none for digits "
                        "such as MNIST (a flipped digit is another)")
    g.add_argument("--crop-scale", type=float, default=0.08,
                   help="smallest crop area of --augment imagenet, as in tools/search_chain.py (default: 0.08)")
    g.add_argument("--img-size", type=int, default=32, help="training resolution of search and standalone nets "
                                                            "(default: 32)")
    g.add_argument("--noise", type=float, default=96.0,
                   help="embedded digits only: std of the Gaussian pixel noise added once to every image (0..255 "
                        "scale, a fixed seed per split and draw; 0 = the clean digits, on which every path of a "
                        "budget scores 96-98.6%% and the seed decides their order) (default: 96)")
    g.add_argument("--draws", type=int, nargs=2, default=[1, 3], metavar=("TRAIN", "TEST"),
                   help="embedded digits with --noise only: copies of each training / test digit, each with its own "
                        "noise (more test copies: a finer measure of the same digits; 3 training copies made the "
                        "architectures alike: docs/chain.md); the search's val split keeps one (default: 1 3)")
    g = p.add_argument_group("standalone recipe (one for every architecture)")
    g.add_argument("--train-epochs", type=int, default=10,
                   help="epochs of each standalone training: SGD momentum 0.9, weight decay 4e-5, cosine per step "
                        "with a half-epoch linear warm-up, zero-initialised classifier; long enough to converge on "
                        "the digits (4 epochs left a seed-to-seed std of 6 points) (default: 10)")
    g.add_argument("--train-lr", type=float, default=0.05, help="peak learning rate (default: 0.05)")
    g.add_argument("--label-smoothing", type=float, default=0.1, help="of the standalone loss (default: 0.1)")
    g.add_argument("--train-batch", type=int, default=64, help="batch size (default: 64)")
    g = p.add_argument_group("supernet search (both supernets; the distillation weight is the only difference)")
    g.add_argument("--epochs", type=int, default=10, help="supernet epochs (default: 10)")
    g.add_argument("--batch-size", type=int, default=64, help="supernet batch (default: 64)")
    g.add_argument("--lr", type=float, default=0.1, help="supernet learning rate (default: 0.1)")
    g.add_argument("--eval-interval", type=int, default=4, help="steps between teacher-rule evaluations (default: 4)")
    g.add_argument("--replace-gap", type=gap_points, default=5.0,
                   help="the search's --replace-gap: points by which a path with more MACs must beat the teacher "
                        "(default: 5, the search's default; none: the paper's text)")
    g.add_argument("--calib-batches", type=int, default=4,
                   help="training batches recalibrating BN for the recalibrated scores and the evolution "
                        "(default: 4)")
    g.add_argument("--population", type=int, default=12, help="evolution population (default: 12)")
    g.add_argument("--generations", type=int, default=4, help="evolution generations (default: 4)")
    g.add_argument("--parents", type=int, default=4, help="evolution parents (default: 4)")
    g.add_argument("--search-seed", type=int, default=0, help="seed of the first search of each supernet (default: 0)")
    g.add_argument("--search-seeds", type=int, default=2,
                   help="searches per supernet, seeds --search-seed.. (>= 1): with 2 or more, the agreement "
                        "between the scores of two trainings of the same supernet (how much of its ranking is its "
                        "own, not its seed's), the ranking by their mean score, and one pick per search "
                        "(default: 2)")
    g.add_argument("--train-no-distill-picks", action="store_true",
                   help="also train the teacher and evolution result of the supernet without distillation "
                        "(default: only the distilled supernet's, the method's result)")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path("runs/search_quality"), help="output folder (default: %(default)s)")
    g.add_argument("--workers", type=int, default=2,
                   help="processes training in parallel (spawned; 1 = everything in this process) (default: 2)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    return p


# ------------------------------------------------------------------------------------------------
# Data: specs are plain dicts, so that the worker processes rebuild the datasets themselves.
# ------------------------------------------------------------------------------------------------
def prepare_data(args) -> dict:
    """Write / check the data and return a spec {root, val_idx, test_idx, desc}."""
    from cydas_chain.core import data as cdata

    if args.data is None:
        root = args.out / "data"
        draws = {"train": args.draws[0], "val": 1, "test": args.draws[1]} if args.noise > 0 else \
            {"train": 1, "val": 1, "test": 1}

        def write(root: Path) -> None:
            from PIL import Image

            images, labels = cdata.load_digits_array()
            train_idx, rest = cdata.stratified_split(labels, 0.4, seed=0)
            val_pos, test_pos = cdata.stratified_split(labels[rest], 0.5, seed=1)
            for n, (split, idx) in enumerate((("train", train_idx), ("val", [rest[i] for i in val_pos]),
                                              ("test", [rest[i] for i in test_pos]))):
                for k in range(draws[split]):
                    noisy = cdata.add_pixel_noise(images, args.noise, seed=100 * n + k)
                    for i in idx:
                        d = root / split / str(labels[i])
                        d.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(noisy[i], mode="L").save(d / f"{i:04d}_{k}.png")

        cdata.written_once(root, {"source": "embedded digits", "split": [0.6, 0.2, 0.2], "seed": 0,
                                  "noise": args.noise, "draws": draws, "version": 2}, write)
        noise = (f", Gaussian pixel noise std {args.noise:g}/255 (seeded), train / test digits drawn "
                 f"{draws['train']}x / {draws['test']}x with independent noise" if args.noise > 0 else "")
        return {"root": str(root), "embedded": True, "val_idx": None, "test_idx": None, "noise": args.noise,
                "transforms": _transforms(args, embedded=True),
                "draws": {"train": draws["train"], "test": draws["test"]} if args.noise > 0 else None,
                "desc": f"embedded handwritten digits (scikit-learn's), stratified 60/20/20 split, seed 0{noise}"}
    root = args.data
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise DataError(f"--data {root} needs {sub}/ (an ImageFolder: {root}/{sub}/<class>/<image>)")
    train = cdata.image_folder(root / "train")
    val = cdata.image_folder(root / "val")
    cdata.check_same_classes(train, val, root / "train", root / "val")
    if (root / "test").is_dir():
        test = cdata.image_folder(root / "test")
        cdata.check_same_classes(train, test, root / "train", root / "test")
        return {"root": str(root), "embedded": False, "val_idx": None, "test_idx": None, "desc": str(root),
                "transforms": _transforms(args, embedded=False)}
    val_idx, test_idx = cdata.stratified_split(val.targets, 0.5, seed=0)
    return {"root": str(root), "embedded": False, "val_idx": val_idx, "test_idx": test_idx,
            "desc": f"{root} (val/ split 50/50 into val and test, stratified, seed 0)",
            "transforms": _transforms(args, embedded=False)}


def _transforms(args, embedded: bool) -> dict:
    """core.data.build_transforms' kind (none: 'embedded', resize only) and crop scale for the spec."""
    augment = args.augment or ("none" if embedded else "imagenet")
    kind = "embedded" if augment == "none" else augment
    return {"kind": kind, "crop_scale": args.crop_scale} if kind == "imagenet" else {"kind": kind}


def load_data(spec: dict, img_size: int):
    """(train without transform, the transforms (train, eval, mean, std), val, test, classes) from a spec."""
    from torch.utils.data import Subset

    from cydas_chain.core import data as cdata

    root = Path(spec["root"])
    tf = cdata.build_transforms(img_size, **spec["transforms"])
    train = cdata.image_folder(root / "train")
    if spec["val_idx"] is None:
        val, test = cdata.image_folder(root / "val", tf.eval), cdata.image_folder(root / "test", tf.eval)
    else:
        base = cdata.image_folder(root / "val", tf.eval)
        val, test = Subset(base, spec["val_idx"]), Subset(base, spec["test_idx"])
    return train, tf, val, test, train.classes


# ------------------------------------------------------------------------------------------------
# Jobs (run in the pool)
# ------------------------------------------------------------------------------------------------
def _init_worker(device: str) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
    if not device.startswith("cuda"):
        torch.set_num_threads(1)
    from cydas_chain.core import logging as clog  # no progress bars from the jobs (before the loops import it)

    plain = clog.progress
    clog.progress = lambda iterable=None, **kw: plain(iterable, **{**kw, "disable": True})


def search_job(job: dict) -> dict:
    """Train one supernet (the search), then score the random paths, its teacher and an evolution's best."""
    import torch

    from cydas_chain.chain.evolution import EvolutionConfig
    from cydas_chain.chain.run import ChainSearchRun, RunOptions
    from cydas_chain.chain.searcher import ChainSearcher, SearchConfig
    from cydas_chain.core.run import RunDir
    from cydas_chain.core.distributed import DistInfo
    from cydas_chain.core.logging import get_logger

    t0 = time.time()
    train, tf, val, _, classes = load_data(job["data"], job["img_size"])
    cfg = SearchConfig(**job["search"])
    out = Path(job["out"])
    log = get_logger(f"cydas.search_quality.{job['name']}", out)
    for h in log.handlers:  # the search's log goes to OUT/supernet_*/log.txt; only warnings on the console
        if not isinstance(h, logging.FileHandler):
            h.setLevel(logging.WARNING)
    from cydas_chain.core.speed import resolve_speed

    device = torch.device(job["device"])
    search = ChainSearcher(cfg, train, tf.train, val, classes, DistInfo(device=device), log, workers=0,
                           speed=resolve_speed(device), normalize=(tf.mean, tf.std))
    ChainSearchRun(search, RunDir(out), log, RunOptions(save_interval=10 ** 9, data_desc=job["data"]["desc"])).run()
    t_search = time.time() - t0
    teacher = [int(c) for c in search.board.teacher.path]
    evolution = search.evolve(search.evolution(EvolutionConfig(**job["evolution"])))
    best = [int(c) for c in evolution["top"][0]["path"]]
    t_evolve = time.time() - t0 - t_search
    paths = [list(p) for p in job["paths"]] + [teacher, best]
    measured = {"score": search.score(paths), "recalibrated": search.recalibrated_score(paths),
                "loss": search.val_loss(paths)}
    n = len(job["paths"])
    return {"name": job["name"], "seed": cfg.seed, "distill_weight": cfg.distill_weight, "teacher": teacher,
            "evolution_best": best,
            **{f"random_{k}": v[:n] for k, v in measured.items()},
            **{f"teacher_{k}": v[n] for k, v in measured.items()},
            **{f"evolution_{k}": v[n + 1] for k, v in measured.items()},
            "evolution_history": evolution["history"], "seconds": {"search": t_search, "evolution": t_evolve,
                                                                     "total": time.time() - t0}}


def train_job(job: dict) -> dict:
    """Train the standalone network of one path with the fixed recipe and one seed (the one training driver,
    ``cydas_chain.train.driver``); val and test top-1."""
    import timm
    import torch
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler
    from torch import nn

    import cydas_chain  # noqa: F401  (registers the timm model)
    from cydas_chain.core.seed import seed_everything
    from cydas_chain.core.speed import resolve_speed
    from cydas_chain.models import ChainSpace
    from cydas_chain.train.driver import Parts, Trainer, TrainOptions

    t0 = time.time()
    r = job["recipe"]
    device = torch.device(job["device"])
    train, tf, val, test, classes = load_data(job["data"], job["img_size"])
    train.transform = tf.train
    seed_everything(job["seed"])
    arch = ChainSpace(tuple(job["slots"])).arch(job["path"])
    model = timm.create_model("cydas_chain", arch=arch, num_classes=len(classes), drop_rate=0.0, drop_path_rate=0.0)
    head = model.get_classifier()
    nn.init.zeros_(head.weight)  # as the supernet: timm's init gives logits of std ~3 with 10 classes
    nn.init.zeros_(head.bias)

    def parts(net, updates_per_epoch):
        steps = updates_per_epoch * r["epochs"]
        optimizer = create_optimizer_v2(net, "momentum", lr=r["lr"], weight_decay=4e-5, momentum=0.9)
        scheduler = CosineLRScheduler(optimizer, t_initial=steps, lr_min=0.0, warmup_t=max(1, updates_per_epoch // 2),
                                      warmup_lr_init=r["lr"] * 0.01, t_in_epochs=False)
        return Parts(optimizer, scheduler, nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"]))

    trainer = Trainer(model, train, {"val": val, "test": test}, mean=tf.mean, std=tf.std, make_parts=parts,
                      options=TrainOptions(epochs=r["epochs"], batch_size=r["batch"], seed=job["seed"]),
                      speed=resolve_speed(device), log=logging.getLogger("cydas.search_quality.train"))
    trainer.fit(evaluate=())  # the held-out splits once, at the end
    hist = [row["train_top1"] for row in trainer.history]
    ev = {split: trainer.evaluate(split) for split in ("val", "test")}
    return {"key": job["key"], "val": ev["val"]["top1"], "test": ev["test"]["top1"], "val_loss": ev["val"]["loss"],
            "test_loss": ev["test"]["loss"], "train_top1": hist, "seconds": time.time() - t0}


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def check_args(args) -> None:
    for k, lo in (("paths", 2), ("seeds", 2), ("search_seeds", 1), ("train_epochs", 1), ("train_batch", 1),
                  ("epochs", 1), ("batch_size", 1), ("eval_interval", 1), ("calib_batches", 1), ("img_size", 8),
                  ("workers", 1)):
        if getattr(args, k) < lo:
            raise CydasError(f"--{k.replace('_', '-')} must be >= {lo}, got {getattr(args, k)}")
    if not args.flops > 0:
        raise CydasError(f"--flops must be positive, got {args.flops:g}")
    if args.train_lr <= 0 or args.lr <= 0:
        raise CydasError("--lr and --train-lr must be positive")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise CydasError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing:g}")
    if not 0.0 < args.crop_scale <= 1.0:
        raise CydasError(f"--crop-scale must be in (0, 1], got {args.crop_scale:g}")
    if min(args.draws) < 1:
        raise CydasError(f"--draws must be >= 1, got {' '.join(map(str, args.draws))}")
    if not 0 <= args.noise <= 255:
        raise CydasError(f"--noise must be in [0, 255] (pixel scale), got {args.noise:g}")
    if args.replace_gap is not None and not args.replace_gap >= 0:
        raise CydasError(f"--replace-gap must be >= 0 points (none: never), got {args.replace_gap:g}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise CydasError(f"--device takes cpu, cuda or cuda:N, got {args.device!r}")
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise CydasError(f"--device {args.device} asked for, but no CUDA device is available")
    from cydas_chain.chain.evolution import EvolutionConfig
    EvolutionConfig(population=args.population, generations=args.generations, parents=args.parents)


class Pool:
    """A spawn process pool, or inline execution with --workers 1 (same results, one process).

    Every finished job's result is kept in ``cache_dir`` (one JSON each, written atomically, named by
    a digest of the job function's source and everything in the job: data, recipe, path, seed,
    device), and a job found there is not run again: a killed run continues where it stopped, and a
    run with more --paths, --seeds or --search-seeds trains only what is new.  (An edit of the job
    function starts afresh; one of the library code under it does not: delete OUT/jobs then.)"""

    def __init__(self, workers: int, device: str, cache_dir: Path):
        self.ex, self.cache_dir, self.reused = None, cache_dir, 0
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            self.ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                          initargs=(device,))
        else:
            _init_worker(device)

    def _cached(self, fn, job) -> Path:
        import hashlib
        import inspect

        key = json.dumps([fn.__name__, inspect.getsource(fn), job], sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.cache_dir / f"{fn.__name__}_{digest}.json"

    def submit(self, fn, job):
        from concurrent.futures import Future

        from cydas_chain.core.checkpoint import write_json

        cached = self._cached(fn, job)
        if cached.is_file():
            try:
                result = json.loads(cached.read_text())["result"]
            except (ValueError, KeyError, TypeError):  # not ours, or damaged: run the job again
                result = None
            if result is not None:
                self.reused += 1
                f = Future()
                f.set_result(result)
                f.reused = True
                return f
        if self.ex is not None:
            f = self.ex.submit(fn, job)
        else:
            f = Future()
            f.set_result(fn(job))

        def keep(done):
            if done.exception() is None:
                write_json(cached, {"job": job, "result": done.result()})
        f.add_done_callback(keep)
        return f

    def shutdown(self):
        if self.ex is not None:
            self.ex.shutdown()


def device_name(device: str) -> str:
    import torch
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores visible)"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    from cydas_chain.core import stats  # scipy, checked before hours of training
    stats._scipy_stats()
    from concurrent.futures import FIRST_COMPLETED, wait

    from cydas_chain.chain import PathSampler, build_cost_table
    from cydas_chain.core.checkpoint import write_json
    from cydas_chain.models import DEFAULT_SLOTS, ChainSpace

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args)
    _, _, val_set, test_set, classes = load_data(data, args.img_size)
    space = ChainSpace(DEFAULT_SLOTS)
    table = build_cost_table(space, len(classes), 224)
    max_macs = int(round(args.flops * 1e6))
    sampler = PathSampler(table, max_macs, seed=args.path_seed)  # raises a one-line BudgetError
    randoms = [tuple(int(c) for c in p) for p in sampler.sample(args.paths)]
    ends = space_ends(table) if args.yardstick else {}
    recipe = {"epochs": args.train_epochs, "lr": args.train_lr, "batch": args.train_batch,
              "label_smoothing": args.label_smoothing}
    common = {"data": data, "img_size": args.img_size, "device": args.device}
    # the search's defaults (the default preset), with this bench's sizes; the budget in fvcore MACs, as the paths'
    search_cfg = dict(max_macs=max_macs, min_macs=0, counter="fvcore", board_size=1, epochs=args.epochs,
                      distill_start=args.epochs / 6, warmup_epochs=args.epochs / 40, batch_size=args.batch_size,
                      img_size=args.img_size, cost_size=224, lr=args.lr, momentum=0.9, weight_decay=4e-5,
                      temperature=1.0, eval_interval=args.eval_interval, replace_test="mcnemar",
                      replace_alpha=0.05, replace_gap=args.replace_gap,
                      slots=tuple(DEFAULT_SLOTS), weight_sharing="entangled",
                      final="teacher", calib_batches=args.calib_batches)
    evo_cfg = dict(population=args.population, generations=args.generations, parents=args.parents,
                   mutation_prob=0.1, crossover_share=0.5)
    search_seeds = range(args.search_seed, args.search_seed + args.search_seeds)
    print(f"search quality: {args.paths} random paths <= {args.flops:g}M MACs, {args.seeds} seeds, "
          f"{args.train_epochs}-epoch standalone recipe, {args.workers} worker(s) on {args.device}; data: {data['desc']}",
          flush=True)

    pool = Pool(args.workers, args.device, args.out / "jobs")
    pending, trained, searches = {}, {}, {}

    def train(path):
        for s in range(args.seeds):
            key = (tuple(path), s)
            if key not in trained and key not in pending.values():
                job = {**common, "key": [list(path), s], "path": list(path), "seed": s, "recipe": recipe,
                       "slots": list(DEFAULT_SLOTS)}
                pending[pool.submit(train_job, job)] = key

    for seed in (() if args.yardstick else search_seeds):  # the long jobs first
        for name, w in SUPERNETS.items():
            job = {**common, "name": name, "out": str(args.out / f"supernet_{name}_seed{seed}"),
                   "paths": [list(p) for p in randoms], "search": {**search_cfg, "distill_weight": w, "seed": seed},
                   "evolution": {**evo_cfg, "seed": seed}}
            pending[pool.submit(search_job, job)] = (name, seed)
    for p in sorted(ends.values(), key=table.path_macs, reverse=True) + randoms:
        train(p)
    done_count = 0
    try:
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                key = pending.pop(f)
                r = f.result()
                if isinstance(key[0], str):
                    searches[key] = r
                    print(f"[{time.time() - t0:6.0f}s] supernet {key[0]} (seed {key[1]}): teacher "
                          f"{space.path_str(r['teacher'])} (score {r['teacher_score']:.1f}), evolution best "
                          f"{space.path_str(r['evolution_best'])} (recalibrated {r['evolution_recalibrated']:.1f}) "
                          f"in {r['seconds']['total']:.0f}s", flush=True)
                    if key[0] == "distill" or args.train_no_distill_picks:
                        train(r["teacher"])
                        train(r["evolution_best"])
                else:
                    trained[key] = r
                    done_count += 1
                    how = "reused" if getattr(f, "reused", False) else "trained"
                    print(f"[{time.time() - t0:6.0f}s] {how} {done_count}: {space.path_str(key[0])} seed {key[1]}: "
                          f"val {r['val']:.2f} test {r['test']:.2f} ({r['seconds']:.0f}s)", flush=True)
    finally:
        pool.shutdown()
    if pool.reused:
        print(f"reused {pool.reused} finished job(s) from {pool.cache_dir}", flush=True)

    if args.yardstick:
        result, name, draw, show = yardstick_summary(args, data, space, table, randoms, ends, trained,
                                                     time.time() - t0), "yardstick", plot_yardstick, print_yardstick
    else:
        result, name, draw, show = summarise(args, data, space, table, randoms, searches, trained,
                                             time.time() - t0), "search_quality", plot, print_summary
    result["meta"]["reused_jobs"] = pool.reused  # their seconds are those of the run that made them
    write_json(args.out / f"{name}.json", result)
    draw(result, args.out / f"{name}.png")
    show(result)
    print(f"\nwrote {args.out / (name + '.json')} and {args.out / (name + '.png')}")
    return 0


def space_ends(table) -> dict:
    """The smallest and the largest path of the whole space by MACs (per layer: the cheapest and the
    dearest allowed choice; the cost is additive): the shallowest and the deepest, widest network."""
    import numpy as np

    mask, macs = table.space.choice_mask, table.macs
    return {"smallest": tuple(int(c) for c in np.where(mask, macs, np.iinfo(np.int64).max).argmin(1)),
            "largest": tuple(int(c) for c in np.where(mask, macs, -1).argmax(1))}


def _entry(args, space, table, trained, path) -> dict:
    """One architecture's standalone results over the seeds."""
    runs = [trained[(tuple(path), s)] for s in range(args.seeds)]
    return {"path": list(path), "arch": space.path_str(path), "macs": int(table.path_macs(path)),
            "layers": _layers(path), **{k: [r[k] for r in runs] for k in ("val", "test", "test_loss")},
            "train_top1_last": [r["train_top1"][-1] for r in runs], "train_seconds": [r["seconds"] for r in runs]}


def _layers(path) -> int:
    from cydas_chain.models.chain_arch import SKIP
    return sum(1 for c in path if c != SKIP)


def _correlations(x, y) -> dict:
    from cydas_chain.core import stats
    return {**stats.kendall_tau(x, y), **_rho(stats.spearman_rho(x, y))}


def ground_truth(args, random_entries) -> tuple:
    """The standalone results of the random paths as a measuring stick: the baselines that need no
    training (MACs, depth) and the stick's own noise (seed spread, split-half reproduction)."""
    import numpy as np

    from cydas_chain.core import stats

    test = np.array([e["test"] for e in random_entries])
    val = np.array([e["val"] for e in random_entries])
    # the standalone test loss (paths x seeds): a continuous measure of the same networks, which a few
    # flipped borderline images move less than the top-1; negated where higher must be better
    test_loss = np.array([e["test_loss"] for e in random_entries])
    test_mean = test.mean(1)
    # what a search must beat to be worth its cost: predictors that need no training at all
    baselines = {k: _correlations([e[k] for e in random_entries], test_mean) for k in ("macs", "layers")}
    half = args.seeds // 2

    def split_half(x):
        # Does the standalone order reproduce?  tau between the seed means of two disjoint halves of the seeds
        # (with 2 seeds: seed 0 vs seed 1): the ground truth's own check, which the reliability (a model-based
        # estimate, loose with few seeds) cannot replace.
        return {**_correlations(x[:, :half].mean(1), x[:, half:2 * half].mean(1)),
                "halves": [list(range(half)), list(range(half, 2 * half))]}

    noise = {"test": stats.seed_spread(test), "val": stats.seed_spread(val), "test_loss": stats.seed_spread(test_loss),
             "split_half_test": split_half(test), "split_half_test_loss": split_half(-test_loss),
             "seed_pairs_test_tau": float(np.mean([stats.kendall_tau(test[:, a], test[:, b])["tau"]
                                                   for a, b in itertools.combinations(range(args.seeds), 2)]))}
    return baselines, noise


def summarise(args, data, space, table, randoms, searches, trained, seconds) -> dict:
    import numpy as np

    from cydas_chain.core import stats

    def entry(path):
        return _entry(args, space, table, trained, path)

    random_entries = [entry(p) for p in randoms]
    test_mean = [float(np.mean(e["test"])) for e in random_entries]
    val_mean = [float(np.mean(e["val"])) for e in random_entries]
    test_loss = np.array([e["test_loss"] for e in random_entries])
    search_seeds = sorted({seed for _, seed in searches})
    for i, e in enumerate(random_entries):  # each path's scores: one per search seed
        for name in SUPERNETS:
            for kind in SCORE_KINDS:
                e[f"{name}_{kind}"] = [searches[(name, seed)][f"random_{kind}"][i] for seed in search_seeds]

    correlations = _correlations
    ranking = {}
    for name in SUPERNETS:
        ranking[name] = {}
        for kind in SCORE_KINDS:
            sign = -1.0 if kind == "loss" else 1.0  # a lower loss ranks higher
            per_seed = sign * np.array([e[f"{name}_{kind}"] for e in random_entries]).T  # (search seeds, paths)
            mean = per_seed.mean(0)
            pairs = [stats.kendall_tau(a, b)["tau"] for a, b in itertools.combinations(per_seed, 2)]
            ranking[name][kind] = {
                "test": correlations(mean, test_mean), "val": correlations(mean, val_mean),
                "test_loss": correlations(mean, -test_loss.mean(1)),
                "test_per_search_seed": [stats.kendall_tau(x, test_mean)["tau"] for x in per_seed],
                # tau between two searches of the same supernet: how much of its order is its own, not its seed's
                "search_seed_agreement": float(np.mean(pairs)) if pairs else None,
                "score_mean_std": stats.mean_std(sign * mean)}
    baselines, noise = ground_truth(args, random_entries)

    selection = {"random": {"test": stats.mean_std(test_mean), "val": stats.mean_std(val_mean),
                            "macs": stats.mean_std([e["macs"] for e in random_entries])}, "searched": {}}
    picks = {}  # "distill/teacher" -> the seed-mean test top-1 of each search's pick
    for (name, seed), r in sorted(searches.items()):
        for which in ("teacher", "evolution"):
            path = r[which if which == "teacher" else "evolution_best"]
            if (tuple(path), 0) not in trained:
                continue
            e = entry(path)
            tm, vm = float(np.mean(e["test"])), float(np.mean(e["val"]))
            picks.setdefault(f"{name}/{which}", []).append(tm)
            selection["searched"][f"{name}/{which}/seed{seed}"] = {
                **e, "test_mean_std": stats.mean_std(e["test"]), "val_mean_std": stats.mean_std(e["val"]),
                **{f"supernet_{kind}": r[f"{which}_{kind}"] for kind in SCORE_KINDS},
                "rank_test": stats.rank_among(tm, test_mean), "rank_val": stats.rank_among(vm, val_mean),
                "in_random_set": tuple(path) in set(map(tuple, randoms))}
    # each selection rule over its searches: the mean pick against the random paths
    selection["searched_mean"] = {k: {"test": stats.mean_std(v), "searches": len(v),
                                      "beaten_mean": float(np.mean([stats.rank_among(t, test_mean)["beaten"]
                                                                    for t in v]))}
                                  for k, v in picks.items()}
    return {
        "meta": _meta(args, data, seconds),
        "settings": {**_settings(args, data),
                     "supernets": {n: {"distill_weight": w} for n, w in SUPERNETS.items()},
                     "search": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                                "eval_interval": args.eval_interval, "replace_gap": args.replace_gap,
                                "distill_start": args.epochs / 6,
                                "warmup_epochs": args.epochs / 40, "weight_sharing": "entangled",
                                "scoring_images": "all val", "calib_batches": args.calib_batches,
                                "seeds": list(range(args.search_seed, args.search_seed + args.search_seeds))},
                     "evolution": {"population": args.population, "generations": args.generations,
                                   "parents": args.parents}},
        "ranking": ranking,
        "baselines": baselines,
        "seed_spread": noise,
        "selection": selection,
        "random_paths": random_entries,
        "supernets": {f"{n}/seed{seed}": {k: v for k, v in r.items() if not k.startswith("random_")}
                      for (n, seed), r in sorted(searches.items())},
    }


def _meta(args, data, seconds) -> dict:
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device_name(args.device),
            "workers": args.workers, "seconds": seconds, "data": data["desc"], "torch_threads_per_worker":
            1 if args.device == "cpu" else None, "command": "python bench/search_quality.py " + " ".join(sys.argv[1:])}


def _settings(args, data) -> dict:
    return {"flops_m": args.flops, "paths": args.paths, "seeds": args.seeds, "path_seed": args.path_seed,
            "img_size": args.img_size, "noise": data.get("noise"), "draws": data.get("draws"),
            "recipe": {"epochs": args.train_epochs, "lr": args.train_lr, "batch": args.train_batch,
                       "label_smoothing": args.label_smoothing, "optimizer": "timm momentum 0.9, weight decay 4e-5",
                       "schedule": "timm CosineLRScheduler per step, half-epoch warm-up from lr/100",
                       "init": "timm, classifier zeroed",
                       "augmentation": data["transforms"]}}


def yardstick_summary(args, data, space, table, randoms, ends, trained, seconds) -> dict:
    """--yardstick: is the standalone recipe on this data a ground truth, and what does it reward?"""
    import numpy as np

    from cydas_chain.core import stats

    random_entries = [_entry(args, space, table, trained, p) for p in randoms]
    baselines, noise = ground_truth(args, random_entries)
    end_entries = {k: _entry(args, space, table, trained, p) for k, p in ends.items()}
    for e in end_entries.values():
        e["test_mean_std"] = stats.mean_std(e["test"])
        e["rank_test"] = stats.rank_among(float(np.mean(e["test"])), [float(np.mean(r["test"])) for r in random_entries])
    small, large = end_entries["smallest"], end_entries["largest"]
    gap = {"test": stats.mean_difference(small["test"], large["test"]),
           "test_loss": stats.mean_difference(large["test_loss"], small["test_loss"]),  # > 0: the largest is better
           "spread": stats.seed_spread([small["test"], large["test"]])}
    half, gap_p = noise["split_half_test"], gap["test"]["p"]
    reproduces = bool(half["tau"] is not None and half["tau"] > 0 and half["p"] < 0.05)
    if not gap_p < 0.05:  # also when NaN
        rewards = "neither end (their difference is within the seed noise)"
    elif gap["test"]["diff"] > 0:
        rewards = "capacity (the largest path beats the smallest)"
    else:
        rewards = "fast training (the smallest path beats the largest: the recipe is too short for the larger nets)"
    return {"meta": _meta(args, data, seconds), "settings": _settings(args, data),
            "verdict": {"random_order_reproduces": reproduces, "rewards": rewards},
            "seed_spread": noise, "baselines": baselines, "ends": end_entries, "ends_difference": gap,
            "random": {"test": stats.mean_std([float(np.mean(e["test"])) for e in random_entries]),
                       "train_top1_last": stats.mean_std([v for e in random_entries for v in e["train_top1_last"]])},
            "random_paths": random_entries}


def print_yardstick(res: dict) -> None:
    s, m, n = res["settings"], res["meta"], res["seed_spread"]
    print(f"\n== yardstick: {s['paths']} random paths <= {s['flops_m']:g}M MACs and the space's two ends x "
          f"{s['seeds']} seeds, {s['recipe']['epochs']}-epoch recipe; {m['device']}, {m['seconds'] / 60:.1f} min ==")
    print(f"  {'architecture':<18} {'MACs':>7} {'layers':>6} {'test top-1':>15} {'last train top-1':>17} "
          f"{'rank among random':>18}")
    r = res["random"]
    print(f"  {'random (seed means)':<18} {'':>7} {'':>6} {r['test']['mean']:>7.2f} +- {r['test']['std']:<4.2f} "
          f"{r['train_top1_last']['mean']:>17.1f}")
    for name, e in res["ends"].items():
        t, rk = e["test_mean_std"], e["rank_test"]
        print(f"  {name:<18} {e['macs'] / 1e6:>6.0f}M {e['layers']:>6} {t['mean']:>7.2f} +- {t['std']:<4.2f} "
              f"{sum(e['train_top1_last']) / len(e['train_top1_last']):>17.1f} {'%d / %d' % (rk['rank'], rk['of']):>18}")
    g, sp = res["ends_difference"]["test"], res["ends_difference"]["spread"]
    print(f"  largest - smallest: {_f(g['diff'])} points (Welch p {_f(g['p'], 3)}); reliability of the two ends "
          f"{sp['reliability']:.2f}")
    t, h = n["test"], n["split_half_test"]
    print(f"  random paths: seed noise (within-path std) {t['within_std']:.2f}, the paths' own std "
          f"{t['signal_std']:.2f} (reliability {t['reliability']:.2f}); seeds {h['halves'][0]} vs {h['halves'][1]}: "
          f"tau {_f(h['tau'])} (p {_f(h['p'], 3)})")
    b = res["baselines"]
    print(f"  the random paths' seed means against MACs: tau {_f(b['macs']['tau'])} (p {_f(b['macs']['p'], 3)}), "
          f"against depth: tau {_f(b['layers']['tau'])} (p {_f(b['layers']['p'], 3)})")
    v = res["verdict"]
    print(f"\n  the random paths' order {'reproduces' if v['random_order_reproduces'] else 'does NOT reproduce'} "
          f"between the halves of the seeds; the recipe rewards {v['rewards']}")
    if not v["random_order_reproduces"]:
        print("  => on this data and recipe the full bench's tau and ranks cannot be told from chance: more data, "
              "more seeds or a longer recipe first")


def plot_yardstick(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 5.2))
    groups = [("random paths", res["random_paths"], "tab:grey")] + \
        [(f"{k} path", [e], c) for (k, e), c in zip(res["ends"].items(), ("tab:blue", "tab:red"))]
    for label, entries, color in groups:
        x = np.array([e["macs"] / 1e6 for e in entries])
        y = np.array([e["test"] for e in entries])
        ax.scatter(np.repeat(x, y.shape[1]), y.ravel(), s=12, c=color, alpha=0.45)
        ax.errorbar(x, y.mean(1), yerr=y.std(1, ddof=1), fmt="o", c=color, capsize=3, label=f"{label} (seed mean +- std)")
    h, g = res["seed_spread"]["split_half_test"], res["ends_difference"]["test"]
    ax.set_xlabel("MACs at 224x224 (M)")
    ax.set_ylabel("standalone test top-1 % (dots: single seeds)")
    ax.set_title(f"random paths: split-half tau {_f(h['tau'])} (p {_f(h['p'], 3)}), reliability "
                 f"{res['seed_spread']['test']['reliability']:.2f}; largest - smallest {_f(g['diff'])} (p {_f(g['p'], 3)})",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"{res['meta']['data']}; {res['settings']['recipe']['epochs']}-epoch recipe, "
                               f"{res['settings']['seeds']} seeds; {res['meta']['device']}", 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rho(d):
    return {"rho": d["rho"], "p_rho": d["p"]}


def print_summary(res: dict) -> None:
    s, m = res["settings"], res["meta"]
    print(f"\n== search quality at {s['flops_m']:g}M MACs: {s['paths']} random paths x {s['seeds']} seeds, "
          f"{s['recipe']['epochs']}-epoch recipe; {m['device']}, {m['seconds'] / 60:.1f} min ==")
    k = len(s["search"]["seeds"])
    print(f"\n(a) ranking: supernet score (mean of {k} search{'es' if k > 1 else ''}) vs standalone test top-1 "
          f"(seed mean) of the random paths; agreement: tau between two searches' scores")
    print(f"  {'supernet':<11} {'score':<13} {'Kendall tau':>11} {'p':>8} {'Spearman rho':>13} {'p':>8} "
          f"{'per search':>14} {'agreement':>10} {'tau vs loss':>12}")
    for name, kinds in res["ranking"].items():
        for kind, r in kinds.items():
            t = r["test"]
            per = " ".join(_f(v) for v in r["test_per_search_seed"])
            print(f"  {name:<11} {kind:<13} {_f(t['tau']):>11} {_f(t['p'], 3):>8} {_f(t['rho']):>13} "
                  f"{_f(t['p_rho'], 3):>8} {per:>14} {_f(r['search_seed_agreement']):>10} "
                  f"{_f(r['test_loss']['tau']):>12}")
    for name, t in res.get("baselines", {}).items():
        print(f"  {'baseline':<11} {name:<13} {_f(t['tau']):>11} {_f(t['p'], 3):>8} {_f(t['rho']):>13} "
              f"{_f(t['p_rho'], 3):>8}")
    n = res["seed_spread"]
    h, hl = n["split_half_test"], n["split_half_test_loss"]
    print(f"  ground truth: seeds {h['halves'][0]} vs seeds {h['halves'][1]} of the same paths: tau {_f(h['tau'])} "
          f"(p {_f(h['p'], 3)}), rho {_f(h['rho'])}; tau of two single trainings, mean over seed pairs "
          f"{_f(n['seed_pairs_test_tau'])}; by test loss: tau {_f(hl['tau'])} (p {_f(hl['p'], 3)})")
    if not any(x["tau"] is not None and x["tau"] > 0 and x["p"] < 0.05 for x in (h, hl)):  # also when NaN
        print("  NOTE: the standalone order of these paths does not reproduce between the halves of the seeds: "
              "on this yardstick no score's tau and no pick's rank can be told from chance")
    t = n["test"]
    print(f"  seed spread (test): mean |seed a - seed b| {t['mean_abs_diff']:.2f} points, within-path std "
          f"{t['within_std']:.2f}; between-path std of the seed means {t['between_std']:.2f}, of the paths "
          f"themselves {t['signal_std']:.2f} (reliability {t['reliability']:.2f})")
    sel = res["selection"]
    print("\n(b) selection: standalone top-1 (mean +- std over seeds; random: over paths of the seed means)")
    print(f"  {'architecture':<22} {'MACs':>7} {'test':>14} {'val':>14} {'rank (test)':>12} {'beats':>6}")
    r = sel["random"]
    print(f"  {'random (K=%d)' % s['paths']:<22} {r['macs']['mean'] / 1e6:>6.0f}M "
          f"{r['test']['mean']:>7.2f} +- {r['test']['std']:<4.2f} {r['val']['mean']:>7.2f} +- {r['val']['std']:<4.2f}")
    for name, e in sel["searched"].items():
        rk = e["rank_test"]
        print(f"  {name:<22} {e['macs'] / 1e6:>6.0f}M {e['test_mean_std']['mean']:>7.2f} +- "
              f"{e['test_mean_std']['std']:<4.2f} {e['val_mean_std']['mean']:>7.2f} +- {e['val_mean_std']['std']:<4.2f} "
              f"{'%d / %d' % (rk['rank'], rk['of']):>12} {100 * rk['beaten']:>5.0f}%")
    for name, e in sel.get("searched_mean", {}).items():
        print(f"  {name + ' (mean)':<22} {'':>7} {e['test']['mean']:>7.2f} +- {e['test']['std']:<4.2f} "
              f"{'over %d searches' % e['searches']:>19} {'':>12} {100 * e['beaten_mean']:>5.0f}%")


def _f(v, digits=2):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5.2))
    rnd = res["random_paths"]
    y = [float(np.mean(e["test"])) for e in rnd]
    styles = {("distill", "score"): ("tab:blue", "o"), ("distill", "recalibrated"): ("tab:blue", "^"),
              ("no_distill", "score"): ("tab:orange", "o"), ("no_distill", "recalibrated"): ("tab:orange", "^")}
    # (the loss score has another scale; its correlations are in the printout and the JSON)
    for (name, kind), (color, marker) in styles.items():
        x = [float(np.mean(e[f"{name}_{kind}"])) for e in rnd]
        r = res["ranking"][name][kind]["test"]
        a.scatter(x, y, marker=marker, alpha=0.75, edgecolors=color, facecolors=color if kind == "score" else "none",
                  label=f"{name}, {kind}: tau {_f(r['tau'])}, rho {_f(r['rho'])}")
    a.set_xlabel("supernet score on val (top-1 %, mean of the searches)")
    a.set_ylabel("standalone test top-1 % (mean over seeds)")
    a.set_title(f"(a) ranking: {len(rnd)} random paths <= {res['settings']['flops_m']:g}M MACs")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)

    sel = res["selection"]
    rng = np.random.default_rng(0)
    b.scatter(rng.uniform(-0.15, 0.15, len(y)), y, c="grey", alpha=0.7, label="random (seed mean)")
    r = sel["random"]["test"]
    b.errorbar([0.3], [r["mean"]], yerr=[r["std"]], fmt="s", c="black", capsize=4, label="random mean +- std")
    for i, (name, e) in enumerate(sel["searched"].items(), start=1):
        m = e["test_mean_std"]
        b.scatter([i] * len(e["test"]), e["test"], c="tab:green", marker="x", alpha=0.7)
        b.errorbar([i + 0.2], [m["mean"]], yerr=[m["std"]], fmt="D", c="tab:red", capsize=4)
    b.set_xticks(range(len(sel["searched"]) + 1), ["random"] + [n.replace("/", "\n") for n in sel["searched"]],
                 fontsize=8)
    b.set_ylabel("standalone test top-1 % (x: each seed; red: mean +- std)")
    b.set_title("(b) selection: searched vs random")
    b.legend(fontsize=7, loc="lower right")
    b.grid(alpha=0.3)
    title = (f"{res['meta']['data']}; {res['settings']['recipe']['epochs']}-epoch recipe, "
             f"{res['settings']['seeds']} seeds; {res['meta']['device']}")
    fig.suptitle(textwrap.fill(title, 150), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    run_tool(main)
