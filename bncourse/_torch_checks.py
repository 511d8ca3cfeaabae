"""Tensor checks and per-channel views shared by the PyTorch reference modules.

``torch_bn``, ``sync_bn``, ``batch_renorm``, ``ghost_bn`` and ``noisy_bn``
validate their tensor arguments here, so that every one of them rejects a
bad input with the same message, ``"<function>: <argument> must be
<expected>, got <received>"`` (built by ``bncourse._checks.fail``). The
NumPy checks stay in ``bncourse._checks``, which does not load torch.

Shape letters: ``N`` batch, ``C`` channels (axis 1), ``m = x.numel() // C``
values per channel (every axis except 1 is averaged over).
"""

from __future__ import annotations

import torch

from bncourse._checks import fail, check_momentum, check_positive

__all__ = ["REDUCED_PRECISION", "reduce_dims", "per_channel", "values_per_channel",
           "check_bn_tensor", "check_module_input", "check_training_size", "check_channel_tensor",
           "check_param_dtypes", "check_batch_norm_args"]

# Dtypes that torch's CPU batch norm computes in float32 (and accepts float32 parameters for).
REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def reduce_dims(x: torch.Tensor) -> list[int]:
    """Every axis except the channel axis 1: the axes a per-channel statistic averages over."""
    return [0, *range(2, x.dim())]


def per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a ``(C,)`` vector as ``(1, C, 1, ...)`` (``ndim`` axes) so it broadcasts against ``x``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def values_per_channel(x: torch.Tensor) -> int:
    """``m = x.numel() // C``, the number of values each channel's statistics average."""
    return x.numel() // x.shape[1]


def check_bn_tensor(func: str, x, arg: str = "x", *, dims=(2, 3, 4, 5),
                    layout: str = "2-D to 5-D with channels on axis 1 ((N, C), (N, C, L), "
                                  "(N, C, H, W) or (N, C, D, H, W))") -> torch.Tensor:
    """Check a floating tensor whose rank is in ``dims`` and that has at least one channel.

    Raises ``TypeError`` for a non-tensor or a non-floating dtype and
    ``ValueError`` for a rank outside ``dims`` (``layout`` says which shapes
    are meant) or zero channels. An empty batch (``N = 0``) is accepted, as
    torch accepts it.
    """
    if not isinstance(x, torch.Tensor):
        fail(func, arg, "a torch.Tensor", type(x).__name__, TypeError)
    if not x.is_floating_point():
        fail(func, arg, "a floating-point tensor", f"dtype {x.dtype}", TypeError)
    if x.dim() not in dims:
        fail(func, arg, layout, f"shape {tuple(x.shape)} ({x.dim()}-D)")
    if x.shape[1] == 0:
        fail(func, arg, "at least one channel on axis 1", f"shape {tuple(x.shape)}")
    return x


def check_module_input(func: str, x, dims, layout: str, num_features: int) -> torch.Tensor:
    """A module's input: ``check_bn_tensor`` with the module's ranks, and ``num_features`` channels."""
    check_bn_tensor(func, x, "input", dims=tuple(dims), layout=layout)
    if x.shape[1] != num_features:
        fail(func, "input", f"{num_features} channels on axis 1 (num_features={num_features})",
              f"shape {tuple(x.shape)}")
    return x


def check_training_size(func: str, x: torch.Tensor, arg: str = "x") -> int:
    """Return ``m``; batch statistics of exactly one value per channel are rejected, as torch does.

    ``m = 0`` (an empty batch) is allowed: the output is empty and nothing is
    averaged.
    """
    m = values_per_channel(x)
    if m == 1:
        fail(func, arg, "more than 1 value per channel when using batch statistics",
              f"shape {tuple(x.shape)} (1 value per channel)")
    return m


def check_channel_tensor(func: str, arg: str, v, num_channels: int, *,
                         allow_none: bool = True) -> None:
    """Check a per-channel tensor of shape ``(C,)`` (or None when ``allow_none``)."""
    if v is None:
        if not allow_none:
            fail(func, arg, f"a tensor of shape ({num_channels},)", "None", TypeError)
        return
    if not isinstance(v, torch.Tensor):
        fail(func, arg, "a torch.Tensor or None", type(v).__name__, TypeError)
    if tuple(v.shape) != (num_channels,):
        fail(func, arg, f"shape ({num_channels},) to match the channels of the input",
              f"shape {tuple(v.shape)}")


def check_param_dtypes(func: str, x: torch.Tensor, **tensors) -> None:
    """Check torch's CPU dtype rule for the per-channel tensors (``name=tensor`` or None).

    They must all share one dtype, equal to ``x.dtype``, or be float32 when
    ``x`` is float16 or bfloat16 (mixed precision: statistics and parameters
    kept in float32). torch raises ``RuntimeError("mixed dtype (CPU): ...")``
    for anything else; this raises a ``TypeError`` naming the argument.
    """
    given = {name: t for name, t in tensors.items() if t is not None}
    if not given:
        return
    first_name, first = next(iter(given.items()))
    allowed = {x.dtype} | ({torch.float32} if x.dtype in REDUCED_PRECISION else set())
    for name, t in given.items():
        if t.dtype not in allowed:
            expected = " or ".join(str(d) for d in sorted(allowed, key=str))
            fail(func, name, f"dtype {expected} (input is {x.dtype})", f"dtype {t.dtype}",
                  TypeError)
        if t.dtype != first.dtype:
            fail(func, name, f"dtype {first.dtype}, the dtype of {first_name}",
                  f"dtype {t.dtype}", TypeError)


def check_batch_norm_args(func: str, x: torch.Tensor, running_mean, running_var, weight, bias,
                          training, momentum, eps) -> tuple[float, float]:
    """Check the arguments ``F.batch_norm``-like functions share; return ``(eps, momentum)``.

    ``x`` has been checked already. Raises ``TypeError``/``ValueError`` for:
    per-channel tensors that are not ``(C,)`` tensors or break torch's dtype
    rule (``check_param_dtypes``), only one of the running buffers given,
    ``eps <= 0``, ``momentum`` outside [0, 1], running buffers missing in
    evaluation.
    """
    num_channels = x.shape[1]
    vectors = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
               "bias": bias}
    for arg, v in vectors.items():
        check_channel_tensor(func, arg, v, num_channels)
    check_param_dtypes(func, x, **vectors)
    if (running_mean is None) != (running_var is None):
        fail(func, "running_mean and running_var", "both tensors or both None",
              f"running_mean={type(running_mean).__name__}, "
              f"running_var={type(running_var).__name__}")
    eps = check_positive(func, "eps", eps)
    momentum = check_momentum(func, momentum, allow_none=False)
    if not training and running_mean is None:
        fail(func, "running_mean and running_var", "tensors when training=False", "None")
    return eps, momentum
