"""NAS-Bench-201: the benchmark's cell strings, reading its API file, tools/nb201_lookup.py, and
tools/search_cell.py --nb201-api.

The benchmark's file (NAS-Bench-201-v1_1-096897.pth, 4.7 GB) cannot be downloaded here.  The tests
write tiny files in its real format instead: the dict the nas-bench-201 package (2.1, api_201.py)
loads -- ``meta_archs``, ``arch2infos[index] = {'less', 'full'}`` holding ``ArchResults.state_dict()``,
whose ``all_results[(dataset, seed)]`` are ``ResultsCount.state_dict()`` (the object's ``__dict__``),
``evaluated_indexes`` -- with made-up accuracies.  When the package is installed, a test checks that
it reads these files and agrees with our reader.
"""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cydas_chain.core.errors import ArchError, DataError
from cydas_chain.darts.nb201_bench import NB201Bench
from cydas_chain.models.darts.nb201 import NB201_EDGES, NB201Genotype
from cydas_chain.models.darts.operations import NB201_PRIMITIVES

ROOT = Path(__file__).resolve().parents[1]
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"

# ---- a tiny file in the benchmark's format ----------------------------------------------------------
# dataset key -> its evaluation sets, as in the NAS-Bench-201 v1.1 file
EVAL_SETS = {"cifar10-valid": ["x-valid", "ori-test"], "cifar10": ["ori-test"],
             "cifar100": ["ori-test", "x-valid", "x-test"], "ImageNet16-120": ["ori-test", "x-valid", "x-test"]}
OFFSET = {"cifar10-valid": 60.0, "cifar10": 70.0, "cifar100": 40.0, "ImageNet16-120": 20.0}
SET_OFFSET = {"x-valid": 0.0, "ori-test": 0.25, "x-test": 0.5}
SEEDS = (777, 888)


def made_up_accuracy(arch, dataset, setname, seed):
    """More 3x3 convs, more accuracy; every dataset, set and seed different."""
    return (OFFSET[dataset] + 3.0 * arch.count("nor_conv_3x3") + arch.count("nor_conv_1x1")
            + SET_OFFSET[setname] + (0.5 if seed == 888 else 0.0))


def results_count(arch, dataset, seed, epochs):
    """``ResultsCount.state_dict()``: name, net_state_dict, train_*, arch_config, params, flop, seed,
    epochs, latency, eval_names, eval_acc1es / eval_times / eval_losses keyed 'set@epoch'."""
    names = EVAL_SETS[dataset]
    # earlier epochs are worse: reading another epoch than the last gives other numbers
    acc = {f"{n}@{e}": made_up_accuracy(arch, dataset, n, seed) - (epochs - 1 - e) for n in names
           for e in range(epochs)}
    return {"name": dataset, "net_state_dict": None,
            "train_acc1es": {e: 50.0 + e for e in range(epochs)}, "train_acc5es": {e: 90.0 for e in range(epochs)},
            "train_losses": {e: 1.0 for e in range(epochs)}, "train_times": {e: 1.0 for e in range(epochs)},
            "arch_config": {"name": "infer.tiny", "channel": 16, "num_cells": 5, "arch_str": arch, "class_num": 10},
            "params": np.float64(0.4), "flop": 50.0, "seed": seed, "epochs": epochs, "latency": [0.01],
            "eval_names": list(names), "eval_acc1es": acc, "eval_times": {k: 0.1 for k in acc},
            "eval_losses": {k: 1.0 for k in acc}}


def arch_results(index, arch, seeds=SEEDS, epochs=3, all_results=None):
    """``ArchResults.state_dict()``: arch_index, arch_str, all_results, dataset_seed, clear_net_done."""
    if all_results is None:
        all_results = {(ds, s): results_count(arch, ds, s, epochs) for ds in EVAL_SETS for s in seeds}
    return {"arch_index": index, "arch_str": arch, "clear_net_done": True, "all_results": all_results,
            "dataset_seed": {ds: list(seeds) for ds in EVAL_SETS}}


def write_bench_file(path, archs, shared=False):
    """``shared``: every cell gets the results of the first (one object, pickled once), so that a
    file of all 15,625 cells stays small: for the end-to-end search test, which checks the plumbing."""
    infos, first = {}, None
    for i, arch in enumerate(archs):
        state = arch_results(i, arch, seeds=SEEDS[:1], epochs=1, all_results=first) if shared else arch_results(i, arch)
        first = state["all_results"] if shared else None
        infos[i] = {"less": state, "full": state}
    torch.save({"meta_archs": list(archs), "arch2infos": infos, "evaluated_indexes": list(range(len(archs)))}, path)
    return path


def all_cells():
    return [NB201Genotype(ops).arch_str() for ops in itertools.product(NB201_PRIMITIVES, repeat=6)]


CELLS = [BEST, "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",
         "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|"]


def expected(arch):
    """What the benchmark reports: mean over seeds of the last epoch's accuracy."""
    mean = lambda ds, sn: float(np.mean([made_up_accuracy(arch, ds, sn, s) for s in SEEDS]))  # noqa: E731
    return {"cifar10": {"valid": mean("cifar10-valid", "x-valid"), "test": mean("cifar10", "ori-test")},
            "cifar100": {"valid": mean("cifar100", "x-valid"), "test": mean("cifar100", "x-test")},
            "ImageNet16-120": {"valid": mean("ImageNet16-120", "x-valid"), "test": mean("ImageNet16-120", "x-test")}}


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory):
    return write_bench_file(tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-tiny.pth", CELLS)


# ---- the cell string -------------------------------------------------------------------------------
def test_arch_string_is_the_benchmarks_format():
    g = NB201Genotype.from_arch_str(BEST)
    assert g.arch_str() == BEST
    # node k takes inputs 0..k-1, in the order of NB201_EDGES
    assert [(n, i) for n, i in NB201_EDGES] == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert g.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3",
                     "nor_conv_3x3")
    for bad in ("|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|skip_connect~0|none~1|none~2|",  # inputs swapped
                "|nor_conv_3x3~0|+|none~0|none~1|", "nor_conv_3x3~0+none~0|none~1", "|conv_9x9~0|+|none~0|none~1|"
                "+|none~0|none~1|none~2|"):
        with pytest.raises(ArchError):
            NB201Genotype.from_arch_str(bad)


