"""The run of a cell search: resume, metrics, the outputs after every epoch and at the end.  The
algorithm is :mod:`.searcher`'s (``CyclicSearcher``); the tool only turns flags into its config.

Outputs in the run folder (``--out``): ``genotype.json`` (the cell, after every epoch and at the end;
with a NAS-Bench-201 file, its benchmark accuracies), ``genotype_history.json``, ``alpha_history.json``,
the cell drawings (``normal.png`` / ``reduce.png``, NAS-Bench-201: ``cell.png``), ``metrics.csv``,
``tb/``, ``log.txt``, ``config.json``, ``checkpoints/last.pth``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.checkpoint import write_json
from ..core.distributed import get_world_size, is_main_process
from ..core.logging import MetricWriter
from ..core.run import RunDir
from .nb201_bench import BENCH_DATASETS, NB201Bench, format_accuracies
from .searcher import CyclicSearcher


def write_outputs(out: Path, searcher: CyclicSearcher, bench: Optional[NB201Bench] = None) -> None:
    genotype = searcher.search_net.genotype()
    extra, history = {}, searcher.genotype_history
    if bench is not None:
        extra["nas_bench_201"] = bench.found_or_none(genotype.arch_str())
        history = [{**h, "nas_bench_201": bench.found_or_none(h["genotype"]["arch_str"])} for h in history]
    write_json(out / "genotype.json", {**genotype.to_dict(), "epoch": searcher.epoch, **extra})
    write_json(out / "genotype_history.json", history)
    write_json(out / "alpha_history.json", [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in h.items()}
                                            for h in searcher.alpha_history])
    searcher.space.draw(genotype, out, searcher.epoch)


class CellSearchRun:
    """A cell search in a run folder (the caller checked its config): ``run()`` starts or continues it."""

    def __init__(self, searcher: CyclicSearcher, run_dir: RunDir, log, bench: Optional[NB201Bench] = None):
        self.searcher, self.run_dir, self.out, self.log, self.bench = searcher, run_dir, run_dir.out, log, bench

    def run(self):
        s = self.searcher
        metrics = MetricWriter(self.out)
        if self.run_dir.resume is not None:
            s.resume(self.run_dir.resume)
            metrics.truncate_after(s.epoch)
            self.log.info("resumed at epoch %d (step %d)", s.epoch, s.global_step)

        def on_epoch(epoch, m):
            g = s.search_net.genotype()
            found = self.bench.found_or_none(g.arch_str()) if self.bench is not None else None
            if found is not None:  # the cell of this cycle, as the benchmark knows it
                m = dict(m, **{f"nb201_{name}_{kind}": found[name][kind] for name in BENCH_DATASETS
                               for kind in ("valid", "test") if found[name][kind] is not None})
            metrics.write(epoch, m)
            if is_main_process():
                write_outputs(self.out, s, self.bench)
            self.log.info("epoch %d/%d %s | genotype %s", epoch, s.cfg.total_epochs,
                          " ".join(f"{k}={v:.4g}" for k, v in m.items()), g)
            if found is not None:
                self.log.info("NAS-Bench-201 cell %d, test accuracy: %s", found["index"], format_accuracies(found))

        genotype = s.run(checkpoint=self.run_dir.last, on_epoch=on_epoch)
        metrics.close()
        if get_world_size() > 1:
            self.log.info("the %d processes held the same weights at every checkpoint", get_world_size())
        if is_main_process():
            write_outputs(self.out, s, self.bench)
            self.log.info("final genotype written to %s", self.out / "genotype.json")
        return genotype
