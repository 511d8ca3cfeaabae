"""Fixtures for the experiment tests: the digits and one small trained BN network."""

import pytest
import torch

from bncourse.lab.data import load_digits_split
from bncourse.experiments.finetune import class_subset
from bncourse.experiments.pretrained import reference_cnn


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0, images=True)


@pytest.fixture(scope="module")
def source(digits):
    return class_subset(digits, range(5))


@pytest.fixture(scope="module")
def trained(source):
    torch.manual_seed(0)
    net, history = reference_cnn(source, seed=0, steps=150, channels=(8, 16, 32, 32))
    return net, history
