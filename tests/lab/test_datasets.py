"""Study-scale data: MNIST-1D generated offline, seeded three-way splits, CIFAR-10 from files."""

import pickle
import random
import tarfile

import numpy as np
import pytest
import torch

from bncourse.lab import data as lab_data
from bncourse.lab import datasets
from bncourse.lab.datasets import (MNIST1D_SIZE, SplitDataset, load_cifar10, load_digits_splits,
                                   load_mnist1d, three_way_split)


def test_mnist1d_has_the_published_default_size_and_shape():
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    assert args.num_samples == MNIST1D_SIZE == 5000 and args.final_seq_length == 40
    data = load_mnist1d(seed=0)
    assert isinstance(data, SplitDataset)
    assert (data.n_train, len(data.y_val), data.n_test) == (3500, 500, 1000)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.n_features == 40 and data.num_classes == 10
    assert sorted(torch.unique(data.y_test).tolist()) == list(range(10))
    assert data.as_images().x_train.shape == (3500, 1, 40)
    assert data.as_images().x_val.shape == (500, 1, 40)
    # standardized with the training statistics only
    assert float(data.x_train.mean(0).abs().max()) < 1e-5
    np.testing.assert_allclose(data.x_train.double().std(0, unbiased=False).numpy(), 1, atol=1e-5)


def _rows(x):
    return {tuple(np.round(r, 5)) for r in x.numpy()}


def test_split_varies_with_the_seed_and_is_reproducible():
    a, b, a2 = load_mnist1d(seed=1, standardize=False), load_mnist1d(seed=2, standardize=False), \
        load_mnist1d(seed=1, standardize=False)
    assert torch.equal(a.x_train, a2.x_train) and torch.equal(a.y_val, a2.y_val)
    assert not torch.equal(a.y_test, b.y_test)
    # the three parts are disjoint and together are the whole data set
    parts = [_rows(a.x_train), _rows(a.x_val), _rows(a.x_test)]
    assert sum(map(len, parts)) == MNIST1D_SIZE == len(set().union(*parts))
    # stratified: each class has about the same share in the test set
    counts = np.bincount(a.y_test.numpy(), minlength=10)
    assert counts.min() >= 95 and counts.max() <= 105


def test_generation_leaves_the_global_random_state_alone():
    datasets._mnist1d_arrays.cache_clear()
    np.random.seed(123)
    random.seed(123)
    load_mnist1d(seed=0)
    got_np, got_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    assert (got_np, got_py) == (np.random.random(), random.random())


def test_digits_three_way_split():
    data = load_digits_splits(seed=4)
    assert data.n_train + len(data.y_val) + data.n_test == 1797
    assert data.image_shape == (1, 8, 8) and data.as_images().x_train.shape[1:] == (1, 8, 8)
    val = data.validation()
    assert torch.equal(val.x_test, data.x_val) and val.n_train == data.n_train


def test_three_way_split_bad_input():
    x, y = np.zeros((20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match=r"three_way_split: validation_fraction \+ test_fraction "
                                         r"must be below 1"):
        three_way_split(x, y, seed=0, validation_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="three_way_split: test_fraction must be a float in"):
        three_way_split(x, y, seed=0, validation_fraction=0.1, test_fraction=1.5)
    with pytest.raises(ValueError, match="three_way_split: seed must be an int >= 0"):
        three_way_split(x, y, seed=-1, validation_fraction=0.1, test_fraction=0.2)


def _write_cifar(folder, n_train_batches=2, n=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n_train_batches):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n))}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": list(range(n))}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    return batch


def test_cifar10_from_small_files_the_test_writes(tmp_path):
    test_batch = _write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_cifar10(tmp_path, standardize=False)
    assert data.x_train.shape == (8, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(data.x_test.reshape(4, -1).numpy(),
                               test_batch[b"data"] / 255.0, rtol=1e-6)
    assert data.y_test.tolist() == [0, 1, 2, 3]
    flat = load_cifar10(tmp_path, images=False)
    assert flat.x_train.shape == (8, 3072)
    assert float(flat.x_train.mean(0).abs().max()) < 1e-5


def test_cifar10_archive_and_download_only_when_asked(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _write_cifar(src / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    root = tmp_path / "root"
    calls = []

    def fake_fetch(url, path):                   # stands in for the network
        calls.append(url)
        path_obj = type(archive)(path)
        path_obj.write_bytes(archive.read_bytes())

    monkeypatch.setattr(lab_data.urllib.request, "urlretrieve", fake_fetch)
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        load_cifar10(root)
    assert calls == []
    data = load_cifar10(root, download=True, standardize=False)
    assert len(calls) == 1 and calls[0].endswith("cifar-10-python.tar.gz")
    assert data.n_train == 8
    load_cifar10(root)                             # extracted now: no second fetch
    assert len(calls) == 1


def test_cifar10_rejects_a_malformed_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                                      b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"load_cifar10: root must be CIFAR-10 batches"):
        load_cifar10(tmp_path)
