"""Chapter 1 exercises: standardize with training statistics; ZCA whitening, the full
decorrelation that batch norm does without; gradient descent on least squares.

Each exercise is declared in a few lines: how to build a case from its
parameters, the expected answer (an independent oracle: scikit-learn, the
SVD, a closed form), the ``bncourse`` reference, and the common mistakes
with their hints. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/01_normalizing_inputs.ipynb"


# --------------------------------------------------------------------------- standardize

def _features(seed, n_train=40, n_test=15, d=3, dtype="float64", offset=3.0, constant=False):
    """Features with scales from 0.01 to 1000 and means up to ``offset`` standard deviations.

    With ``constant``, the last feature is constant on the training set (a
    dyadic value, so its mean and std are exact) and varies on the test set.
    """
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-2, 3, size=d)
    loc = scale * rng.uniform(-offset, offset, size=d)
    x = loc + scale * rng.standard_normal((n_train + n_test, d))
    if constant:
        x[:n_train, -1] = 3.25
    return {"x_train": x[:n_train].astype(dtype), "x_test": x[n_train:].astype(dtype)}


def _standardize_reference(x_train, x_test):
    from bncourse.standardize import Standardizer

    s = Standardizer().fit(x_train)
    return s.transform(x_train), s.transform(x_test)


def _standardize_sklearn(x_train, x_test):
    from sklearn.preprocessing import StandardScaler

    s = StandardScaler().fit(x_train)
    return s.transform(x_train), s.transform(x_test)


def _scale(std):
    return np.where(std > 0, std, 1)


def _with_stats(mean_std):
    """A mistaken standardization from a function ``(x_train, x_test) -> ((m1, s1), (m2, s2))``."""
    def mistake(x_train, x_test):
        (m1, s1), (m2, s2) = mean_std(x_train, x_test)
        return ((x_train - m1) / _scale(s1)).astype(x_train.dtype), \
            ((x_test - m2) / _scale(s2)).astype(x_test.dtype)
    return mistake


def _both(x):
    return x.mean(axis=0), x.std(axis=0)


_STANDARDIZE_MISTAKES = [
    Mistake("use the population standard deviation (np.std's default, ddof=0), as "
            "scikit-learn's StandardScaler does; ddof=1 divides by n - 1.",
            _with_stats(lambda a, b: ((a.mean(0), a.std(0, ddof=1)),) * 2)),
    Mistake("standardize x_test with the TRAINING mean and std. A test set standardized with "
            "its own statistics is not what a deployed model sees (one new sample has no "
            "statistics of its own).",
            _with_stats(lambda a, b: (_both(a), _both(b)))),
    Mistake("compute the statistics on x_train only: mixing the test samples into them leaks "
            "the test set into the preprocessing.",
            _with_stats(lambda a, b: (_both(np.concatenate([a, b])),) * 2)),
    Mistake("take one mean and one std per feature (column): reduce over the samples, axis=0.",
            _with_stats(lambda a, b: ((a.mean(), a.std()),) * 2)),
    Mistake("a feature that is constant on the training set has std 0; divide by 1 instead "
            "(its standardized training values are then exactly 0), as scikit-learn does.",
            lambda a, b: tuple(((x - a.mean(0)) / a.std(0)).astype(x.dtype) for x in (a, b))),
]


# --------------------------------------------------------------------------- whitening

def _whiten_case(seed, n_train=60, n_test=10, d=3, eps=1e-5, corr=0.9, offset=3.0):
    """Correlated features (pairwise correlation up to ``corr``) with different scales."""
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + corr * rng.uniform(-1.0, 1.0, size=(d, d))
    scale = 10.0 ** rng.uniform(-1, 1, size=d)
    x = (rng.standard_normal((n_train + n_test, d)) @ mix) * scale \
        + offset * rng.uniform(-1.0, 1.0, size=d)
    return {"x_train": x[:n_train], "x_test": x[n_train:], "eps": eps}


def _whiten_reference(x_train, x_test, eps):
    """ZCA through bncourse's Standardizer for the mean, then the eigendecomposition."""
    from bncourse.standardize import Standardizer

    mean = Standardizer().fit(x_train).mean_
    centred = x_train - mean
    cov = centred.T @ centred / len(x_train)
    values, vectors = np.linalg.eigh(cov)
    w = (vectors / np.sqrt(values + eps)) @ vectors.T
    return centred @ w, (x_test - mean) @ w


def _whiten_scipy(x_train, x_test, eps):
    """(cov + eps I)^(-1/2) as SciPy's matrix power, an independent route."""
    from scipy.linalg import fractional_matrix_power

    mean = x_train.mean(axis=0)
    cov = np.cov(x_train, rowvar=False, bias=True).reshape(x_train.shape[1], -1)
    w = np.real(fractional_matrix_power(cov + eps * np.eye(len(cov)), -0.5))
    return (x_train - mean) @ w, (x_test - mean) @ w


