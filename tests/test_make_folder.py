"""bench/make_folder.py: MNIST (mnist.pkl.gz and torchvision's raw IDX files) and CIFAR batches, written
here in their real formats, become the ImageFolder the bench reads, with exact stratified subsets."""
import gzip
import json
import pickle
import struct

import numpy as np
from PIL import Image

from conftest import ROOT, assert_one_line_error, run_tool
from test_darts_data import write_cifar

TOOL = ROOT / "bench" / "make_folder.py"


def _digits(n, seed):
    """n images (uint8 28 x 28) with the labels 0..9 in turn."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10


def _counts(root):
    return {s: {c.name: len(list(c.glob("*.png"))) for c in sorted((root / s).iterdir())}
            for s in ("train", "val", "test")}


def test_mnist_pickle(tmp_path):
    """The classic mnist.pkl.gz: (train, validation, test) pairs of float images (pixel / 256) and labels."""
    splits = [_digits(n, seed) for seed, n in enumerate((60, 30, 20))]
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:  # as the file holds them (protocol 2, float32)
        pickle.dump(tuple((x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64)) for x, y in splits),
                    f, protocol=2)
    out = tmp_path / "folder"
    proc = run_tool(TOOL, "mnist", tmp_path / "mnist.pkl.gz", out, "--train", "25", "--val", "10", check=True)
    assert "train 25, val 10, test 20" in proc.stdout
    counts = _counts(out)
    assert sorted(counts["train"].values()) == [2] * 5 + [3] * 5  # exactly 25, each class its share
    assert counts["val"] == {str(c): 1 for c in range(10)} and counts["test"] == {str(c): 2 for c in range(10)}
    x, y = splits[2]
    png = out / "test" / str(y[13]) / "00013.png"  # pixels round-trip exactly
    assert np.array_equal(np.asarray(Image.open(png)), x[13])
    spec = json.loads((out / "dataset.json").read_text())
    assert "sha256" in spec["from"] and spec["images"] == {"train": 25, "val": 10, "test": 20}
    mtime = (out / "dataset.json").stat().st_mtime_ns
    run_tool(TOOL, "mnist", tmp_path / "mnist.pkl.gz", out, "--train", "25", "--val", "10", check=True)
    assert (out / "dataset.json").stat().st_mtime_ns == mtime  # the same settings: kept
    run_tool(TOOL, "mnist", tmp_path / "mnist.pkl.gz", out, "--train", "30", "--val", "10", check=True)
    assert sum(_counts(out)["train"].values()) == 30  # other settings: rewritten, nothing stale left


def _idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes())


def test_mnist_torchvision_raw(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, (x, y) in (("train", _digits(50, 0)), ("t10k", _digits(20, 1))):
        _idx(raw / f"{name}-images-idx3-ubyte", x, 2051)
        _idx(raw / f"{name}-labels-idx1-ubyte", y.astype(np.uint8), 2049)
    out = tmp_path / "folder"
    proc = run_tool(TOOL, "mnist", tmp_path, out, "--val", "10", check=True)
    assert "train 40, val 10, test 20" in proc.stdout and "held out of the training set" in proc.stdout
    counts = _counts(out)
    assert set(counts["val"].values()) == {1} and set(counts["train"].values()) == {4}
    train_names = {p.name for p in (out / "train").rglob("*.png")}
    assert not train_names & {p.name for p in (out / "val").rglob("*.png")}  # disjoint (indices of one pool)


def test_cifar_and_bad_input(tmp_path):
    write_cifar(tmp_path)  # 5 batches x 4 + a test batch of 4, classes class0..class9
    out = tmp_path / "folder"
    proc = run_tool(TOOL, "cifar10", tmp_path, out, "--val", "10", check=True)
    assert "train 10, val 10, test 4" in proc.stdout
    img = next((out / "train" / "class3").glob("*.png"))
    assert Image.open(img).size == (32, 32) and Image.open(img).mode == "RGB"

    assert_one_line_error(run_tool(TOOL, "mnist", tmp_path / "nowhere.pkl.gz", tmp_path / "o"), "does not exist")
    assert_one_line_error(run_tool(TOOL, "mnist", tmp_path / "empty", tmp_path / "o"), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_tool(TOOL, "mnist", tmp_path / "empty", tmp_path / "o"), "no MNIST at")
    assert_one_line_error(run_tool(TOOL, "cifar10", tmp_path, tmp_path / "o", "--val", "20"), "--val must be in")
    with open(tmp_path / "evil.pkl", "wb") as f:
        f.write(b"cos\nsystem\n(S'true'\ntR.")  # a pickle that would run a shell command
    assert_one_line_error(run_tool(TOOL, "mnist", tmp_path / "evil.pkl", tmp_path / "o"), "not a plain data pickle")
    assert not (tmp_path / "o").exists()
