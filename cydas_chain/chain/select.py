"""Train once, select many: networks for other budgets and devices from a finished search's supernet.

With weight-entangled (or independent) ops the trained supernet holds a network for every path of the
space.  :class:`Selection` rebuilds a finished search from its run folder (its settings, data split and
supernet weights; nothing is trained), and for each budget (MACs, parameters, latency from a table
measured on the target device) runs an evolution (or scores random paths) among the paths within it,
each scored as it would be deployed: the standalone network with the supernet's weights and BN
recalibrated on training batches, on the images held out of ``train/``.  Per budget it writes
``arch.json`` and ``weights.pth`` (the same files as the search's own result), and over all budgets
``pareto.json`` / ``pareto.png``: every evaluated path's score against its MACs, the non-dominated
front marked.  The state is checkpointed after every generation of every budget, so a killed
selection continues exactly where it stopped.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..core.checkpoint import load_checkpoint, save_checkpoint, write_json
from ..core.distributed import DistInfo, is_main_process
from ..core.errors import CheckpointError, ConfigError
from ..core.run import CONFIG, LAST, RunDir
from ..core.speed import Speed
from ..models import ChainSpace
from .evolution import EvolutionConfig
from .latency import LatencyTable
from .run import WEIGHTS, export_weights, search_data
from .sampler import Limit, PathSampler
from .searcher import CHECKPOINT_KIND, ChainSearcher, SearchConfig

KIND = "cydas_chain/chain_select"
METHODS = ("evolution", "random")


@dataclass(frozen=True)
class Budget:
    """One deployment target: at most ``macs`` (the search's counter), and optionally ``params`` and
    ``latency_ms`` (a latency table's estimate)."""

    macs: int
    params: Optional[int] = None
    latency_ms: Optional[float] = None

    @property
    def name(self) -> str:
        parts = [f"flops{self.macs / 1e6:g}"]
        if self.params is not None:
            parts.append(f"params{self.params / 1e6:g}")
        if self.latency_ms is not None:
            parts.append(f"lat{self.latency_ms:g}ms")
        return "_".join(parts)


@dataclass
class SelectConfig:
    budgets: List[Budget]
    method: str = "evolution"
    evolution: dict = field(default_factory=dict)  # EvolutionConfig fields; those not given: the search's
    samples: int = 50  # paths scored by method="random"
    calib_batches: Optional[int] = None  # None: the search's
    seed: int = 0

    def as_dict(self) -> dict:
        return {**asdict(self), "budgets": [asdict(b) for b in self.budgets]}


def finished_search(run_folder: Path) -> dict:
    """The last checkpoint of a finished search in ``run_folder``; one line when there is none."""
    run_folder = Path(run_folder)
    ckpt = run_folder / LAST
    if not (run_folder / CONFIG).is_file() or not ckpt.is_file():
        raise ConfigError(f"{run_folder} holds no chain search (no {CONFIG} and {LAST}): give the --out folder of a "
                          f"search of tools/search_chain.py")
    state = load_checkpoint(ckpt, kind=(CHECKPOINT_KIND, "chain-space search"))
    ChainSearcher.check_version(state, f"checkpoint {ckpt}")
    if int(state["step"]) < int(state.get("total_steps", math.inf)) or not (run_folder / "arch.json").is_file():
        raise ConfigError(f"the search in {run_folder} has not finished (step {state['step']} of "
                          f"{state.get('total_steps', '?')}): continue it with tools/search_chain.py --out {run_folder} "
                          f"--resume, then select")
    return state


def pareto_front(points: Sequence[dict]) -> List[int]:
    """Indices of the non-dominated points (no other has fewer or equal MACs and a higher or equal score,
    one of them strictly), in order of MACs."""
    order = sorted(range(len(points)), key=lambda i: (points[i]["macs"], -points[i]["score"]))
    front, best = [], -math.inf
    for i in order:
        if points[i]["score"] > best:
            front.append(i)
            best = points[i]["score"]
    return front


class Selection:
    """Rebuild the search of ``run_folder`` (no training), then select a network for each budget."""

    def __init__(self, run_folder: Path, cfg: SelectConfig, run: RunDir, dist: DistInfo, log, *, workers: int = 0,
                 speed: Optional[Speed] = None, latency: Optional[LatencyTable] = None, latency_source=None):
        self.folder, self.cfg, self.run, self.log = Path(run_folder), cfg, run, log
        state = finished_search(self.folder)
        saved = json.loads((self.folder / CONFIG).read_text())
        search_cfg = SearchConfig.from_dict({k: v for k, v in saved.items() if k != "args"})
        if cfg.calib_batches is not None:
            search_cfg.calib_batches = cfg.calib_batches
        search_cfg.world_size, search_cfg.accum_steps = dist.world_size, 1
        evolution = {k: v for k, v in (search_cfg.evolution or {}).items() if k != "seed"}
        cfg.evolution = {**evolution, **cfg.evolution}
        if cfg.method == "evolution":
            EvolutionConfig(**cfg.evolution)  # one line for bad settings, before any work
        data = saved.get("args", {}).get("data")
        splits, tf, self.data_desc = search_data(search_cfg, None if data is None else Path(data))
        if splits.classes != state["classes"]:
            raise CheckpointError(f"the data of {self.folder} ({data}) has other classes now than when it was searched")
        if latency is not None:
            latency.check_fits(latency_source, ChainSpace(search_cfg.slots), len(splits.classes), search_cfg.cost_size)
        elif any(b.latency_ms is not None for b in cfg.budgets):
            raise ConfigError("a latency budget (--latency-ms) needs --latency-table FILE")
        self.searcher = ChainSearcher(search_cfg, splits.train, tf.train, splits.score, splits.classes, dist, log,
                                      workers=workers, speed=speed, normalize=(tf.mean, tf.std), latency=latency)
        self.searcher.supernet.load_state_dict(state["model"])
        self.samplers = {b.name: self._sampler(b) for b in cfg.budgets}  # every budget checked before any work
        self.results: Dict[str, dict] = {}
        self.evolution_state: Optional[dict] = None  # of the budget under way

    def _sampler(self, b: Budget) -> PathSampler:
        s = self.searcher
        limits = []
        if b.params is not None:
            limits.append(Limit("params", s.table.params.astype(np.float64), s.table.fixed_params, b.params))
        if b.latency_ms is not None:
            limits.append(Limit("latency", s.latency.table, s.latency.fixed, b.latency_ms, "ms"))
        return PathSampler(s.table, b.macs, 0, limits, seed=self.cfg.seed, op_probs=s.cfg.op_probs)

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": KIND, "config": self.cfg.as_dict(), "results": self.results,
                **({"evolution": self.evolution_state} if self.evolution_state is not None else {})}

    def save(self) -> None:
        if is_main_process():
            save_checkpoint(self.state_dict(), self.run.last)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, kind=(KIND, "selection"))
        self.run.start(self.cfg.as_dict(), state.get("config", {}), source=f"checkpoint {path}")
        self.results = dict(state["results"])
        self.evolution_state = state.get("evolution")

    # ---- the selection ------------------------------------------------------------------------
    def select(self) -> dict:
        if self.run.resume is not None:
            self.load(self.run.resume)
        else:
            self.run.start(self.cfg.as_dict())
        for b in self.cfg.budgets:
            if b.name in self.results:
                continue
            self.log.info("budget %s: %s", b.name, self.samplers[b.name].describe())
            scored = self._evolve(b) if self.cfg.method == "evolution" else self._random(b)
            best = max(scored, key=lambda e: (e["score"], -e["macs"]))
            self.results[b.name] = {"budget": asdict(b), "best": best, "scored": scored}
            self.evolution_state = None
            self._write_budget(b, best)
            self.save()
        return self._write_pareto()

    def _evolve(self, b: Budget) -> List[dict]:
        s = self.searcher
        evo = s.evolution(EvolutionConfig(**self.cfg.evolution, seed=self.cfg.seed), self.samplers[b.name])
        if self.evolution_state is not None:
            evo.load_state_dict(self.evolution_state)
            self.log.info("budget %s: evolution resumed after generation %d", b.name, evo.generation)

        def checkpoint(e):  # every generation: a killed selection continues where it stopped
            self.evolution_state = e.state_dict()
            self.save()

        return s.evolve(evo, checkpoint)["scores"]

    def _random(self, b: Budget) -> List[dict]:
        s = self.searcher
        paths = list(dict.fromkeys(tuple(int(c) for c in p) for p in self.samplers[b.name].sample(self.cfg.samples)))
        scores = s.recalibrated_score(paths)
        return [{"path": list(p), "score": sc, "macs": int(s.table.path_macs(p))} for p, sc in zip(paths, scores)]

    def _write_budget(self, b: Budget, best: dict) -> None:
        from ..core.flops import count_macs
        from ..models import create_chain_model

        s, out = self.searcher, self.run.out / b.name
        path = tuple(best["path"])
        if not is_main_process():
            return
        arch = s.space.arch(path)
        export_weights(s, path, out / WEIGHTS, {"selection_score": best["score"], "budget": asdict(b)})
        cost = count_macs(create_chain_model("cydas_chain", arch, num_classes=len(s.classes)), s.cfg.cost_size)
        # supernet_path: the slots the weights came from (``path`` is the canonical one: skips last in a stage)
        info = {**arch.to_dict(), "supernet_path": [int(c) for c in path], "params": cost.params,
                "fvcore_macs": cost.fvcore_macs, "thop_macs": cost.thop_macs,
                "input_size": s.cfg.cost_size, "num_classes": len(s.classes), "score": best["score"],
                "score_metric": f"top-1 % on the {s.score_count} images held out of train/ that selected it, supernet "
                                f"weights, BN recalibrated on training batches",
                "chance": 100.0 / len(s.classes), "chosen_by": f"select_chain ({self.cfg.method})",
                "counter": s.cfg.counter,
                "budget": {"counter": s.cfg.counter, "max_macs": b.macs, "macs": int(s.table.path_macs(path)),
                           "max_params": b.params, "max_latency_ms": b.latency_ms},
                "weights": WEIGHTS, "supernet": str(self.folder), "data": self.data_desc}
        if s.latency is not None:
            info["latency_ms_estimate"] = float(s.latency.path_ms(np.asarray([path]))[0])
            info["latency_table"] = s.latency.describe()
        write_json(out / "arch.json", info)
        self.log.info("budget %s: %s | %.1fM MACs (%s), %.3fM params, score %.2f; %s", b.name, arch,
                      info["budget"]["macs"] / 1e6, s.cfg.counter, cost.params / 1e6, best["score"], out / "arch.json")

    def _write_pareto(self) -> dict:
        points, seen = [], set()
        for name, r in self.results.items():
            for e in r["scored"]:
                key = tuple(e["path"])
                if key not in seen:
                    seen.add(key)
                    points.append({**e, "budget": name})
        front = pareto_front(points)
        chosen = {name: r["best"] for name, r in self.results.items()}
        result = {"counter": self.searcher.cfg.counter, "metric": "top-1 % on held-out images of train/, BN "
                  "recalibrated", "points": points, "front": [points[i] for i in front], "selected": chosen}
        if is_main_process():
            write_json(self.run.out / "pareto.json", result)
            plot_pareto(points, front, chosen, self.searcher.cfg.counter, self.run.out / "pareto.png")
        return result


def plot_pareto(points: List[dict], front: List[int], chosen: Dict[str, dict], counter: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.checkpoint import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p["macs"] / 1e6 for p in points], [p["score"] for p in points], s=12, c="tab:gray", alpha=0.6,
               label=f"evaluated paths ({len(points)})")
    f = [points[i] for i in front]
    ax.plot([p["macs"] / 1e6 for p in f], [p["score"] for p in f], "-o", color="tab:red", ms=4, label="Pareto front")
    for name, e in chosen.items():
        ax.scatter([e["macs"] / 1e6], [e["score"]], s=90, facecolors="none", edgecolors="tab:blue")
        ax.annotate(name, (e["macs"] / 1e6, e["score"]), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xlabel=f"MACs at 224 ({counter}, M)", ylabel="held-out top-1 (%), BN recalibrated",
           title="networks selected from one supernet")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda fobj: fig.savefig(fobj, format="png", dpi=110))
    plt.close(fig)
