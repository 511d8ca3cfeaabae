"""Why feature scale matters to gradient descent: least squares as a quadratic.

The mean squared error of a linear model is a quadratic in the weights,

    f(w) = 1/(2n) ||X w - y||^2 = 1/2 w^T H w - b^T w + c,
    H = X^T X / n,   b = X^T y / n,   c = y^T y / (2n),

so everything about gradient descent on it is decided by the Hessian ``H``
(shape ``(d, d)``, the same at every ``w``). With the largest and smallest
eigenvalues ``L`` and ``mu`` of ``H``, a step size ``lr`` is stable when
``0 < lr < 2 / L``, the best constant step is ``2 / (L + mu)``, and the error
shrinks by the factor ``(kappa - 1) / (kappa + 1)`` per step, where
``kappa = L / mu`` is the condition number. Badly scaled or off-centre features
make ``kappa`` huge; standardizing them makes it small.

Shapes: ``n`` samples, ``d`` weights (features, plus one if an intercept
column is appended with :func:`with_intercept`), ``k`` learning rates run side
by side.

Example
-------
>>> import numpy as np
>>> x = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]])
>>> quad = least_squares_quadratic(with_intercept(x), np.array([1.0, 2.0, 3.0]))
>>> quad.hessian.shape
(3, 3)
>>> bool(condition_number(quad.hessian) > 1)
True
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bncourse._checks import check_array, check_positive, fail

__all__ = [
    "Quadratic",
    "StepsResult",
    "with_intercept",
    "least_squares_quadratic",
    "extreme_eigenvalues",
    "condition_number",
    "gradient_descent",
    "steps_to_tolerance",
    "relative_gap",
    "predicted_steps",
    "loss_grid",
]

# A run whose relative gap grows past this factor is declared diverged and
# frozen, long before its numbers could overflow.
_DIVERGENCE_FACTOR = 1e8


class Quadratic(NamedTuple):
    """The quadratic ``f(w) = 1/2 w^T H w - b^T w + c``.

    Attributes
    ----------
    hessian : ndarray, shape (d, d)
        ``H``, symmetric positive semi-definite.
    linear : ndarray, shape (d,)
        ``b``.
    constant : float
        ``c``.
    """

    hessian: np.ndarray
    linear: np.ndarray
    constant: float

    def loss(self, w: np.ndarray) -> np.ndarray:
        """``f(w)`` for ``w`` of shape ``(d,)`` (a float) or ``(d, k)`` (shape ``(k,)``)."""
        hw = self.hessian @ w
        return 0.5 * np.sum(w * hw, axis=0) - self.linear @ w + self.constant

    def gradient(self, w: np.ndarray) -> np.ndarray:
        """``H w - b``, the same shape as ``w``."""
        b = self.linear if w.ndim == 1 else self.linear[:, None]
        return self.hessian @ w - b

    def minimizer(self) -> np.ndarray:
        """A minimizer ``w*`` of ``f`` (shape ``(d,)``): the least-norm solution of ``H w = b``."""
        return np.linalg.lstsq(self.hessian, self.linear, rcond=None)[0]


class StepsResult(NamedTuple):
    """What :func:`steps_to_tolerance` measured, one entry per learning rate.

    Attributes
    ----------
    lrs : ndarray, shape (k,)
        The learning rates tried.
    steps : ndarray of int, shape (k,)
        Gradient steps until the relative gap first fell to ``tol``; ``-1``
        where it never did within ``max_steps`` (or diverged).
    gap : ndarray, shape (k,)
        Relative gap ``(f(w_t) - f*) / (f(w_0) - f*)`` at the end of the run
        (when the run stopped, for a diverged one).
    diverged : ndarray of bool, shape (k,)
        True where the loss blew up (the step was too large to be stable).
    """

    lrs: np.ndarray
    steps: np.ndarray
    gap: np.ndarray
    diverged: np.ndarray

    def best(self):
        """``(lr, steps)`` of the fastest converged run, or ``None`` if none converged."""
        ok = self.steps >= 0
        if not np.any(ok):
            return None
        i = np.flatnonzero(ok)[np.argmin(self.steps[ok])]
        return float(self.lrs[i]), int(self.steps[i])


def with_intercept(x: np.ndarray) -> np.ndarray:
    """Prepend a column of ones to ``x`` so that ``w[0]`` acts as an intercept.

    Parameters
    ----------
    x : ndarray, shape (n, p)

    Returns
    -------
    ndarray, shape (n, p + 1), same dtype as ``x``; column 0 is all ones.
    """
    x = check_array("with_intercept", "x", x, ndim=2)
    return np.concatenate([np.ones((x.shape[0], 1), dtype=x.dtype), x], axis=1)


def least_squares_quadratic(x: np.ndarray, y: np.ndarray) -> Quadratic:
    """The mean squared error ``1/(2n) ||x w - y||^2`` written as a :class:`Quadratic`.

    Parameters
    ----------
    x : ndarray, shape (n, d)
        Design matrix (append an intercept column first if the model has one).
    y : ndarray, shape (n,)
        Targets.

    Returns
    -------
    Quadratic with ``H = x^T x / n``, ``b = x^T y / n``, ``c = y^T y / (2n)``,
    computed in float64.

    Raises
    ------
    TypeError, ValueError
        If ``x`` is not a finite 2-D float array, or ``y`` not a finite float
        vector with one entry per row of ``x``.
    """
    func = "least_squares_quadratic"
    x = check_array(func, "x", x, ndim=2).astype(np.float64)
    y = check_array(func, "y", y, ndim=1).astype(np.float64)
    if y.shape[0] != x.shape[0]:
        fail(func, "y", f"shape ({x.shape[0]},) to match the {x.shape[0]} rows of x",
              f"shape {y.shape}")
    n = x.shape[0]
    return Quadratic(hessian=x.T @ x / n, linear=x.T @ y / n, constant=float(y @ y) / (2 * n))


def _check_hessian(func: str, h) -> np.ndarray:
    h = check_array(func, "h", h, ndim=2)
    if h.shape[0] != h.shape[1] or h.shape[0] == 0:
        fail(func, "h", "a non-empty square matrix", f"shape {h.shape}")
    if not np.allclose(h, h.T, rtol=1e-10, atol=0.0):
        fail(func, "h", "symmetric", "a matrix with h != h.T")
    return h


def extreme_eigenvalues(h: np.ndarray) -> tuple[float, float]:
    """``(mu, L)``: the smallest and largest eigenvalue of a symmetric matrix ``h``.

    ``L`` is the smoothness constant of the quadratic (the largest curvature),
    ``mu`` its strong-convexity constant (the smallest curvature).

    Parameters
    ----------
    h : ndarray, shape (d, d), symmetric.

    Raises
    ------
    TypeError, ValueError
        If ``h`` is not a finite, square, symmetric float matrix.
    """
    h = _check_hessian("extreme_eigenvalues", h)
    eig = np.linalg.eigvalsh(h.astype(np.float64))
    return float(eig[0]), float(eig[-1])


def condition_number(h: np.ndarray) -> float:
    """``kappa = L / mu``, the condition number of a symmetric positive semi-definite ``h``.

    For such a matrix this equals ``numpy.linalg.cond(h)`` (the ratio of the
    largest to the smallest singular value). It is ``inf`` when ``h`` is
    singular to working precision (``mu <= d * eps * L``), as for a constant
    feature next to an intercept.

    Parameters
    ----------
    h : ndarray, shape (d, d), symmetric positive semi-definite.

    Raises
    ------
    TypeError, ValueError
        If ``h`` is not a finite, square, symmetric float matrix, or has an
        eigenvalue clearly below zero (it is then no Hessian of a convex
        quadratic).
    """
    h = _check_hessian("condition_number", h)
    eig = np.linalg.eigvalsh(h.astype(np.float64))
    mu, big_l = float(eig[0]), float(eig[-1])
    tiny = h.shape[0] * np.finfo(np.float64).eps * max(abs(big_l), abs(mu))
    if mu < -tiny:
        fail("condition_number", "h", "positive semi-definite",
              f"smallest eigenvalue {mu:.3g}")
    if big_l <= 0.0 or mu <= tiny:
        return math.inf
    return big_l / mu


def _check_quadratic(func: str, quad) -> Quadratic:
    if not isinstance(quad, Quadratic):
        fail(func, "quad", "a bncourse.experiments.conditioning.Quadratic", type(quad).__name__, TypeError)
    d = quad.hessian.shape[0]
    if quad.linear.shape != (d,):
        fail(func, "quad", f"linear term of shape ({d},)", f"shape {quad.linear.shape}")
    return quad


def _check_w0(func: str, w0, d: int) -> np.ndarray:
    if w0 is None:
        return np.zeros(d)
    w0 = check_array(func, "w0", w0, ndim=1)
    if w0.shape != (d,):
        fail(func, "w0", f"shape ({d},)", f"shape {w0.shape}")
    return w0.astype(np.float64)


def _check_steps(func: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        fail(func, arg, "a non-negative int", f"{type(value).__name__} {value!r}", TypeError)
    if value < 0:
        fail(func, arg, "a non-negative int", repr(value))
    return int(value)


def gradient_descent(quad: Quadratic, lr: float, n_steps: int,
                     w0: np.ndarray | None = None) -> np.ndarray:
    """Run ``w_{t+1} = w_t - lr * grad f(w_t)`` for ``n_steps`` steps and return the path.

    Parameters
    ----------
    quad : Quadratic
        The loss; its gradient is ``H w - b``.
    lr : float
        Step size (learning rate), positive.
    n_steps : int
        Number of gradient steps, at least 0.
    w0 : ndarray, shape (d,), optional
        Starting point; zeros by default.

    Returns
    -------
    ndarray, shape (n_steps + 1, d): ``w_0, w_1, ..., w_{n_steps}``.

    Raises
    ------
    TypeError, ValueError
        For a wrong ``quad``, a non-positive ``lr``, a negative ``n_steps``, or
        a ``w0`` of the wrong shape.
    """
    func = "gradient_descent"
    quad = _check_quadratic(func, quad)
    lr = check_positive(func, "lr", lr)
    n_steps = _check_steps(func, "n_steps", n_steps)
    w = _check_w0(func, w0, quad.hessian.shape[0])
    path = np.empty((n_steps + 1, w.shape[0]))
    path[0] = w
    h, b = quad.hessian, quad.linear
    for t in range(n_steps):
        w = w - lr * (h @ w - b)
        path[t + 1] = w
    return path


def steps_to_tolerance(quad: Quadratic, lrs, tol: float = 1e-6, max_steps: int = 10_000,
                       w0: np.ndarray | None = None) -> StepsResult:
    """Count gradient steps until the relative gap falls to ``tol``, for several step sizes.

    The relative gap after ``t`` steps is ``(f(w_t) - f*) / (f(w_0) - f*)``,
    which is 1 at the start and 0 at a minimizer. All learning rates run side
    by side from the same ``w0`` (zeros by default); a run stops counting when
    its gap first reaches ``tol`` (its ``steps``), when it diverges (gap above
    ``1e8``; ``steps = -1``, ``diverged = True``), or after ``max_steps``
    steps (``steps = -1``).

    Parameters
    ----------
    quad : Quadratic
    lrs : float or sequence of float, shape (k,)
        Positive step sizes.
    tol : float
        Target relative gap, in (0, 1).
    max_steps : int
        Step budget per learning rate.
    w0 : ndarray, shape (d,), optional

    Returns
    -------
    StepsResult

    Raises
    ------
    TypeError, ValueError
        For bad arguments, or when ``w0`` already minimizes ``f`` (the gap is
        then undefined).
    """
    func = "steps_to_tolerance"
    quad = _check_quadratic(func, quad)
    lrs = np.atleast_1d(np.asarray(lrs, dtype=np.float64))
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs)) or np.any(lrs <= 0):
        fail(func, "lrs", "a non-empty 1-D sequence of positive floats", repr(lrs))
    tol = check_positive(func, "tol", tol)
    if tol >= 1.0:
        fail(func, "tol", "a float in (0, 1)", repr(tol))
    max_steps = _check_steps(func, "max_steps", max_steps)
    w = _check_w0(func, w0, quad.hessian.shape[0])

    f_star = float(quad.loss(quad.minimizer()))
    gap0 = float(quad.loss(w)) - f_star
    if gap0 <= 1e-14 * max(1.0, abs(f_star)):
        fail(func, "w0", "a point that does not already minimize f",
              f"f(w0) - f* = {gap0:.3g}")

    k = lrs.size
    steps = np.full(k, -1, dtype=np.int64)
    gap = np.ones(k)
    diverged = np.zeros(k, dtype=bool)
    h, b, c = quad.hessian, quad.linear[:, None], quad.constant
    # The runs still going, compacted: columns of ``wa`` are their weights.
    idx = np.arange(k)
    wa = np.repeat(w[:, None], k, axis=1)            # (d, k_active)
    lr_a = lrs.copy()
    for t in range(max_steps + 1):
        hw = h @ wa                                   # serves both the loss and the gradient
        # f(w) - f* is a difference of nearly equal numbers near the optimum;
        # clip the round-off below zero.
        g = np.maximum(0.5 * np.einsum("ij,ij->j", wa, hw) - quad.linear @ wa + c - f_star,
                       0.0) / gap0
        gap[idx] = g
        if t > 0:
            done = g <= tol
            blown = ~done & (~np.isfinite(g) | (g > _DIVERGENCE_FACTOR))
            if np.any(done | blown):
                steps[idx[done]] = t
                diverged[idx[blown]] = True
                keep = ~(done | blown)
                idx, wa, hw, lr_a = idx[keep], wa[:, keep], hw[:, keep], lr_a[keep]
                if idx.size == 0:
                    break
        if t == max_steps:
            break
        wa = wa - lr_a * (hw - b)
    return StepsResult(lrs=lrs, steps=steps, gap=gap, diverged=diverged)


def _eigen_error(func: str, quad: Quadratic, w0) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of H, and each eigenvector's share ``lam_i c_i^2`` of ``f(w0) - f*``."""
    quad = _check_quadratic(func, quad)
    w = _check_w0(func, w0, quad.hessian.shape[0])
    lam, vecs = np.linalg.eigh(quad.hessian.astype(np.float64))
    lam = np.maximum(lam, 0.0)                       # round-off below zero is no curvature
    c = vecs.T @ (w - quad.minimizer())
    weight = lam * c ** 2                            # share of f(w0) - f* along each eigenvector
    total = float(weight.sum())
    if total <= 0.0:
        fail(func, "w0", "a point that does not already minimize f", "f(w0) - f* = 0")
    return lam, weight / total


