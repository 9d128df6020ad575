"""Train once, select many (tools/select_chain.py), latency tables from another machine
(tools/latency_table.py), and the weights every selection exports: in timm, in the mm backbone, as the
start of a retraining."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, kill_at_first_checkpoint, run_tool
from cydas_chain.core.data import make_shapes_folder

pytestmark = pytest.mark.slow
ENV = {"OMP_NUM_THREADS": "1"}
SEARCH = ["tools/search_chain.py", "--flops", "450", "--epochs", "3", "--batch-size", "12", "--img-size", "16",
          "--eval-interval", "3", "--holdout", "0.25", "--workers", "0", "--calib-batches", "2", "--device", "cpu"]
SELECT = ["--population", "4", "--generations", "3", "--parents", "2", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("shapes"), train_per_class=8, val_per_class=2, image_size=16)


@pytest.fixture(scope="module")
def searched(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    run_tool(*SEARCH, "--data", data, "--out", out, env=ENV, check=True)
    return out


@pytest.fixture(scope="module")
def selected(searched):
    run_tool("tools/select_chain.py", searched, "--flops", "250", "350", *SELECT, env=ENV, check=True)
    return searched / "select"


def error_line(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def test_every_budget_gets_a_network_within_it_and_the_front_is_non_dominated(selected):
    for budget, limit in (("flops250", 250e6), ("flops350", 350e6)):
        arch = json.loads((selected / budget / "arch.json").read_text())
        assert arch["budget"]["macs"] == arch["thop_macs"] <= limit and arch["counter"] == "thop"
        assert (selected / budget / "weights.pth").is_file()
    pareto = json.loads((selected / "pareto.json").read_text())
    points, front = pareto["points"], pareto["front"]
    assert len(points) >= len(front) >= 1 and (selected / "pareto.png").stat().st_size > 10_000

    def dominates(a, b):
        return a["macs"] <= b["macs"] and a["score"] >= b["score"] and (a["macs"], a["score"]) != (b["macs"], b["score"])

    assert not any(dominates(p, f) for f in front for p in points)  # nothing beats a front point
    assert all(p in front or any(dominates(f, p) for f in front) for p in points)  # the rest is beaten
    best350 = json.loads((selected / "flops350" / "arch.json").read_text())["score"]
    assert best350 == max(p["score"] for p in points if p["budget"] == "flops350")


def test_exported_weights_are_the_supernet_path_and_load_in_timm_and_mm(searched, selected, data):
    """The weights of a selection: logits equal to the supernet path's after the same recalibration (rebuilt
    from the run folder), and the same network in timm (pretrained file) and as the mm backbone (init_cfg)."""
    import timm

    import cydas_chain  # noqa: F401
    from cydas_chain.chain.select import Budget, SelectConfig, Selection
    from cydas_chain.core.distributed import DistInfo
    from cydas_chain.core.logging import get_logger
    from cydas_chain.core.run import RunDir

    arch_file, weights = selected / "flops350" / "arch.json", selected / "flops350" / "weights.pth"
    arch = json.loads(arch_file.read_text())
    n = arch["num_classes"]  # (timm keeps a file's classifier when the overlay names its classes)
    model = timm.create_model("cydas_chain", arch=str(arch_file), num_classes=n, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(weights), num_classes=n)).eval()
    rebuilt = Selection(searched, SelectConfig([Budget(int(350e6))]), RunDir(searched / "unused"), DistInfo(),
                        get_logger("test_select"))
    child = rebuilt.searcher.child(arch["supernet_path"])  # the same recalibration on the same training batches
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), child(x), atol=1e-5, rtol=1e-5)
    mm = pytest.importorskip("cydas_chain.mm")  # noqa: F841
    from cydas_chain.mm.backbone import CyDAS

    backbone = CyDAS(str(arch_file), out_indices=(2, 4), init_cfg=dict(type="Pretrained", checkpoint=str(weights)))
    backbone.init_weights()
    backbone.eval()
    features = timm.create_model("cydas_chain", arch=str(arch_file), features_only=True, out_indices=(2, 4),
                                 pretrained=True, pretrained_cfg_overlay=dict(file=str(weights))).eval()
    with torch.no_grad():
        for a, b in zip(backbone(x), features(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_train_cls_starts_from_the_exported_weights(selected, data, tmp_path):
    """--init-weights: with a learning rate of 0 (the cosine's floor is 1e-6) a training epoch leaves the parameters
    as the file has them, where the network's own initialisation is far from them."""
    arch_file, weights = selected / "flops250" / "arch.json", selected / "flops250" / "weights.pth"
    out = tmp_path / "retrain"
    run_tool("tools/train_cls.py", "--arch", arch_file, "--init-weights", weights, "--data", data, "--out", out,
             "--epochs", "1", "--batch-size", "8", "--img-size", "16", "--lr", "0", "--warmup-epochs", "0", "--aa",
             "none", "--no-ema", "--workers", "0", "--device", "cpu", env=ENV, check=True)
    trained = torch.load(out / "checkpoints" / "last.pth", weights_only=True)["state_dict"]
    start = torch.load(weights, weights_only=True)["state_dict"]
    params = [k for k in trained if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(params) > 100
    assert max((trained[k] - start[k]).abs().max().item() for k in params) < 1e-4
    import timm

    import cydas_chain  # noqa: F401
    fresh = timm.create_model("cydas_chain", arch=str(arch_file), num_classes=10).state_dict()
    assert max((fresh[k] - start[k]).abs().max().item() for k in params) > 0.1


def test_a_latency_table_measured_in_one_process_serves_another_and_both_ranks(data, tmp_path):
    table = tmp_path / "cpu.json"
    run_tool("tools/latency_table.py", "--out", table, "--input-size", "224", "--num-classes", "10", "--repeats", "1",
             env=ENV, check=True)
    t = json.loads(table.read_text())
    assert t["input_size"] == [224, 224] and t["num_classes"] == 10 and t["batch"] == 1 and t["torch"]
    ops = np.asarray(t["table"])[:, :6]
    limit = t["fixed"] + 1.5 * ops.min(1).sum()  # a latency budget that some paths meet and many do not
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *SEARCH,
           "--data", str(data), "--out", str(out), "--latency-table", str(table), "--latency", f"{limit:.3f}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "measuring" not in proc.stderr  # both ranks use the file's table, none is measured here
    arch = json.loads((out / "arch.json").read_text())
    assert arch["latency_ms_estimate"] <= limit and "CPU" in arch["latency_table"]


def test_an_evolution_killed_mid_way_resumes_to_the_uninterrupted_result(searched, selected, tmp_path):
    out = tmp_path / "select"
    args = ["tools/select_chain.py", searched, "--flops", "250", "350", *SELECT, "--out", out]
    state = kill_at_first_checkpoint(args, out / "checkpoints" / "last.pth", env=ENV,
                                     until=lambda s: "evolution" in s and s["evolution"]["generation"] >= 1)
    assert state["evolution"]["generation"] < 3  # killed inside an evolution
    run_tool(*args, "--resume", env=ENV, check=True)
    for name in ("pareto.json", "flops250/arch.json", "flops350/arch.json"):
        got, ref = json.loads((out / name).read_text()), json.loads((selected / name).read_text())
        assert got == ref, name


def test_bad_input_is_one_line_and_writes_nothing(searched, data, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert "holds no chain search" in error_line(run_tool("tools/select_chain.py", unfinished, "--flops", "300",
                                                          env=ENV))
    assert not (unfinished / "select").exists()
    out = ["--out", tmp_path / "sel"]
    assert "outside the feasible range" in error_line(run_tool("tools/select_chain.py", searched, "--flops", "50",
                                                               *out, env=ENV))
    other = tmp_path / "other.json"
    run_tool("tools/latency_table.py", "--out", other, "--input-size", "64", "--num-classes", "10", "--repeats", "1",
             env=ENV, check=True)
    assert "measured at 64x64" in error_line(run_tool("tools/select_chain.py", searched, "--flops", "300",
                                                      "--latency-table", other, "--latency-ms", "20", *out, env=ENV))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "cydas_chain/latency_table", "table": [[1, 2]]}')
    assert "is malformed" in error_line(run_tool("tools/select_chain.py", searched, "--flops", "300",
                                                 "--latency-table", bad, "--latency-ms", "20", *out, env=ENV))
    bad.write_text("{not json")
    assert "not valid JSON" in error_line(run_tool("tools/search_chain.py", "--data", data, "--flops", "300",
                                                   "--latency-table", bad, "--latency", "20", *out, env=ENV))
    assert not (tmp_path / "sel").exists()
