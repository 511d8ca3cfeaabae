"""Tests for bncourse.exercises.ch01: plain solutions pass, and ZCA is what its oracle says."""

import numpy as np

from bncourse.exercises import get_exercise


# Independent learner-style solutions, written the plain NumPy way (not bncourse's code).
def standardize_train_test(x_train, x_test):
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    scale = np.where(std > 0, std, 1).astype(x_train.dtype)
    return (x_train - mean) / scale, (x_test - mean) / scale


def gradient_descent_losses(x, y, lr, n_steps):
    n = x.shape[0]
    w = np.zeros(x.shape[1])
    losses = [np.sum((x @ w - y) ** 2) / (2 * n)]
    for _ in range(n_steps):
        w = w - lr * x.T @ (x @ w - y) / n
        losses.append(np.sum((x @ w - y) ** 2) / (2 * n))
    return w, np.array(losses)


def zca_whiten(x_train, x_test, eps):
    mean = x_train.mean(axis=0)
    cov = np.cov(x_train - mean, rowvar=False, bias=True).reshape(x_train.shape[1], -1)
    values, vectors = np.linalg.eigh(cov)
    w = vectors @ np.diag(1 / np.sqrt(values + eps)) @ vectors.T
    return (x_train - mean) @ w, (x_test - mean) @ w


SOLUTIONS = {"ch01-standardize-train-test": standardize_train_test,
             "ch01-gradient-descent": gradient_descent_losses,
             "ch01-zca-whitening": zca_whiten}


def test_zca_whitens_the_training_set_with_a_symmetric_matrix():
    ex = get_exercise("ch01-zca-whitening")
    for case in ex.cases("all"):
        x_train, eps = case.args["x_train"], case.args["eps"]
        z_train, _ = ex.expected_output(case)
        cov = np.cov(x_train, rowvar=False, bias=True).reshape(x_train.shape[1], -1)
        np.testing.assert_allclose(z_train.mean(axis=0), 0.0, atol=1e-9)
        # z = (x - mean) W with W = (cov + eps I)^(-1/2): cov_z = W cov W, W symmetric
        w = np.linalg.lstsq(x_train - x_train.mean(axis=0), z_train, rcond=None)[0]
        np.testing.assert_allclose(w, w.T, atol=1e-8 * np.abs(w).max())
        np.testing.assert_allclose(w @ (cov + eps * np.eye(len(cov))) @ w, np.eye(len(cov)),
                                   atol=1e-8)
