"""Tests for bncourse._checks: the shared integer and model/batch checks."""

import numpy as np
import pytest
import torch
from torch import nn

from bncourse._checks import check_int, check_model_batch


@pytest.mark.parametrize("value, minimum", [(1, 1), (7, 1), (0, 0), (2, 2), (np.int64(5), 1)])
def test_check_int_returns_a_plain_int(value, minimum):
    got = check_int("f", "n", value, minimum=minimum)
    assert type(got) is int and got == value


@pytest.mark.parametrize("value, minimum, exc, match", [
    (0, 1, ValueError, r"^f: n must be an int >= 1, got 0$"),
    (1, 2, ValueError, r"^f: n must be an int >= 2, got 1$"),
    (-1, 0, ValueError, r"^f: n must be an int >= 0, got -1$"),
    (2.0, 1, TypeError, r"^f: n must be an int >= 1, got float 2\.0$"),
    (True, 1, TypeError, r"^f: n must be an int >= 1, got bool True$"),
    ("3", 1, TypeError, r"^f: n must be an int >= 1, got str '3'$"),
    (None, 0, TypeError, r"^f: n must be an int >= 0, got NoneType None$"),
])
def test_check_int_rejects_non_ints_and_small_values(value, minimum, exc, match):
    with pytest.raises(exc, match=match):
        check_int("f", "n", value, minimum=minimum)


def test_check_int_minimum_defaults_to_one():
    with pytest.raises(ValueError, match="must be an int >= 1, got 0"):
        check_int("f", "n", 0)


def test_check_model_batch_accepts_a_model_and_a_matching_batch():
    x, y = torch.zeros(4, 3), torch.arange(4)
    assert check_model_batch("f", nn.Linear(3, 2), x, y) is None
    assert check_model_batch("f", nn.Identity(), torch.zeros(1), torch.zeros(1, 5)) is None


@pytest.mark.parametrize("model, x, y, exc, match", [
    (lambda t: t, torch.zeros(2, 3), torch.zeros(2), TypeError,
     r"^f: model must be a torch.nn.Module, got function$"),
    (nn.Identity(), np.zeros((2, 3)), torch.zeros(2), TypeError,
     r"^f: x must be a torch.Tensor, got ndarray$"),
    (nn.Identity(), torch.zeros(2, 3), [0, 1], TypeError,
     r"^f: y must be a torch.Tensor, got list$"),
    (nn.Identity(), torch.zeros(2, 3), torch.zeros(3), ValueError,
     r"^f: y must be a non-empty batch with as many samples as x \(\(2, 3\)\), got shape \(3,\)$"),
    (nn.Identity(), torch.zeros(0, 3), torch.zeros(0), ValueError,
     r"^f: y must be a non-empty batch .* got shape \(0,\)$"),
    (nn.Identity(), torch.zeros(2, 3), torch.tensor(1), ValueError,
     r"^f: y must be a non-empty batch .* got shape \(\)$"),
])
def test_check_model_batch_names_the_bad_argument(model, x, y, exc, match):
    with pytest.raises(exc, match=match):
        check_model_batch("f", model, x, y)
