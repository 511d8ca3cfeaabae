"""The experiment registry of the study: name -> (callable, version, settings and seeds per scale).

An experiment of the study is a function of one setting and one seed that
returns its metrics::

    fn(seed: int, device: str, **setting) -> dict[str, float]

It must be deterministic at one thread: every random number comes from
generators seeded from ``seed`` (the data split, the initialization, the batch
order), so the same call gives bit for bit the same metrics on any machine of
the same kind. A run that diverges is a result, not an error: return non-finite
metrics, or raise :class:`Diverged` with whatever metrics exist.

Scales: ``"smoke"`` (seconds, for tests), ``"book"`` (what the chapter runs live)
and ``"study"`` (the real one, at least 10 seeds per setting).

Adding an experiment takes a few lines (in :mod:`bncourse.study.registered`, or
in any module named in the environment variable ``BNCOURSE_STUDY_MODULES``,
comma-separated, which the registry imports in the client and in every
worker)::

    from bncourse.study.experiments import register, grid

    @register("my_experiment", version=1, claims=(13,),
              settings={"smoke": grid(bn=["before", "after"], steps=[20]),
                        "book": grid(bn=["before", "after"], steps=[200]),
                        "study": grid(bn=["before", "after"], steps=[2000])},
              seeds={"smoke": range(2), "book": range(5), "study": range(20)})
    def run_my_experiment(seed, device="cpu", *, bn, steps):
        ...
        return {"test_accuracy": acc}

Bump ``version`` whenever a change of code would change the numbers; the
store keys runs by it, so the old runs are no longer counted, and ``verify``
(re-running committed runs) is what catches a forgotten bump.

Public API
----------
``Experiment``, ``Diverged``, ``register(...)``, ``grid(**axes) -> list[dict]``,
``get_experiment(name)``, ``registry() -> dict``, ``experiments_for(names_or_claims)``,
``SCALES``.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import os
from typing import Callable, Iterable

from bncourse._checks import fail

__all__ = ["Experiment", "Diverged", "register", "grid", "get_experiment", "registry",
           "experiments_for", "SCALES", "PLUGIN_VARIABLE"]

SCALES = ("smoke", "book", "study")
PLUGIN_VARIABLE = "BNCOURSE_STUDY_MODULES"
_REGISTRY: dict = {}
_LOADED = False


class Diverged(Exception):
    """Raised by an experiment whose training diverged; ``metrics`` are stored with the run."""

    def __init__(self, message: str = "diverged", metrics: dict | None = None):
        super().__init__(message)
        self.metrics = dict(metrics or {})


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One registered experiment.

    Attributes
    ----------
    name : str
    fn : callable(seed, device, **setting) -> dict[str, float]
    version : int >= 1
    claims : tuple of int
        Ledger ids this experiment decides.
    settings : dict scale -> tuple of dict
    seeds : dict scale -> tuple of int
    """

    name: str
    fn: Callable
    version: int
    claims: tuple
    settings: dict
    seeds: dict

    def runs(self, scale: str) -> list[tuple[dict, int]]:
        """Every ``(setting, seed)`` of ``scale``, settings outermost."""
        if scale not in SCALES:
            fail(f"Experiment.runs ({self.name})", "scale", f"one of {SCALES}", repr(scale))
        return [(dict(s), seed) for s in self.settings[scale] for seed in self.seeds[scale]]


def grid(**axes) -> list[dict]:
    """The Cartesian product of ``axes`` as a list of settings (the last axis varies fastest).

    >>> grid(bn=["before", "after"], steps=[20])
    [{'bn': 'before', 'steps': 20}, {'bn': 'after', 'steps': 20}]
    """
    names = list(axes)
    for n in names:
        if isinstance(axes[n], (str, bytes)) or not hasattr(axes[n], "__iter__"):
            fail("grid", n, "a sequence of values", repr(axes[n]), TypeError)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def _check_scales(name: str, arg: str, value: dict, check_item) -> dict:
    if not isinstance(value, dict) or set(value) != set(SCALES):
        fail(f"register({name!r})", arg, f"a dict with exactly the keys {SCALES}",
              repr(sorted(value)) if isinstance(value, dict) else type(value).__name__)
    out = {}
    for scale in SCALES:
        items = tuple(value[scale])
        if not items:
            fail(f"register({name!r})", f"{arg}[{scale!r}]", "a non-empty sequence",
                  "an empty one")
        for item in items:
            check_item(scale, item)
        out[scale] = items
    return out


def register(name: str, *, version: int, claims: Iterable[int], settings: dict,
             seeds: dict) -> Callable:
    """Decorator: register ``fn`` as experiment ``name`` (see the module docstring)."""
    func = f"register({name!r})"
    if not isinstance(name, str) or not name.isidentifier():
        fail("register", "name", "an identifier-like string", repr(name))
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        fail(func, "version", "an int >= 1", repr(version))

    def setting_ok(scale, s):
        if not isinstance(s, dict):
            fail(func, f"settings[{scale!r}]", "a sequence of dicts", repr(s), TypeError)

    def seed_ok(scale, s):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            fail(func, f"seeds[{scale!r}]", "ints >= 0", repr(s))

    settings = _check_scales(name, "settings", settings, setting_ok)
    seeds = _check_scales(name, "seeds", seeds, seed_ok)
    claims = tuple(int(c) for c in claims)

    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            fail("register", "name", "a name not registered yet", repr(name))
        _REGISTRY[name] = Experiment(name, fn, version, claims, settings, seeds)
        return fn

    return decorate


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    importlib.import_module("bncourse.study.registered")
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_VARIABLE, "")
                                .split(","))):
        importlib.import_module(module)


def registry() -> dict:
    """name -> Experiment, after importing the registered modules."""
    _load()
    return dict(_REGISTRY)


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``."""
    reg = registry()
    if name not in reg:
        fail("get_experiment", "name", f"a registered experiment ({sorted(reg)})", repr(name))
    return reg[name]


def experiments_for(targets: Iterable) -> list[Experiment]:
    """Experiments named by ``targets``: ledger ids (``14``, ``"14"``) or experiment names.

    A claim id selects every registered experiment that decides it; the result
    has no repeats and keeps the order of first mention.
    """
    reg = registry()
    chosen: dict = {}
    for t in targets:
        text = str(t)
        if text.isdigit():
            found = [e for e in reg.values() if int(text) in e.claims]
            if not found:
                fail("experiments_for", "targets", "claim ids with a registered experiment "
                      f"({sorted({c for e in reg.values() for c in e.claims})}) or "
                      f"experiment names", repr(t))
            for e in found:
                chosen.setdefault(e.name, e)
        elif text in reg:
            chosen.setdefault(text, reg[text])
        else:
            fail("experiments_for", "targets", f"claim ids or experiment names "
                  f"({sorted(reg)})", repr(t))
    return list(chosen.values())
