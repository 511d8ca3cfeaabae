"""A NumPy batch-norm layer with the state and behaviour of ``torch.nn.BatchNorm1d/2d/3d``.

Shapes as in :mod:`bncourse.batchnorm`: ``x`` is ``(N, C, *S)``, 2-D to
5-D, one layer serving torch's three classes. The layer owns the state
(parameters, running buffers, mode) and decides which statistics to use;
the arithmetic is :func:`bncourse.batchnorm.batch_norm`.

Which statistics normalize the input, as in torch:

=============================  ==================  =====================
mode                           normalize with      running buffers
=============================  ==================  =====================
``train()``, tracked           batch statistics    updated
``eval()``, tracked            running buffers     untouched
untracked, either mode         batch statistics    (none)
=============================  ==================  =====================
"""

from __future__ import annotations

import numpy as np

from bncourse._checks import check_bn_input, check_momentum, check_num_features, check_positive
from bncourse.batchnorm import _batch_norm, _closed_form_backward

__all__ = ["BatchNorm"]


class BatchNorm:
    """Batch normalization over axis 1, for 2-D to 5-D input (torch's BatchNorm1d/2d/3d).

    ``y = weight * (x - mean) / sqrt(var + eps) + bias`` with batch statistics
    in training mode and running statistics in evaluation mode.

    Parameters
    ----------
    num_features : int
        C, the size of axis 1.
    eps : float, > 0
    momentum : float in [0, 1] or None
        Weight of each new batch in the running statistics:
        ``running = (1 - momentum) * running + momentum * batch_stat``.
        None gives the cumulative average, ``momentum = 1 / num_batches_tracked``.
    affine : bool
        Learn ``weight`` (init 1) and ``bias`` (init 0); without it both are None.
    track_running_stats : bool
        Keep ``running_mean`` (init 0), ``running_var`` (init 1, unbiased
        estimates) and ``num_batches_tracked``; without it these are None and
        batch statistics are used in both modes.
    dtype : numpy float dtype, keyword only
        dtype of parameters and buffers (default float64, NumPy's default;
        torch's is float32). The output always has the dtype of the input.

    Attributes
    ----------
    weight, bias : ndarray (C,) or None
    running_mean, running_var : ndarray (C,) or None
    num_batches_tracked : int or None
        Training-mode forward calls seen while tracking.
    training : bool
    dweight, dbias : ndarray (C,) or None
        Set by :meth:`backward` (None without ``affine``).

    Examples
    --------
    >>> bn = BatchNorm(3)
    >>> y = bn(np.random.default_rng(0).normal(size=(16, 3, 5)))
    >>> dx = bn.backward(np.ones_like(y))
    >>> bn.num_batches_tracked, dx.shape, bn.dweight.shape
    (1, (16, 3, 5), (3,))
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float64):
        func = "BatchNorm"
        self.num_features = check_num_features(func, num_features)
        self.eps = check_positive(func, "eps", eps)
        self.momentum = check_momentum(func, momentum)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{func}: dtype must be float32 or float64, got {dtype}")
        self.dtype = dtype
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.weight = self.bias = None
        self.running_mean = self.running_var = self.num_batches_tracked = None
        if self.affine:
            self.weight = np.empty(self.num_features, dtype)
            self.bias = np.empty(self.num_features, dtype)
        if self.track_running_stats:
            self.running_mean = np.empty(self.num_features, dtype)
            self.running_var = np.empty(self.num_features, dtype)
        self.reset_parameters()
        self.training = True
        self.dweight = self.dbias = None
        self._cache = None

    def reset_running_stats(self):
        """Running mean 0, running variance 1, no batch tracked (as torch)."""
        if self.track_running_stats:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
            self.num_batches_tracked = 0

    def reset_parameters(self):
        """Reset the running statistics and set weight 1, bias 0 (as torch)."""
        self.reset_running_stats()
        if self.affine:
            self.weight[...] = 1.0
            self.bias[...] = 0.0

    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode; return ``self``."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"BatchNorm.train: mode must be a bool, got {type(mode).__name__} "
                            f"{mode!r}")
        self.training = bool(mode)
        return self

    def eval(self):
        """Set evaluation mode; return ``self``."""
        return self.train(False)

    def forward(self, x):
        """Normalize ``x`` of shape (N, C, *S); returns ``y`` with its shape and dtype.

        Raises ``ValueError`` when ``x`` is not 2-D to 5-D, does not have
        ``num_features`` channels on axis 1, is not finite, or has one value
        per channel where batch statistics are needed; ``TypeError`` when it
        is not a float32/float64 ndarray.
        """
        func = "BatchNorm.forward"
        x = check_bn_input(func, x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{func}: x must have num_features={self.num_features} channels "
                             f"on axis 1, got shape {x.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        momentum = 0.0  # unused unless the buffers are updated
        if update:
            if self.momentum is None:  # cumulative average over every batch seen
                momentum = 1.0 / (self.num_batches_tracked + 1)
            else:
                momentum = self.momentum
        pass_buffers = update or not use_batch_stats
        y, cache = _batch_norm(
            func, x,
            self.running_mean if pass_buffers else None,
            self.running_var if pass_buffers else None,
            self.weight, self.bias, use_batch_stats, momentum, self.eps)
        if update:  # counted after the checks passed (torch counts before them)
            self.num_batches_tracked += 1
        self._cache = cache
        return y

    __call__ = forward

    def backward(self, dy):
        """Return ``dx`` for the last forward call; set ``dweight`` and ``dbias``.

        In training mode (or untracked) the gradient flows through the batch
        statistics; in evaluation mode they are constants.

        Raises ``ValueError`` before any forward call or when ``dy`` does not
        have the shape of the last input; ``TypeError`` for a non-float ``dy``.
        """
        if self._cache is None:
            raise ValueError("BatchNorm.backward: forward must be called before backward, "
                             "got no cached forward pass")
        dx, dgamma, dbeta = _closed_form_backward("BatchNorm.backward", dy, self._cache)
        if self.affine:
            self.dweight = dgamma.astype(self.weight.dtype, copy=False)
            self.dbias = dbeta.astype(self.bias.dtype, copy=False)
        return dx

    def __repr__(self):
        return (f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats})")
