"""The variance shift of dropout before BatchNorm (Li et al., 2019): predict it, measure it, fix it.

Inverted dropout with keep probability ``p`` multiplies each value by
``m / p`` with ``m ~ Bernoulli(p)`` in training and does nothing at test
time. The mean is the same in both modes, the variance is not. For one
feature ``x`` with mean ``c`` and variance ``v`` (over the data)::

    var_train = E[(m x / p)^2] - c^2 = (v + c^2) / p - c^2
    var_test  = v

A BN layer right after the dropout stores ``var_train`` in its running
variance and divides by its square root at test time, where the input has
only ``var_test``. The normalized test activations then have standard
deviation ``sqrt(var_test / var_train)`` instead of 1: ``sqrt(p)`` for
zero-mean input (0.71 for ``p = 0.5``), less when ``c != 0``.

Through a Linear layer ``z = W (m * a / p)`` (the masks independent of each
other and of ``a``)::

    var_test(z_j)  = Var(sum_i W_ji a_i)
    var_train(z_j) = var_test(z_j) + (1/p - 1) * sum_i W_ji^2 E[a_i^2]

The added term ignores the correlations between the units while
``var_test`` includes them, so strongly correlated activations make the shift
milder than ``sqrt(p)``.

Shape letters: N samples, H features (units) at the dropout, J units at the BN.

Public API
----------
``dropout_variance_shift(x, keep) -> (var_train, var_test)``  NumPy, per feature, ``x (N, H)``.
``predicted_std_ratio(x, keep) -> ndarray (H,)``  ``sqrt(var_test / var_train)``.
``dropout_linear_variance(a, weight, keep) -> (var_train, var_test)``  through a Linear, shape (J,).
``predicted_linear_std_ratio(a, weight, keep) -> ndarray (J,)``  ``sqrt(var_test / var_train)`` of that.
``simulate_dropout_bn(x, keep, batch_size=60, epochs=10, seed=0) -> (std_train, std_test)``
    ``Dropout -> BatchNorm1d`` in torch: trained statistics, measured output std.
``run_variance_shift(model, x, norm) -> VarianceShift``
    The test-time statistics of BN layer ``norm``'s input against its running ones.
``predict_variance_shift(model, x, dropout, norm) -> ndarray (J,)``
    The predicted ``sqrt(var_test / var_train)`` at ``norm`` for ``dropout -> Linear -> norm``.
``without_dropout(model)``, ``recalibrate_without_dropout(model, x, batch_size=60, seed=0)``,
``dropout_last_only(model)``: the two fixes.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((100_000, 1))
>>> np.round(predicted_std_ratio(x, keep=0.5), 2)
array([0.71])
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from bncourse._checks import check_array, fail
from bncourse.lab.models import sequential_child
from bncourse.lab.training import eval_forward

__all__ = ["dropout_variance_shift", "predicted_std_ratio", "dropout_linear_variance",
           "predicted_linear_std_ratio",
           "simulate_dropout_bn", "run_variance_shift", "predict_variance_shift",
           "VarianceShift", "without_dropout", "recalibrate_without_dropout",
           "dropout_last_only"]


def _check_keep(func: str, keep) -> float:
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        fail(func, "keep", "a float in (0, 1]", f"{type(keep).__name__} {keep!r}", TypeError)
    if not 0.0 < keep <= 1.0:
        fail(func, "keep", "a float in (0, 1]", repr(keep))
    return float(keep)


def _check_samples(func: str, arg: str, x) -> np.ndarray:
    x = check_array(func, arg, x, ndim=2)
    if x.shape[0] < 1 or x.shape[1] < 1:
        fail(func, arg, "at least one sample and one feature, shape (N, H)", f"shape {x.shape}")
    return x


# --------------------------------------------------------------------------- predictions

def dropout_variance_shift(x: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature variance of inverted dropout's output in training and at test time.

    ``var_train = mean(x**2) / keep - mean(x)**2`` and ``var_test = var(x)``,
    both over the samples (axis 0, population variance: ``ddof=0``).

    Parameters
    ----------
    x : ndarray (N, H), float32 or float64
        The dropout's input over a data set (its test-time distribution).
    keep : float in (0, 1]
        Keep probability (torch's ``nn.Dropout(p)`` has ``keep = 1 - p``).

    Returns
    -------
    (var_train, var_test) : ndarrays (H,) of ``x``'s dtype.

    Raises
    ------
    TypeError / ValueError for a non-float or non-2-D ``x`` or ``keep`` outside (0, 1].
    """
    func = "dropout_variance_shift"
    x = _check_samples(func, "x", x)
    keep = _check_keep(func, keep)
    mean = x.mean(axis=0)
    var_test = x.var(axis=0)
    # (v + c^2) / p - c^2, written so that keep = 1 gives var_test exactly.
    var_train = var_test / keep + (1.0 / keep - 1.0) * mean ** 2
    return var_train.astype(x.dtype), var_test.astype(x.dtype)


