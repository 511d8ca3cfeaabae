"""Batch normalization in PyTorch with the hand-derived backward.

The same mathematics as the NumPy reference, wrapped for PyTorch: an
``autograd.Function`` whose ``backward`` is the simplified closed form, a
functional ``batch_norm`` that decides which statistics to use, and modules
``BatchNorm1d``/``2d``/``3d`` that are drop-in replacements for torch's.

Shape letters: ``N`` batch, ``C`` channels (always axis 1), ``m`` values per
channel (``m = x.numel() // C``: every axis except axis 1 is averaged over).
``x`` is ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

Training forward, per channel::

    mean = sum(x) / m
    var = sum((x - mean) ** 2) / m        # biased: this is what normalizes
    inv_std = 1 / sqrt(var + eps)         # eps inside the root keeps it finite
    x_hat = (x - mean) * inv_std
    y = gamma * x_hat + beta

Backward (``dy_hat = dy * gamma``, sums over the ``m`` values of a channel)::

    dx = inv_std / m * (m * dy_hat - sum(dy_hat) - x_hat * sum(dy_hat * x_hat))
    dgamma = sum(dy * x_hat)
    dbeta = sum(dy)

The two subtracted terms exist because ``mean`` and ``var`` depend on ``x``.
In evaluation mode the running statistics are constants, so both vanish and
``dx = dy_hat * inv_std``.

What a drop-in must also do, and how it is done here:

- The modules subclass ``torch.nn.modules.batchnorm._BatchNorm``: parameters,
  buffers, ``reset_parameters``, ``extra_repr`` and the loading of old state
  dicts (without ``num_batches_tracked``) are torch's own code, and torch's
  tools that look for batch norms (``SyncBatchNorm.convert_sync_batchnorm``,
  ``torch.func.replace_all_batch_norm_modules_``) find them.
- The Function has torch's modern form (``forward`` + ``setup_context``, a
  generated ``vmap`` rule, a ``jvp``), so ``torch.func.grad``/``vmap``/``jvp``
  and ``torch.compile`` work; its backward is written with differentiable
  torch operations, so it can be differentiated again (double backward).
- float16/bfloat16 input is computed in float32 and rounded once at the end,
  with float32 or same-dtype parameters, as torch does on the CPU; the output
  has the input's dtype and, like torch's, its memory format (channels-last
  stays channels-last).
- An empty batch gives an empty output, zero parameter gradients and
  unchanged running statistics.
- TorchScript cannot compile an ``autograd.Function``: ``torch.jit.script``
  of the modules compiles ``forward`` as a call back into Python
  (``torch.jit.ignore``), so a scripted model runs in this process but cannot
  be saved with ``torch.jit.save``. ``torch.jit.trace`` and ``torch.compile``
  capture the operations themselves.
"""

import inspect
from typing import Optional

import torch
from torch.nn.modules.batchnorm import _BatchNorm as _TorchBatchNorm

from bncourse._checks import fail, check_momentum, check_num_features, check_positive
from bncourse._torch_checks import (
    REDUCED_PRECISION,
    check_bn_tensor,
    check_batch_norm_args,
    check_module_input,
    check_param_dtypes,
    check_training_size,
    per_channel,
    reduce_dims,
    values_per_channel,
)

