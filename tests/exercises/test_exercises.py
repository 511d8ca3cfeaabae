"""Tests of bncourse.exercises: definitions, comparison, hints, the learner's check, the sandbox.

The grader end to end (real submission notebooks) is tested in test_grade.py.
"""

import ast
import contextlib
import inspect
import io
import json
import linecache
import os
import struct
from pathlib import Path

import nbformat
import numpy as np
import pytest

from bncourse.exercises import Exercise, Mistake, _child, all_exercises, check, get_exercise, hints
from bncourse.exercises.compare import compare_outputs, relative_error
from bncourse.exercises.judge import judge_output
from bncourse.exercises.notebook import exercise_cells, read_submission
from bncourse.exercises.registry import chapter_modules, select_exercises
from bncourse.exercises.sandbox import Limits, run_cell

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = all_exercises()
IDS = [ex.id for ex in EXERCISES]
LIMITS = Limits(timeout=10.0, memory_mb=1024)


def quiet_check(exercise, func):
    """check() with its report captured (and returned) instead of printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = check(exercise, func)
    assert result.report == out.getvalue().rstrip("\n")
    return result


def raise_not_implemented(*args):
    raise NotImplementedError


def tagged_cells(ex):
    nb = nbformat.read(ROOT / ex.notebook, as_version=4)
    return nb, [i for i, c in enumerate(nb.cells) if ex.tag in c.metadata.get("tags", [])]


# --------------------------------------------------------------------------- registry


def test_registry_finds_chapter_modules_and_their_exercises():
    assert "bncourse.exercises.ch01" in chapter_modules()
    chapter1 = select_exercises("ch01-*")
    assert len(chapter1) >= 2
    assert IDS == sorted(set(IDS))
    for ex in EXERCISES:
        assert get_exercise(ex.id) is ex
        assert ex.tag == f"exercise:{ex.id}"


def test_unknown_exercise_id_is_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"get_exercise: exercise_id must be one of .*ch01-"):
        get_exercise("ch01-no-such-exercise")
    with pytest.raises(ValueError, match="no-such"):
        check("no-such", len)


def _tiny(**changes):
    fields = dict(id="ch99-mean-var", notebook="book/99_tiny.ipynb", function="mean_var",
                  points=1, reference=_mean_var, make_case=_tiny_case,
                  visible=[dict(seed=0)], hidden=[dict(seed=1, n=3)])
    fields.update(changes)
    return Exercise(**fields)


def _tiny_case(seed, n=20, dtype="float64"):
    return {"x": np.random.default_rng(seed).normal(size=(n, 2)).astype(dtype)}


def _mean_var(x):
    return {"mean": x.mean(axis=0), "var": x.var(axis=0)}


@pytest.mark.parametrize("field, value, match", [
    ("id", "chapter1-x", "id must be"), ("id", "ch01_Standardize", "id must be"),
    ("notebook", "01.ipynb", "notebook must be"), ("function", "not an id", "function must"),
    ("points", 0, "points must be a positive"), ("points", True, "points must be"),
    ("hidden", [], "hidden must be a non-empty"), ("visible", [1], "visible must be"),
    ("reference", None, "reference must be callable"), ("rtol", -1.0, "rtol/atol"),
    ("rtol", {"float32": -1.0}, "rtol/atol"), ("mistakes", ["hint"], "mistakes must be"),
])
def test_exercise_definition_is_validated(field, value, match):
    with pytest.raises(ValueError, match=f"Exercise: {match}"):
        _tiny(**{field: value})


def test_cases_are_deterministic_and_the_grading_seed_shifts_only_hidden_cases():
    ex = get_exercise("ch01-standardize-train-test")
    first, again = ex.cases("all"), ex.cases("all")
    for a, b in zip(first, again):
        for name in a.args:
            np.testing.assert_array_equal(a.args[name], b.args[name])
    shifted = ex.cases("all", seed_offset=7)
    n_visible = len(ex.visible)
    for a, b in zip(first[:n_visible], shifted[:n_visible]):
        np.testing.assert_array_equal(a.args["x_train"], b.args["x_train"])
    for a, b in zip(first[n_visible:], shifted[n_visible:]):
        assert not np.array_equal(a.args["x_train"], b.args["x_train"])
    with pytest.raises(ValueError, match="which must be"):
        ex.cases("secret")


# --------------------------------------------------------------------------- every exercise


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes_every_visible_and_hidden_case(exercise_id):
    ex = get_exercise(exercise_id)
    cases = ex.cases("all")
    assert len(cases) == len(ex.visible) + len(ex.hidden) >= 3
    for case in cases:
        verdict = judge_output(ex, case, case.call(ex.reference), ex.expected_output(case))
        assert verdict.passed, (case.describe(), verdict.problems)


def _shapes(value):
    """The shapes of every array in a nested argument (a script of calls, a dict of weights)."""
    if isinstance(value, (tuple, list)):
        return tuple(_shapes(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _shapes(v)) for k, v in value.items())
    return np.shape(value)


@pytest.mark.parametrize("exercise_id", IDS)
def test_hidden_cases_differ_from_visible_ones(exercise_id):
    ex = get_exercise(exercise_id)
    visible = [json.dumps(p, sort_keys=True) for p in ex.visible]
    assert not any(json.dumps(p, sort_keys=True) in visible for p in ex.hidden)
    shapes = {_shapes(tuple(c.args.values())) for c in ex.cases("visible")}
    hidden_shapes = {_shapes(tuple(c.args.values())) for c in ex.cases("hidden")}
    assert hidden_shapes - shapes, "hidden cases must include shapes the learner never sees"


@pytest.mark.parametrize("exercise_id", IDS)
def test_every_mistake_fails_with_its_own_hint_and_fails_grading(exercise_id):
    ex = get_exercise(exercise_id)
    assert ex.mistakes, "each exercise names common mistakes"
    for mistake in ex.mistakes:
        with np.errstate(all="ignore"):
            result = quiet_check(ex.id, mistake.fn)
        assert result.status == "failed"
        assert any(mistake.hint in v.hints for v in result.verdicts), mistake.hint
        assert mistake.hint in result.report
        # the learner sees it: the mistake fails a visible case, and every visible case it
        # fails carries its hint (an exception is a mistake that only exists for some inputs)
        caught = False
        for case in ex.cases("visible"):
            try:
                with np.errstate(all="ignore"):
                    got = case.call(mistake.fn)
            except ValueError:
                continue
            verdict = judge_output(ex, case, got, ex.expected_output(case))
            if not verdict.passed:
                caught = True
                assert mistake.hint in verdict.hints, (case.describe(), verdict.hints)
        assert caught, "the mistake passes every visible case"
        hidden_ok = []
        for case in ex.cases("hidden"):
            try:
                with np.errstate(all="ignore"):
                    got = case.call(mistake.fn)
            except Exception:       # a mistake that only exists for some inputs
                continue
            hidden_ok.append(judge_output(ex, case, got, ex.expected_output(case)).passed)
        assert hidden_ok and not all(hidden_ok), "the mistake must fail a hidden case"


@pytest.mark.parametrize("exercise_id", IDS)
def test_notebook_has_the_stub_cell_then_the_check_cell(exercise_id):
    ex = get_exercise(exercise_id)
    nb, where = tagged_cells(ex)
    assert len(where) == 1, f"{ex.notebook} must have one cell tagged {ex.tag}"
    stub, check_cell = nb.cells[where[0]], nb.cells[where[0] + 1]
    assert stub.cell_type == "code" and check_cell.cell_type == "code"
    tree = ast.parse(stub.source)
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defined == [ex.function]
    assert "raise NotImplementedError" in stub.source
    assert stub.source.strip() == ex.default_stub().strip(), "the notebook's stub is the declared one"
    assert not stub.get("outputs"), "stub cells are committed without outputs"
    assert f'check("{ex.id}", {ex.function})' in check_cell.source
    headings = [c.source for c in nb.cells[:where[0]] if c.cell_type == "markdown"]
    assert any(h.lstrip().startswith("## Exercises") for h in headings)


@pytest.mark.parametrize("exercise_id", IDS)
def test_the_distributed_stub_reports_not_attempted_and_fails_grading(exercise_id):
    ex = get_exercise(exercise_id)
    nb, where = tagged_cells(ex)
    source = nb.cells[where[0]].source
    namespace = {}
    exec(compile(source, f"<stub {ex.id}>", "exec"), namespace)
    result = quiet_check(ex.id, namespace[ex.function])
    assert result.status == "not attempted" and "not attempted" in result.report
    assert result.verdicts == []
    outcome = run_cell(ex.graded_source(source), ex.entry, ex.cases("all"),
                       forbidden_modules=ex.forbidden_modules, limits=LIMITS)
    assert outcome.status == "not_attempted"


def _count_calls(impl, x, n):
    """A driver: builds impl, calls it n times, returns the outputs and a call count."""
    import numpy as np

    obj = impl(x.shape[1])
    return {"outs": [np.asarray(obj.step(x)) for _ in range(n)], "steps": int(obj.count)}


class _Counter:
    def __init__(self, width):
        self.count, self.total = 0, np.zeros(width)

    def step(self, x):
        self.count += 1
        self.total = self.total + x.sum(axis=0)
        return self.total


class _NoCount(_Counter):
    def step(self, x):
        self.total = self.total + x.sum(axis=0)
        return self.total


def _counter_case(seed, n=3, rows=4):
    return {"x": np.random.default_rng(seed).normal(size=(rows, 2)), "n": n}


def _driven(**changes):
    fields = dict(id="ch99-counter", notebook="book/99_tiny.ipynb", function="Counter",
                  points=1, reference=_Counter, make_case=_counter_case, driver=_count_calls,
                  visible=[dict(seed=0)], hidden=[dict(seed=1, n=5, rows=2)],
                  mistakes=[Mistake("count every call", _NoCount)])
    fields.update(changes)
    return Exercise(**fields)


def test_a_driven_exercise_runs_the_same_driver_in_the_check_and_the_sandbox():
    ex = _driven()
    assert ex.entry == "__exercise_entry__" and _tiny().entry == "mean_var"
    assert _tiny().graded_source("x = 1\n") == "x = 1\n"
    cell = "import numpy as np\n\n\n" + inspect.getsource(_Counter).replace("_Counter", "Counter")
    namespace = {}
    exec(cell, namespace)
    assert quiet_check(ex, namespace["Counter"]).passed
    outcome = run_cell(ex.graded_source(cell), ex.entry, ex.cases("all"), limits=LIMITS)
    assert outcome.status == "ok", outcome.message
    for (kind, got, _), case in zip(outcome.cases, ex.cases("all")):
        assert kind == "out"
        assert judge_output(ex, case, got, ex.expected_output(case)).passed
        assert got["steps"] == case.args["n"]
    missing = run_cell(ex.graded_source("import numpy as np\n"), ex.entry, ex.cases("all"),
                       limits=LIMITS)
    assert missing.status == "ok"
    assert missing.cases[0][:2] == ("error", "NameError: the exercise cell does not define Counter")
    stub = "class Counter:\n    def __init__(self, width):\n        raise NotImplementedError\n"
    assert run_cell(ex.graded_source(stub), ex.entry, ex.cases("all"),
                    limits=LIMITS).status == "not_attempted"


def _leans_on_globals(impl, x, n):
    return _count_calls(impl, x, n)     # a module global: not there in the sandbox


def test_a_driver_must_be_self_contained():
    ex = _driven(driver=_leans_on_globals)
    with pytest.raises(NameError, match="_count_calls"):
        ex.cases("visible")[0].call(_Counter)
    with pytest.raises(ValueError, match="Exercise: driver must be a function"):
        _driven(driver=3)


def test_exercise_cells_for_authors_match_the_conventions():
    ex = get_exercise("ch01-zca-whitening")
    stub, check_cell = exercise_cells(ex)
    assert stub.metadata["tags"] == [ex.tag]
    assert stub.source == ex.stub.rstrip("\n")
    assert check_cell.source.endswith(f'check("{ex.id}", {ex.function})')
    generated = _tiny().default_stub()
    assert "def mean_var(x):" in generated and "raise NotImplementedError" in generated


# --------------------------------------------------------------------------- compare


def test_compare_accepts_equal_structures_and_reports_each_difference():
    want = (np.arange(6.0).reshape(2, 3), {"n": 3, "scale": 2.5})
    assert compare_outputs([want[0].copy(), {"n": 3, "scale": 2.5}], want, rtol=1e-12).ok
    assert compare_outputs((want[0], {"n": 3, "scale": np.float64(2.5)}), want, rtol=0).ok
    problems = compare_outputs(want[0], want, rtol=1e-12).problems
    assert problems == ["output is an array of shape (2, 3), expected a tuple of 2 items"]
    bad = compare_outputs((want[0].T, {"n": 4, "scale": 2.5}), want, rtol=1e-12,
                          names=("z", "stats"))
    assert bad.problems == ["z has shape (3, 2), expected (2, 3)",
                            "stats['n']: 4 instead of 3"]
    top = compare_outputs({"mean": 1.0, "var": 2.0}, {"mean": 1.0, "var": 2.5}, rtol=1e-9)
    assert top.problems == ["var: max relative error 2.00e-01 (tolerance rtol 1e-09)"]
    keys = compare_outputs((want[0], {"n": 3}), want, rtol=1e-12).problems
    assert keys == ["output[1] has keys ['n'], expected ['n', 'scale']"]


def test_compare_uses_normwise_relative_error_and_dtype_specific_tolerance():
    want = np.array([1000.0, 1e-3])
    got = want + np.array([0.0, 1e-6])           # tiny next to max|want| = 1000
    result = compare_outputs(got, want, rtol=1e-8)
    assert result.ok and result.max_rel_err == pytest.approx(1e-9)
    assert not compare_outputs(got, want, rtol=1e-10).ok
    rtol = {"float32": 1e-5, "float64": 1e-12}
    want32 = np.array([1.0, 2.0], dtype=np.float32)
    assert compare_outputs(want32 * np.float32(1 + 1e-6), want32, rtol=rtol).ok
    assert not compare_outputs(want32.astype(np.float64) * (1 + 1e-6),
                               want32.astype(np.float64), rtol=rtol).ok
    dtype = compare_outputs(want32.astype(np.float64), want32, rtol=rtol)
    assert dtype.problems == ["output has dtype float64, expected float32"]
    assert compare_outputs(want32.astype(np.float64), want32, rtol=rtol, check_dtype=False).ok


def test_compare_nan_inf_numbers_and_exact_integers():
    want = np.array([1.0, 2.0])
    nan = compare_outputs(np.array([1.0, np.nan]), want, rtol=1e-3)
    assert nan.problems == ["output contains NaN where the expected values are finite"]
    assert compare_outputs(np.inf, np.inf, rtol=0).ok
    assert not compare_outputs(1e300, np.inf, rtol=1e-3).ok
    assert compare_outputs(np.array(3.0), 3.0, rtol=0).ok
    assert compare_outputs(3.0, 3, rtol=0).ok
    assert compare_outputs(3.5, 3, rtol=1).problems == ["output: 3.5 instead of 3"]
    assert compare_outputs("3", 3.0, rtol=1).problems == ["output is a str, expected a number"]
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.ones(3), np.zeros(3)) == np.inf


# --------------------------------------------------------------------------- hints


def test_generic_hint_recognises_the_unbiased_variance_factor():
    x = np.random.default_rng(0).normal(size=(30, 4))
    z = (x - x.mean(0)) / x.std(0)
    z_unbiased = (x - x.mean(0)) / x.std(0, ddof=1)
    (hint,) = hints.generic_hints(z_unbiased, z)
    assert "sqrt((m - 1) / m) with m = 30" in hint
    var = x.var(0)
    (hint,) = hints.generic_hints(x.var(0, ddof=1), var)
    assert "m / (m - 1) with m = 30" in hint


def test_generic_hints_for_shapes_shifts_signs_nan_and_dtype():
    w = np.random.default_rng(1).normal(size=(5, 3))
    assert "transposed" in hints.generic_hints(w.T, w)[0]
    assert "off-by-one" in hints.generic_hints(w[:4], w)[0]
    assert "keepdims" in hints.generic_hints(w[None], w)[0]
    assert "shifted by a constant" in hints.generic_hints(w + 0.5, w)[0]
    assert "wrong sign" in hints.generic_hints(-w, w)[0]
    assert "NaN" in hints.generic_hints(np.full_like(w, np.nan), w)[0]
    assert hints.KEEP_DTYPE in hints.generic_hints(w.astype(np.float32), w)[0]
    assert hints.generic_hints(w + np.random.default_rng(2).normal(size=w.shape), w) == []
    assert hints.generic_hints((w, w * 3), (w, w), names=("a", "b"))[0].startswith(
        "b is 3 times the expected value")


# --------------------------------------------------------------------------- the learner check


def test_check_passes_a_correct_solution_and_never_raises_for_a_broken_one():
    ex = _tiny(mistakes=[Mistake("divide by m, not m - 1",
                                 lambda x: {"mean": x.mean(0), "var": x.var(0, ddof=1)})])
    good = quiet_check(ex, _mean_var)
    assert good.passed and good.n_passed == 1 and "All cases pass" in good.report

    def crashes(x):
        mean = x.mean(0)
        return {"mean": mean, "var": undefined_name}  # noqa: F821

    crashed = quiet_check(ex, crashes)
    assert crashed.status == "failed"
    assert "raised NameError: name 'undefined_name' is not defined" in crashed.report
    assert "line" in crashed.report and "undefined_name" in crashed.report

    wrong = quiet_check(ex, lambda x: {"mean": x.mean(0), "var": x.var(0, ddof=1)})
    assert wrong.status == "failed" and "hint: divide by m, not m - 1" in wrong.report
    assert "var: max relative error" in wrong.report

    assert quiet_check(ex, "mean_var").status == "failed"
    assert quiet_check(ex, lambda x: object()).verdicts[0].problems == [
        "returned a value of type object (expected arrays, numbers, or tuples/lists/dicts "
        "of them)"]
    assert quiet_check(ex, raise_not_implemented).status == "not attempted"


class _Hostile(np.ndarray):
    """An array subclass whose arithmetic and comparisons raise."""

    def __sub__(self, other):
        raise RuntimeError("no arithmetic")

    def __eq__(self, other):
        raise RuntimeError("no comparison")


def test_check_compares_plain_arrays_whatever_subclass_is_returned():
    def hostile(x):
        return {"mean": x.mean(0).view(_Hostile), "var": x.var(0).view(_Hostile)}

    assert quiet_check(_tiny(), hostile).passed


def test_check_fails_a_function_that_modifies_its_input():
    def in_place(x):
        x -= x.mean(0)
        return {"mean": x.mean(0) * 0 + 1, "var": x.var(0)}

    ex = _tiny()
    result = quiet_check(ex, in_place)
    assert result.status == "failed"
    assert any("modifies its input x in place" in p for v in result.verdicts for p in v.problems)
    assert quiet_check(_tiny(pure=False, reference=lambda x: in_place(x.copy())),
                       in_place).passed


def test_check_result_does_not_display_twice_in_a_notebook():
    result = quiet_check(_tiny(), _mean_var)
    assert repr(result) == "CheckResult('ch99-mean-var', status='passed', passed=1/1)"
    assert str(result) == result.report
    assert result._ipython_display_() is None


def _notebook_function(source, name, cell="<ipython-input-1-exercises>"):
    """Define a function the way IPython does: code in __main__, source in linecache."""
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    namespace = {"__name__": "__main__", "np": np, "helper": lambda value: value}
    exec(compile(source, cell, "exec"), namespace)
    return namespace[name]


def test_check_warns_about_what_would_fail_at_grading_time():
    ex = get_exercise("ch01-standardize-train-test")
    outside = _notebook_function('''
def standardize_train_test(x_train, x_test):
    mean, std = x_train.mean(0), x_train.std(0)
    scale = np.where(std > 0, std, 1).astype(x_train.dtype)
    return helper((x_train - mean) / scale), (x_test - mean) / scale
''', ex.function)
    result = quiet_check(ex.id, outside)
    assert result.passed
    (warning,) = result.warnings
    assert "uses helper, np, which the exercise cell does not define" in warning
    assert "WARNING" in result.report and "grading would fail" in result.report

    reference = _notebook_function('''
from bncourse.standardize import Standardizer


def standardize_train_test(x_train, x_test):
    s = Standardizer().fit(x_train)
    return s.transform(x_train), s.transform(x_test)
''', ex.function, cell="<ipython-input-2-exercises>")
    result = quiet_check(ex.id, reference)
    assert result.passed and len(result.warnings) == 1
    assert "imports bncourse.standardize" in result.warnings[0]


# --------------------------------------------------------------------------- wire format


def test_encode_decode_round_trip_keeps_structure_values_and_dtypes():
    value = (np.arange(6, dtype=np.float32).reshape(2, 3), 2.5, 3, True, None, "mode",
             [np.int64(4), {"a": np.array([1, 2], dtype=np.int16)}])
    arrays = []
    tree = _child.encode(value, arrays)
    header, back_arrays = _child.unpack(_child.pack({"tree": tree}, arrays))
    back = _child.decode(header["tree"], back_arrays)
    assert back[0].dtype == np.float32 and np.array_equal(back[0], value[0])
    assert back[1:6] == (2.5, 3, True, None, "mode")
    assert back[6][0] == 4 and back[6][1]["a"].dtype == np.int16
    for bad in (object(), {1: 2}, np.array(["a"]), np.array([None]), [[[[[[[[[[1]]]]]]]]]]):
        with pytest.raises(_child.EncodeError):
            _child.encode(bad, [])


def test_unpack_never_unpickles_and_rejects_malformed_frames():
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    head = json.dumps({"arrays": [[0, len(buf.getvalue())]]}).encode()
    frame = _child.MAGIC + struct.pack("<Q", len(head)) + head + buf.getvalue()
    with pytest.raises(ValueError, match="allow_pickle"):
        _child.unpack(frame)
    for junk in (b"", b"not a frame at all", _child.MAGIC + struct.pack("<Q", 99) + b"{}"):
        with pytest.raises(ValueError):
            _child.unpack(junk)
    good = _child.pack({}, [np.zeros(3)])
    with pytest.raises(ValueError, match="too large"):
        _child.unpack(good, max_array_bytes=8)
    with pytest.raises(ValueError):
        _child.decode({"t": "array", "k": 5}, [])


def test_read_submission_reports_bad_notebooks(tmp_path):
    empty = tmp_path / "empty.ipynb"
    empty.write_text("{}")
    assert "no list of cells" in read_submission(empty).error
    v3 = tmp_path / "v3.ipynb"
    v3.write_text(json.dumps({"cells": [], "nbformat": 3}))
    assert "nbformat 3" in read_submission(v3).error
    binary = tmp_path / "binary.ipynb"
    binary.write_bytes(os.urandom(64) + b"\xff")
    assert read_submission(binary).error.startswith("malformed notebook")
    assert read_submission(tmp_path / "missing.ipynb").error.startswith("malformed notebook")
