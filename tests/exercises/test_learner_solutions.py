"""Every chapter's exercises against the plain learner-style solutions of its test file.

Each ``tests/exercises/test_chNN.py`` defines ``SOLUTIONS``: exercise id ->
a function (or a list of functions) written the way a learner would, without
bncourse's code. The checks that every chapter needs run here, once, over all
of them: the chapter registers exactly those exercises, every solution passes
every case, the notebook's stub is "not attempted" and a solution passes the
learner's check. The chapter files keep only what is particular to them.
"""

import importlib.util
import pathlib
import sys

import pytest

from bncourse.exercises import check, get_exercise
from bncourse.exercises.judge import judge_output
from bncourse.exercises.registry import chapter_modules

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))          # make_solutions.py, next to this file


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(f"learner_solutions_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _solutions():
    out = {}
    for path in sorted(HERE.glob("test_ch[0-9][0-9].py")):
        chapter = path.stem.removeprefix("test_")
        solutions = _load(path).SOLUTIONS
        out[chapter] = {ex_id: fns if isinstance(fns, (list, tuple)) else [fns]
                        for ex_id, fns in solutions.items()}
    return out


SOLUTIONS = _solutions()
ALL = [(ex_id, fn) for per in SOLUTIONS.values() for ex_id, fns in per.items() for fn in fns]
FIRST = [(ex_id, fns[0]) for per in SOLUTIONS.values() for ex_id, fns in per.items()]


def test_the_solutions_cover_several_chapters():
    assert len(SOLUTIONS) >= 8 and len(FIRST) >= 16


@pytest.mark.parametrize("chapter", sorted(SOLUTIONS))
def test_chapter_registers_exactly_the_exercises_it_has_solutions_for(chapter):
    module = importlib.import_module(f"bncourse.exercises.{chapter}")
    assert f"bncourse.exercises.{chapter}" in chapter_modules()
    assert sorted(ex.id for ex in module.EXERCISES) == sorted(SOLUTIONS[chapter])
    number = chapter.removeprefix("ch")
    assert module.NOTEBOOK.startswith(f"book/{number}_") and module.NOTEBOOK.endswith(".ipynb")
    for ex in module.EXERCISES:
        assert get_exercise(ex.id) is ex
        assert ex.notebook == module.NOTEBOOK
        assert ex.function == SOLUTIONS[chapter][ex.id][0].__name__


@pytest.mark.parametrize("exercise_id, solution", ALL,
                         ids=[f"{i}-{fn.__name__}" for i, fn in ALL])
def test_plain_solution_passes_every_case(exercise_id, solution):
    ex = get_exercise(exercise_id)
    for case in ex.cases("all"):
        verdict = judge_output(ex, case, case.call(solution), ex.expected_output(case))
        assert verdict.passed, (solution.__name__, case.describe(), verdict.problems)


@pytest.mark.parametrize("exercise_id, solution", FIRST, ids=[i for i, _ in FIRST])
def test_stub_is_not_attempted_and_a_solution_passes_the_check(exercise_id, solution, capsys):
    ex = get_exercise(exercise_id)
    namespace = {}
    exec(ex.default_stub(), namespace)                       # noqa: S102 - our own stub
    assert check(exercise_id, namespace[ex.function]).status == "not attempted"
    assert "not attempted" in capsys.readouterr().out
    assert check(exercise_id, solution).status == "passed"


def _solution_cells():
    from make_solutions import _module, solution_source

    for path in sorted(HERE.glob("test_ch[0-9][0-9].py")):
        module = _module(path)
        for ex_id, fns in module.SOLUTIONS.items():
            first = fns[0] if isinstance(fns, (list, tuple)) else fns
            yield ex_id, solution_source(module, first)


@pytest.mark.parametrize("exercise_id, source", list(_solution_cells()),
                         ids=[i for i, _ in _solution_cells()])
def test_the_solution_notebooks_cells_are_self_contained(exercise_id, source, capsys):
    """What `make solutions` puts in each exercise cell runs on its own and passes."""
    ex = get_exercise(exercise_id)
    namespace = {"__name__": "solution_cell"}
    exec(compile(source, f"<solution {exercise_id}>", "exec"), namespace)  # noqa: S102
    assert check(exercise_id, namespace[ex.function]).status == "passed"
