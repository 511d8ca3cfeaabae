"""Data for the study scale: MNIST-1D and the digits with seeded train/validation/test splits,
and CIFAR-10 for readers with a network.

Shape letters: N samples, D values per sample, K = 10 classes.

MNIST-1D :cite:`greydanus2020scaling` is generated here, offline, by the
``mnist1d`` package's own generator (``mnist1d.data.make_dataset``) with its
default arguments: 5000 one-dimensional signals of length 40 (the published
data set's size and its generation seed 42). Nothing is downloaded. The
generator seeds NumPy's and Python's *global* random state; this module saves
and restores both around it, so loading the data never changes the numbers of
the caller's own global draws.

A *study seed* varies the split as well as everything else: all 5000 (or 1797
for the digits) samples are pooled, and ``np.random.default_rng(seed)``
assigns each class's samples to the test, validation and training sets
(stratified). Inputs are standardized per position with the *training*
statistics only.

Public API
----------
``SplitDataset``
    A ``Dataset`` (``x_train``, ``y_train``, ``x_test``, ``y_test``, ...) with
    ``x_val (N_val, ...)`` and ``y_val (N_val,)`` as well, and
    ``validation()``: the same data with the validation set in the test slots
    (for tuning without touching the test set).
``three_way_split(x, y, *, seed, validation_fraction, test_fraction, ...) -> SplitDataset``
``load_mnist1d(seed=0, validation_fraction=0.1, test_fraction=0.2, standardize=True)``
    3500 / 500 / 1000 signals by default; ``as_images()`` gives ``(N, 1, 40)``.
``load_digits_splits(seed=0, validation_fraction=0.15, test_fraction=0.25, standardize=True)``
``load_cifar10(root, download=False, standardize=True, images=True)``
    CIFAR-10 from the python-format batches under ``root`` (the folder
    ``cifar-10-batches-py``, or the archive ``cifar-10-python.tar.gz`` next to
    it); nothing is fetched unless ``download=True``. No page of the book uses it.

Examples
--------
>>> data = load_mnist1d(seed=3)
>>> data.n_train, len(data.y_val), data.n_test, data.n_features
(3500, 500, 1000, 40)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import random
import tarfile

import numpy as np
import torch

from bncourse._checks import check_int, fail
from bncourse.lab.data import Dataset, fetch_if_missing, stratified_split
from bncourse.standardize import Standardizer

__all__ = ["SplitDataset", "three_way_split", "load_mnist1d", "load_digits_splits",
           "load_cifar10", "MNIST1D_SIZE"]

MNIST1D_SIZE = 5000
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"


@dataclasses.dataclass(frozen=True)
class SplitDataset(Dataset):
    """A ``Dataset`` with a validation set: ``x_val (N_val, ...)`` float32, ``y_val (N_val,)``."""

    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def validation(self) -> Dataset:
        """Training and *validation* sets as a plain ``Dataset`` (validation in the test slots)."""
        return Dataset(x_train=self.x_train, y_train=self.y_train, x_test=self.x_val,
                       y_test=self.y_val, num_classes=self.num_classes,
                       image_shape=self.image_shape, name=f"{self.name} (validation)")

    def as_images(self) -> "SplitDataset":
        """Inputs (validation set included) reshaped to ``(N, *image_shape)``."""
        out = Dataset.as_images(self)
        return dataclasses.replace(out, x_val=self.x_val.reshape(-1, *self.image_shape))


def _fraction(func: str, arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        fail(func, arg, "a float in (0, 1)", repr(value))
    return float(value)


def three_way_split(x, y, *, seed: int, validation_fraction: float, test_fraction: float,
                    standardize: bool = True, num_classes: int | None = None,
                    image_shape=None, name: str = "") -> SplitDataset:
    """Stratified seeded train/validation/test split of ``x (N, D)``, ``y (N,)``.

    The test set takes ``test_fraction`` of each class
    (``bncourse.lab.data.stratified_split`` with ``seed``), the validation set
    ``validation_fraction`` of the whole from what is left (a seed derived from
    ``seed``); standardization (float64, stored as float32) uses the training
    statistics only.
    """
    func = "three_way_split"
    seed = check_int(func, "seed", seed, minimum=0)
    val_f = _fraction(func, "validation_fraction", validation_fraction)
    test_f = _fraction(func, "test_fraction", test_fraction)
    if val_f + test_f >= 1:
        fail(func, "validation_fraction + test_fraction", "below 1", repr(val_f + test_f))
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y).astype(np.int64)
    if y.shape != (x.shape[0],):
        fail(func, "y", f"shape ({x.shape[0]},) to match x", f"shape {y.shape}")
    rest, test = stratified_split(y, test_f, seed)
    inner_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    train_pos, val_pos = stratified_split(y[rest], val_f / (1 - test_f), inner_seed)
    train, val = rest[train_pos], rest[val_pos]
    parts = [x[train], x[val], x[test]]
    if standardize:
        scaler = Standardizer().fit(parts[0])
        parts = [scaler.transform(p) for p in parts]
    x_tr, x_va, x_te = (torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
                        for p in parts)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    return SplitDataset(x_train=x_tr, y_train=torch.from_numpy(y[train]), x_test=x_te,
                        y_test=torch.from_numpy(y[test]), num_classes=k,
                        image_shape=image_shape, name=name, x_val=x_va,
                        y_val=torch.from_numpy(y[val]))


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5000 MNIST-1D signals ``(5000, 40)`` and labels, generated with the defaults."""
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float64)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def load_mnist1d(seed: int = 0, validation_fraction: float = 0.1, test_fraction: float = 0.2,
                 standardize: bool = True) -> SplitDataset:
    """MNIST-1D (generated offline, default size) with a seeded train/validation/test split."""
    x, y = _mnist1d_arrays()
    return three_way_split(x, y, seed=seed, validation_fraction=validation_fraction,
                           test_fraction=test_fraction, standardize=standardize,
                           num_classes=10, image_shape=(1, 40), name="mnist1d")