def _whiten_mistake(kind):
    def mistake(x_train, x_test, eps):
        fit = x_test if kind == "test-stats" else x_train
        mean = fit.mean(axis=0)
        centred = fit - mean if kind != "uncentred" else fit
        cov = centred.T @ centred / (len(fit) - (kind == "unbiased"))
        values, vectors = np.linalg.eigh(cov)
        root = np.sqrt(values) + eps if kind == "eps-outside" else np.sqrt(values + eps)
        w = vectors / root if kind == "pca" else (vectors / root) @ vectors.T
        if kind == "test-stats":
            train_mean = x_train.mean(axis=0)
            tc = x_train - train_mean
            tv, tu = np.linalg.eigh(tc.T @ tc / len(x_train))
            return tc @ ((tu / np.sqrt(tv + eps)) @ tu.T), (x_test - mean) @ w
        return (x_train - mean) @ w, (x_test - mean) @ w
    return mistake


_WHITEN_MISTAKES = [
    Mistake("the test set is whitened with the TRAINING mean and covariance, like any "
            "preprocessing fitted on training data.", _whiten_mistake("test-stats")),
    Mistake("that is PCA whitening, which also rotates the features onto the eigenvectors; "
            "ZCA rotates back, so each whitened feature stays closest to the original one "
            "(the whitening matrix is symmetric).", _whiten_mistake("pca")),
    Mistake("the covariance is the biased one (divide by n), like the variance batch norm "
            "uses.", _whiten_mistake("unbiased")),
    Mistake("subtract the mean before the covariance: x.T @ x / n is the second moment, not "
            "the covariance.", _whiten_mistake("uncentred")),
    Mistake("eps belongs inside the square root, added to each eigenvalue, as in batch "
            "norm.", _whiten_mistake("eps-outside")),
]


# --------------------------------------------------------------------------- gradient descent