def _gap_from_eigen(lam: np.ndarray, share: np.ndarray, lr: float, t: np.ndarray) -> np.ndarray:
    # gap_t = sum_i share_i * |1 - lr lam_i|^(2t), evaluated in logs so that huge t is safe.
    keep = share > 0.0
    r = np.abs(1.0 - lr * lam[keep])
    share = share[keep]
    t = np.asarray(t, dtype=np.float64)
    solved = r == 0.0                               # components removed exactly by one step
    log_r = np.log(np.where(solved, 1.0, r))
    powers = np.exp(np.minimum(2.0 * t[..., None] * log_r, 700.0))
    powers = np.where(solved & (t[..., None] > 0), 0.0, powers)
    return powers @ share


def relative_gap(quad: Quadratic, lr: float, t, w0: np.ndarray | None = None) -> np.ndarray:
    """The exact relative gap ``(f(w_t) - f*) / (f(w_0) - f*)`` after ``t`` gradient steps.

    Gradient descent on a quadratic acts on each eigenvector of ``H``
    separately: with eigenvalues ``lam_i`` and the starting error
    ``w_0 - w* = sum_i c_i v_i``,

        gap_t = sum_i lam_i c_i^2 (1 - lr lam_i)^(2t) / sum_i lam_i c_i^2,

    so the gap after any number of steps costs one eigendecomposition instead
    of ``t`` iterations. It agrees with :func:`steps_to_tolerance` up to
    round-off.

    Parameters
    ----------
    quad : Quadratic
    lr : float
        Positive step size.
    t : int or array of int, any shape
        Step counts (>= 0).
    w0 : ndarray, shape (d,), optional
        Starting point; zeros by default.

    Returns
    -------
    ndarray of the shape of ``t`` (values above 1 mean the run is diverging).

    Raises
    ------
    TypeError, ValueError
        For a bad ``quad``, ``lr`` or ``w0``, a negative ``t``, or when ``w0``
        already minimizes ``f``.
    """
    func = "relative_gap"
    lr = check_positive(func, "lr", lr)
    t = np.asarray(t)
    if not np.issubdtype(t.dtype, np.integer) or np.any(t < 0):
        fail(func, "t", "non-negative integer step counts", repr(t))
    lam, share = _eigen_error(func, quad, w0)
    return _gap_from_eigen(lam, share, lr, t.astype(np.float64))


