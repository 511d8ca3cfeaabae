"""The declaration of an exercise and of its cases.

An :class:`Exercise` says which function the learner writes, how to build its
test cases from parameters (``make_case(**params)``), what the right answer
is (``expected``, by default the ``bncourse`` ``reference``), how outputs are
compared, and which common mistakes to recognise (:class:`Mistake`).

A :class:`Case` is one call: its parameters (e.g. ``seed``, ``n``, ``dtype``)
and the named arguments built from them. Cases are always built, and answers
always computed, in the process that checks or grades; never in the
learner's sandboxed process.

Most exercises ask for a function, called once per case. An exercise may
instead ask for a class (a stateful module, a model) or for a function that
receives a callable: then a *driver* runs the case, ``driver(impl, *args)``,
building objects from the learner's ``impl`` and calling their methods in
sequence, and returns plain outputs (arrays, numbers and containers of them).
The driver is a self-contained function (NumPy and the standard library,
imported inside it): its source travels with the learner's cell into the
sandbox (:meth:`Exercise.graded_source`), and the learner's check, the tests
and the grader all run that same source, so what is checked is what is graded.
"""

from __future__ import annotations

import copy
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Exercise", "Mistake", "Case", "FORBIDDEN_MODULES", "ENTRY", "describe_value",
           "load_driver"]

#: Modules a graded exercise cell may not import: the reference implementations
#: live in ``bncourse``; torch, scikit-learn and SciPy solve most exercises in one call.
FORBIDDEN_MODULES = ("bncourse", "torch", "sklearn", "scipy")

#: Name of the function appended to a driven exercise's cell; the sandbox calls it.
ENTRY = "__exercise_entry__"

_ID = re.compile(r"^ch\d\d-[a-z0-9]+(-[a-z0-9]+)*$")
_NOTEBOOK = re.compile(r"^book/\d\d_[A-Za-z0-9_]+\.ipynb$")


@dataclass(frozen=True)
class Mistake:
    """A common wrong implementation and the hint shown when an output matches it.

    ``fn`` takes the same arguments as the exercise's function and returns
    what the mistaken code would return.
    """

    hint: str
    fn: Callable


@dataclass(frozen=True)
class Case:
    """One call of the learner's function.

    Attributes
    ----------
    params : dict
        The parameters ``make_case`` was called with (``seed``, shapes, ...).
    args : dict
        Argument name -> value, in call order (the call is positional).
    """

    params: dict
    args: dict
    driver: Callable | None = None

    def call(self, func: Callable) -> Any:
        """Run ``func`` on deep copies of the arguments (the case stays intact).

        A plain exercise calls ``func(*args)``; a driven one ``driver(func, *args)``.
        """
        return self.run(func, copy.deepcopy(list(self.args.values())))

    def run(self, func: Callable, args: list) -> Any:
        """Run ``func`` on ``args`` themselves (no copy), through the driver if any."""
        return func(*args) if self.driver is None else self.driver(func, *args)

    def describe(self) -> str:
        """A short description: each argument's dtype and shape, or its value."""
        parts = [f"{name} {describe_value(value)}" if isinstance(value, np.ndarray)
                 else f"{name}={describe_value(value)}" for name, value in self.args.items()]
        note = self.params.get("note")
        return ", ".join(parts) + (f" [{note}]" if note else "")


