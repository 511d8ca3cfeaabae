"""Graded exercises: instant checks for learners, hidden-case grading for instructors.

An exercise asks the learner to write ONE function (or one class) that must
match a reference (torch, or an independent formula). A class, or a function
the grader calls back with its own arguments, is run through the exercise's
``driver`` (see ``core``): a self-contained function that makes the calls
and returns plain outputs, shipped with the cell into the sandbox. An
exercise lives in three places:

1. **The chapter notebook** holds two cells after the "## Exercises" heading:

   * the *exercise cell*, a code cell whose metadata tags include
     ``exercise:<id>``. It contains the imports the function needs
     (``import numpy as np``) and a stub of the function that raises
     ``NotImplementedError``. Only this cell is graded, on its own, in a
     fresh process: it must be self-contained (no names from other cells).
   * the *check cell*, right after it::

         from bncourse.exercises import check

         check("ch01-standardize-train-test", standardize_train_test)

     With the stub still in place it prints "not attempted" and never raises,
     so the notebook executes end to end (nbval, the book build).

   ``exercise_cells(get_exercise(id))`` (module ``notebook``) returns these
   two cells as nbformat cells, ready to append.

2. **One module per chapter**, ``bncourse/exercises/chNN.py`` (``ch01.py``,
   ``ch02.py``, ...; discovered automatically by ``pkgutil``), defines a
   module-level list ``EXERCISES`` of :class:`Exercise`. A definition is
   declarative; see ``ch01.py`` for complete examples::

       def _case(seed, n=50, d=3, dtype="float64"):
           rng = np.random.default_rng(seed)
           return {"x": rng.normal(size=(n, d)).astype(dtype)}   # named arguments

       EXERCISES = [
           Exercise(
               id="ch02-forward",                     # "chNN-" + lowercase words
               notebook="book/02_bn_equations.ipynb",
               function="batchnorm_forward",           # the name the learner defines
               points=2,
               reference=_reference,                   # bncourse's implementation
               expected=_torch_oracle,                 # optional; default: reference
               make_case=_case,
               visible=[dict(seed=0), dict(seed=1, dtype="float32")],   # learner check
               hidden=[dict(seed=100, n=7, d=1), dict(seed=101, n=2)],  # grading only
               outputs=("y",),                         # optional names for messages
               rtol=1e-7, atol=0.0,                    # or compare=your_function
               mistakes=[Mistake(hints.UNBIASED_VARIANCE, _with_unbiased_var)],
           ),
       ]

   * ``make_case(**params)`` builds the arguments of one case from ``params``
     (one dict of ``visible`` or ``hidden``); it returns a dict ``name ->
     value`` and the function is called positionally in that order. Values:
     NumPy arrays, Python/NumPy numbers, bools, strings, None, and tuples,
     lists or str-keyed dicts of those. Cases are built in the grading
     process; a ``seed`` parameter is shifted by ``grade --seed``.
   * ``expected(*args)`` (default ``reference``) computes the answer the
     learner's output is compared with, always outside the learner's
     process; ``reference(*args)`` is the implementation in ``bncourse``
     and is tested to pass every case. Import torch, scikit-learn or
     ``bncourse`` modules *inside* these functions, so that importing the
     exercise registry stays fast and light.
   * Outputs may be an array, a number, or a tuple/list/dict of those.
     Default comparison (``compare.compare_outputs``): same structure, same
     shapes, same dtype for arrays (``check_dtype=True``), and per output
     ``max|got - want| <= atol + rtol * max|want|``; integers and bools
     exactly. ``rtol`` may be a dict by dtype name, e.g. ``{"float32": 1e-5,
     "float64": 1e-10}``. ``compare=f`` replaces it: ``f(got, want, case) ->
     list of problem strings`` (empty means pass).
   * ``check(exercise, func)`` also accepts an unregistered ``Exercise``, to
     try a definition out before adding it.
   * ``mistakes``: implementations of common mistakes, each with the hint to
     show when the learner's output matches it (``hints`` has ready-made
     texts: biased vs unbiased variance, wrong axes, torch's momentum
     convention, eps outside the root, ...). Tests check that every mistake
     fails and triggers its hint, and that the hidden cases include a shape
     the visible ones lack. Generic hints (transposed output, constant
     factor, NaN, wrong dtype) come for free.
   * ``pure=True`` (default): modifying an input array in place fails.
   * ``forbidden_modules``: modules the graded cell may not import
     (default ``bncourse``, ``torch``, ``sklearn``, ``scipy``).

3. **Grading**: ``python -m bncourse.grade SUBMISSION... --out gradebook.csv``
   (notebooks or folders of notebooks; ``--list`` prints every exercise).
   For each submission and exercise, the exercise cell's code runs in its own
   ``python -I`` process with CPU, memory, wall-clock and output limits, no
   ``bncourse`` (or other forbidden) imports, no file writes and no
   subprocesses; only NumPy arrays and plain numbers come back (``np.load``
   with ``allow_pickle=False``). The answers are computed and compared in the
   grading process, on the visible and the hidden cases. Points are all or
   nothing: every case must pass.

Public names
------------
check(exercise_id, func) -> CheckResult   the learner's check (prints a report)
get_exercise(exercise_id) -> Exercise     one definition
all_exercises() -> list[Exercise]         every definition, in id order
select_exercises(pattern) -> list         those whose id matches, e.g. "ch01-*"
Exercise, Mistake                         the declaration types
"""

from bncourse.exercises.core import Exercise, Mistake
from bncourse.exercises.registry import all_exercises, get_exercise, select_exercises
from bncourse.exercises.check import CheckResult, check

__all__ = ["check", "CheckResult", "get_exercise", "all_exercises", "select_exercises",
           "Exercise", "Mistake"]