def predicted_std_ratio(x: np.ndarray, keep: float) -> np.ndarray:
    """``sqrt(var_test / var_train)``: the test-time std of BN's normalized output, dropout -> BN.

    A feature that is constant and zero has no shift (ratio 1).

    >>> import numpy as np
    >>> predicted_std_ratio(np.array([[1.0], [-1.0]]), keep=0.25)
    array([0.5])
    """
    var_train, var_test = dropout_variance_shift(x, keep)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(var_test / var_train)
    return np.where(var_train > 0, ratio, 1.0).astype(x.dtype)


def dropout_linear_variance(a: np.ndarray, weight: np.ndarray,
                            keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Variance of ``z = W (m * a / keep)`` in training and at test time, per output unit.

    ``var_test = var(a @ W.T)`` over the samples and
    ``var_train = var_test + (1/keep - 1) * (W**2) @ mean(a**2)``
    (independent Bernoulli masks; a bias would shift both means equally).

    Parameters
    ----------
    a : ndarray (N, H)
        Dropout input over a data set.
    weight : ndarray (J, H)
        The Linear layer's weight (torch's layout).
    keep : float in (0, 1]

    Returns
    -------
    (var_train, var_test) : ndarrays (J,), float64.
    """
    func = "dropout_linear_variance"
    a = _check_samples(func, "a", a).astype(np.float64)
    weight = check_array(func, "weight", weight, ndim=2).astype(np.float64)
    if weight.shape[1] != a.shape[1]:
        fail(func, "weight", f"shape (J, {a.shape[1]}) to match a's {a.shape[1]} features",
              f"shape {weight.shape}")
    keep = _check_keep(func, keep)
    var_test = (a @ weight.T).var(axis=0)
    var_train = var_test + (1.0 / keep - 1.0) * (weight ** 2) @ (a ** 2).mean(axis=0)
    return var_train, var_test


def predicted_linear_std_ratio(a: np.ndarray, weight: np.ndarray, keep: float) -> np.ndarray:
    """``sqrt(var_test / var_train)`` at a BN layer fed by ``dropout(keep) -> Linear(weight)``.

    The test-time std of BN's normalized output, per output unit, from
    ``dropout_linear_variance``; ``a (N, H)`` is the dropout's input over a
    data set, ``weight (J, H)``. A unit whose input has no variance at all
    has no shift (ratio 1).

    Returns
    -------
    ndarray (J,) with the dtype of ``a``.
    """
    var_train, var_test = dropout_linear_variance(a, weight, keep)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(var_test / var_train)
    return np.where(var_train > 0, ratio, 1.0).astype(a.dtype)


# --------------------------------------------------------------------------- measurements

@torch.no_grad()
def simulate_dropout_bn(x: np.ndarray, keep: float, batch_size: int = 60, epochs: int = 10,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Measure the shift of ``nn.Dropout(1 - keep) -> nn.BatchNorm1d`` on data ``x``.

    Training: ``epochs`` passes over ``x`` in shuffled mini-batches (full
    batches only) in training mode; BN's running statistics are the
    cumulative average over all batches (``momentum=None``), so the result is
    not blurred by the exponential average. Test: ``x`` in evaluation mode.

    Returns
    -------
    std_train : ndarray (H,)
        Mean over the training batches of the batch std of BN's output (about
        1 by construction: each batch is normalized with its own statistics).
    std_test : ndarray (H,)
        Std over ``x`` of BN's output in evaluation mode; the prediction is
        ``predicted_std_ratio(x, keep)``.
    Both float64.
    """
    func = "simulate_dropout_bn"
    x = _check_samples(func, "x", x)
    keep = _check_keep(func, keep)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or not 2 <= batch_size <= x.shape[0]:
        fail(func, "batch_size", f"an int in [2, {x.shape[0]}]", repr(batch_size))
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        fail(func, "epochs", "a positive int", repr(epochs))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    layer = nn.Sequential(nn.Dropout(1.0 - keep),
                          nn.BatchNorm1d(x.shape[1], affine=False, momentum=None,
                                         dtype=torch.float64))
    gen = torch.Generator().manual_seed(int(seed))
    stds = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        layer.train()
        for _ in range(epochs):
            perm = torch.randperm(x.shape[0], generator=gen)
            for i in range(x.shape[0] // batch_size):
                y = layer(xt[perm[i * batch_size:(i + 1) * batch_size]])
                stds.append(y.std(dim=0, unbiased=False))
    layer.eval()
    std_test = layer(xt).std(dim=0, unbiased=False)
    return torch.stack(stds).mean(dim=0).numpy(), std_test.numpy()


def _capture_inputs(model: nn.Module, x: torch.Tensor, names) -> dict:
    """Inputs of the named submodules in one evaluation-mode forward, float64 NumPy (N, H)."""
    got = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, inputs, out, n=n: got.__setitem__(n, inputs[0].detach().double().numpy()))
        for n in names]
    try:
        eval_forward(model, x)
    finally:
        for h in hooks:
            h.remove()
    return got


