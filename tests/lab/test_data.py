"""Tests for bncourse.lab.data: deterministic splits, training-only standardization, offline loaders."""

import gzip

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from bncourse.lab.data import (
    Dataset,
    load_digits_split,
    load_fashion_mnist,
    load_mnist,
    make_gaussian_mixture,
    read_idx,
)


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target


def _sorted_rows(x: np.ndarray) -> np.ndarray:
    return x[np.lexsort(x.T[::-1])]


def test_digits_shapes_dtypes_and_sizes():
    data = load_digits_split(seed=0)
    assert isinstance(data, Dataset)
    assert data.x_train.shape == (1347, 64) and data.x_test.shape == (450, 64)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.num_classes == 10 and data.image_shape == (1, 8, 8)
    assert data.n_train == 1347 and data.n_test == 450 and data.n_features == 64


def test_split_is_a_partition_of_the_digits(digits):
    x, _ = digits
    data = load_digits_split(seed=3, standardize=False)
    both = np.concatenate([data.x_train.numpy(), data.x_test.numpy()]).astype(np.float64)
    np.testing.assert_array_equal(_sorted_rows(both), _sorted_rows(x))


def test_split_is_stratified(digits):
    _, y = digits
    data = load_digits_split(seed=1, test_fraction=0.25)
    test_counts = np.bincount(data.y_test.numpy(), minlength=10)
    expected = np.array([int(round(0.25 * c)) for c in np.bincount(y)])
    np.testing.assert_array_equal(test_counts, expected)


def test_same_seed_same_split_other_seed_other_split():
    a, b = load_digits_split(seed=7), load_digits_split(seed=7)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    c = load_digits_split(seed=8)
    assert not torch.equal(a.y_test, c.y_test)


def test_standardized_with_training_statistics_only():
    raw = load_digits_split(seed=2, standardize=False)
    std = load_digits_split(seed=2, standardize=True)
    x_train = raw.x_train.numpy().astype(np.float64)
    x_test = raw.x_test.numpy().astype(np.float64)
    mean, sd = x_train.mean(axis=0), x_train.std(axis=0)
    sd = np.where(sd == 0, 1.0, sd)
    np.testing.assert_allclose(std.x_train.numpy(), (x_train - mean) / sd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std.x_test.numpy(), (x_test - mean) / sd, rtol=1e-6, atol=1e-6)
    # Training set: zero mean, unit std for every non-constant pixel.
    train = std.x_train.numpy().astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-6)
    varying = x_train.std(axis=0) > 0
    np.testing.assert_allclose(train.std(axis=0)[varying], 1.0, rtol=1e-5)
    # Test set: standardized with someone else's statistics, so not exactly zero-mean.
    assert np.abs(std.x_test.numpy().mean(axis=0)).max() > 1e-3


def test_images_view(digits):
    data = load_digits_split(seed=0)
    img = data.as_images()
    assert img.x_train.shape == (1347, 1, 8, 8) and img.x_test.shape == (450, 1, 8, 8)
    assert torch.equal(img.x_train.reshape(1347, 64), data.x_train)
    assert torch.equal(load_digits_split(seed=0, images=True).x_test, img.x_test)
    assert torch.equal(img.as_vectors().x_train, data.x_train)
    # Pixel layout: row-major 8x8 as in scikit-learn's images.
    raw = load_digits_split(seed=0, standardize=False, images=True)
    x, _ = digits
    first = raw.x_train[0, 0].numpy().astype(np.float64)
    match = np.flatnonzero((x == first.reshape(64)).all(axis=1))
    assert match.size >= 1
    np.testing.assert_array_equal(load_digits().images[match[0]], first)


