"""Offline data sets for the experiments, as float32 torch tensors.

Every data set here is built without the network and deterministically from a
seed, so a chapter that trains on it builds the same way everywhere.

Shape letters: N samples, D features, K classes.

Public API
----------
``Dataset``
    A frozen dataclass holding ``x_train (N_train, ...)``, ``y_train (N_train,)``,
    ``x_test (N_test, ...)``, ``y_test (N_test,)`` (inputs float32, labels int64),
    ``num_classes``, ``image_shape`` (``(1, 8, 8)`` for digits, ``None`` for
    vector-only data) and ``name``. Properties ``n_train``, ``n_test``,
    ``n_features``. ``as_images()`` returns the same data with inputs reshaped
    to ``(N, 1, H, W)`` for a CNN; ``as_vectors()`` returns them as ``(N, D)``.
``load_digits_split(seed=0, test_fraction=0.25, standardize=True, images=False)``
    scikit-learn's bundled handwritten digits (1797 images of 8x8 pixels,
    10 classes, :cite:`alpaydin1998digits`), split into train and test sets
    stratified by class with ``np.random.default_rng(seed)``, and
    standardized per pixel with the *training* mean and std only
    (``bncourse.standardize.Standardizer``), so the test set is close to, but
    not exactly, zero-mean.
``make_gaussian_mixture(n_samples=2000, n_features=20, num_classes=4, separation=2.0, seed=0, test_fraction=0.25, standardize=True)``
    A synthetic classification problem: one Gaussian blob per class with
    random unit-norm centre directions scaled by ``separation``.
``load_mnist(root, download=False)``, ``load_fashion_mnist(root, download=False)``
    Full MNIST / Fashion-MNIST from IDX files under ``root``; downloads only
    when ``download=True`` is passed explicitly. No page of the book uses them.

Examples
--------
>>> from bncourse.lab.data import load_digits_split
>>> data = load_digits_split(seed=0)
>>> data.x_train.shape, data.x_test.shape, data.num_classes
(torch.Size([1347, 64]), torch.Size([450, 64]), 10)
>>> data.as_images().x_train.shape
torch.Size([1347, 1, 8, 8])
>>> bool(abs(data.x_train.mean()) < 1e-6)   # training set standardized exactly
True
"""

from __future__ import annotations

import dataclasses
import gzip
import numbers
import os
import urllib.request

import numpy as np
import torch

from bncourse._checks import check_int, fail
from bncourse.standardize import Standardizer

__all__ = ["Dataset", "load_digits_split", "make_gaussian_mixture", "load_mnist",
           "load_fashion_mnist", "split_and_standardize", "fetch_if_missing"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split of a classification problem as torch tensors.

    Attributes
    ----------
    x_train : torch.Tensor, float32, shape (N_train, D) or (N_train, 1, H, W)
    y_train : torch.Tensor, int64, shape (N_train,), labels in ``0..num_classes-1``
    x_test : torch.Tensor, float32, shape (N_test, ...) like ``x_train``
    y_test : torch.Tensor, int64, shape (N_test,)
    num_classes : int
    image_shape : tuple or None
        ``(C, H, W)`` when the inputs are images (``(1, 8, 8)`` for digits).
    name : str
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    image_shape: tuple | None = None
    name: str = ""

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.x_test.shape[0])

    @property
    def n_features(self) -> int:
        """Number of input values per sample (64 for digits, whatever the layout)."""
        return int(self.x_train[0].numel())

    def as_images(self) -> "Dataset":
        """The same data with inputs of shape ``(N, C, H, W)`` (a view, no copy).

        Raises ``ValueError`` when the data set has no ``image_shape``.
        """
        if self.image_shape is None:
            fail("Dataset.as_images", "image_shape", "a (C, H, W) tuple (image data)",
                  f"None for data set {self.name!r}")
        shape = tuple(self.image_shape)
        return dataclasses.replace(self, x_train=self.x_train.reshape(-1, *shape),
                                   x_test=self.x_test.reshape(-1, *shape))

    def as_vectors(self) -> "Dataset":
        """The same data with inputs flattened to ``(N, D)`` (a view, no copy)."""
        return dataclasses.replace(self, x_train=self.x_train.reshape(self.n_train, -1),
                                   x_test=self.x_test.reshape(self.n_test, -1))



