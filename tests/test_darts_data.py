"""CIFAR-10/100 read from python pickle batches written here in the official format."""
import pickle

import numpy as np
import pytest

from cydas_chain.core.data import cifar_dataset
from cydas_chain.core.errors import DataError
from cydas_chain.darts.data import search_splits


def write_cifar(root, num_classes=10, per_batch=4, seed=0):
    """Batches as the official archives hold them: protocol-2 pickles with bytes keys, N x 3072 uint8."""
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder, train, test, meta = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], \
            ["test_batch"], "batches.meta"
        label_key, meta_obj = b"labels", {b"label_names": [f"class{i}".encode() for i in range(10)],
                                          b"num_vis": 3072}
    else:
        folder, train, test, meta = root / "cifar-100-python", ["train"], ["test"], "meta"
        label_key, meta_obj = b"fine_labels", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                                               b"coarse_label_names": [b"x"] * 20}
    folder.mkdir(parents=True)
    written = {}
    count = 0
    for name in train + test:
        n = per_batch * (5 if num_classes == 100 and name == "train" else 1)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation((count + np.arange(n)) % num_classes)]  # all classes in turn
        count += n
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), label_key: labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f, protocol=2)
        written[name] = (data, labels)
    with open(folder / meta, "wb") as f:
        pickle.dump(meta_obj, f, protocol=2)
    return folder, written


def test_cifar10_batches(tmp_path):
    folder, written = write_cifar(tmp_path)
    train = cifar_dataset(tmp_path, 10, train=True)  # the parent folder works
    test = cifar_dataset(folder, 10, train=False)  # and the batches folder itself
    assert len(train) == 20 and len(test) == 4 and train.classes[3] == "class3"
    data, labels = written["data_batch_2"]
    img, label = train[5]  # second image of the second batch
    assert label == labels[1]
    # channel planes (R 1024, G 1024, B 1024) become an HWC image
    expected = data[1].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(img), expected)


def test_cifar100_batches(tmp_path):
    write_cifar(tmp_path, 100)
    train = cifar_dataset(tmp_path, 100, train=True)
    assert len(train) == 20 and len(train.classes) == 100 and len(cifar_dataset(tmp_path, 100, train=False)) == 4


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found.*cifar-10-python.tar.gz"):
        cifar_dataset(tmp_path / "nowhere", 10)
    folder, _ = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="cannot read CIFAR batch .*data_batch_3"):
        cifar_dataset(tmp_path, 10)


def test_search_split_halves(tmp_path):
    write_cifar(tmp_path, per_batch=8)
    train, val, classes, desc, _ = search_splits("cifar10", tmp_path, 32, seed=0)
    assert len(train) == len(val) == 20  # 4 images a class: 2 + 2
    assert not set(train.indices) & set(val.indices) and len(classes) == 10


def test_imagenet_folder_subset_and_split(tmp_path):
    from cydas_chain.core.data import make_shapes_folder
    root = make_shapes_folder(tmp_path / "folder", train_per_class=8, val_per_class=1, image_size=8)
    train, val, classes, _, _ = search_splits("imagenet", root, 8, seed=0, fraction=0.5)
    assert len(classes) == 10 and len(train) == len(val) == 20  # 4 of 8 images a class, then 2 + 2
    x, y = train[0]
    assert tuple(x.shape) == (3, 8, 8)


class _Calls:
    """What a hostile pickle holds: a call of any importable function (here a harmless one)."""

    def __reduce__(self):
        import os
        return (os.getpid, ())


def test_data_pickles_are_loaded_safely(tmp_path):
    import gzip

    from cydas_chain.core.data import safe_unpickle

    folder, written = write_cifar(tmp_path)
    bad = folder / "data_batch_3"
    with open(bad, "wb") as f:  # a batch whose labels are a function call
        pickle.dump({b"labels": _Calls(), b"data": written["data_batch_3"][0]}, f, protocol=2)
    with pytest.raises(DataError, match="not a plain data pickle: it wants to construct posix.getpid"):
        cifar_dataset(tmp_path, 10, train=True)
    # numpy arrays of either protocol and gzip (MNIST's mnist.pkl.gz) load; arrays come back equal
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([3, 1], dtype=np.int64))
    for protocol in (2, 5):
        with gzip.open(tmp_path / f"m{protocol}.pkl.gz", "wb") as f:
            pickle.dump((arrays, [int(v) for v in arrays[1]]), f, protocol=protocol)
        (x, y), labels = safe_unpickle(tmp_path / f"m{protocol}.pkl.gz", "MNIST pickle")
        assert np.array_equal(x, arrays[0]) and x.dtype == np.float32 and np.array_equal(y, arrays[1])
        assert labels == [3, 1]
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(arrays, protocol=2)[:40])
    with pytest.raises(DataError, match="cannot read MNIST pickle"):
        safe_unpickle(tmp_path / "cut.pkl", "MNIST pickle")
