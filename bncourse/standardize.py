"""Input standardization with statistics of the training set.

Shapes: ``x`` is ``(n_samples, n_features)``; ``mean_``, ``std_`` and
``scale_`` are ``(n_features,)``.

``fit`` measures each feature's mean and population standard deviation
(ddof=0) once, on the training set; ``transform`` then maps any data set,
training or test, with those same numbers::

    z = (x - mean_) / scale_,   scale_ = std_ where std_ > 0, else 1

Batch normalization does the same per mini-batch, inside the network.
"""

from __future__ import annotations

import numpy as np

from bncourse._checks import check_array

__all__ = ["Standardizer"]


class Standardizer:
    """Standardize features to mean 0 and standard deviation 1, like sklearn's StandardScaler.

    A feature that is constant on the training set has ``std_ == 0``; it
    keeps scale 1, so its standardized value is exactly 0 (dividing by 0
    would give NaN, and there is no spread to normalize).

    Attributes (after :meth:`fit`)
    ------------------------------
    mean_ : ndarray (n_features,)
    std_ : ndarray (n_features,)
        Population standard deviation (ddof=0).
    scale_ : ndarray (n_features,)
        ``std_`` with zeros replaced by 1: what ``transform`` divides by.
    n_features_in_ : int

    Examples
    --------
    >>> x = np.array([[1.0, 5.0], [3.0, 5.0]])
    >>> Standardizer().fit_transform(x)
    array([[-1.,  0.],
           [ 1.,  0.]])
    """

    def __init__(self):
        self.mean_ = None
        self.std_ = None
        self.scale_ = None
        self.n_features_in_ = None

    def fit(self, x):
        """Measure ``mean_`` and ``std_`` of each column of ``x`` (n_samples, n_features).

        Returns ``self``. Raises ``TypeError`` for a non-float array and
        ``ValueError`` for a non-2-D, empty or non-finite ``x``.
        """
        func = "Standardizer.fit"
        x = check_array(func, "x", x, ndim=2)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{func}: x must have at least one sample and one feature, "
                             f"got shape {x.shape}")
        # Accumulate in float64 (float32 sums of many samples drift), store in x's dtype.
        mean = x.mean(axis=0, dtype=np.float64).astype(x.dtype)
        std = x.std(axis=0, dtype=np.float64).astype(x.dtype)  # two-pass, ddof=0
        # A constant column can come out with a tiny nonzero std (the mean is
        # rounded); detect it exactly and give it std 0 and its exact value.
        constant = np.all(x == x[0], axis=0)
        mean[constant] = x[0, constant]
        std[constant] = 0.0
        self.mean_ = mean
        self.std_ = std
        self.scale_ = np.where(std > 0, std, np.ones_like(std))
        self.n_features_in_ = x.shape[1]
        return self

    def _check_fitted(self, func: str, arg: str, x) -> np.ndarray:
        if self.mean_ is None:
            raise ValueError(f"{func}: the Standardizer must be fitted first (call fit), "
                             f"got an unfitted Standardizer")
        x = check_array(func, arg, x, ndim=2)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"{func}: {arg} must have {self.n_features_in_} features (columns) "
                             f"as in fit, got shape {x.shape}")
        return x

    def transform(self, x):
        """Return ``(x - mean_) / scale_`` in the dtype of ``x``.

        Raises ``ValueError`` before :meth:`fit`, for a feature-count mismatch
        or non-finite values; ``TypeError`` for a non-float array.
        """
        x = self._check_fitted("Standardizer.transform", "x", x)
        z = (x - self.mean_) / self.scale_
        return z.astype(x.dtype, copy=False)

    def fit_transform(self, x):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, z):
        """Map standardized values back: ``z * scale_ + mean_``, in the dtype of ``z``."""
        z = self._check_fitted("Standardizer.inverse_transform", "z", z)
        x = z * self.scale_ + self.mean_
        return x.astype(z.dtype, copy=False)