def describe_value(value) -> str:
    """``float32 (8, 3)`` for an array, ``repr`` (shortened) for anything else."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe_value(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_driver(driver: Callable) -> Callable:
    """``driver`` compiled again from its own source, in a namespace of its own.

    This is the code the sandbox runs; using it everywhere means a driver that
    leans on its module's globals fails in the tests, not only at grading time.
    """
    try:
        source = textwrap.dedent(inspect.getsource(driver))
    except (OSError, TypeError) as exc:
        raise ValueError(f"Exercise: driver must be a module-level function whose source "
                         f"is available, got {driver!r} ({exc})") from None
    namespace: dict = {"__name__": "__exercise_driver__"}
    exec(compile(source, f"<driver {driver.__name__}>", "exec"), namespace)  # noqa: S102
    return namespace[driver.__name__]


@dataclass(frozen=True, eq=False)
class Exercise:
    """One graded exercise: the learner writes ``function``; it must match ``expected``.

    Parameters
    ----------
    id : str
        ``"chNN-words"``, e.g. ``"ch01-standardize-train-test"``; the tag of
        the exercise cell is ``"exercise:" + id``.
    notebook : str
        The chapter notebook, relative to the repository root
        (``"book/01_normalizing_inputs.ipynb"``).
    function : str
        Name of the function the learner defines.
    points : float
        Points for a fully correct answer (all or nothing).
    reference : callable
        The implementation in ``bncourse`` (tested to pass every case).
    make_case : callable
        ``make_case(**params) -> dict`` of named arguments.
    visible, hidden : sequence of dict
        Parameters of the learner-check cases, and of the extra cases used
        only when grading. A ``note`` key is shown in the case description
        and not passed to ``make_case``.
    expected : callable, optional
        Computes the right answer (torch or an independent formula); default
        ``reference``.
    outputs : tuple of str, optional
        Names of the items of a tuple output (``("z_train", "z_test")``), or a
        one-name tuple for a single output, used in messages.
    rtol, atol : float
        Tolerances of the default comparison (see ``compare.compare_outputs``);
        ``rtol`` may be a dict by dtype name, ``{"float32": 1e-5, "float64": 1e-10}``.
    check_dtype : bool
        Arrays must have the expected dtype.
    compare : callable, optional
        ``compare(got, want, case) -> list[str]`` of problems; replaces the
        default comparison.
    mistakes : sequence of Mistake
        Common mistakes to recognise, with their hints.
    pure : bool
        The function must not modify its input arrays.
    forbidden_modules : tuple of str
        Top-level modules the graded cell may not import.
    allowed_modules : tuple of str
        Third-party top-level modules the graded cell may import (the only
        ones that exist in the grader's sandbox); default ``("numpy",)``.
    stub : str, optional
        Source of the exercise cell handed to learners (see
        ``notebook.exercise_cells``); default: generated from ``reference``'s
        signature.
    driver : callable, optional
        ``driver(impl, *args) -> outputs`` for an exercise whose answer is a
        class, or is used through calls the grader makes (see the module
        docstring). ``reference``, the mistakes and the learner's ``function``
        are then what ``driver`` receives as ``impl``; ``expected(*args)``
        still computes the answer directly.
    """

    id: str
    notebook: str
    function: str
    points: float
    reference: Callable
    make_case: Callable[..., dict]
    visible: Sequence[dict]
    hidden: Sequence[dict]
    expected: Callable | None = None
    outputs: tuple | None = None
    rtol: float | dict = 1e-7
    atol: float = 0.0
    check_dtype: bool = True
    compare: Callable | None = None
    mistakes: Sequence[Mistake] = field(default_factory=tuple)
    pure: bool = True
    forbidden_modules: tuple = FORBIDDEN_MODULES
    allowed_modules: tuple = ("numpy",)
    stub: str | None = None
    driver: Callable | None = None

    def __post_init__(self):
        def bad(arg, expected, got):
            raise ValueError(f"Exercise: {arg} must be {expected}, got {got!r}")

        if not isinstance(self.id, str) or not _ID.match(self.id):
            bad("id", "'chNN-lowercase-words' (e.g. 'ch01-standardize')", self.id)
        if not isinstance(self.notebook, str) or not _NOTEBOOK.match(self.notebook):
            bad("notebook", "'book/NN_name.ipynb'", self.notebook)
        if not isinstance(self.function, str) or not self.function.isidentifier():
            bad("function", "a Python identifier", self.function)
        if isinstance(self.points, bool) or not isinstance(self.points, (int, float)) \
                or not self.points > 0:
            bad("points", "a positive number", self.points)
        for name in ("reference", "make_case"):
            if not callable(getattr(self, name)):
                bad(name, "callable", getattr(self, name))
        for name in ("visible", "hidden"):
            params = getattr(self, name)
            if not params or not all(isinstance(p, dict) for p in params):
                bad(name, "a non-empty sequence of parameter dicts", params)
            object.__setattr__(self, name, tuple(dict(p) for p in params))
        if not all(isinstance(m, Mistake) for m in self.mistakes):
            bad("mistakes", "a sequence of Mistake", self.mistakes)
        object.__setattr__(self, "mistakes", tuple(self.mistakes))
        object.__setattr__(self, "forbidden_modules", tuple(self.forbidden_modules))
        object.__setattr__(self, "allowed_modules", tuple(self.allowed_modules))
        clash = set(self.allowed_modules) & set(self.forbidden_modules)
        if clash or not all(isinstance(m, str) and m.isidentifier()
                            for m in self.allowed_modules):
            bad("allowed_modules", "top-level module names, none of them forbidden",
                self.allowed_modules)
        rtols = self.rtol.values() if isinstance(self.rtol, dict) else [self.rtol]
        if not rtols or any(not isinstance(r, (int, float)) or r < 0 for r in rtols) \
                or not isinstance(self.atol, (int, float)) or self.atol < 0:
            bad("rtol/atol", "non-negative numbers (rtol may be a dict by dtype name)",
                (self.rtol, self.atol))
        if self.driver is not None:
            if not callable(self.driver):
                bad("driver", "a function driver(impl, *args) or None", self.driver)
            object.__setattr__(self, "_driver", load_driver(self.driver))
        else:
            object.__setattr__(self, "_driver", None)

    @property
    def chapter(self) -> str:
        """``"ch01"`` for ``"ch01-standardize-train-test"``."""
        return self.id[:4]

    @property
    def tag(self) -> str:
        """The cell tag that marks the exercise cell."""
        return "exercise:" + self.id

    def cases(self, which: str = "visible", seed_offset: int = 0,
              shift: str = "hidden") -> list[Case]:
        """Build the ``"visible"``, ``"hidden"`` or ``"all"`` (visible then hidden) cases.

        ``seed_offset`` is added to every ``seed`` parameter of the hidden cases
        (``shift="hidden"``) or of every case (``shift="all"``, as the grader
        does), so that a grading session draws fresh cases: the same shapes
        and options, other numbers.
        """
        if which not in ("visible", "hidden", "all"):
            raise ValueError(f"Exercise.cases: which must be 'visible', 'hidden' or 'all', "
                             f"got {which!r}")
        if shift not in ("hidden", "all"):
            raise ValueError(f"Exercise.cases: shift must be 'hidden' or 'all', got {shift!r}")
        specs = [(p, False) for p in self.visible] if which in ("visible", "all") else []
        if which in ("hidden", "all"):
            specs += [(p, True) for p in self.hidden]
        cases = []
        for params, hidden in specs:
            params = dict(params)
            if (hidden or shift == "all") and "seed" in params:
                params["seed"] = params["seed"] + int(seed_offset)
            kwargs = {k: v for k, v in params.items() if k != "note"}
            args = self.make_case(**kwargs)
            if not isinstance(args, dict):
                raise TypeError(f"{self.id}: make_case must return a dict of named arguments, "
                                f"got {type(args).__name__}")
            cases.append(Case(params=params, args=args, driver=self._driver))
        return cases

    def expected_output(self, case: Case):
        """The right answer for ``case``: ``expected(*args)``, or the reference run on it."""
        if self.expected is not None:
            return self.expected(*copy.deepcopy(list(case.args.values())))
        return case.call(self.reference)

    @property
    def entry(self) -> str:
        """The name the sandbox calls: ``function``, or :data:`ENTRY` for a driven exercise."""
        return self.function if self.driver is None else ENTRY

    def graded_source(self, source: str) -> str:
        """The cell's source as the sandbox runs it: for a driven exercise, with the
        driver and the entry point :data:`ENTRY` appended (the learner's names stay)."""
        if self.driver is None:
            return source
        driver = textwrap.dedent(inspect.getsource(self.driver))
        return (f"{source.rstrip()}\n\n\n"
                f"# ---- added by the grader: runs {self.function} on each case\n"
                f"__exercise_driver__ = {{'__name__': '__exercise_driver__'}}\n"
                f"exec(compile({driver!r}, '<driver>', 'exec'), __exercise_driver__)\n\n\n"
                f"def {ENTRY}(*args):\n"
                f"    impl = globals().get({self.function!r})\n"
                f"    if impl is None:\n"
                f"        raise NameError('the exercise cell does not define "
                f"{self.function}')\n"
                f"    return __exercise_driver__[{self.driver.__name__!r}](impl, *args)\n")

    def default_stub(self) -> str:
        """The exercise cell's source: ``stub`` or one built from ``reference``'s signature."""
        if self.stub is not None:
            return self.stub
        try:
            params = ", ".join(inspect.signature(self.reference).parameters)
        except (TypeError, ValueError):
            params = "*args"
        return (f"import numpy as np\n\n\n"
                f"def {self.function}({params}):\n"
                f"    # Your code here: replace the line below.\n"
                f"    raise NotImplementedError\n")
