"""Interleaved wall-clock timing for fair comparisons on a shared, noisy machine.

Timing two functions one after the other (all repeats of ``a``, then all of
``b``) lets a burst of load from another process land on one side only.
:func:`time_interleaved` instead runs one call of every function per round,
rotating the order each round, and reports the median over rounds, which
ignores the occasional slow outlier.

Example
-------
>>> import numpy as np
>>> x = np.ones(1000)
>>> medians = time_interleaved({"sum": x.sum, "cumsum": x.cumsum}, repeats=5)
>>> sorted(medians)
['cumsum', 'sum']
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["time_interleaved", "time_interleaved_all"]


def _check(func: str, fns, repeats, warmup) -> None:
    if not isinstance(fns, Mapping):
        raise TypeError(f"{func}: fns must be a mapping from name to callable, "
                        f"got {type(fns).__name__}")
    if len(fns) == 0:
        raise ValueError(f"{func}: fns must hold at least one callable, got an empty mapping")
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"{func}: fns[{name!r}] must be callable, got {type(fn).__name__}")
    for arg, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{func}: {arg} must be an int >= {low}, "
                            f"got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"{func}: {arg} must be an int >= {low}, got {value!r}")


def time_interleaved_all(fns: Mapping[str, Callable[[], object]], repeats: int = 20, *,
                         warmup: int = 1, settle_s: float = 0.0,
                         timer: Callable[[], float] = time.perf_counter) -> dict[str, np.ndarray]:
    """Time every callable once per round, for ``repeats`` rounds; return all durations.

    Round ``r`` calls the functions in the order of ``fns`` rotated left by
    ``r`` places, so no function always runs first (caches warm) or last.
    ``warmup`` untimed rounds run before the timed ones (first-call costs:
    allocation, lazy imports, page faults). With ``settle_s > 0`` the loop
    idles that many seconds (untimed) before every call: the worker threads of
    a multi-threaded call then go to sleep before the next call starts, so
    they do not slow it down.

    Args:
        fns: name -> callable taking no arguments (wrap arguments with a lambda).
        repeats: number of timed rounds, >= 1.
        warmup: number of untimed rounds before them, >= 0.
        settle_s: untimed pause before every call, in seconds, >= 0.
        timer: clock returning seconds; injectable for tests.

    Returns:
        name -> float64 array of shape ``(repeats,)`` with the duration in
        seconds of each timed call, in round order.

    Raises:
        TypeError: ``fns`` is not a mapping of callables, or a count is not an int.
        ValueError: ``fns`` is empty, ``repeats < 1`` or ``warmup < 0``.
    """
    _check("time_interleaved_all", fns, repeats, warmup)
    if isinstance(settle_s, bool) or not isinstance(settle_s, numbers.Real) or not (
            0.0 <= settle_s < math.inf):
        raise (TypeError if not isinstance(settle_s, numbers.Real) or isinstance(settle_s, bool)
               else ValueError)(f"time_interleaved_all: settle_s must be a finite float >= 0, "
                                f"got {type(settle_s).__name__} {settle_s!r}")
    names = list(fns)
    times = {name: np.empty(repeats, dtype=np.float64) for name in names}
    for round_index in range(warmup + repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if settle_s:
                time.sleep(settle_s)
            start = timer()
            fns[name]()
            elapsed = timer() - start
            if round_index >= warmup:
                times[name][round_index - warmup] = elapsed
    return times


def time_interleaved(fns: Mapping[str, Callable[[], object]], repeats: int = 20, *,
                     warmup: int = 1,
                     timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median wall-clock seconds per call of each callable, timed interleaved.

    ``median_r t_r(name)`` over the rounds of :func:`time_interleaved_all`
    (same arguments, same errors). A ratio of two medians, e.g.
    ``m["graph"] / m["closed"]``, compares the two on the same load.

    Returns:
        name -> median duration in seconds (a Python float).
    """
    _check("time_interleaved", fns, repeats, warmup)
    times = time_interleaved_all(fns, repeats, warmup=warmup, timer=timer)
    return {name: float(np.median(values)) for name, values in times.items()}
