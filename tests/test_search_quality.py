"""bench/search_quality.py end to end on a tiny data set (every section present, numbers finite, plot
written), and its one-line errors.  The statistics themselves are tested in test_stats.py."""
import json
import math

import pytest

pytest.importorskip("scipy")

from conftest import ROOT, assert_one_line_error, run_tool  # noqa: E402

pytestmark = pytest.mark.slow
BENCH = ROOT / "bench" / "search_quality.py"
TINY = ["--paths", "3", "--seeds", "2", "--train-epochs", "1", "--train-batch", "32", "--epochs", "1",
        "--batch-size", "32", "--eval-interval", "1", "--population", "2", "--generations", "1", "--parents", "1",
        "--calib-batches", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """13 train + 4 val digits per class, no test/ (the bench splits val/ in two)."""
    from PIL import Image

    from cydas_chain.core.data import load_digits_array

    root = tmp_path_factory.mktemp("digits")
    images, labels = load_digits_array()
    for c in range(10):
        idx = [i for i in range(len(labels)) if labels[i] == c][:17]
        for k, i in enumerate(idx):
            d = root / ("train" if k < 13 else "val") / str(c)
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").save(d / f"{i}.png")
    return root


def _finite_numbers(obj, where="json"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _finite_numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _finite_numbers(v, f"{where}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield where, obj


def test_tiny_run(tiny_data, tmp_path):
    out = tmp_path / "sq"
    # First the ground truth alone (--yardstick): the random paths and the space's two ends, no supernet.
    proc = run_tool(BENCH, "--data", tiny_data, "--out", out, *TINY, "--yardstick", check=True, timeout=300)
    assert "the recipe rewards" in proc.stdout and not list(out.glob("supernet_*"))
    yard = json.loads((out / "yardstick.json").read_text())
    _check_yardstick(yard)
    assert (out / "yardstick.png").stat().st_size > 10_000
    # the full run reuses its 3 x 2 random trainings (the ends are not part of the full run)
    proc = run_tool(BENCH, "--data", tiny_data, "--out", out, *TINY, check=True, timeout=300)
    assert "reused 6 finished job(s)" in proc.stdout
    assert "(a) ranking" in proc.stdout and "(b) selection" in proc.stdout
    res = json.loads((out / "search_quality.json").read_text())
    assert {"meta", "settings", "ranking", "seed_spread", "selection", "random_paths", "supernets"} <= set(res)
    for name in ("distill", "no_distill"):
        for kind in ("score", "recalibrated", "loss"):
            r = res["ranking"][name][kind]
            assert set(r["test"]) == set(r["test_loss"]) == {"tau", "p", "rho", "p_rho"}
            assert len(r["test_per_search_seed"]) == 2
            # tiny trainings may tie (constant accuracies make tau undefined: null); defined ones are in range
            assert all(v is None or -1 <= v <= 1 for v in (r["test"]["tau"], r["test"]["rho"],
                                                           r["search_seed_agreement"]))
    assert len(res["random_paths"]) == 3
    for e in res["random_paths"]:
        assert len(e["test"]) == len(e["val"]) == len(e["test_loss"]) == 2 and e["macs"] <= 400e6
        assert all(v > 0 for v in e["test_loss"])
        for name in ("distill", "no_distill"):  # one score per search seed
            assert len(e[f"{name}_score"]) == len(e[f"{name}_recalibrated"]) == len(e[f"{name}_loss"]) == 2
            assert all(0 <= v <= 100 for v in e[f"{name}_score"] + e[f"{name}_recalibrated"])
            assert all(v > 0 for v in e[f"{name}_loss"])
    sel = res["selection"]
    # the distilled supernet's picks of each of the two searches (the other supernet's when trained anyway)
    assert {f"distill/{w}/seed{s}" for w in ("teacher", "evolution") for s in (0, 1)} <= set(sel["searched"])
    for e in sel["searched"].values():
        assert 1 <= e["rank_test"]["rank"] <= 4 and e["rank_test"]["of"] == 4 and e["macs"] <= 400e6
    for which in ("teacher", "evolution"):
        m = sel["searched_mean"][f"distill/{which}"]
        picks = [sel["searched"][f"distill/{which}/seed{s}"] for s in (0, 1)]
        assert m["searches"] == 2
        assert m["test"]["mean"] == pytest.approx(sum(sum(p["test"]) / 2 for p in picks) / 2)
        assert m["beaten_mean"] == pytest.approx(sum(p["rank_test"]["beaten"] for p in picks) / 2)
    assert set(res["seed_spread"]["test"]) >= {"mean_abs_diff", "within_std", "between_std"}
    half = res["seed_spread"]["split_half_test"]  # with 2 seeds: seed 0 against seed 1
    assert half["halves"] == res["seed_spread"]["split_half_test_loss"]["halves"] == [[0], [1]]
    if half["tau"] is not None:
        from cydas_chain.core.stats import kendall_tau
        tau = kendall_tau([e["test"][0] for e in res["random_paths"]], [e["test"][1] for e in res["random_paths"]])
        assert half["tau"] == pytest.approx(tau["tau"]) == pytest.approx(res["seed_spread"]["seed_pairs_test_tau"])
    numbers = list(_finite_numbers({k: res[k] for k in ("selection", "random_paths", "supernets")}))
    assert numbers and all(math.isfinite(v) for _, v in numbers)
    assert all(math.isfinite(v) for _, v in _finite_numbers(res["seed_spread"]["test"]))
    assert (out / "search_quality.png").stat().st_size > 10_000

    # Rerun after a lost job (as if killed while it ran): every other finished job is reused, the lost
    # one runs again, and the numbers are the same.
    jobs = sorted((out / "jobs").glob("*.json"))
    trainings = [p for p in jobs if p.name.startswith("train_job_")]
    # 2 supernets x 2 seeds; 3 paths x 2 seeds, the 2 ends x 2 seeds of the yardstick, the picks
    assert len(jobs) - len(trainings) == 4 and len(trainings) >= 10
    used = len(jobs) - 4  # the full run does not train the ends
    randoms = [e["path"] for e in res["random_paths"]]
    next(t for t in trainings if json.loads(t.read_text())["job"]["path"] in randoms).unlink()
    proc = run_tool(BENCH, "--data", tiny_data, "--out", out, *TINY, check=True, timeout=300)
    assert f"reused {used - 1} finished job(s)" in proc.stdout
    again = json.loads((out / "search_quality.json").read_text())
    assert again["meta"]["reused_jobs"] == used - 1
    for k in ("ranking", "selection", "random_paths", "seed_spread"):
        assert _without_seconds(again[k]) == _without_seconds(res[k])


def _check_yardstick(yard):
    """The numbers of a --yardstick run recomputed from its own per-seed results."""
    import numpy as np

    from cydas_chain.chain import build_cost_table
    from cydas_chain.core import stats
    from cydas_chain.models import DEFAULT_SLOTS, ChainSpace

    table = build_cost_table(ChainSpace(DEFAULT_SLOTS), 10, 224)
    ends = yard["ends"]
    assert (ends["smallest"]["macs"], ends["largest"]["macs"]) == table.macs_range()  # the whole space's ends
    assert ends["smallest"]["layers"] == 5 and ends["largest"]["layers"] == ChainSpace(DEFAULT_SLOTS).num_layers
    assert len(yard["random_paths"]) == 3 and all(e["macs"] <= 400e6 for e in yard["random_paths"])
    test = [e["test"] for e in yard["random_paths"]]
    assert yard["seed_spread"]["test"] == pytest.approx(stats.seed_spread(test))
    assert yard["random"]["test"]["mean"] == pytest.approx(float(np.mean(test)))
    gap = yard["ends_difference"]["test"]
    assert gap["diff"] == pytest.approx(np.mean(ends["largest"]["test"]) - np.mean(ends["smallest"]["test"]))
    if gap["p"] is not None and gap["p"] < 0.05:
        assert yard["verdict"]["rewards"].startswith("capacity" if gap["diff"] > 0 else "fast training")
    else:
        assert yard["verdict"]["rewards"].startswith("neither")
    for e in ends.values():
        assert len(e["test"]) == len(e["train_top1_last"]) == 2 and e["rank_test"]["of"] == 4


def _without_seconds(obj):
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_quality", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_embedded_noisy_digits(tmp_path):
    """The default data: the 1,797 digits split 60/20/20 with seeded pixel noise, train and test drawn
    several times; reused when the settings match, rewritten (no stale images) when they do not."""
    import numpy as np
    from PIL import Image

    sq = _bench_module()
    args = sq.build_parser().parse_args(["--out", str(tmp_path), "--draws", "2", "3"])
    spec = sq.prepare_data(args)
    root = tmp_path / "data"
    counts = {s: len(list((root / s).rglob("*.png"))) for s in ("train", "val", "test")}
    assert counts["train"] // 2 + counts["val"] == 1797 - 359 and counts["test"] == 3 * 359
    assert abs(counts["train"] // 2 - 0.6 * 1797) < 10 and counts["train"] % 2 == 0
    first = sorted((root / "test" / "3").glob("*.png"))[:3]  # one digit's three draws: same digit, other noise
    assert [p.name.split("_")[0] for p in first] == [first[0].name.split("_")[0]] * 3
    a, b = (np.asarray(Image.open(p), dtype=float) for p in first[:2])
    assert 0 < np.abs(a - b).mean() and "noise std 96" in spec["desc"]
    mtime = (root / "dataset.json").stat().st_mtime_ns
    sq.prepare_data(args)
    assert (root / "dataset.json").stat().st_mtime_ns == mtime  # reused
    clean = sq.prepare_data(sq.build_parser().parse_args(["--out", str(tmp_path), "--noise", "0"]))
    assert len(list((root / "test").rglob("*.png"))) == 359 and "noise" not in clean["desc"]


def test_bad_input(tmp_path):
    proc = run_tool(BENCH, "--data", tmp_path / "nowhere", "--out", tmp_path / "o", timeout=120)
    assert_one_line_error(proc, "needs train/")
    proc = run_tool(BENCH, "--paths", "1", "--out", tmp_path / "o", timeout=120)
    assert_one_line_error(proc, "--paths")
    proc = run_tool(BENCH, "--noise", "300", "--out", tmp_path / "o", timeout=120)
    assert_one_line_error(proc, "--noise")
    proc = run_tool(BENCH, "--draws", "0", "3", "--out", tmp_path / "o", timeout=120)
    assert_one_line_error(proc, "--draws")
    proc = run_tool(BENCH, "--flops", "10", "--out", tmp_path / "o", timeout=120)
    assert_one_line_error(proc, "budget")
