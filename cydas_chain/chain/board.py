"""The introspective teacher: a board of the best paths seen, the best of which is the teacher.

With ``size=1`` (the paper): the teacher starts as a random path within the budget; a sampled path
replaces it when it scores higher on the validation subset (both evaluated with the same current
weights) *and* its MACs are less than or equal to the teacher's.  With ``size=K`` (Cream's
prioritized board) the board keeps up to K paths; while it is not full every evaluated path enters,
afterwards a path enters by the same rule against the board's worst entry, which it replaces; the
teacher is the best-scoring entry.  Scores go stale as the weights train, so the caller re-scores the
board (:meth:`Board.rescore`) with the current weights before offering a candidate.

Scores on a validation subset are noisy: with 360 images one image is 0.3 points, and two paths of
one supernet disagree on a few dozen images at most.  So by default a candidate must also win a
*paired* test on the same images (:class:`ReplacementRule`): the exact one-sided McNemar test on the
images where the two paths disagree (``wins``: the candidate right and the incumbent wrong,
``losses``: the reverse; under "equally good" wins ~ Binomial(wins + losses, 1/2)).  A paired test
uses what a fixed margin ignores: both paths are scored on the same images, and what matters is how
often they disagree, which a margin in points cannot know.  ``ReplacementRule("none")`` is the
paper's bare rule.

Pure Python, no torch: small and fully unit-tested.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    path: Tuple[int, ...]
    macs: int
    score: float = math.nan  # NaN: not evaluated yet
    step: int = 0

    def as_dict(self) -> dict:
        """Plain values; an unmeasured score is None."""
        return {**asdict(self), "path": list(self.path), "score": None if math.isnan(self.score) else self.score}

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        score = math.nan if d["score"] is None else float(d["score"])
        return cls(tuple(int(c) for c in d["path"]), int(d["macs"]), score, int(d["step"]))


def _rank_key(e: Entry):
    """Best first: higher score, then fewer MACs, then the older entry."""
    score = -math.inf if math.isnan(e.score) else e.score
    return (-score, e.macs, e.step)


def beats(candidate: Entry, incumbent: Entry, gap: Optional[float] = None, strictly_fewer: bool = False) -> bool:
    """The paper's replacement rule: strictly higher score and no more MACs (``strictly_fewer``: fewer, as the
    released code's ``isUpdate``); with a ``gap`` (the released code's ``acc_gap``; None: none), also a score
    more than ``gap`` points higher at any MACs."""
    incumbent_score = -math.inf if math.isnan(incumbent.score) else incumbent.score
    fewer = candidate.macs < incumbent.macs if strictly_fewer else candidate.macs <= incumbent.macs
    if fewer and candidate.score > incumbent_score:
        return True
    return gap is not None and candidate.score > incumbent_score + gap


def gap_points(text: str) -> Optional[float]:
    """A command line's replacement gap: points, or ``none`` (also ``inf``, ``never``) for no replacement
    at more MACs, kept as None so that it round-trips through a run's config.json."""
    return None if text.strip().lower() in ("none", "inf", "never") else float(text)


def mcnemar_p(wins: int, losses: int) -> float:
    """One-sided exact McNemar p-value: P(X >= wins) for X ~ Binomial(wins + losses, 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


TESTS = ("mcnemar", "none")


@dataclass(frozen=True)
class ReplacementRule:
    """The paper's rule (higher score, no more MACs), the released code's escape for a much better path
    with more MACs (``gap`` points; None: none) and, with ``test="mcnemar"``, a paired test on the same
    validation images at level ``alpha``."""

    test: str = "mcnemar"
    alpha: float = 0.05
    gap: Optional[float] = None
    strictly_fewer: bool = False

    def __post_init__(self):
        if self.test not in TESTS:
            raise ConfigError(f"replacement test must be one of {', '.join(TESTS)}, got {self.test!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"the test level alpha must be in (0, 1], got {self.alpha}")
        if self.gap is not None and not self.gap >= 0:
            raise ConfigError(f"the replacement gap must be >= 0 points (none: never at more MACs), got {self.gap}")

    def accepts(self, candidate: Entry, incumbent: Entry, wins: int, losses: int) -> bool:
        """Whether ``candidate`` replaces ``incumbent``; ``wins``/``losses``: the images only the
        candidate / only the incumbent got right (ignored by ``test="none"``)."""
        if not beats(candidate, incumbent, self.gap, self.strictly_fewer):
            return False
        if self.test == "none" or math.isnan(incumbent.score):
            return True
        return mcnemar_p(wins, losses) < self.alpha


class Board:
    """Up to ``size`` entries, best first; ``teacher`` is the best."""

    def __init__(self, initial: Entry, size: int = 1, rule: ReplacementRule = ReplacementRule()):
        if size < 1:
            raise ValueError(f"board size must be >= 1, got {size}")
        self.size, self.rule = size, rule
        self.entries: List[Entry] = [initial]
        self.history: List[dict] = [{**initial.as_dict(), "event": "init"}]

    @property
    def teacher(self) -> Entry:
        return self.entries[0]

    def paths(self) -> List[Tuple[int, ...]]:
        return [e.path for e in self.entries]

    def rescore(self, scores: Sequence[float]) -> None:
        """New scores of the entries (in board order), measured with the current weights."""
        if len(scores) != len(self.entries):
            raise ValueError(f"{len(scores)} scores for {len(self.entries)} board entries")
        self.entries = sorted((replace(e, score=float(s)) for e, s in zip(self.entries, scores)), key=_rank_key)

    def offer(self, candidate: Entry, disagreements: Optional[Dict[Tuple[int, ...], Tuple[int, int]]] = None) -> bool:
        """Apply the rule to an evaluated candidate; True when it entered the board.

        ``disagreements[path]`` = (wins, losses) of the candidate against the board entry of ``path``
        on the same validation images (needed by the paired test)."""
        if candidate.path in self.paths():
            return False
        if len(self.entries) < self.size:
            self.entries.append(candidate)
        elif self.rule.accepts(candidate, self.entries[-1], *(disagreements or {}).get(self.entries[-1].path, (0, 0))):
            self.entries[-1] = candidate
        else:
            return False
        self.entries.sort(key=_rank_key)
        self.history.append({**candidate.as_dict(), "event": "teacher" if self.teacher == candidate else "board"})
        return True

    # ---- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"size": self.size, "entries": [e.as_dict() for e in self.entries],
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.size = int(state["size"])
        self.entries = [Entry.from_dict(d) for d in state["entries"]]
        self.history = [dict(h) for h in state["history"]]

    def teacher_history(self) -> List[dict]:
        """The entries that became the teacher, in order (the initial one first)."""
        return [h for h in self.history if h["event"] in ("init", "teacher")]
