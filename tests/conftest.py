"""Shared pytest fixtures."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A freshly seeded generator for each test, so no test depends on another's draws."""
    return np.random.default_rng(20240601)