@dataclasses.dataclass
class VarianceShift:
    """Test-time statistics of a BN layer's input against the running ones it normalizes with.

    Attributes (all ndarrays (J,), float64)
    ----------
    var_test : variance of the BN input over the data, evaluation mode.
    running_var : the layer's ``running_var`` (what training left behind).
    std_ratio : ``sqrt(var_test / (running_var + eps))``, the std of the
        normalized test activation ``x_hat``; it is about 1 in training.
    mean_shift : ``(mean_test - running_mean) / sqrt(running_var + eps)``.
    """

    var_test: np.ndarray
    running_var: np.ndarray
    std_ratio: np.ndarray
    mean_shift: np.ndarray


def run_variance_shift(model: nn.Sequential, x: torch.Tensor, norm: str) -> VarianceShift:
    """Compare the test-time input statistics of BN layer ``norm`` with its running statistics.

    ``x`` (N, D) is passed through ``model`` in evaluation mode (dropout off,
    every BN on running statistics); the model's mode is restored.
    """
    func = "run_variance_shift"
    _, _, bn = sequential_child(func, model, norm, nn.BatchNorm1d, arg="norm")
    z = _capture_inputs(model, x, [norm])[norm]
    var = z.var(axis=0)
    rv = bn.running_var.detach().double().numpy()
    rm = bn.running_mean.detach().double().numpy()
    scale = np.sqrt(rv + bn.eps)
    return VarianceShift(var_test=var, running_var=rv, std_ratio=np.sqrt(var) / scale,
                         mean_shift=(z.mean(axis=0) - rm) / scale)


