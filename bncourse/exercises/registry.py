"""Find every exercise: each ``bncourse/exercises/chNN.py`` declares a list ``EXERCISES``.

Chapter modules are found with ``pkgutil`` (names ``ch`` + two digits), so a
chapter adds exercises without touching any shared file.
"""

from __future__ import annotations

import fnmatch
import importlib
import pathlib
import pkgutil
import re

from bncourse.exercises.core import Exercise

__all__ = ["all_exercises", "get_exercise", "select_exercises", "chapter_modules"]

_CHAPTER = re.compile(r"^ch\d\d$")
_cache: dict | None = None


def chapter_modules() -> list[str]:
    """Names of the chapter modules, sorted (``["bncourse.exercises.ch01", ...]``)."""
    # The folder of this module is the package's: no import of the package itself,
    # whose __init__ imports this module.
    package = __name__.rpartition(".")[0]
    return sorted(f"{package}.{info.name}"
                  for info in pkgutil.iter_modules([str(pathlib.Path(__file__).parent)])
                  if _CHAPTER.match(info.name))


def _load() -> dict:
    global _cache
    if _cache is None:
        found = {}
        for name in chapter_modules():
            module = importlib.import_module(name)
            exercises = getattr(module, "EXERCISES", None)
            if not isinstance(exercises, (list, tuple)) or \
                    not all(isinstance(e, Exercise) for e in exercises):
                raise TypeError(f"{name}: EXERCISES must be a list of Exercise")
            chapter = name.rsplit(".", 1)[1]
            for ex in exercises:
                if ex.chapter != chapter:
                    raise ValueError(f"{name}: exercise id {ex.id!r} must start with "
                                     f"{chapter!r}-")
                if ex.id in found:
                    raise ValueError(f"{name}: duplicate exercise id {ex.id!r}")
                found[ex.id] = ex
        _cache = dict(sorted(found.items()))
    return _cache


def all_exercises() -> list[Exercise]:
    """Every exercise of every chapter, in id order."""
    return list(_load().values())


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id; ``ValueError`` listing the known ids otherwise."""
    exercises = _load()
    if exercise_id not in exercises:
        raise ValueError(f"get_exercise: exercise_id must be one of {list(exercises)}, "
                         f"got {exercise_id!r}")
    return exercises[exercise_id]


def select_exercises(pattern: str) -> list[Exercise]:
    """Exercises whose id matches a shell-style ``pattern`` (``"ch01-*"``)."""
    return [ex for ex in all_exercises() if fnmatch.fnmatchcase(ex.id, pattern)]
