"""What the mm end-to-end tests share: running tools/train.py and reading mmengine's json logs."""
import json
from pathlib import Path

from conftest import run_tool

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny convolutions on shared cores: one thread is much faster


def train(cfg, work_dir, data_root, *options, resume=False):
    args = ["tools/train.py", cfg, "--work-dir", work_dir, "--data-root", data_root]
    args += ["--resume"] if resume else []
    return run_tool(*args, "--cfg-options", *options, env=ONE_THREAD, check=True)


def read_json_logs(work_dir: Path):
    """Per run (oldest first): the records of mmengine's json log (<work_dir>/<time>/vis_data/<time>.json)."""
    runs = []
    for run in sorted(p for p in work_dir.iterdir() if p.is_dir()):
        log = run / "vis_data" / f"{run.name}.json"
        if log.is_file():
            runs.append([json.loads(line) for line in log.read_text().splitlines() if line.strip()])
    return runs
