"""Chapter 6 exercises: the largest learning rate that still trains; gradient norms of a BN network.

The expected answers come from an independent computation: a plain loop for
the learning-rate search, PyTorch's autograd in float64 for the gradient
norms. The references are ``bncourse.experiments.optim_experiments.largest_stable_lr`` and
``bncourse.experiments.grad_explosion.bn_relu_grad_norms``. Heavy imports happen inside
the functions.
"""

from __future__ import annotations

import numpy as np

from bncourse.exercises import hints
from bncourse.exercises.core import Exercise, Mistake

NOTEBOOK = "book/06_optimization.ipynb"


# --------------------------------------------------------------------------- largest stable lr

def _lr_case(seed, n_lr=6, n_seeds=3, order="ascending", target=0.9, exact=False, gap=False,
             none_pass=False, n_test=450):
    """Accuracy curves that rise with the learning rate, peak, then fall or diverge (NaN).

    Accuracies are multiples of ``1 / n_test``, like a test-set accuracy. ``exact``
    sets the target to the accuracy of seed 0's largest successful learning rate;
    ``gap`` gives seed 0 a success, a failure, then a larger success; ``none_pass``
    keeps the last seed below the target everywhere.
    """
    rng = np.random.default_rng(seed)
    log_lr = np.linspace(-2.0, 1.0, n_lr)
    lrs = np.round(10.0 ** log_lr, 4)
    peak = rng.uniform(-1.2, 0.3, size=n_seeds)
    width = rng.uniform(0.5, 1.1, size=n_seeds)
    acc = 0.1 + 0.88 * np.exp(-((log_lr[:, None] - peak) / width) ** 2)
    acc = np.clip(acc + rng.normal(0.0, 0.02, size=acc.shape), 0.0, 1.0)
    acc = np.round(acc * n_test) / n_test
    blow_up = peak + rng.uniform(0.6, 1.2, size=n_seeds)
    acc[log_lr[:, None] > blow_up] = np.nan
    if gap and n_lr >= 4:
        acc[:, 0] = 0.2
        acc[1, 0], acc[2, 0], acc[3, 0] = 0.95, 0.5, 0.92
    if none_pass:
        acc[:, -1] = np.minimum(acc[:, -1], target - 0.05)
    if exact:
        passing = np.flatnonzero(acc[:, 0] >= target)
        if passing.size:
            target = float(acc[passing[-1], 0])
    if order == "descending":
        lrs, acc = lrs[::-1], acc[::-1]
    elif order == "shuffled":
        perm = rng.permutation(n_lr)
        lrs, acc = lrs[perm], acc[perm]
    return {"lrs": np.ascontiguousarray(lrs), "accuracies": np.ascontiguousarray(acc),
            "target": float(target)}


def _lr_reference(lrs, accuracies, target):
    from bncourse.experiments.optim_experiments import largest_stable_lr

    return largest_stable_lr(lrs, accuracies, target)


def _lr_loop(lrs, accuracies, target):
    out = np.full(accuracies.shape[1], np.nan)
    for s in range(accuracies.shape[1]):
        for lr, acc in zip(lrs, accuracies[:, s]):
            if acc >= target and not lr <= out[s]:      # NaN accuracy compares False
                out[s] = lr
    return out


def _lr_strict(lrs, accuracies, target):
    return _lr_reference(lrs, accuracies, np.nextafter(target, np.inf))


def _lr_best_accuracy(lrs, accuracies, target):
    filled = np.where(np.isnan(accuracies), -1.0, accuracies)
    best = lrs[np.argmax(filled, axis=0)]
    return np.where(filled.max(axis=0) >= target, best, np.nan)


def _lr_stop_at_first_failure(lrs, accuracies, target):
    order = np.argsort(lrs)
    out = np.full(accuracies.shape[1], np.nan)
    for s in range(accuracies.shape[1]):
        for a in order:
            if not accuracies[a, s] >= target:
                break
            out[s] = lrs[a]
    return out


def _lr_last_in_list(lrs, accuracies, target):
    out = np.full(accuracies.shape[1], np.nan)
    for s in range(accuracies.shape[1]):
        passing = np.flatnonzero(accuracies[:, s] >= target)
        if passing.size:
            out[s] = lrs[passing[-1]]
    return out


