"""Shared pytest fixtures and settings."""

import warnings

import numpy as np
import pytest
from hypothesis import settings

# torch scripts its forward-AD decompositions the first time a dual tensor is made, and
# TorchScript warns that it is deprecated: load them here once, so that the first test
# using forward-mode AD does not fail on torch's own warning (warnings are errors).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch._decomp.decompositions_for_jvp  # noqa: F401

# Property tests draw their examples from a fixed seed, so every run (and CI) checks the
# same cases and a failure reproduces; no example database is written to disk.
settings.register_profile("bncourse", derandomize=True, database=None, print_blob=True)
settings.load_profile("bncourse")
# A wider random search for local use: pytest --hypothesis-profile=explore
settings.register_profile("explore", derandomize=False, database=None, max_examples=1000,
                          print_blob=True)


@pytest.fixture
def rng():
    """A freshly seeded generator for each test, so no test depends on another's draws."""
    return np.random.default_rng(20240601)