def test_gaussian_mixture_deterministic_and_balanced():
    a = make_gaussian_mixture(n_samples=400, n_features=5, num_classes=4, seed=3)
    b = make_gaussian_mixture(n_samples=400, n_features=5, num_classes=4, seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (300, 5) and a.n_test == 100
    np.testing.assert_array_equal(np.bincount(a.y_test.numpy()), [25, 25, 25, 25])
    assert a.image_shape is None
    with pytest.raises(ValueError, match="as_images: image_shape"):
        a.as_images()


def test_gaussian_mixture_separation_controls_difficulty():
    def nearest_centroid_accuracy(data):
        x, y = data.x_train.numpy(), data.y_train.numpy()
        centres = np.stack([x[y == k].mean(axis=0) for k in range(data.num_classes)])
        d = ((data.x_test.numpy()[:, None, :] - centres[None]) ** 2).sum(-1)
        return (d.argmin(axis=1) == data.y_test.numpy()).mean()

    easy = make_gaussian_mixture(n_samples=800, separation=6.0, seed=0)
    hard = make_gaussian_mixture(n_samples=800, separation=0.0, seed=0)
    assert nearest_centroid_accuracy(easy) > 0.95
    assert nearest_centroid_accuracy(hard) < 0.5


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(seed=-1), ValueError, "load_digits_split|split_and_standardize: seed"),
    (dict(seed=1.5), TypeError, "seed must be an int >= 0"),
    (dict(test_fraction=0.0), ValueError, "test_fraction must be a float in \\(0, 1\\)"),
    (dict(test_fraction=1.5), ValueError, "test_fraction"),
])
def test_digits_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_digits_split(**kwargs)


def test_gaussian_mixture_bad_input():
    with pytest.raises(ValueError, match="make_gaussian_mixture: num_classes must be an int >= 2"):
        make_gaussian_mixture(num_classes=1)
    with pytest.raises(ValueError, match="make_gaussian_mixture: separation"):
        make_gaussian_mixture(separation=-1.0)


def _write_idx(path, array: np.ndarray):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_roundtrip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    _write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.gz")), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="read_idx: path must be an IDX file"):
        read_idx(str(tmp_path / "bad"))


def test_load_mnist_never_downloads_unless_asked(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(str(tmp_path / "nothing"))
    assert not (tmp_path / "nothing").exists()


def test_load_mnist_reads_local_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
             "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 12),
             "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
             "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 5)}
    for name, arr in files.items():
        _write_idx(tmp_path / name, arr)
    data = load_mnist(str(tmp_path), images=True)
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(data.y_test.numpy(), files["t10k-labels-idx1-ubyte.gz"])
    raw = load_mnist(str(tmp_path), standardize=False)
    np.testing.assert_allclose(raw.x_train.numpy(),
                               files["train-images-idx3-ubyte.gz"].reshape(12, -1) / 255.0,
                               rtol=1e-6)


def test_load_fashion_mnist_downloads_only_when_asked(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    source = tmp_path / "source"
    source.mkdir()
    files = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)),
             "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 6),
             "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
             "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3)}
    for name, arr in files.items():
        _write_idx(source / name, arr)
    fetched = []

    def fake_fetch(url, path):                  # stands in for the network
        fetched.append(url)
        fname = url.rsplit("/", 1)[-1]
        with open(path, "wb") as out:
            out.write((source / fname).read_bytes())

    import bncourse.lab.data as data_module

    monkeypatch.setattr(data_module.urllib.request, "urlretrieve", fake_fetch)
    root = tmp_path / "fashion"
    with pytest.raises(FileNotFoundError, match="load_fashion_mnist: .*download=True to fetch "
                                                "Fashion-MNIST"):
        load_fashion_mnist(str(root))
    assert fetched == []
    data = load_fashion_mnist(str(root), download=True, standardize=False)
    assert len(fetched) == 4 and all("fashion-mnist" in u for u in fetched)
    assert data.name == "fashion-mnist" and data.x_train.shape == (6, 784)
    np.testing.assert_array_equal(data.y_train.numpy(), files["train-labels-idx1-ubyte.gz"])
    load_fashion_mnist(str(root))               # the files are there now: no new fetch
    assert len(fetched) == 4