_LR_MISTAKES = [
    Mistake("a run reaches the target when its accuracy is at least the target (>=), "
            "an accuracy equal to the target counts.", _lr_strict),
    Mistake("return the LARGEST learning rate that reaches the target, not the learning rate "
            "with the best accuracy.", _lr_best_accuracy),
    Mistake("a small learning rate can miss the target too (it is slow), so do not stop at the "
            "first failure: keep every learning rate that reaches the target and take the "
            "largest.", _lr_stop_at_first_failure),
    Mistake("the learning rates may come in any order: take the largest value among the "
            "successful ones, not the last one in the list.", _lr_last_in_list),
    Mistake("when no learning rate reaches the target for a seed, return NaN for that seed "
            "(np.nan), not 0.",
            lambda lrs, acc, t: np.nan_to_num(_lr_reference(lrs, acc, t), nan=0.0)),
    Mistake("return one value per seed (a 1-D array with one entry per column of "
            "accuracies), not one value for all seeds.",
            lambda lrs, acc, t: float(np.nanmin(_lr_reference(lrs, acc, t)))),
]


# --------------------------------------------------------------------------- gradient norms

def _grad_case(seed, batch=16, width=8, depth=3, classes=5, dtype="float64", scale="he"):
    """Input ``(batch, width)``, hidden weights ``(depth, width, width)``, output weights
    ``(width, classes)`` (He-scaled Gaussians unless ``scale`` is a number) and an
    upstream gradient ``dlogits`` of shape ``(batch, classes)``."""
    rng = np.random.default_rng(seed)
    std = np.sqrt(2.0 / width) if scale == "he" else float(scale)
    x = rng.standard_normal((batch, width))
    weights = std * rng.standard_normal((depth, width, width))
    w_out = std * rng.standard_normal((width, classes))
    dlogits = rng.standard_normal((batch, classes)) / batch
    return {"x": x.astype(dtype), "weights": weights.astype(dtype),
            "w_out": w_out.astype(dtype), "dlogits": dlogits.astype(dtype)}


def _grad_reference(x, weights, w_out, dlogits):
    from bncourse.experiments.grad_explosion import bn_relu_grad_norms

    return bn_relu_grad_norms(x, list(weights) + [w_out], dlogits)


def _grad_torch(x, weights, w_out, dlogits):
    import torch
    import torch.nn.functional as F

    ws = [torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True)
          for w in list(weights) + [w_out]]
    h = torch.tensor(np.asarray(x, dtype=np.float64))
    for w in ws[:-1]:
        h = torch.relu(F.batch_norm(h @ w, None, None, training=True, eps=1e-5))
    logits = h @ ws[-1]
    grads = torch.autograd.grad(logits, ws,
                                grad_outputs=torch.tensor(np.asarray(dlogits, dtype=np.float64)))
    return np.array([g.norm().item() for g in grads]).astype(x.dtype)


def _grad_numpy(x, weights, w_out, dlogits, ddof=0, eps_outside=False, frozen_stats=False,
                mask_before_bn=False, squared=False, skip_output=False, eps=1e-5):
    """A plain NumPy forward/backward with one optional mistake."""
    weights = list(weights) + [w_out]
    h, saved = x, []
    for w in weights[:-1]:
        z = h @ w
        mean, var = z.mean(axis=0), z.var(axis=0, ddof=ddof)
        inv_std = 1.0 / (np.sqrt(var) + eps) if eps_outside else 1.0 / np.sqrt(var + eps)
        x_hat = (z - mean) * inv_std
        saved.append((h, z, x_hat, inv_std))
        h = np.maximum(x_hat, 0)
    dws = [h.T @ dlogits]
    dh = dlogits @ weights[-1].T
    for (h_in, z, x_hat, inv_std), w in zip(reversed(saved), reversed(weights[:-1])):
        dy = dh * ((z > 0) if mask_before_bn else (x_hat > 0))
        m = dy.shape[0]
        if frozen_stats:
            dz = dy * inv_std
        else:
            dz = inv_std / m * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))
        dws.append(h_in.T @ dz)
        dh = dz @ w.T
    norms = np.array([np.sum(d * d) if squared else np.linalg.norm(d) for d in reversed(dws)])
    return (norms[:-1] if skip_output else norms).astype(x.dtype)


def _grad_mistake(**kwargs):
    return lambda x, weights, w_out, dlogits: _grad_numpy(x, weights, w_out, dlogits, **kwargs)


