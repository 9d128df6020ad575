"""``search.png``: the teacher's history and the evaluated paths' score against MACs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List


def plot_search(history: List[dict], evaluations: List[dict], cfg, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.checkpoint import atomic_write

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    # Left: the teacher's score (as measured at each evaluation) and MACs over the steps.
    steps = [e["step"] for e in evaluations]
    if evaluations:
        ax1.step(steps, [e["teacher_score"] for e in evaluations], where="post", color="tab:blue",
                 label="teacher score (before the rule)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("validation-subset top-1 (%)", color="tab:blue")
    ax1b = ax1.twinx()
    teacher = [h for h in history if h["event"] in ("init", "teacher")]
    last = max(steps[-1] if steps else 0, teacher[-1]["step"])
    xs = [h["step"] for h in teacher] + [last]
    ax1b.step(xs, [h["macs"] / 1e6 for h in teacher] + [teacher[-1]["macs"] / 1e6], where="post",
              color="tab:red", label="teacher MACs")
    ax1b.set_ylabel("teacher MACs (M)", color="tab:red")
    ax1.set_title(f"teacher history ({len(teacher) - 1} replacements)")
    # Right: every evaluated path, score vs MACs, coloured by step; teachers circled.
    if evaluations:
        sc = ax2.scatter([e["macs"] / 1e6 for e in evaluations], [e["score"] for e in evaluations],
                         c=steps, cmap="viridis", s=14)
        fig.colorbar(sc, ax=ax2, label="step")
    scored = [h for h in teacher if h["score"] is not None and not math.isnan(h["score"])]
    ax2.scatter([h["macs"] / 1e6 for h in scored], [h["score"] for h in scored], facecolors="none",
                edgecolors="tab:red", s=60, label="became teacher")
    ax2.axvline(cfg.max_macs / 1e6, color="gray", ls="--", lw=1, label="budget")
    if cfg.min_macs:
        ax2.axvline(cfg.min_macs / 1e6, color="gray", ls="--", lw=1)
    ax2.set_xlabel(f"MACs at {cfg.cost_size}x{cfg.cost_size} (M)")
    ax2.set_ylabel("validation-subset top-1 (%)")
    ax2.set_title("sampled paths")
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