__all__ = ["BatchNormFunction", "batch_norm", "batch_moments", "BatchNormBase", "BatchNorm1d",
           "BatchNorm2d", "BatchNorm3d"]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for float16/bfloat16 input (torch's CPU accumulation type), else ``x.dtype``."""
    return torch.float32 if x.dtype in REDUCED_PRECISION else x.dtype


def batch_moments(x: torch.Tensor):
    """Per-channel ``mean`` and biased ``var = sum((x - mean)**2) / m`` of ``x``, two passes.

    float16/bfloat16 values are accumulated in float32. Differentiable (the
    double backward uses it). An empty batch (``m = 0``) gives mean 0 and
    variance 1, so that nothing downstream turns into NaN.

    Two passes rather than ``torch.var_mean``: on the CPU (torch 2.x)
    ``var_mean`` over the batch axis of ``(N, C)`` input was measured about ten
    times slower than a mean followed by a mean of squares.

    Returns:
        ``(mean, var)``, each ``(C,)``, float32 for half input, else ``x.dtype``.
    """
    dtype = _compute_dtype(x)
    if x.numel() == 0:
        c = x.shape[1]
        return (torch.zeros(c, dtype=dtype, device=x.device),
                torch.ones(c, dtype=dtype, device=x.device))
    dims = reduce_dims(x)
    mean = x.mean(dim=dims, keepdim=True, dtype=dtype)
    xc = x - mean
    return mean.reshape(-1), (xc * xc).mean(dim=dims)


def _memory_format(x: torch.Tensor):
    """The layout torch's CPU batch norm gives its output and ``dx`` for input ``x``.

    Channels-last when ``x`` is channels-last contiguous (4-D or 5-D), else
    contiguous. Inside ``torch.func.vmap`` the layout cannot be queried (and
    does not matter): contiguous.
    """
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    if fmt is None:
        return torch.contiguous_format
    try:
        return fmt if x.is_contiguous(memory_format=fmt) else torch.contiguous_format
    except RuntimeError:        # vmap: "NYI: querying is_contiguous inside of vmap ..."
        return torch.contiguous_format


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype`` (itself when it already is: on small tensors every call counts)."""
    return t if t.dtype == dtype else t.to(dtype)


def _like_input(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` in ``x``'s dtype and in the memory format torch gives a result for ``x``."""
    t = _cast(t, x.dtype)
    if t.is_contiguous() and x.is_contiguous():
        return t
    return t.contiguous(memory_format=_memory_format(x))


def _mean_inv_std(x, mean, var, eps):
    """``(mean, inv_std = 1 / sqrt(var + eps))`` per channel in the compute dtype."""
    dtype = _compute_dtype(x)
    return _cast(mean, dtype), torch.rsqrt(_cast(var, dtype) + eps)


# The C++ apply under Function.apply (a classmethod descriptor, bound to a class with __get__).
_C_APPLY = torch._C._FunctionBase.__dict__["apply"]


class BatchNormFunction(torch.autograd.Function):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the closed-form backward.

    Call it as ``BatchNormFunction.apply(x, weight, bias, eps)`` to normalize
    with the batch statistics of ``x`` (training), or as
    ``BatchNormFunction.apply(x, weight, bias, eps, running_mean, running_var)``
    to normalize with fixed statistics (evaluation). ``batch_norm`` passes the
    batch statistics it has computed for the running averages as two more
    arguments, ``(..., None, None, batch_mean, batch_var)``, so they are
    computed once; they are treated as functions of ``x`` in the backward.

    Args:
        x: ``(N, C, *)`` input, 2-D to 5-D (``N = 0`` allowed).
        weight: ``gamma``, ``(C,)``, or None for ``gamma = 1``.
        bias: ``beta``, ``(C,)``, or None for ``beta = 0``.
        eps: positive float added to the variance inside the square root.
        running_mean, running_var: ``(C,)`` fixed statistics, or both None to
            use the batch statistics (mean and biased variance over ``m``).
        batch_mean, batch_var: the batch statistics of ``x`` (``batch_moments``),
            or None to compute them here.

    Returns:
        ``y``, the shape, dtype and memory format of ``x``. float16/bfloat16
        input is computed in float32 and rounded once.

    Computed as torch computes it: ``y = x * alpha + shift`` with
    ``alpha = gamma * inv_std`` and ``shift = beta - mean * alpha`` per channel.
    The backward returns ``dx``, ``dgamma``, ``dbeta`` (each only when needed)
    and no gradient for the other arguments. It is written with differentiable
    torch operations: under ``create_graph=True`` it recomputes the batch
    statistics from ``x`` so that its own graph reaches ``x``, and a second
    derivative is exact. ``jvp`` gives forward-mode derivatives, and
    ``generate_vmap_rule`` lets ``torch.func.vmap`` batch all of it.
    """

    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args, **kwargs):
        """``Function.apply``; a call with all eight arguments and no ``torch.func`` transform
        skips the per-call re-binding of the arguments to ``forward``'s signature, a cost as
        large as normalizing a small batch."""
        if len(args) == 8 and not kwargs and not torch._C._are_functorch_transforms_active():
            return _C_APPLY.__get__(None, cls)(*args)
        return super().apply(*args, **kwargs)

    @staticmethod
    def forward(x, weight, bias, eps, running_mean=None, running_var=None, batch_mean=None,
                batch_var=None):
        if running_mean is not None:
            mean, var = running_mean, running_var
        elif batch_mean is not None:
            mean, var = batch_mean, batch_var
        else:
            mean, var = batch_moments(x)
        dtype, ndim = _compute_dtype(x), x.dim()
        mean, alpha = _mean_inv_std(x, mean, var, eps)
        if weight is not None:
            alpha = alpha * _cast(weight, dtype)
        if bias is not None:
            shift = torch.addcmul(_cast(bias, dtype), mean, alpha, value=-1.0)
        else:
            shift = -(mean * alpha)
        # One pass over x; half input is promoted to float32 element by element.
        y = torch.addcmul(per_channel(shift, ndim), x, per_channel(alpha, ndim))
        return _like_input(y, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, eps, *stats = inputs
        running_mean, running_var, batch_mean, batch_var = (list(stats) + [None] * 4)[:4]
        ctx.batch_stats = running_mean is None
        mean, var = (batch_mean, batch_var) if ctx.batch_stats else (running_mean, running_var)
        # x, not x_hat, is kept (as torch keeps its input): the double backward needs x.
        # With batch statistics not given (a direct call) they are recomputed when needed.
        ctx.save_for_backward(x, weight, mean, var)
        ctx.save_for_forward(x, weight, mean, var)
        ctx.eps, ctx.num_inputs = eps, len(inputs)
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, dy):
        # The closed form, written as torch's CPU kernel writes it (xc = x - mean):
        #   dbeta = sum(dy);  dgamma = sum(dy * xc) * inv_std
        #   dx = gamma * inv_std * (dy - dbeta / m - xc * dgamma * inv_std / m)
        x, weight, mean, var = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        if ctx.batch_stats and (mean is None or torch.is_grad_enabled()):
            # Double backward: the statistics must be functions of x in this graph.
            mean, var = batch_moments(x)
        mean, inv_std = _mean_inv_std(x, mean, var, ctx.eps)
        dtype, ndim, dims = _compute_dtype(x), x.dim(), reduce_dims(x)
        scale = inv_std if weight is None else inv_std * _cast(weight, dtype)
        through_stats = need_dx and ctx.batch_stats
        dbeta = dy.sum(dim=dims, dtype=dtype) if need_dbeta or through_stats else None
        dgamma = dx = None
        if need_dgamma or through_stats:
            xc = x - per_channel(mean, ndim)
            dgamma = (dy * xc).sum(dim=dims) * inv_std
        if need_dx and ctx.batch_stats:
            # dx = scale * dy + xc * b + c with per-channel b and c: two passes over the data
            coef = scale * (-1.0 / max(values_per_channel(x), 1))   # m = 0: an empty dx
            dx = torch.addcmul(per_channel(coef * dbeta, ndim), xc,
                               per_channel(coef * (dgamma * inv_std), ndim))
            if _may_work_in_place():
                dx.addcmul_(dy, per_channel(scale, ndim))   # dx is a fresh buffer: no allocation
            else:
                dx = torch.addcmul(dx, dy, per_channel(scale, ndim))
        elif need_dx:
            dx = dy * per_channel(scale, ndim)   # fixed statistics: only the direct path
        if dx is not None:
            dx = _like_input(dx, x)
        dgamma = _cast(dgamma, weight.dtype) if need_dgamma else None
        dbeta = _cast(dbeta, ctx.bias_dtype) if need_dbeta else None
        return (dx, dgamma, dbeta) + (None,) * (ctx.num_inputs - 3)

    @staticmethod
    def jvp(ctx, dx_in, dgamma_in, dbeta_in, *other_tangents):
        x, weight, mean, var = ctx.saved_tensors
        # Autograd passes zeros for inputs without a tangent. The batch statistics'
        # tangents are ignored (their dependence on x is in the formula); fixed running
        # statistics are inputs like any other, so their tangents count.
        _eps, t_mean, t_var = (list(other_tangents) + [None] * 3)[:3]
        if ctx.batch_stats:
            t_mean = t_var = None
            if mean is None:
                mean, var = batch_moments(x)
        mean, inv_std = _mean_inv_std(x, mean, var, ctx.eps)
        return _jvp(x, weight, mean, inv_std, ctx.batch_stats, dx_in, dgamma_in, dbeta_in,
                    t_mean, t_var)


# Function.apply binds its arguments to forward's signature on every call (for
# setup_context); inspect.signature would rebuild it each time, a cost as large as
# the normalization of a small batch. A precomputed __signature__ is what inspect
# returns first.
BatchNormFunction.forward.__signature__ = inspect.signature(BatchNormFunction.forward)


class _BatchNormFunctionCompiled(BatchNormFunction):
    """``BatchNormFunction`` without its custom ``jvp``, for code ``torch.compile`` traces.

    Dynamo refuses autograd Functions with a custom ``jvp`` (it breaks the graph
    there); forward-mode AD is not used inside compiled code, so ``batch_norm``
    hands this twin to the compiler and the whole forward and backward are
    captured.
    """

    jvp = staticmethod(torch.autograd.Function.jvp)
    apply = classmethod(torch.autograd.Function.apply.__func__)   # the one Dynamo knows


def _may_work_in_place() -> bool:
    """Whether a fresh temporary may be updated in place: no graph is being recorded
    (not a double backward) and no ``torch.func`` transform is active (in-place
    operations cannot mix its batched and unbatched tensors)."""
    return not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()


def _jvp(x, weight, mean, inv_std, batch_stats, tx, tgamma, tbeta, t_mean=None, t_var=None):
    """Forward-mode derivative of ``y`` for the tangents given (each may be None).

    With ``x_hat = (x - mean) * inv_std`` and ``u = tx - mean(tx)`` per channel,
    batch statistics give ``dx_hat = inv_std * (u - x_hat * mean(x_hat * u))``;
    fixed statistics give
    ``dx_hat = inv_std * (tx - t_mean) - x_hat * inv_std**2 * t_var / 2``; then
    ``dy = gamma * dx_hat + tgamma * x_hat + tbeta``.
    """
    dtype, ndim, dims = _compute_dtype(x), x.dim(), reduce_dims(x)
    inv_std = per_channel(inv_std, ndim)
    x_hat = (x - per_channel(mean, ndim)) * inv_std
    out = torch.zeros_like(x_hat)
    if tx is not None or t_mean is not None or t_var is not None:
        dx_hat = torch.zeros_like(x_hat) if tx is None else tx.to(dtype)
        if batch_stats:
            if x.numel() > 0:
                u = dx_hat - dx_hat.mean(dim=dims, keepdim=True)
                dx_hat = u - x_hat * (x_hat * u).mean(dim=dims, keepdim=True)
            dx_hat = dx_hat * inv_std
        else:
            if t_mean is not None:
                dx_hat = dx_hat - per_channel(t_mean.to(dtype), ndim)
            dx_hat = dx_hat * inv_std
            if t_var is not None:
                dx_hat = dx_hat - x_hat * (inv_std * inv_std) * per_channel(
                    t_var.to(dtype), ndim) / 2
        out = dx_hat if weight is None else dx_hat * per_channel(weight.to(dtype), ndim)
    if tgamma is not None:
        out = out + x_hat * per_channel(tgamma.to(dtype), ndim)
    if tbeta is not None:
        out = out + per_channel(tbeta.to(dtype), ndim)
    return out.to(x.dtype)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization with the same arguments and behaviour as ``F.batch_norm``.

    ``training=True`` normalizes with the batch statistics and, when the
    running buffers are given, updates them in place (under ``torch.no_grad``,
    so they never carry an autograd graph)::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)

    The stored variance is the unbiased one (``m / (m - 1)``), while the
    normalization uses the biased one, exactly as PyTorch does.
    ``training=False`` normalizes with ``running_mean`` / ``running_var``.
    An empty batch (``m = 0``) returns an empty output and leaves the buffers
    unchanged.

    Args:
        x: ``(N, C, *)`` floating tensor, 2-D to 5-D.
        running_mean, running_var: ``(C,)`` tensors, or None (training only).
        weight, bias: ``gamma``, ``beta``, ``(C,)``, or None.
        training: use batch statistics (and update the buffers).
        momentum: weight of the new batch in the running averages, in [0, 1].
        eps: positive float added to the variance.

    Returns:
        ``y``, the shape, dtype and memory format of ``x``.

    Raises:
        TypeError: ``x`` (or a per-channel argument) is not a tensor; a
            per-channel tensor's dtype is neither ``x.dtype`` nor float32 for
            float16/bfloat16 ``x`` (torch's CPU rule), or they differ.
        ValueError: wrong rank, a per-channel shape that does not match ``C``,
            one value per channel when using batch statistics, only one of
            the running buffers given, running buffers missing in evaluation,
            ``eps <= 0``, ``momentum`` outside [0, 1].
    """
    func = "batch_norm"
    check_bn_tensor(func, x, "x")
    eps, momentum = check_batch_norm_args(func, x, running_mean, running_var, weight, bias,
                                          training, momentum, eps)
    if training:
        check_training_size(func, x, "x")
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


def _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """``batch_norm`` after its checks (the modules check their input themselves)."""
    function = _BatchNormFunctionCompiled if torch.compiler.is_compiling() else BatchNormFunction
    if not training:
        return function.apply(x, weight, bias, eps, running_mean, running_var)
    with torch.no_grad():
        mean, var = batch_moments(x.detach())
    y = function.apply(x, weight, bias, eps, None, None, mean, var)
    m = values_per_channel(x)
    if running_mean is not None and m > 0:
        # The buffers are state, not part of the model's function: keeping a
        # graph in them would make every step's graph reachable from the next
        # (a memory leak) and would raise when backward is called twice.
        with torch.no_grad():
            running_mean.mul_(1.0 - momentum).add_(_cast(mean, running_mean.dtype),
                                                   alpha=momentum)
            running_var.mul_(1.0 - momentum).add_(_cast(var, running_var.dtype),
                                                  alpha=momentum * m / (m - 1))
    return y


@torch.jit.ignore
def _check_module_input(name: str, input: torch.Tensor, dims: list[int], layout: str,
                        num_features: int) -> None:
    """The module's input check, a Python call even from TorchScript (it builds messages)."""
    check_module_input(name, input, dims, layout, num_features)


class BatchNormBase(_TorchBatchNorm):
    """torch's ``_BatchNorm`` state with the package's forward; base of the drop-in modules.

    Parameters ``weight`` (gamma, initialised to 1) and ``bias`` (beta,
    initialised to 0) exist when ``affine=True``; buffers ``running_mean``
    (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (a long
    scalar) exist when ``track_running_stats=True``. All of it, with
    ``reset_parameters``, ``reset_running_stats``, ``extra_repr`` and the
    loading of state dicts saved before ``num_batches_tracked`` existed, is
    torch's own code; the constructor only validates its arguments first.

    ``forward`` follows torch's ``_BatchNorm.forward`` line by line (mode from
    ``self.training``, never from whether gradients are enabled; momentum
    ``None`` is a cumulative average over ``num_batches_tracked``; buffers
    present but ``track_running_stats`` switched off: batch statistics in
    training without updates, the buffers in evaluation) and hands the
    normalization to ``_normalize``, which subclasses such as
    ``bncourse.sync_bn.SyncBatchNorm`` replace. ``forward`` is valid
    TorchScript; the input check and ``_normalize`` are ``torch.jit.ignore``:
    they run in Python, so a scripted module works in this process but
    ``torch.jit.save`` refuses it.
    """

    _expected_dims: tuple[int, ...] = (2, 3, 4, 5)
    _layout: str = "2-D to 5-D with channels on axis 1"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        name = type(self).__name__
        super().__init__(check_num_features(name, num_features), check_positive(name, "eps", eps),
                         check_momentum(name, momentum), bool(affine), bool(track_running_stats),
                         device, dtype, bias=bias)
        # Instance attributes, so that a scripted module still has them.
        self._func_name = name
        self._dims = list(self._expected_dims)
        self._layout_text = self._layout

    def _check_input_dim(self, input) -> None:
        _check_module_input(self._func_name, input, self._dims, self._layout_text,
                            self.num_features)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalize ``input`` (shape, dtype and layout kept); see the class docstring."""
        _check_module_input(self._func_name, input, self._dims, self._layout_text,
                            self.num_features)
        momentum = 0.0
        if self.momentum is not None:
            momentum = self.momentum
        if self.training and self.track_running_stats:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    # Cumulative average: batch k gets weight 1/k, so after k
                    # batches every batch has contributed equally.
                    momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # Buffers are passed when they are to be updated (training and
        # tracked) or used (evaluation with buffers).
        pass_buffers = not self.training or self.track_running_stats
        return self._normalize(input, self.running_mean if pass_buffers else None,
                               self.running_var if pass_buffers else None, use_batch_stats,
                               momentum)

    @torch.jit.ignore
    def _normalize(self, x: torch.Tensor, running_mean: Optional[torch.Tensor],
                   running_var: Optional[torch.Tensor], training: bool,
                   momentum: float) -> torch.Tensor:
        """``batch_norm`` with this module's parameters; errors named after the class."""
        if training:
            check_training_size(self._func_name, x, "input")
        check_param_dtypes(self._func_name, x, weight=self.weight, bias=self.bias,
                           running_mean=running_mean, running_var=running_var)
        return _batch_norm(x, running_mean, running_var, self.weight, self.bias, training,
                           momentum, self.eps)


class BatchNorm1d(BatchNormBase):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` input; drop-in for ``nn.BatchNorm1d``.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel, with
    statistics over ``N`` (and ``L``). Arguments as torch's: ``num_features``
    (``C``), ``eps=1e-5``, ``momentum=0.1`` (weight of the new batch, None for
    a cumulative average), ``affine=True``, ``track_running_stats=True``,
    ``device``, ``dtype``, keyword ``bias=True``.

    Raises:
        TypeError: a non-tensor or non-floating input, or parameters whose
            dtype torch would reject for it.
        ValueError: input not 2-D or 3-D, channels not ``num_features``, or
            one value per channel when batch statistics are used.
    """

    _expected_dims = (2, 3)
    _layout = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(BatchNormBase):
    """Batch normalization of ``(N, C, H, W)`` input; drop-in for ``nn.BatchNorm2d``.

    Statistics per channel over ``N``, ``H`` and ``W``; arguments as
    ``BatchNorm1d``. Channels-last input gives channels-last output.

    Raises:
        TypeError / ValueError: as ``BatchNorm1d``, for input that is not 4-D.
    """

    _expected_dims = (4,)
    _layout = "4-D (N, C, H, W)"


class BatchNorm3d(BatchNormBase):
    """Batch normalization of ``(N, C, D, H, W)`` input; drop-in for ``nn.BatchNorm3d``.

    Statistics per channel over ``N``, ``D``, ``H`` and ``W``; arguments as
    ``BatchNorm1d``.

    Raises:
        TypeError / ValueError: as ``BatchNorm1d``, for input that is not 5-D.
    """

    _expected_dims = (5,)
    _layout = "5-D (N, C, D, H, W)"
