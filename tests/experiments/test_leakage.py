"""Tests for bncourse.experiments.leakage: clean vs leaky standardization over random splits."""

import numpy as np
import pytest

from bncourse.experiments.leakage import knn_fit_predict, run_leakage


def _data(seed=0, n=60, p=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(size=(n, p)) + y[:, None] * np.array([1.0, 0.5, 0.0])
    return x * np.array([1.0, 100.0, 0.01]), y


def _least_squares_classifier(x_train, y_train, x_test):
    # One-hot least squares with an intercept: an affine change of each feature
    # changes the weights but not the fitted function, so its predictions do not
    # depend on which statistics standardized the features.
    a = np.column_stack([np.ones(len(x_train)), x_train])
    onehot = np.eye(3)[y_train]
    w = np.linalg.lstsq(a, onehot, rcond=None)[0]
    return np.argmax(np.column_stack([np.ones(len(x_test)), x_test]) @ w, axis=1)


def test_an_affine_invariant_model_is_unaffected_by_the_leak():
    x, y = _data(1)
    res = run_leakage(x, y, train_fraction=0.5, n_splits=10, seed=0,
                             fit_predict=_least_squares_classifier)
    np.testing.assert_array_equal(res.clean_accuracy, res.leaky_accuracy)
    np.testing.assert_array_equal(res.changed_predictions, 0.0)
    assert np.all(res.max_feature_shift > 0)          # the features did move


def test_clean_features_use_training_statistics_and_leaky_ones_pooled_statistics():
    x, y = _data(2)
    seen = []

    def recorder(x_train, y_train, x_test):
        seen.append((x_train, x_test))
        return np.zeros(len(x_test), dtype=y.dtype)

    run_leakage(x, y, train_fraction=0.25, n_splits=3, seed=4, fit_predict=recorder)
    assert len(seen) == 6
    for (c_train, c_test), (l_train, l_test) in zip(seen[0::2], seen[1::2]):
        np.testing.assert_allclose(c_train.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(c_train.std(0), 1.0, rtol=1e-12)
        both = np.concatenate([l_train, l_test])
        np.testing.assert_allclose(both.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(both.std(0), 1.0, rtol=1e-12)
        assert len(c_train) == 15 and len(c_test) == 45


def test_knn_changes_some_predictions_and_results_are_reproducible():
    x, y = _data(3)
    res = run_leakage(x, y, train_fraction=0.2, n_splits=20, seed=7)
    again = run_leakage(x, y, train_fraction=0.2, n_splits=20, seed=7)
    other = run_leakage(x, y, train_fraction=0.2, n_splits=20, seed=8)
    np.testing.assert_array_equal(res.clean_accuracy, again.clean_accuracy)
    assert not np.array_equal(res.clean_accuracy, other.clean_accuracy)
    assert np.any(res.changed_predictions > 0)
    np.testing.assert_allclose(res.difference, res.leaky_accuracy - res.clean_accuracy)
    assert np.all((0 <= res.clean_accuracy) & (res.clean_accuracy <= 1))


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_knn_fit_predict_matches_scikit_learn(k):
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _data(4, n=120)
    want = KNeighborsClassifier(n_neighbors=k).fit(x[:80], y[:80]).predict(x[80:])
    np.testing.assert_array_equal(knn_fit_predict(k)(x[:80], y[:80], x[80:]), want)


def test_knn_fit_predict_rejects_too_few_training_samples():
    x, y = _data(4)
    with pytest.raises(ValueError, match="knn_fit_predict: x_train must be at least k = 5 samples"):
        knn_fit_predict(5)(x[:3], y[:3], x[3:])


def test_knn_fit_predict_matches_a_brute_force_nearest_neighbour():
    x, y = _data(5)
    pred = knn_fit_predict(1)(x[:40], y[:40], x[40:])
    d = ((x[40:, None, :] - x[None, :40, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(pred, y[:40][np.argmin(d, axis=1)])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(train_fraction=0.0), ValueError,
     r"run_leakage: train_fraction must be a float in \(0, 1\)"),
    (dict(train_fraction=1.0), ValueError, "run_leakage: train_fraction must be"),
    (dict(train_fraction=0.5, n_splits=0), ValueError,
     "run_leakage: n_splits must be a positive int"),
    (dict(train_fraction=0.5, fit_predict=3), TypeError,
     "run_leakage: fit_predict must be callable"),
])
def test_leakage_experiment_rejects_bad_arguments(kwargs, exc, match):
    x, y = _data(6)
    with pytest.raises(exc, match=match):
        run_leakage(x, y, **kwargs)


def test_leakage_experiment_rejects_mismatched_labels_and_integer_features():
    x, y = _data(7)
    with pytest.raises(ValueError, match=r"run_leakage: y must be shape \(60,\)"):
        run_leakage(x, y[:-1], train_fraction=0.5)
    with pytest.raises(TypeError, match="run_leakage: x must be"):
        run_leakage(x.astype(int), y, train_fraction=0.5)


@pytest.mark.parametrize("k, exc", [(0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_knn_fit_predict_rejects_bad_k(k, exc):
    with pytest.raises(exc, match="knn_fit_predict: k must be a positive int"):
        knn_fit_predict(k)
