"""The introspective teacher: a board of the best paths seen, the best of which is the teacher.

With ``size=1`` (the paper): the teacher starts as a random path within the budget; a sampled path
replaces it when it scores higher on the validation subset (both evaluated with the same current
weights) *and* its MACs are less than or equal to the teacher's.  With ``size=K`` (Cream's
prioritized board) the board keeps up to K paths; while it is not full every evaluated path enters,
afterwards a path enters by the same rule against the board's worst entry, which it replaces; the
teacher is the best-scoring entry.  Scores go stale as the weights train, so the caller re-scores the
board (:meth:`Board.rescore`) with the current weights before offering a candidate.

Pure Python, no torch: small and fully unit-tested.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import List, Sequence, Tuple


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


def beats(candidate: Entry, incumbent: Entry) -> bool:
    """The replacement rule: strictly higher score and no more MACs."""
    incumbent_score = -math.inf if math.isnan(incumbent.score) else incumbent.score
    return candidate.score > incumbent_score and candidate.macs <= incumbent.macs


class Board:
    """Up to ``size`` entries, best first; ``teacher`` is the best."""

    def __init__(self, initial: Entry, size: int = 1):
        if size < 1:
            raise ValueError(f"board size must be >= 1, got {size}")
        self.size = size
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

    def offer(self, candidate: Entry) -> bool:
        """Apply the rule to an evaluated candidate; True when it entered the board."""
        if candidate.path in self.paths():
            return False
        if len(self.entries) < self.size:
            self.entries.append(candidate)
        elif beats(candidate, self.entries[-1]):
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