def test_round_trip_with_the_benchmarks_parser():
    genotype_utils = pytest.importorskip("nats_bench.genotype_utils")
    for arch in CELLS + all_cells()[::997]:
        structure = genotype_utils.TopologyStructure.str2structure(arch)
        assert structure.tostr() == arch == NB201Genotype.from_arch_str(structure.tostr()).arch_str()
        ours = NB201Genotype.from_arch_str(arch)
        theirs = {(node + 1, inp): op for node, ops in enumerate(structure.nodes) for op, inp in ops}
        assert theirs == {edge: op for edge, op in zip(NB201_EDGES, ours.ops)}


# ---- reading the file ------------------------------------------------------------------------------
def test_lookup_reads_the_benchmark_format(bench_file):
    bench = NB201Bench(bench_file, use_package=False)
    assert len(bench) == len(CELLS) and bench.source == "read here"
    for i, arch in enumerate(CELLS):
        result = bench.lookup(NB201Genotype.from_arch_str(arch))
        assert result["index"] == i and result["arch_str"] == arch
        for name, sets in expected(arch).items():
            assert result[name] == pytest.approx(sets), (arch, name)
    assert bench.lookup(BEST)["cifar10"]["test"] == pytest.approx(70.0 + 15 + 0.25 + 0.25)
    with pytest.raises(DataError, match="not in"):
        bench.lookup("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def test_reading_a_file_keeps_the_process_wide_allow_list(bench_file):
    """Reading a benchmark file must not take away what importing cydas_chain.mm allow-lists for the
    whole process (mmengine checkpoints hold numpy dtypes): a bug that made mm tests fail whenever an
    NB201 test had run before them in the same process."""
    import numpy as np
    import torch

    torch.serialization.add_safe_globals([np.dtype])  # as cydas_chain.mm does on import
    NB201Bench(bench_file, use_package=False)
    assert np.dtype in torch.serialization.get_safe_globals()


def test_the_benchmarks_package_reads_the_same_file(bench_file):
    pytest.importorskip("nas_201_api")
    package, ours = NB201Bench(bench_file), NB201Bench(bench_file, use_package=False)
    assert package.source == "nas_201_api"
    for arch in CELLS:
        theirs, mine = package.lookup(arch), ours.lookup(arch)
        assert theirs["index"] == mine["index"]
        for name in expected(arch):
            assert theirs[name] == pytest.approx(mine[name]) == expected(arch)[name], (arch, name)


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        NB201Bench(tmp_path / "none.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02 not a torch file")
    with pytest.raises(DataError, match="cannot read NAS-Bench-201 file"):
        NB201Bench(junk)
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(DataError, match="not a NAS-Bench-201 API file"):
        NB201Bench(other)


# ---- the tools -------------------------------------------------------------------------------------
def run(tool, *args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def one_error_line(proc, fragment):
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return proc.returncode == 2 and len(errors) == 1 and fragment in errors[0] and "Traceback" not in proc.stderr


def test_lookup_tool(bench_file, tmp_path):
    proc = run("nb201_lookup.py", bench_file, BEST, "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["index"] == 0 and result["cifar100"] == pytest.approx(expected(BEST)["cifar100"])
    genotype = tmp_path / "genotype.json"
    genotype.write_text(json.dumps(NB201Genotype.from_arch_str(CELLS[1]).to_dict()))
    proc = run("nb201_lookup.py", bench_file, genotype, tmp_path=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"cell 1: {CELLS[1]}"), proc.stderr[-2000:]
    test_c10 = expected(CELLS[1])["cifar10"]["test"]
    assert f"test {test_c10:6.2f}" in proc.stdout
    assert one_error_line(run("nb201_lookup.py", bench_file, "|nor_conv_3x3~1|", tmp_path=tmp_path), "malformed")
    assert one_error_line(run("search_cell.py", "--nb201-api", bench_file, "--out", tmp_path / "o",
                              tmp_path=tmp_path), "--space nb201")


@pytest.mark.slow
def test_search_reports_the_found_cells_benchmark_accuracies(tmp_path):
    bench = write_bench_file(tmp_path / "all.pth", all_cells(), shared=True)
    out = tmp_path / "nb"
    proc = run("search_cell.py", "--space", "nb201", "--nb201-api", bench, "--out", out, "--epochs", "2",
               "--channels", "4", "--batch-size", "50", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    g = json.loads((out / "genotype.json").read_text())
    found = g["nas_bench_201"]
    assert found["arch_str"] == g["arch_str"] and found["index"] == all_cells().index(g["arch_str"])
    first = all_cells()[0]  # every cell of this file carries the first cell's (one-seed) results
    assert found["cifar10"]["test"] == pytest.approx(made_up_accuracy(first, "cifar10", "ori-test", SEEDS[0]))
    history = json.loads((out / "genotype_history.json").read_text())
    assert history and all(h["nas_bench_201"]["arch_str"] == h["genotype"]["arch_str"] for h in history)
    assert proc.stderr.count("NAS-Bench-201 cell") == 2  # after each of the two epochs
    with open(out / "metrics.csv") as f:
        header = f.readline()
    assert "nb201_cifar10_test" in header and "nb201_ImageNet16-120_test" in header
