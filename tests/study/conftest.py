"""Make the toy experiments importable here and in the Dask workers the tests start."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def toy_env():
    """Environment under which the registry (and every worker) imports the toy experiments."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import toy_experiments  # noqa: F401  (registers them in this process)

    env = dict(os.environ)
    env["BNCOURSE_STUDY_MODULES"] = "toy_experiments"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    return env
