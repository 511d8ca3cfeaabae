"""Toy experiments for the study tests, registered when this module is imported.

The runner's workers import it through ``BNCOURSE_STUDY_MODULES=toy_experiments``
with this folder on ``PYTHONPATH``.
"""

import time

from bncourse.study.experiments import Diverged, grid, register

SLEEP_SEEDS = range(20)


def run_toy_sleep(seed, device="cpu", *, value, sleep):
    """Sleeps, then returns numbers that depend on the setting and the seed."""
    time.sleep(sleep)
    return {"x": value + 0.1 * seed, "y": float(seed) / 3.0}


register("toy_sleep", version=1, claims=(),
         settings={s: grid(value=[1.0, 2.0], sleep=[0.1]) for s in ("smoke", "book", "study")},
         seeds={s: SLEEP_SEEDS for s in ("smoke", "book", "study")})(run_toy_sleep)


def run_toy_outcomes(seed, device="cpu", *, mode):
    """Seed 0: ok; 1: non-finite metric; 2: raises Diverged; 3: raises ValueError."""
    if seed == 1:
        return {"x": float("nan")}
    if seed == 2:
        raise Diverged("loss exploded at step 3", {"x": float("inf")})
    if seed == 3:
        raise ValueError(f"toy failure in mode {mode}")
    return {"x": 0.1 + 0.2, "z": 1e-300}


register("toy_outcomes", version=1, claims=(),
         settings={s: grid(mode=["a"]) for s in ("smoke", "book", "study")},
         seeds={s: range(4) for s in ("smoke", "book", "study")})(run_toy_outcomes)