def load_digits_splits(seed: int = 0, validation_fraction: float = 0.15,
                       test_fraction: float = 0.25, standardize: bool = True) -> SplitDataset:
    """scikit-learn's 8x8 digits with a seeded train/validation/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return three_way_split(bunch.data, bunch.target, seed=seed,
                           validation_fraction=validation_fraction, test_fraction=test_fraction,
                           standardize=standardize, num_classes=10, image_shape=(1, 8, 8),
                           name="digits")


def _cifar_batches(root: str, download: bool) -> str:
    folder = os.path.join(root, _CIFAR_DIR)
    if os.path.isdir(folder):
        return folder
    archive = fetch_if_missing("load_cifar10", os.path.join(root, _CIFAR_ARCHIVE), _CIFAR_URL,
                               download, f"CIFAR-10 (about 170 MB; or extract it to {folder!r})")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")
    return folder


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        fail("load_cifar10", "root", "CIFAR-10 batches of (n, 3072) bytes with n labels",
              f"{path!r} with data {data.shape} and labels {labels.shape}")
    return data, labels


def load_cifar10(root, download: bool = False, standardize: bool = True,
                 images: bool = True) -> Dataset:
    """CIFAR-10 (50000 train / 10000 test, 3x32x32) from the python-format batches in ``root``.

    Inputs are scaled to [0, 1] and, with ``standardize``, standardized per
    value with the training statistics. Returns ``(N, 3, 32, 32)`` inputs, or
    ``(N, 3072)`` with ``images=False``.
    """
    folder = _cifar_batches(os.fspath(root), download)
    names = sorted(n for n in os.listdir(folder) if n.startswith("data_batch_"))
    if not names or not os.path.exists(os.path.join(folder, "test_batch")):
        fail("load_cifar10", "root", "a cifar-10-batches-py folder with data_batch_* and "
              "test_batch", f"{folder!r} with {sorted(os.listdir(folder))}")
    train = [_read_cifar_batch(os.path.join(folder, n)) for n in names]
    x_test, y_test = _read_cifar_batch(os.path.join(folder, "test_batch"))
    x_train = np.concatenate([b[0] for b in train]) / 255.0
    y_train = np.concatenate([b[1] for b in train])
    x_test = x_test / 255.0
    if standardize:
        scaler = Standardizer().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    data = Dataset(x_train=torch.from_numpy(x_train.astype(np.float32)),
                   y_train=torch.from_numpy(y_train), x_test=torch.from_numpy(
                       x_test.astype(np.float32)), y_test=torch.from_numpy(y_test),
                   num_classes=10, image_shape=(3, 32, 32), name="cifar10")
    return data.as_images() if images else data