def predicted_steps(quad: Quadratic, lr: float, tol: float = 1e-6,
                    w0: np.ndarray | None = None) -> float:
    """The exact number of gradient steps until the relative gap first falls to ``tol``.

    Found by bisection on :func:`relative_gap`, so it is available for runs far
    too long to simulate (a badly conditioned problem can need ``1e8`` steps).
    For ``0 < lr < 2 / L`` the gap decreases with every step; for a larger
    ``lr`` (or one that leaves a component of the error untouched) it never
    reaches ``tol`` and the answer is ``inf``.

    Parameters
    ----------
    quad : Quadratic
    lr : float
        Positive step size.
    tol : float
        Target relative gap, in (0, 1).
    w0 : ndarray, shape (d,), optional
        Starting point; zeros by default.

    Returns
    -------
    float: a whole number of steps, or ``inf``.

    Raises
    ------
    TypeError, ValueError
        As :func:`relative_gap`, or for ``tol`` outside (0, 1).
    """
    func = "predicted_steps"
    lr = check_positive(func, "lr", lr)
    tol = check_positive(func, "tol", tol)
    if tol >= 1.0:
        fail(func, "tol", "a float in (0, 1)", repr(tol))
    lam, share = _eigen_error(func, quad, w0)
    if np.any((share > 0.0) & (np.abs(1.0 - lr * lam) >= 1.0)):
        return math.inf

    def gap(t: int) -> float:
        return float(_gap_from_eigen(lam, share, lr, np.array(float(t))))

    hi = 1
    while gap(hi) > tol:                              # the gap is monotone: double, then bisect
        hi *= 2
        if hi > 2 ** 62:
            return math.inf
    lo = hi // 2                                      # gap(lo) > tol, or lo == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if gap(mid) <= tol:
            hi = mid
        else:
            lo = mid
    return float(hi)