def _check_fraction(func: str, test_fraction) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        fail(func, "test_fraction", "a float in (0, 1)",
              f"{type(test_fraction).__name__} {test_fraction!r}", TypeError)
    if not 0.0 < test_fraction < 1.0:
        fail(func, "test_fraction", "a float in (0, 1)", repr(test_fraction))
    return float(test_fraction)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int):
    """Indices (train, test): in each class a seeded permutation, the first
    ``round(test_fraction * n_class)`` go to the test set."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    # Sort so that the stored order does not depend on the class loop; the
    # training loop shuffles with its own generator anyway.
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _standardize(x_train: np.ndarray, x_test: np.ndarray):
    """Standardize both sets with the TRAINING mean and population std only."""
    scaler = Standardizer().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test)


def split_and_standardize(x: np.ndarray, y: np.ndarray, *, seed: int = 0,
                          test_fraction: float = 0.25, standardize: bool = True,
                          num_classes: int | None = None, image_shape=None,
                          name: str = "") -> Dataset:
    """Split ``x (N, D)``, ``y (N,)`` by class with a seed, standardize with training stats.

    Standardization computes in float64 and stores float32 tensors.

    Raises
    ------
    ValueError / TypeError
        for a bad ``seed`` or ``test_fraction``, or ``x``/``y`` of mismatched length.
    """
    func = "split_and_standardize"
    seed = check_int(func, "seed", seed, minimum=0)
    test_fraction = _check_fraction(func, test_fraction)
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        fail(func, "y", f"shape ({x.shape[0]},) to match x", f"shape {y.shape}")
    train, test = stratified_split(y, test_fraction, seed)
    x_train, x_test = x[train], x[test]
    if standardize:
        x_train, x_test = _standardize(x_train, x_test)
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    return Dataset(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        y_train=torch.from_numpy(y[train].astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
        y_test=torch.from_numpy(y[test].astype(np.int64)),
        num_classes=k, image_shape=image_shape, name=name)


def load_digits_split(seed: int = 0, test_fraction: float = 0.25, standardize: bool = True,
                      images: bool = False) -> Dataset:
    """scikit-learn's bundled 8x8 digits as a seeded, stratified, standardized split.

    ``x`` is standardized per pixel as ``(x - mean_train) / std_train`` with the
    population std of the *training* set only (pixels that are constant in the
    training set map to 0). Leaking test statistics into the scaler is the
    mistake chapter 1 warns about, so the test set is not exactly zero-mean.

    Parameters
    ----------
    seed : int
        Seeds the split (``np.random.default_rng(seed)``); the same seed always
        gives the same split.
    test_fraction : float in (0, 1)
        Fraction of each class put in the test set (rounded per class).
    standardize : bool
        When False the raw pixel intensities 0..16 are returned as float32.
    images : bool
        Return inputs as ``(N, 1, 8, 8)`` instead of ``(N, 64)``.

    Returns
    -------
    Dataset
        1347 training and 450 test samples for the default ``test_fraction``.

    Examples
    --------
    >>> data = load_digits_split(seed=1, images=True)
    >>> data.x_train.shape, data.x_train.dtype, data.y_train.dtype
    (torch.Size([1347, 1, 8, 8]), torch.float32, torch.int64)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = split_and_standardize(bunch.data, bunch.target, seed=seed,
                                 test_fraction=test_fraction, standardize=standardize,
                                 num_classes=10, image_shape=(1, 8, 8), name="digits")
    return data.as_images() if images else data


