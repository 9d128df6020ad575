"""bench/make_folder.py: MNIST (mnist.pkl.gz and the IDX files), Fashion-MNIST (IDX files, gzipped or not) and
CIFAR batches, written here in their real formats, become the ImageFolder the bench reads, with exact stratified
subsets.  Nothing here needs the data sets installed (the Debian package's folder is used only where present)."""
import gzip
import hashlib
import importlib.util
import json
import pickle
import struct

import numpy as np
import pytest
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


def _idx(path, array, magic, gz=False):
    """An IDX file as MNIST's and Fashion-MNIST's: magic (2049 labels, 2051 images), big-endian sizes, bytes."""
    data = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    with (gzip.open(str(path) + ".gz", "wb") if gz else open(path, "wb")) as f:
        f.write(data)


def _write_idx_set(root, n_train=60, n_test=20, gz=False):
    """The four IDX files of an MNIST-like set under root; returns {split: (images, labels)}."""
    root.mkdir(parents=True, exist_ok=True)
    sets = {"train": _digits(n_train, 0), "t10k": _digits(n_test, 1)}
    for name, (x, y) in sets.items():
        _idx(root / f"{name}-images-idx3-ubyte", x, 2051, gz)
        _idx(root / f"{name}-labels-idx1-ubyte", y.astype(np.uint8), 2049, gz)
    return sets


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
    spec = json.loads((out / "dataset.json").read_text())
    assert spec["sha256"]["t10k-images-idx3-ubyte"] == hashlib.sha256(
        (raw / "t10k-images-idx3-ubyte").read_bytes()).hexdigest()


