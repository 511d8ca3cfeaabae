"""Train/test leakage through standardization statistics.

A model is evaluated honestly when the test samples play no part in anything
that was fitted, the preprocessing included. Standardizing with the mean and
standard deviation of the training *and* test samples breaks that rule: every
test feature then depends on the other test samples, and the measured score
is no longer the score of the procedure one can deploy (where a new sample
arrives alone and only training statistics exist).

This module measures what the rule-breaking changes, split by split: the same
model is fitted twice on the same random split, once on features standardized
with the training statistics ("clean") and once with the statistics of
training and test samples together ("leaky").

Shape letters: n samples, p features, S random splits.

Public API
----------
``run_leakage(x, y, train_fraction, n_splits=200, seed=0, fit_predict=None)``
    -> ``LeakageResult`` with per-split arrays (shape ``(S,)``).
``knn_fit_predict(k=5)``
    A k-nearest-neighbour classifier as a ``fit_predict`` callable; distances,
    and so its predictions, depend on the scale of every feature.

Example
-------
>>> import numpy as np
>>> from sklearn.datasets import load_wine
>>> x, y = load_wine(return_X_y=True)
>>> res = run_leakage(x, y, train_fraction=0.2, n_splits=5, seed=0)
>>> res.clean_accuracy.shape
(5,)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from bncourse._checks import check_array, check_callable, fail
from bncourse.standardize import Standardizer

__all__ = ["LeakageResult", "run_leakage", "knn_fit_predict"]

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class LeakageResult(NamedTuple):
    """Per-split results of :func:`run_leakage`, each of shape ``(S,)``.

    Attributes
    ----------
    clean_accuracy : ndarray
        Test accuracy with features standardized by training statistics only.
    leaky_accuracy : ndarray
        Test accuracy with statistics of training and test samples together.
    changed_predictions : ndarray
        Fraction of test samples whose predicted label differs between the two.
    max_feature_shift : ndarray
        Largest ``|z_clean - z_leaky|`` over all test samples and features: how
        far the leak moves a standardized value that the model sees.
    """

    clean_accuracy: np.ndarray
    leaky_accuracy: np.ndarray
    changed_predictions: np.ndarray
    max_feature_shift: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        """``leaky_accuracy - clean_accuracy`` per split: how much leakage flatters the score."""
        return self.leaky_accuracy - self.clean_accuracy


def knn_fit_predict(k: int = 5) -> FitPredict:
    """A k-nearest-neighbour classifier as ``fit_predict(x_train, y_train, x_test)``.

    Distances are Euclidean.

    Each test sample gets the most common label among its ``k`` nearest
    training samples; a tie between labels goes to the smallest label, and a
    tie in distance to the training sample that comes first, as in
    scikit-learn's ``KNeighborsClassifier`` with its default settings.

    Parameters
    ----------
    k : int
        Number of neighbours, at least 1 (at most the number of training samples
        when called).

    Returns
    -------
    callable returning the predicted labels, shape ``(n_test,)``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        fail("knn_fit_predict", "k", "a positive int", f"{type(k).__name__} {k!r}", TypeError)
    if k < 1:
        fail("knn_fit_predict", "k", "a positive int", repr(k))
    k = int(k)

    def fit_predict(x_train, y_train, x_test):
        if k > len(x_train):
            fail("knn_fit_predict", "x_train", f"at least k = {k} samples",
                  f"{len(x_train)} samples")
        classes, y_code = np.unique(y_train, return_inverse=True)
        # Squared distances, (n_test, n_train), from the expanded square.
        d2 = (np.sum(x_test ** 2, axis=1)[:, None] - 2.0 * x_test @ x_train.T
              + np.sum(x_train ** 2, axis=1)[None, :])
        nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(x_test), len(classes)), dtype=np.int64)
        np.add.at(votes, (np.arange(len(x_test))[:, None], y_code[nearest]), 1)
        return classes[np.argmax(votes, axis=1)]

    return fit_predict


def run_leakage(x: np.ndarray, y: np.ndarray, train_fraction: float, n_splits: int = 200,
                       seed: int = 0, fit_predict: FitPredict | None = None) -> LeakageResult:
    """Fit the same model on clean and on leaky standardized features, over random splits.

    For each of ``n_splits`` random splits (``np.random.default_rng(seed)``):

    - clean: ``Standardizer().fit(x_train)`` transforms both sets;
    - leaky: ``Standardizer().fit(concatenate([x_train, x_test]))`` does.

    ``fit_predict`` is called on each version and scored on the test labels.

    Parameters
    ----------
    x : ndarray, shape (n, p), float
    y : ndarray, shape (n,)
        Class labels.
    train_fraction : float in (0, 1)
        Share of the samples used for training (rounded to a whole number, at
        least 2, leaving at least 1 test sample).
    n_splits : int
        Number of random splits, at least 1.
    seed : int
        Seed of the generator that draws the splits.
    fit_predict : callable, optional
        ``fit_predict(x_train, y_train, x_test) -> labels``; defaults to
        :func:`knn_fit_predict` with ``k = 5``.

    Returns
    -------
    LeakageResult

    Raises
    ------
    TypeError, ValueError
        For a non-float or non-finite ``x``, a ``y`` of the wrong length, a
        ``train_fraction`` outside (0, 1), ``n_splits < 1`` or a
        ``fit_predict`` that cannot be called.
    """
    func = "run_leakage"
    x = check_array(func, "x", x, ndim=2)
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        fail(func, "y", f"shape ({x.shape[0]},) to match the rows of x", f"shape {y.shape}")
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (float, int)) \
            or not 0.0 < train_fraction < 1.0:
        fail(func, "train_fraction", "a float in (0, 1)", repr(train_fraction))
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        fail(func, "n_splits", "a positive int", repr(n_splits))
    fit_predict = knn_fit_predict(5) if fit_predict is None else \
        check_callable(func, "fit_predict", fit_predict)

    n = x.shape[0]
    n_train = min(max(int(round(train_fraction * n)), 2), n - 1)
    rng = np.random.default_rng(seed)
    clean = np.empty(n_splits)
    leaky = np.empty(n_splits)
    changed = np.empty(n_splits)
    shift = np.empty(n_splits)
    for s in range(n_splits):
        order = rng.permutation(n)
        train, test = order[:n_train], order[n_train:]
        x_train, x_test = x[train], x[test]
        honest = Standardizer().fit(x_train)
        pooled = Standardizer().fit(np.concatenate([x_train, x_test]))
        z_test_clean = honest.transform(x_test)
        pred_clean = np.asarray(fit_predict(honest.transform(x_train), y[train], z_test_clean))
        pred_leaky = np.asarray(fit_predict(pooled.transform(x_train), y[train],
                                            pooled.transform(x_test)))
        clean[s] = np.mean(pred_clean == y[test])
        leaky[s] = np.mean(pred_leaky == y[test])
        changed[s] = np.mean(pred_clean != pred_leaky)
        shift[s] = np.max(np.abs(z_test_clean - pooled.transform(x_test)))
    return LeakageResult(clean, leaky, changed, shift)
