"""Chapter 1 exercises: standardize with training statistics; conditioning of least squares.

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


# --------------------------------------------------------------------------- conditioning

def _design(seed, n=60, p=2, offset=5.0, spread=2.0, standardized=False):
    """A design matrix ``[1, features]`` with feature scales spread over ``spread`` decades."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(0, spread, size=p)
    loc = scale * rng.uniform(0.5, offset, size=p)
    x = loc + scale * rng.standard_normal((n, p))
    if standardized:
        x = (x - x.mean(0)) / x.std(0)
    return np.concatenate([np.ones((n, 1)), x], axis=1)


def _design_case(seed, **kwargs):
    return {"x": _design(seed, **kwargs)}


def _condition_reference(x):
    from bncourse.experiments.conditioning import condition_number, least_squares_quadratic

    return condition_number(least_squares_quadratic(x, np.zeros(x.shape[0])).hessian)


def _condition_svd(x):
    # The Hessian x^T x / n has eigenvalues s_i^2 / n for the singular values s_i of x.
    s = np.linalg.svd(x, compute_uv=False)
    return float((s[0] / s[-1]) ** 2)


_CONDITION_MISTAKES = [
    Mistake("that is the condition number of x itself. The Hessian x.T @ x / n squares the "
            "singular values of x, so its condition number is the square.",
            lambda x: float(np.linalg.cond(x))),
    Mistake("the condition number is the LARGEST eigenvalue over the SMALLEST, so it is at "
            "least 1.",
            lambda x: 1.0 / _condition_svd(x)),
]


# --------------------------------------------------------------------------- gradient descent

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
        id="ch01-condition-number",
        notebook=NOTEBOOK,
        function="least_squares_condition_number",
        points=1,
        reference=_condition_reference,
        expected=_condition_svd,
        make_case=_design_case,
        visible=[dict(seed=0, note="raw features"), dict(seed=1, standardized=True,
                                                         note="standardized features")],
        hidden=[dict(seed=201, n=12, p=1), dict(seed=202, n=80, p=4, spread=3.0),
                dict(seed=203, n=30, p=3, standardized=True), dict(seed=204, p=2, offset=1.0)],
        outputs=("kappa",),
        rtol=1e-6,
        mistakes=_CONDITION_MISTAKES,
        stub='''import numpy as np


def least_squares_condition_number(x):
    """Condition number of the Hessian of f(w) = ||x w - y||^2 / (2 n).

    x: (n, d) float64 design matrix (its first column is the intercept's 1s).
    The Hessian is H = x.T @ x / n, the same for every w and every y.
    Returns kappa = (largest eigenvalue of H) / (smallest eigenvalue of H), a float.
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