_GRAD_MISTAKES = [
    Mistake(hints.UNBIASED_VARIANCE, _grad_mistake(ddof=1)),
    Mistake(hints.EPS_OUTSIDE_ROOT, _grad_mistake(eps_outside=True)),
    Mistake("backpropagate through the batch mean and variance too: they depend on every "
            "sample, so dz = inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat)) "
            "(chapter 4's closed form), not dy * inv_std.", _grad_mistake(frozen_stats=True)),
    Mistake("the ReLU acts on the output of BN, so its mask is (BN output > 0), not "
            "(pre-activation z > 0).", _grad_mistake(mask_before_bn=True)),
    Mistake("the Frobenius norm is the square root of the sum of squares "
            "(np.linalg.norm(dW)).", _grad_mistake(squared=True)),
    Mistake("return one norm per weight matrix, the output layer included "
            "(len(weights) + 1 values).", _grad_mistake(skip_output=True)),
]


# --------------------------------------------------------------------------- the exercises

EXERCISES = [
    Exercise(
        id="ch06-largest-stable-lr",
        notebook=NOTEBOOK,
        function="largest_stable_lr",
        points=1,
        reference=_lr_reference,
        expected=_lr_loop,
        make_case=_lr_case,
        visible=[dict(seed=0),
                 dict(seed=1, order="descending", exact=True,
                      note="decreasing learning rates; one accuracy equals the target"),
                 dict(seed=2, order="shuffled", gap=True, none_pass=True, n_seeds=4,
                      note="shuffled; a failure between two successes; a seed never succeeds")],
        hidden=[dict(seed=101, n_lr=1, n_seeds=1), dict(seed=102, n_lr=9, n_seeds=5),
                dict(seed=103, order="descending", exact=True, gap=True, target=0.8),
                dict(seed=104, order="shuffled", none_pass=True, n_seeds=2, target=0.95),
                dict(seed=105, n_lr=4, n_seeds=6, exact=True, gap=True),
                dict(seed=106, n_lr=7, order="shuffled", exact=True, n_seeds=2)],
        outputs=("largest_lr",),
        rtol=1e-12,
        mistakes=_LR_MISTAKES,
        stub='''import numpy as np


def largest_stable_lr(lrs, accuracies, target):
    """For every seed, the largest learning rate whose run reached the target accuracy.

    lrs: (A,) positive learning rates, in any order.
    accuracies: (A, S) final accuracy of each learning rate (rows) and seed (columns);
        NaN where the run diverged (a diverged run does not reach the target).
    target: a float; a run reaches it when its accuracy is >= target.
    Returns a float64 array of shape (S,): per seed the largest such learning rate,
    NaN when no learning rate reached the target.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
    Exercise(
        id="ch06-bn-relu-grad-norms",
        notebook=NOTEBOOK,
        function="bn_relu_grad_norms",
        points=3,
        reference=_grad_reference,
        expected=_grad_torch,
        make_case=_grad_case,
        visible=[dict(seed=0),
                 dict(seed=1, batch=4, width=6, depth=2, classes=3, dtype="float32"),
                 dict(seed=2, batch=32, width=16, depth=8, classes=10,
                      note="eight hidden layers: compare the first norm with the last")],
        hidden=[dict(seed=601, batch=2, width=3, depth=1, classes=2,
                     note="two samples per batch"),
                dict(seed=602, width=5, depth=0, classes=7, note="no hidden layer"),
                dict(seed=603, batch=64, width=32, depth=3, classes=10, dtype="float32"),
                dict(seed=604, batch=8, width=3, depth=6, classes=2),
                dict(seed=605, batch=10, width=6, depth=2, classes=4, scale=0.003,
                     note="tiny weights: the variance is close to eps")],
        outputs=("norms",),
        rtol={"float32": 1e-4, "float64": 1e-9},
        mistakes=_GRAD_MISTAKES,
        stub='''import numpy as np


def bn_relu_grad_norms(x, weights, w_out, dlogits):
    """Frobenius norms of dLoss/dW for a stack of Linear -> BN -> ReLU blocks and a linear output.

    x: (B, H) input. weights: (L, H, H), the L hidden weight matrices (L may be 0).
    w_out: (H, C), the output layer. Forward (no biases): h = x; for l = 0 .. L-1,
        z = h @ weights[l];  h = relu(BN(z))
    with training-mode BN per column: gamma = 1, beta = 0, eps = 1e-5, the biased
    batch variance. Then logits = h @ w_out.
    dlogits: (B, C), the gradient of the loss with respect to the logits.
    Returns an array of L + 1 norms: ||dLoss/dW|| of each hidden layer (first layer
    first), then of w_out; in the dtype of x.
    """
    # Your code here: replace the line below.
    raise NotImplementedError
''',
    ),
]
