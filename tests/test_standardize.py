"""Tests for bncourse.standardize: NumPy and scikit-learn's StandardScaler as oracles."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from bncourse.standardize import Standardizer


def features(rng, n=50, dtype=np.float64):
    loc = np.array([0.0, 100.0, -3.0, 1e4])
    scale = np.array([1.0, 20.0, 0.01, 5.0])
    return (loc + scale * rng.standard_normal((n, 4))).astype(dtype)


def test_matches_sklearn_standard_scaler(rng):
    x_train, x_test = features(rng), features(rng, n=20)
    ours = Standardizer().fit(x_train)
    theirs = StandardScaler().fit(x_train)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-14)
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-12)
    np.testing.assert_allclose(ours.transform(x_train), theirs.transform(x_train),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.transform(x_test), theirs.transform(x_test),
                               rtol=1e-10, atol=1e-12)
    assert ours.n_features_in_ == theirs.n_features_in_ == 4


def test_population_statistics(rng):
    x = features(rng)
    ours = Standardizer().fit(x)
    np.testing.assert_allclose(ours.mean_, np.mean(x, axis=0), rtol=1e-14)
    np.testing.assert_allclose(ours.std_, np.std(x, axis=0, ddof=0), rtol=1e-12)
    z = ours.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)


def test_test_set_uses_training_statistics(rng):
    x_train, x_test = features(rng), features(rng, n=20) + 1.0
    ours = Standardizer().fit(x_train)
    np.testing.assert_allclose(ours.transform(x_test), (x_test - x_train.mean(0)) / x_train.std(0),
                               rtol=1e-10)
    assert not np.allclose(ours.transform(x_test), Standardizer().fit_transform(x_test))


def test_zero_std_feature_keeps_scale_one(rng):
    x = features(rng)
    x[:, 2] = 0.1  # constant; 0.1 is not exact in binary, so its mean need not round back to 0.1
    ours = Standardizer().fit(x)
    theirs = StandardScaler().fit(x)
    assert ours.std_[2] == 0.0 and ours.scale_[2] == 1.0 == theirs.scale_[2]
    z = ours.transform(x)
    assert np.all(z[:, 2] == 0.0)
    np.testing.assert_allclose(z, theirs.transform(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ours.inverse_transform(z)[:, 2], x[:, 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inverse_transform_round_trip(rng, dtype):
    x = features(rng, dtype=dtype)
    ours = Standardizer()
    z = ours.fit_transform(x)
    assert z.dtype == dtype and ours.mean_.dtype == dtype
    back = ours.inverse_transform(z)
    assert back.dtype == dtype
    tol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    np.testing.assert_allclose(back, x, rtol=tol, atol=tol * np.abs(x).max())


def test_fit_transform_equals_fit_then_transform(rng):
    x = features(rng)
    np.testing.assert_array_equal(Standardizer().fit_transform(x),
                                  Standardizer().fit(x).transform(x))


def test_does_not_modify_input(rng):
    x = features(rng)
    copy = x.copy()
    ours = Standardizer().fit(x)
    z = ours.transform(x)
    z_copy = z.copy()
    ours.inverse_transform(z)
    np.testing.assert_array_equal(x, copy)
    np.testing.assert_array_equal(z, z_copy)


def test_rejects_bad_input(rng):
    x = features(rng)
    with pytest.raises(ValueError, match=r"Standardizer.transform: the Standardizer must be "
                                         r"fitted first"):
        Standardizer().transform(x)
    with pytest.raises(ValueError, match=r"Standardizer.inverse_transform: the Standardizer must "
                                         r"be fitted first"):
        Standardizer().inverse_transform(x)
    fitted = Standardizer().fit(x)
    with pytest.raises(ValueError, match=r"Standardizer.transform: x must have 4 features .*"
                                         r"got shape \(50, 3\)"):
        fitted.transform(x[:, :3])
    with pytest.raises(ValueError, match=r"Standardizer.inverse_transform: z must have 4 features"):
        fitted.inverse_transform(x[:, :2])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"Standardizer.fit: x must be finite"):
        Standardizer().fit(bad)
    with pytest.raises(ValueError, match=r"Standardizer.transform: x must be finite"):
        fitted.transform(bad)
    with pytest.raises(ValueError, match=r"Standardizer.fit: x must be 2-D, got shape \(50,\)"):
        Standardizer().fit(x[:, 0])
    with pytest.raises(ValueError, match=r"Standardizer.fit: x must have at least one sample"):
        Standardizer().fit(np.zeros((0, 4)))
    with pytest.raises(TypeError, match=r"Standardizer.fit: x must be .*float32 or float64"):
        Standardizer().fit(np.arange(12).reshape(6, 2))
    with pytest.raises(TypeError, match=r"Standardizer.fit: x must be a numpy.ndarray"):
        Standardizer().fit([[1.0, 2.0], [3.0, 4.0]])