def predict_variance_shift(model: nn.Sequential, x: torch.Tensor, dropout: str,
                           norm: str) -> np.ndarray:
    """Predicted ``sqrt(var_test / var_train)`` at BN ``norm`` for ``dropout -> Linear -> norm``.

    The dropout input ``a`` is taken over ``x`` in evaluation mode, the keep
    probability from the dropout layer, and ``dropout_linear_variance`` does
    the rest. Only a single ``nn.Linear`` may sit between the two layers.

    Returns
    -------
    ndarray (J,), float64.
    """
    func = "predict_variance_shift"
    _, i, drop = sequential_child(func, model, dropout, nn.Dropout, arg="dropout")
    _, j, _ = sequential_child(func, model, norm, nn.BatchNorm1d, arg="norm")
    between = list(model)[i + 1:j]
    if len(between) != 1 or not isinstance(between[0], nn.Linear):
        fail(func, "model", f"a model with exactly one Linear between {dropout!r} and {norm!r}",
              "[" + ", ".join(type(m).__name__ for m in between) + "]")
    a = _capture_inputs(model, x, [dropout])[dropout]
    weight = between[0].weight.detach().double().numpy()
    return predicted_linear_std_ratio(a, weight, 1.0 - drop.p)


# --------------------------------------------------------------------------- fixes

def without_dropout(model: nn.Sequential) -> nn.Sequential:
    """A view of ``model`` with every ``nn.Dropout`` child replaced by ``nn.Identity``.

    The other children are the *same* module objects (not copies): running
    statistics recomputed through the view change ``model`` itself.
    """
    if not isinstance(model, nn.Sequential):
        fail("without_dropout", "model", "an nn.Sequential", type(model).__name__, TypeError)
    return nn.Sequential(OrderedDict(
        (n, nn.Identity() if isinstance(m, nn.Dropout) else m) for n, m in model.named_children()))


def recalibrate_without_dropout(model: nn.Sequential, x: torch.Tensor, batch_size: int = 60,
                                seed: int = 0) -> nn.Sequential:
    """Recompute every BN layer's running statistics with dropout switched off, in place.

    One pass over ``x`` in shuffled mini-batches of ``batch_size`` through
    ``without_dropout(model)`` with ``precise_bn.recompute_bn_stats``
    (pooled, exact): the statistics then describe the test-time inputs, and
    the variance shift is gone without any retraining.

    Returns
    -------
    ``model`` (updated in place).
    """
    from bncourse.precise_bn import recompute_bn_stats

    func = "recalibrate_without_dropout"
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        fail(func, "x", "a torch.Tensor (N, ...)", type(x).__name__, TypeError)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or not 2 <= batch_size <= x.shape[0]:
        fail(func, "batch_size", f"an int in [2, {x.shape[0]}]", repr(batch_size))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))
    batches = [x[perm[i:i + batch_size]] for i in range(0, x.shape[0], batch_size)]
    if batches[-1].shape[0] < 2:       # one sample has no batch variance
        batches = batches[:-1]
    recompute_bn_stats(without_dropout(model), batches, method="exact")
    return model


def dropout_last_only(model: nn.Sequential) -> nn.Sequential:
    """A deep copy of ``model`` without its dropout layers, except the last one.

    For ``make_mlp(..., bn="before", dropout=q)`` this keeps only the dropout
    after the last BN (just before the output layer), so no BN layer sees
    dropped-out inputs. Child names are kept.
    """
    if not isinstance(model, nn.Sequential):
        fail("dropout_last_only", "model", "an nn.Sequential", type(model).__name__, TypeError)
    drops = [n for n, m in model.named_children() if isinstance(m, nn.Dropout)]
    if not drops:
        fail("dropout_last_only", "model", "a model with at least one nn.Dropout", "none")
    new = copy.deepcopy(model)
    return nn.Sequential(OrderedDict((n, m) for n, m in new.named_children()
                                     if n not in drops[:-1]))
