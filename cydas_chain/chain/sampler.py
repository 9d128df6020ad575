"""Uniform sampling of the paths that meet a budget.

The sampler draws exactly uniformly from the paths whose MACs (at the deployment resolution) lie in
``[min_macs, max_macs]`` and, optionally, whose parameters and latency stay under their limits.

Plain rejection from the whole space is exact but hopeless for small budgets (below ~170M MACs at
224 one uniform path in a million is feasible, while the space goes down to ~88M).  So proposals come
from a *relaxed* set that is counted exactly by dynamic programming: with per-layer MACs rounded
down to a quantum ``q``, the relaxed set ``S'`` = {paths whose rounded sum lies in a window} contains
every feasible path, and the DP draws uniformly from ``S'`` layer by layer (each choice with
probability proportional to the number of completions, with integer arithmetic).  Proposals outside
the exact budget (or the params / latency limits) are rejected, which leaves exactly the uniform
distribution on the feasible set.  With 2^14 quantisation levels nearly every proposal is feasible.

``op_probs`` (the released code's ``PRE_PROB``) replaces the uniform draw: each layer's choice is drawn
independently with these probabilities (ops, then ``SKIP``; renormalised over the choices a layer has),
and paths outside the limits are rejected.  That is the released sampler followed by the budget filter
the method describes (the released code itself filters nothing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from ..core.errors import BudgetError
from .cost import CostTable


@dataclass(frozen=True)
class Limit:
    """An upper limit on a per-layer additive cost (parameters, latency)."""

    name: str
    table: np.ndarray  # (layers, choices)
    fixed: float
    limit: float
    unit: str = ""

    def values(self, paths: np.ndarray) -> np.ndarray:
        paths = np.asarray(paths).reshape(-1, len(self.table))
        return self.fixed + self.table[np.arange(len(self.table)), paths].sum(1)

    def minimum(self, choice_mask: np.ndarray) -> float:
        return float(self.fixed + np.where(choice_mask, self.table, np.inf).min(1).sum())


def _fmt_m(macs: float) -> str:
    return f"{macs / 1e6:.1f}M"


class PathSampler:
    """Uniform (or op-probability) sampler of budget-feasible paths; seeded, with its state for checkpoints."""

    PROPOSALS = 256  # proposals per round (the draw sequence depends only on the seed)
    MAX_PROPOSALS = 1 << 22  # give up (infeasible limits) after this many proposals without a hit

    def __init__(self, table: CostTable, max_macs: int, min_macs: int = 0, limits: List[Limit] = (),
                 seed: int = 0, levels: int = 1 << 14, op_probs: Optional[Sequence[float]] = None):
        self.table, self.max_macs, self.min_macs, self.limits = table, int(max_macs), int(min_macs), list(limits)
        self.op_probs = None
        if op_probs is not None:
            probs = np.asarray(op_probs, dtype=np.float64)
            if probs.shape != (table.space.choice_mask.shape[1],) or (probs < 0).any() or probs[:-1].sum() <= 0:
                raise BudgetError(f"op probabilities must be {table.space.choice_mask.shape[1]} non-negative numbers "
                                  f"(the ops, then skip), got {list(op_probs)}")
            layer_probs = np.where(table.space.choice_mask, probs[None, :], 0.0)
            self.op_probs = layer_probs / layer_probs.sum(1, keepdims=True)
        self.space = space = table.space
        mask, num_layers = space.choice_mask, space.num_layers
        lo, hi = table.macs_range()
        size = f"{table.input_size[0]}x{table.input_size[1]}"
        if self.min_macs > self.max_macs:
            raise BudgetError(f"the minimum MACs {_fmt_m(self.min_macs)} exceed the maximum {_fmt_m(self.max_macs)}")
        if self.max_macs < lo or self.min_macs > hi:
            raise BudgetError(f"MACs budget {_fmt_m(self.min_macs)}..{_fmt_m(self.max_macs)} is outside the "
                              f"feasible range {_fmt_m(lo)}..{_fmt_m(hi)} of the chain space at {size}")
        for lim in self.limits:
            if lim.limit < lim.minimum(mask):
                raise BudgetError(f"{lim.name} limit {lim.limit:g}{lim.unit} is below the smallest "
                                  f"{lim.name} of the space, {lim.minimum(mask):g}{lim.unit}")
        self.rng = np.random.default_rng(seed)

        # Relaxed window on the quantised variable MACs (see module doc).
        var = np.where(mask, table.macs, 0)
        self.quantum = max(1, -(-int(var.max(1).sum()) // levels))
        self.q = var // self.quantum
        self.upper = min((self.max_macs - table.fixed_macs) // self.quantum, int(self.q.max(1).sum()))
        self.lower = max(0, -(-(self.min_macs - table.fixed_macs) // self.quantum) - num_layers)
        # cum[l][s]: number of choices for layers l.. whose quantised sum is <= s (cum[num_layers] = 1).
        cum = np.zeros((num_layers + 1, self.upper + 1), dtype=np.int64)
        cum[num_layers] = 1
        for layer in reversed(range(num_layers)):
            for c in np.flatnonzero(mask[layer]):
                shift = self.q[layer, c]
                cum[layer, shift:] += cum[layer + 1, :self.upper + 1 - shift]
        self.cum = cum
        self.relaxed_count = int(self._window(0, np.zeros(1, dtype=np.int64), self.lower, self.upper)[0])

    def _window(self, layer: int, prefix: np.ndarray, lo, hi) -> np.ndarray:
        """Completions from ``layer`` on whose quantised sum lies in [lo - prefix, hi - prefix]."""
        c = self.cum[layer]
        b = np.asarray(hi - prefix)
        a = np.asarray(lo - prefix) - 1
        top = np.where(b >= 0, c[np.clip(b, 0, self.upper)], 0)
        bottom = np.where(a >= 0, c[np.clip(a, 0, self.upper)], 0)
        return top - bottom

    def _propose(self, n: int) -> np.ndarray:
        """``n`` paths drawn uniformly from the relaxed set (or layer by layer from ``op_probs``)."""
        if self.op_probs is not None:
            u = self.rng.random((n, self.space.num_layers, 1))
            return (np.cumsum(self.op_probs, axis=1)[None] <= u).sum(2).clip(max=self.op_probs.shape[1] - 1)
        mask = self.space.choice_mask
        paths = np.zeros((n, self.space.num_layers), dtype=np.int64)
        prefix = np.zeros(n, dtype=np.int64)
        for layer in range(self.space.num_layers):
            q = self.q[layer]
            w = self._window(layer + 1, prefix[:, None] + q[None, :], self.lower, self.upper)
            w = np.where(mask[layer][None, :], w, 0)
            cw = np.cumsum(w, axis=1)
            r = self.rng.integers(0, cw[:, -1])  # exact integer draw, proportional to the counts
            choice = (cw > r[:, None]).argmax(1)
            paths[:, layer] = choice
            prefix += q[choice]
        return paths

    def feasible(self, paths: np.ndarray) -> np.ndarray:
        """Boolean mask of the paths (N, layers) within every limit."""
        macs = self.table.path_macs(paths)
        ok = (macs >= self.min_macs) & (macs <= self.max_macs)
        for lim in self.limits:
            ok &= lim.values(paths) <= lim.limit
        return ok

    def sample(self, n: Optional[int] = None) -> np.ndarray:
        """One path (shape (layers,)) or ``n`` paths (shape (n, layers)), i.i.d. uniform."""
        want = 1 if n is None else n
        if self.relaxed_count == 0 and self.op_probs is None:
            raise BudgetError(f"no path of the chain space has MACs in {_fmt_m(self.min_macs)}.."
                              f"{_fmt_m(self.max_macs)}")
        found, tried, batch = [], 0, max(self.PROPOSALS, 2 * want)
        while sum(len(f) for f in found) < want:
            if tried >= self.MAX_PROPOSALS and not any(len(f) for f in found):
                raise BudgetError(f"no path meets every limit ({self.describe()}) in {tried} "
                                  f"{'' if self.op_probs is None else 'op-probability '}proposals; relax a limit")
            p = self._propose(batch)
            tried += batch
            found.append(p[self.feasible(p)])
        paths = np.concatenate(found)[:want]
        return paths[0] if n is None else paths

    def describe(self) -> str:
        parts = [f"MACs {_fmt_m(self.min_macs)}..{_fmt_m(self.max_macs)}"]
        if self.op_probs is not None:
            parts.insert(0, "layer by layer with the op probabilities")
        parts += [f"{lim.name} <= {lim.limit:g}{lim.unit}" for lim in self.limits]
        return ", ".join(parts)

    # ---- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