def loss_grid(quad: Quadratic, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """``f`` of a two-weight quadratic on the grid ``w1 x w2``, ready for ``plt.contour``.

    Parameters
    ----------
    quad : Quadratic with ``d == 2``.
    w1 : ndarray, shape (a,)
        Values of the first weight (the plot's horizontal axis).
    w2 : ndarray, shape (b,)
        Values of the second weight (the vertical axis).

    Returns
    -------
    ndarray, shape (b, a): ``out[i, j] = f([w1[j], w2[i]])``, the layout of
    ``numpy.meshgrid(w1, w2)`` and of ``plt.contour(w1, w2, out)``.

    Raises
    ------
    TypeError, ValueError
        If ``quad`` does not have two weights or the axes are not finite 1-D
        float arrays.
    """
    func = "loss_grid"
    quad = _check_quadratic(func, quad)
    if quad.hessian.shape != (2, 2):
        fail(func, "quad", "a quadratic in 2 weights", f"{quad.hessian.shape[0]} weights")
    w1 = check_array(func, "w1", w1, ndim=1).astype(np.float64)
    w2 = check_array(func, "w2", w2, ndim=1).astype(np.float64)
    g1, g2 = np.meshgrid(w1, w2)
    w = np.stack([g1.ravel(), g2.ravel()])            # (2, a * b)
    return quad.loss(w).reshape(g1.shape)