FASHION = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_idx(tmp_path, gz):
    """Fashion-MNIST's four IDX files (gzipped as Debian's dataset-fashion-mnist installs them, or not): class
    names as folders, a stratified held-out val, exact stratified subsets, pixels and sha256 of every file."""
    src = tmp_path / "fashion-mnist"
    sets = _write_idx_set(src, gz=gz)
    out = tmp_path / "folder"
    proc = run_tool(TOOL, "fashion-mnist", src, out, "--train", "25", "--val", "10", "--test", "10", check=True)
    assert "train 25, val 10, test 10" in proc.stdout and "held out of the training set" in proc.stdout
    counts = _counts(out)
    assert set(counts["train"]) == set(FASHION)  # the 10 class names, every one a folder
    assert sorted(counts["train"].values()) == [2] * 5 + [3] * 5  # exactly 25, each class its share
    assert counts["val"] == {c: 1 for c in FASHION} and counts["test"] == {c: 1 for c in FASHION}
    train_names = {p.name for p in (out / "train").rglob("*.png")}
    assert not train_names & {p.name for p in (out / "val").rglob("*.png")}  # held out: disjoint
    x, y = sets["t10k"]
    for png in (out / "test").rglob("*.png"):  # label -> class name, pixels round-trip exactly
        i = int(png.stem)
        assert png.parent.name == FASHION[y[i]] and np.array_equal(np.asarray(Image.open(png)), x[i])
    x, y = sets["train"]
    png = next((out / "train" / "bag").glob("*.png"))
    assert y[int(png.stem)] == 8 and np.array_equal(np.asarray(Image.open(png)), x[int(png.stem)])
    spec = json.loads((out / "dataset.json").read_text())
    names = [f"{s}-{k}-ubyte" + (".gz" if gz else "")
             for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    assert spec["source"] == "fashion-mnist" and sorted(spec["sha256"]) == sorted(names)
    assert all(spec["sha256"][n] == hashlib.sha256((src / n).read_bytes()).hexdigest() for n in names)
    # the same subsets from the same seed; another seed, other images
    again = tmp_path / "again"
    run_tool(TOOL, "fashion-mnist", src, again, "--train", "25", "--val", "10", "--test", "10", check=True)
    assert {p.relative_to(again) for p in again.rglob("*.png")} == {p.relative_to(out) for p in out.rglob("*.png")}
    other = tmp_path / "other"
    run_tool(TOOL, "fashion-mnist", src, other, "--train", "25", "--val", "10", "--seed", "1", check=True)
    assert {p.name for p in (other / "val").rglob("*.png")} != {p.name for p in (out / "val").rglob("*.png")}


def test_fashion_mnist_bad_input(tmp_path):
    """Each bad source is one error line, exit 2, and nothing written."""
    out = tmp_path / "o"

    def fails(src, *fragments):
        assert_one_line_error(run_tool(TOOL, "fashion-mnist", src, out), *fragments)
        assert not out.exists()

    fails(tmp_path / "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "no Fashion-MNIST at", "train-images-idx3-ubyte")
    src = tmp_path / "fm"
    _write_idx_set(src, gz=True)
    fails(src / "train-images-idx3-ubyte.gz", "not the file")
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    fails(src, "t10k-labels-idx1-ubyte[.gz] is missing")
    x, y = _digits(20, 1)
    _idx(src / "t10k-labels-idx1-ubyte", x, 2051)  # images where the labels belong
    fails(src, "t10k-labels-idx1-ubyte", "not an IDX file of labels", "2051", "expected 2049")
    _idx(src / "t10k-labels-idx1-ubyte", y[:15].astype(np.uint8), 2049)  # 15 labels for 20 images
    fails(src, "test holds (20, 28, 28) images and 15 labels")
    _idx(src / "t10k-labels-idx1-ubyte", y.astype(np.uint8), 2049)
    data = (src / "t10k-labels-idx1-ubyte").read_bytes()
    (src / "t10k-labels-idx1-ubyte").write_bytes(data[:-3])  # truncated
    fails(src, "t10k-labels-idx1-ubyte", "17 bytes of data for the shape (20,)")
    _idx(src / "t10k-labels-idx1-ubyte", y.astype(np.uint8), 2049)
    cut = (src / "train-images-idx3-ubyte.gz").read_bytes()
    (src / "train-images-idx3-ubyte.gz").write_bytes(cut[:len(cut) // 2])  # a gzip cut short
    fails(src, "train-images-idx3-ubyte.gz", "damaged gzip")
    # MNIST and CIFAR need their PATH (only Fashion-MNIST has a default)
    assert_one_line_error(run_tool(TOOL, "mnist", out), "mnist needs PATH")
    assert not out.exists()


def _tool_module():
    spec = importlib.util.spec_from_file_location("make_folder", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fashion_mnist_default_path_absent(tmp_path, monkeypatch):
    """Without PATH the tool reads Debian's folder; where that is absent, the error names the package."""
    from cydas_chain.core.errors import DataError

    tool = _tool_module()
    assert tool.FASHION_MNIST_DIR == tool.Path("/usr/share/datasets/fashion-mnist")
    monkeypatch.setattr(tool, "FASHION_MNIST_DIR", tmp_path / "not-installed")
    with pytest.raises(DataError, match="no Fashion-MNIST at .*not-installed: apt-get install dataset-fashion-mnist"):
        tool.main(["fashion-mnist", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    _write_idx_set(tmp_path / "not-installed", gz=True)  # the default, once there, is read
    assert tool.main(["fashion-mnist", str(tmp_path / "o"), "--val", "10"]) == 0
    assert sum(_counts(tmp_path / "o")["train"].values()) == 50


DEBIAN = _tool_module().FASHION_MNIST_DIR


@pytest.mark.skipif(not DEBIAN.is_dir(), reason=f"the real Fashion-MNIST ({DEBIAN}, apt-get install "
                                                 f"dataset-fashion-mnist) is not installed")
def test_fashion_mnist_debian_package(tmp_path):
    """The real files, where installed: 60,000 / 10,000 images, classes balanced, the default PATH."""
    out = tmp_path / "folder"
    proc = run_tool(TOOL, "fashion-mnist", out, "--train", "100", "--val", "50", "--test", "30", check=True)
    assert "train 100, val 50, test 30" in proc.stdout
    counts = _counts(out)
    assert counts["train"] == {c: 10 for c in FASHION} and counts["val"] == {c: 5 for c in FASHION}
    assert sorted(counts["test"].values()) == [3] * 10
    assert max(int(p.stem) for p in (out / "train").rglob("*.png")) < 60000
    spec = json.loads((out / "dataset.json").read_text())
    assert spec["from"] == str(DEBIAN) and len(spec["sha256"]) == 4


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
