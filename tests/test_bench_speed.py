"""Smoke tests of the speed benchmarks on the CPU (small sizes): bench/gpu_check.py and bench/loader.py run
and report every figure they promise.  Their CPU figures are no benchmark (docs/gpu.md)."""
import json

import pytest

from conftest import ROOT, run_tool

pytestmark = pytest.mark.slow


def test_gpu_check_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    run_tool(ROOT / "bench" / "gpu_check.py", "--device", "cpu", "--models", "cydas_a", "mobilenetv3_large_100",
             "--variants", "fp32", "bf16+cl", "--batch-size", "4", "--img-size", "32", "--steps", "1",
             "--json", out, env={"OMP_NUM_THREADS": "1"}, check=True)
    r = json.loads(out.read_text())
    for model in ("cydas_a", "mobilenetv3_large_100"):
        for variant in ("fp32", "bf16+cl"):
            rates = r["networks"][model][variant]
            assert rates["train"] > 0 and rates["inference"] > rates["train"] / 10, (model, variant)
    s = r["search"]
    assert s["supernet_over_child"] > 0 and s["search_over_plain"] > 1  # a search step does more work
    assert 0 < s["path_macs"] <= 400e6 and s["table_paths_checked_per_s"] > 1e5 and s["sampler_paths_per_s"] > 0
    assert r["skipped"] == [] and "loader" not in r  # the loader only with --loader (default on a GPU)


def test_loader_bench_compares_the_pipelines(tmp_path):
    out = tmp_path / "loader.json"
    run_tool(ROOT / "bench" / "loader.py", "--data", tmp_path / "jpeg", "--images", "16", "--batch-size", "4",
             "--img-size", "32", "--workers", "0", "--epochs", "2", "--json", out, env={"OMP_NUM_THREADS": "1"},
             check=True)
    r = json.loads(out.read_text())
    (row,) = r["rows"]
    assert row["workers"] == 0 and row["before"]["later_epochs"] > 0 and row["now"]["later_epochs"] > 0
    assert row["ratio"] == pytest.approx(row["now"]["later_epochs"] / row["before"]["later_epochs"])
    assert len(list((tmp_path / "jpeg" / "train").rglob("*.jpg"))) == 16
