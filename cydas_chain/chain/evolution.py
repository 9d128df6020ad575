"""Evolutionary search over the paths of a trained supernet, within the budget (SPOS / OFA practice).

The population starts as uniform budget-feasible paths (the same sampler as the supernet training).
Each generation keeps the ``parents`` best paths seen so far and breeds new ones: a *mutation*
redraws each choice of a parent with probability ``mutation_prob`` (among the choices valid at that
slot), a *crossover* takes each choice from one of two parents at random.  A child that leaves the
budget (or a params / latency limit) or repeats a path already scored is redrawn.  ``score`` is any
function of a list of paths, here the supernet's validation accuracy after BN recalibration; it is
called once per new path, so the best score can only grow from one generation to the next.

Checkpointable: :meth:`Evolution.state_dict` after any generation (the caller's ``on_generation``
hook saves it) and :meth:`Evolution.load_state_dict` continue exactly where it stopped, so an evolution
killed mid-way and resumed gives the uninterrupted one's result.

Pure numpy around the score function: unit-tested on toy scores.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import ConfigError
from .sampler import PathSampler

Path = Tuple[int, ...]


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 50
    generations: int = 20
    parents: int = 10  # the best paths kept as parents of the next generation
    mutation_prob: float = 0.1  # chance of redrawing each choice of a mutated parent
    crossover_share: float = 0.5  # share of each new generation made by crossover (the rest by mutation)
    seed: int = 0

    def __post_init__(self):
        if self.population < 2 or self.generations < 1 or not 1 <= self.parents <= self.population:
            raise ConfigError(f"evolution needs population >= 2, generations >= 1 and 1 <= parents <= population, "
                              f"got {self.population}, {self.generations}, {self.parents}")
        if not 0.0 < self.mutation_prob <= 1.0 or not 0.0 <= self.crossover_share <= 1.0:
            raise ConfigError(f"mutation probability must be in (0, 1] and crossover share in [0, 1], got "
                              f"{self.mutation_prob} and {self.crossover_share}")

    def as_dict(self) -> dict:
        return asdict(self)


class Evolution:
    """One evolutionary search; ``run(score)`` returns the scored paths and per-generation history."""

    MAX_TRIES = 200  # redraws of one child before the generation is left short (tiny feasible sets)

    def __init__(self, sampler: PathSampler, cfg: EvolutionConfig = EvolutionConfig()):
        self.sampler, self.cfg = sampler, cfg
        self.rng = np.random.default_rng([cfg.seed, 11])
        self.mask = sampler.space.choice_mask
        self.scores: Dict[Path, float] = {}
        self.history: List[dict] = []
        self.population: List[Path] = []  # the generation to score next
        self.generation = 0  # generations finished

    def _feasible(self, path: np.ndarray) -> bool:
        return bool(self.sampler.feasible(path[None])[0])

    def _mutate(self, parent: Path) -> np.ndarray:
        child = np.array(parent)
        redraw = self.rng.random(len(child)) < self.cfg.mutation_prob
        for layer in np.flatnonzero(redraw):
            child[layer] = self.rng.choice(np.flatnonzero(self.mask[layer]))
        return child

    def _crossover(self, a: Path, b: Path) -> np.ndarray:
        take_b = self.rng.random(len(a)) < 0.5
        return np.where(take_b, np.array(b), np.array(a))

    def _children(self, n: int, make, taken: set) -> List[Path]:
        """``n`` new feasible paths from ``make()``, none scored before or already in ``taken``."""
        out: List[Path] = []
        for _ in range(n):
            for _ in range(self.MAX_TRIES):
                child = make()
                key = tuple(int(c) for c in child)
                if key not in self.scores and key not in taken and self._feasible(child):
                    out.append(key)
                    taken.add(key)
                    break
        return out

    def run(self, score: Callable[[Sequence[Path]], Sequence[float]], log: Callable[[str], None] = None,
            on_generation: Optional[Callable[["Evolution"], None]] = None) -> dict:
        """Score and breed generations up to ``cfg.generations`` (from where a loaded state stopped);
        ``on_generation(self)`` after each (e.g. to save :meth:`state_dict`)."""
        cfg = self.cfg
        if self.generation == 0 and not self.population:
            self.population = list(dict.fromkeys(tuple(int(c) for c in p) for p in self.sampler.sample(cfg.population)))
        while self.generation < cfg.generations:
            gen = self.generation
            new = [p for p in self.population if p not in self.scores]
            for p, s in zip(new, score(new)):
                self.scores[p] = float(s)
            ranked = self._ranked()
            best = ranked[0]
            self.history.append({"generation": gen, "evaluated": len(self.scores), "best_score": self.scores[best],
                                 "best_path": list(best), "best_macs": int(self.sampler.table.path_macs(best)),
                                 "mean_top": float(np.mean([self.scores[p] for p in ranked[:cfg.parents]]))})
            if log is not None:
                log(f"evolution generation {gen + 1}/{cfg.generations}: best {self.scores[best]:.2f} "
                    f"({self.history[-1]['best_macs'] / 1e6:.1f}M MACs), {len(self.scores)} paths scored")
            self.generation += 1
            if self.generation < cfg.generations:
                parents = ranked[:cfg.parents]
                n_cross = int(round(cfg.crossover_share * cfg.population)) if len(parents) > 1 else 0
                pick = lambda k: [parents[i] for i in self.rng.choice(len(parents), k, replace=False)]  # noqa: E731
                taken: set = set()
                self.population = (self._children(n_cross, lambda: self._crossover(*pick(2)), taken)
                                   + self._children(cfg.population - n_cross, lambda: self._mutate(*pick(1)), taken))
            if on_generation is not None:
                on_generation(self)
        ranked = self._ranked()
        return {"config": cfg.as_dict(), "history": self.history,
                "top": [{"path": list(p), "score": self.scores[p], "macs": int(self.sampler.table.path_macs(p))}
                        for p in ranked[:cfg.parents]],
                "scores": [{"path": list(p), "score": s, "macs": int(self.sampler.table.path_macs(p))}
                           for p, s in self.scores.items()]}

    def _ranked(self) -> List[Path]:
        return sorted(self.scores, key=lambda p: (-self.scores[p], int(self.sampler.table.path_macs(p))))

    # ---- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"config": self.cfg.as_dict(), "generation": self.generation,
                "population": [list(p) for p in self.population],
                "scores": [[list(p), s] for p, s in self.scores.items()], "history": [dict(h) for h in self.history],
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self.cfg.as_dict():
            raise ConfigError(f"the saved evolution was run with other settings ({state['config']}, now "
                              f"{self.cfg.as_dict()})")
        self.generation = int(state["generation"])
        self.population = [tuple(int(c) for c in p) for p in state["population"]]
        self.scores = {tuple(int(c) for c in p): float(s) for p, s in state["scores"]}
        self.history = [dict(h) for h in state["history"]]
        self.rng.bit_generator.state = state["rng"]
