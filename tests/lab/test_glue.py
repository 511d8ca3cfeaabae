"""bncourse.lab.glue: myst-nb's glue where it is installed, a plain store where it is not."""

import subprocess
import sys

import numpy as np
import pytest

from bncourse.lab import glue as glue_module
from bncourse.lab.glue import GLUED, ReadingError, check_reading, glue


def test_glue_hands_the_value_to_myst_nb_when_it_is_installed(monkeypatch):
    calls = []
    monkeypatch.setattr(glue_module, "_myst_glue", lambda *a, **k: calls.append((a, k)))
    glue("t_answer", 42, display=False)
    assert calls == [(("t_answer", 42), {"display": False})]
    assert GLUED["t_answer"] == 42


def test_glue_is_myst_nb_glue_in_the_build_environment():
    myst_nb = pytest.importorskip("myst_nb")
    assert glue_module._myst_glue is myst_nb.glue


def test_without_myst_nb_glue_stores_and_optionally_shows_the_value(monkeypatch, capsys):
    monkeypatch.setattr(glue_module, "_myst_glue", None)
    glue("t_hidden", 1.5)
    assert GLUED["t_hidden"] == 1.5
    assert capsys.readouterr().out == ""
    glue("t_shown", "seven", display=True)
    assert GLUED["t_shown"] == "seven"
    assert "seven" in capsys.readouterr().out


def test_a_fresh_interpreter_without_myst_nb_imports_and_glues():
    # myst_nb made unimportable: the module must fall back, not fail.
    code = (
        "import sys; sys.modules['myst_nb'] = None\n"
        "from bncourse.lab.glue import GLUED, glue, _myst_glue\n"
        "assert _myst_glue is None\n"
        "glue('x', 3, display=False); print(GLUED['x'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


@pytest.mark.parametrize(
    ("name", "display", "error", "match"),
    [
        (3, False, TypeError, r"glue: name must be a str, got int 3"),
        ("", False, ValueError, r"glue: name must be non-empty without spaces, got ''"),
        ("a b", False, ValueError, r"without spaces, got 'a b'"),
        ("ok", 1, TypeError, r"glue: display must be a bool, got int 1"),
    ],
)
def test_glue_rejects_bad_arguments(name, display, error, match):
    with pytest.raises(error, match=match):
        glue(name, 0, display=display)


def test_check_reading_passes_when_the_words_hold():
    check_reading("the error is small", True)
    check_reading("the error is small", np.float64(1e-9) < 1e-6, error=1e-9)


def test_check_reading_stops_the_chapter_with_the_numbers_when_they_do_not():
    with pytest.raises(ReadingError, match=r"the text says 'a few percent'.*spread=0\.2"):
        check_reading("a few percent", np.float64(0.2) < 0.05, spread=0.2)
    assert issubclass(ReadingError, AssertionError)


@pytest.mark.parametrize(
    ("reading", "holds", "match"),
    [
        ("", True, r"check_reading: reading must be a non-empty str, got ''"),
        (None, True, r"reading must be a non-empty str, got None"),
        ("x", np.array([True, False]), r"check_reading: holds must be a bool, got ndarray"),
        ("x", 1, r"holds must be a bool, got int 1"),
    ],
)
def test_check_reading_rejects_bad_arguments(reading, holds, match):
    with pytest.raises(TypeError, match=match):
        check_reading(reading, holds)