def make_gaussian_mixture(n_samples: int = 2000, n_features: int = 20, num_classes: int = 4,
                          separation: float = 2.0, seed: int = 0, test_fraction: float = 0.25,
                          standardize: bool = True) -> Dataset:
    """A synthetic K-class problem: ``x = separation * u_y + z``, ``z ~ N(0, I_D)``.

    The class centres ``u_k`` are random unit vectors in ``R^D``; labels are
    balanced (``n_samples // num_classes`` per class, the remainder to the
    first classes). Larger ``separation`` gives an easier problem.

    Examples
    --------
    >>> data = make_gaussian_mixture(n_samples=400, n_features=5, num_classes=2, seed=3)
    >>> data.x_train.shape, data.num_classes
    (torch.Size([300, 5]), 2)
    """
    func = "make_gaussian_mixture"
    for arg, value, low in (("n_samples", n_samples, 2), ("n_features", n_features, 1),
                            ("num_classes", num_classes, 2)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail(func, arg, f"an int >= {low}", f"{type(value).__name__} {value!r}",
                  TypeError)
        if value < low:
            fail(func, arg, f"an int >= {low}", repr(value))
    if n_samples < 2 * num_classes:
        fail(func, "n_samples", f"at least 2 per class (>= {2 * num_classes})",
              repr(n_samples))
    if isinstance(separation, bool) or not isinstance(separation, numbers.Real) \
            or not np.isfinite(separation) or separation < 0:
        fail(func, "separation", "a finite float >= 0", repr(separation))
    seed = check_int(func, "seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, n_features))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.arange(n_samples) % num_classes
    x = separation * centres[y] + rng.standard_normal((n_samples, n_features))
    return split_and_standardize(x, y, seed=seed, test_fraction=test_fraction,
                                 standardize=standardize, num_classes=num_classes,
                                 name="gaussian-mixture")


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
                "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed when ``path`` ends in ``.gz``."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        fail("read_idx", "path", "an IDX file of unsigned bytes (magic 0x0000 08 ..)",
              f"{path!r} with header {raw[:4]!r}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        fail("read_idx", "path", f"{int(np.prod(dims))} values for dims {dims}",
              f"{data.size} in {path!r}")
    return data.reshape(dims)


def fetch_if_missing(func: str, path: str, url: str, download: bool, what: str) -> str:
    """``path``, fetched from ``url`` first when it is missing and ``download`` is True.

    Without ``download`` a missing file raises ``FileNotFoundError`` that says
    how to fetch it: nothing here touches the network unless asked to.
    """
    if not os.path.exists(path):
        if not download:
            raise FileNotFoundError(f"{func}: file {path!r} is missing; pass download=True to "
                                    f"fetch {what} (needs the network)")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        urllib.request.urlretrieve(url, path)  # only when asked
    return path


def _load_idx_set(func: str, name: str, url: str, root: str, download: bool,
                  standardize: bool, images: bool) -> Dataset:
    """An MNIST-format data set (four IDX files, 28x28 images, 10 classes) from ``root``."""
    arrays = {}
    for key, fname in _MNIST_FILES.items():
        path = fetch_if_missing(func, os.path.join(root, fname), url + fname, download, name)
        arrays[key] = read_idx(path)
    x_train = arrays["x_train"].reshape(len(arrays["x_train"]), -1) / 255.0
    x_test = arrays["x_test"].reshape(len(arrays["x_test"]), -1) / 255.0
    if standardize:
        x_train, x_test = _standardize(x_train, x_test)
    data = Dataset(x_train=torch.from_numpy(x_train.astype(np.float32)),
                   y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
                   x_test=torch.from_numpy(x_test.astype(np.float32)),
                   y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
                   num_classes=10, image_shape=(1, 28, 28), name=name.lower())
    return data.as_images() if images else data


def load_mnist(root: str, download: bool = False, standardize: bool = True,
               images: bool = False) -> Dataset:
    """Full MNIST (60000 train / 10000 test, 28x28) from IDX files in ``root``.

    Nothing is fetched unless ``download=True``; without it a missing file
    raises ``FileNotFoundError`` saying so. Inputs are scaled to [0, 1] and,
    with ``standardize``, standardized per pixel with the training statistics.
    For readers on Colab or Binder; no page of the book calls it.
    """
    return _load_idx_set("load_mnist", "MNIST", _MNIST_URL, root, download, standardize, images)


def load_fashion_mnist(root: str, download: bool = False, standardize: bool = True,
                       images: bool = False) -> Dataset:
    """Fashion-MNIST (60000 train / 10000 test, 28x28, 10 kinds of clothing) from ``root``.

    The same IDX files and names as MNIST, and the same rules: nothing is
    fetched unless ``download=True``. No page of the book calls it.
    """
    return _load_idx_set("load_fashion_mnist", "Fashion-MNIST", _FASHION_URL, root, download,
                         standardize, images)