def _design(seed, n=60, p=2, offset=5.0, spread=2.0):
    """A design matrix ``[1, features]`` with feature scales spread over ``spread`` decades."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(0, spread, size=p)
    loc = scale * rng.uniform(0.5, offset, size=p)
    x = loc + scale * rng.standard_normal((n, p))
    return np.concatenate([np.ones((n, 1)), x], axis=1)


def _gd_case(seed, n=50, p=2, n_steps=30, lr_factor=1.0, offset=2.0, spread=1.0):
    """Least squares on a design with intercept; ``lr = lr_factor / L`` (L: top curvature)."""
    rng = np.random.default_rng(seed)
    x = _design(seed, n=n, p=p, offset=offset, spread=spread)
    y = x @ rng.normal(size=p + 1) + 0.1 * rng.standard_normal(n)
    big_l = float(np.linalg.eigvalsh(x.T @ x / n)[-1])
    return {"x": x, "y": y, "lr": lr_factor / big_l, "n_steps": n_steps}


def _gd_reference(x, y, lr, n_steps):
    from bncourse.experiments.conditioning import gradient_descent, least_squares_quadratic

    quad = least_squares_quadratic(x, y)
    path = gradient_descent(quad, lr, n_steps)
    return path[-1], quad.loss(path.T)


def _gd_closed_form(x, y, lr, n_steps):
    # From w_0 = 0, each eigen-direction i of H evolves on its own:
    # w_t = sum_i (1 - (1 - lr h_i)^t) / h_i * (v_i . b) v_i, with H = x^T x / n, b = x^T y / n.
    n = x.shape[0]
    h, v = np.linalg.eigh(x.T @ x / n)
    b, c = x.T @ y / n, float(y @ y) / (2 * n)
    t = np.arange(n_steps + 1)[:, None]
    coef = (1.0 - (1.0 - lr * h) ** t) / h * (v.T @ b)        # (n_steps + 1, d)
    path = coef @ v.T
    losses = 0.5 * np.sum((path @ v * h) * (path @ v), axis=1) - path @ b + c
    return path[-1], losses


def _gd_loop(grad_scale=1.0, loss_scale=1.0, skip_first=False):
    def mistake(x, y, lr, n_steps):
        n = x.shape[0]
        w = np.zeros(x.shape[1])
        losses = [loss_scale * np.sum((x @ w - y) ** 2) / (2 * n)]
        for _ in range(n_steps):
            w = w - lr * grad_scale * x.T @ (x @ w - y) / n
            losses.append(loss_scale * np.sum((x @ w - y) ** 2) / (2 * n))
        return w, np.array(losses[1:] if skip_first else losses)
    return mistake


_GD_MISTAKES = [
    Mistake("the loss has the factor 1/2: f(w) = ||x w - y||^2 / (2 n), whose gradient is "
            "x.T @ (x @ w - y) / n, without a factor 2.", _gd_loop(grad_scale=2.0)),
    Mistake("average the gradient over the samples: x.T @ (x @ w - y) / n (a sum over the "
            "samples makes the step n times too large).", lambda x, y, lr, k: _gd_loop(
                grad_scale=x.shape[0])(x, y, lr, k)),
    Mistake("the loss is ||x w - y||^2 / (2 n), half the mean squared error.",
            _gd_loop(loss_scale=2.0)),
    Mistake("losses starts with the loss at w_0 = 0 before any step: n_steps + 1 values.",
            _gd_loop(skip_first=True)),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch01-standardize-train-test",
        notebook=NOTEBOOK,
        function="standardize_train_test",
        points=2,
        reference=_standardize_reference,
        expected=_standardize_sklearn,
        make_case=_features,
        visible=[dict(seed=0), dict(seed=1, n_train=25, n_test=8, d=4, dtype="float32"),
                 dict(seed=2, d=2, constant=True, note="a feature constant on x_train")],
        hidden=[dict(seed=101, n_train=7, n_test=3, d=1), dict(seed=102, n_train=2, n_test=5),
                dict(seed=103, n_train=60, n_test=1, d=6, dtype="float32", constant=True),
                dict(seed=104, n_train=33, n_test=20, d=5, offset=100.0),
                dict(seed=105, n_train=9, n_test=9, d=3, constant=True)],
        outputs=("z_train", "z_test"),
        rtol={"float32": 1e-5, "float64": 1e-9},
        mistakes=_STANDARDIZE_MISTAKES,
        stub='''import numpy as np


def standardize_train_test(x_train, x_test):
    """Standardize both sets with the mean and std of each feature of x_train.

    x_train: (n_train, d) and x_test: (n_test, d) float arrays.
    Returns (z_train, z_test), same shapes and dtype as the inputs.
    Use the population std (ddof=0); a feature that is constant on x_train
    (std 0) keeps scale 1 instead of dividing by zero.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch01-zca-whitening",
        notebook=NOTEBOOK,
        function="zca_whiten",
        points=2,
        reference=_whiten_reference,
        expected=_whiten_scipy,
        make_case=_whiten_case,
        visible=[dict(seed=0, note="3 correlated features"),
                 dict(seed=1, d=2, n_train=40, n_test=5, corr=0.99,
                      note="two nearly collinear features"),
                 dict(seed=2, d=4, eps=1e-2, offset=50.0)],
        hidden=[dict(seed=201, d=1, n_train=5, n_test=2, note="a single feature"),
                dict(seed=202, d=6, n_train=100, n_test=30),
                dict(seed=203, d=3, n_train=4, n_test=3, eps=0.1, note="4 samples"),
                dict(seed=204, d=2, n_train=20, n_test=1, corr=0.5, eps=1.0)],
        outputs=("z_train", "z_test"),
        rtol=1e-8,
        mistakes=_WHITEN_MISTAKES,
        stub='''import numpy as np


def zca_whiten(x_train, x_test, eps):
    """ZCA-whiten both sets with the statistics of x_train.

    x_train: (n_train, d) and x_test: (n_test, d) float64 arrays; eps: a float > 0
    added to the variances (the eigenvalues of the covariance) before any root.
    Whitening maps the training features to features with zero mean and (up to
    eps) identity covariance; ZCA is the whitening with a symmetric matrix, the one
    that changes the features least. Use the biased covariance (divide by n_train).
    Returns (z_train, z_test), same shapes as the inputs.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch01-gradient-descent",
        notebook=NOTEBOOK,
        function="gradient_descent_losses",
        points=2,
        reference=_gd_reference,
        expected=_gd_closed_form,
        make_case=_gd_case,
        visible=[dict(seed=0), dict(seed=1, n=20, p=1, n_steps=10, lr_factor=1.9)],
        hidden=[dict(seed=301, n=40, p=3, n_steps=50, lr_factor=0.5),
                dict(seed=302, n=15, p=1, n_steps=0),
                dict(seed=303, n=30, p=2, n_steps=12, lr_factor=2.1, note="too large a step"),
                dict(seed=304, n=64, p=4, n_steps=25, spread=0.5)],
        outputs=("w", "losses"),
        rtol=1e-8,
        mistakes=_GD_MISTAKES,
        stub='''import numpy as np


def gradient_descent_losses(x, y, lr, n_steps):
    """Gradient descent on f(w) = ||x w - y||^2 / (2 n), starting from w = 0.

    x: (n, d) and y: (n,) float64 arrays; lr: the step size; n_steps: an int >= 0.
    Each step is w <- w - lr * grad f(w).
    Returns (w, losses): the weights after n_steps steps, shape (d,), and the
    losses f(w_0), f(w_1), ..., f(w_{n_steps}), shape (n_steps + 1,).
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
