"""Numbers from a chapter's computation into its prose, and checks of what the prose reads from them.

``glue(name, value, display=False)`` is what the chapters call to hand a computed
value to the text, where ``{glue:text}`name``` shows it. When the book is built,
it is :func:`myst_nb.glue`, which stores the value in the cell's output. myst-nb
belongs to the tools that build the book, not to what a reader needs to run a
chapter, so on Colab, Binder or in a fresh environment it is usually absent;
there ``glue`` keeps the value in :data:`GLUED` under ``name`` and, with
``display=True``, shows it as Jupyter shows the value of a cell. Either way
the chapter runs to the end and computes the same numbers.

``check_reading(reading, holds, **numbers)`` guards a sentence whose *wording*
depends on a number ("essentially the last batch", "a few percent"): the
chapter states the condition under which the words are true, and the call
raises :class:`ReadingError`, which stops the notebook and the book build, as
soon as the numbers no longer support them.
"""

from __future__ import annotations

import numbers as _numbers

try:  # the book's build environment
    from myst_nb import glue as _myst_glue
except ImportError:  # a reader's environment: Colab, Binder, pip install bncourse
    _myst_glue = None

GLUED: dict[str, object] = {}
"""Every value glued in this process, by name (also when myst-nb does the gluing)."""


class ReadingError(AssertionError):
    """The prose reads something from the numbers that they no longer show."""


def _check_name(function: str, name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{function}: name must be a str, got {type(name).__name__} {name!r}")
    if not name.strip() or any(c.isspace() for c in name):
        raise ValueError(f"{function}: name must be non-empty without spaces, got {name!r}")


def glue(name: str, value, display: bool = False) -> None:
    """Make ``value`` available to the text as ``{glue:text}`name```.

    Args:
        name: the key the prose uses, e.g. ``"ch1_wine_n"``; no spaces.
        value: any object; numbers and strings are what ``{glue:text}`` shows.
        display: also show the value in the cell's output (myst-nb's default is
            True; the chapters hide glued values, so the default here is False).

    With myst-nb installed this is ``myst_nb.glue(name, value, display)``;
    without it the value is only stored in :data:`GLUED` (and shown if
    ``display``).

    Raises:
        TypeError: ``name`` is not a string, or ``display`` is not a bool.
        ValueError: ``name`` is empty or contains white space.
    """
    _check_name("glue", name)
    if not isinstance(display, bool):
        raise TypeError(f"glue: display must be a bool, got {type(display).__name__} {display!r}")
    GLUED[name] = value
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    elif display:
        from IPython.display import display as show

        show(value)


def check_reading(reading: str, holds, **numbers) -> None:
    """Stop the chapter when the words ``reading`` no longer follow from the numbers.

    Args:
        reading: the words of the prose that the condition guards, e.g.
            ``"the buffers are essentially the statistics of the last batch"``.
        holds: the condition, computed from the chapter's results, under which
            the words are true (a Python or NumPy bool).
        **numbers: the values the condition was computed from, named, shown in
            the error so that whoever rewrites the sentence sees what changed.

    Raises:
        TypeError: ``reading`` is not a non-empty str, or ``holds`` is not a bool
            (an array, say, whose truth value would be ambiguous).
        ReadingError: ``holds`` is False.
    """
    if not isinstance(reading, str) or not reading.strip():
        raise TypeError(f"check_reading: reading must be a non-empty str, got {reading!r}")
    if not isinstance(holds, bool) and not (
        hasattr(holds, "dtype") and getattr(holds, "shape", None) == () and holds.dtype == bool
    ):
        raise TypeError(
            f"check_reading: holds must be a bool, got {type(holds).__name__} {holds!r}"
        )
    if not bool(holds):
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, _numbers.Real) else f"{k}={v!r}"
            for k, v in numbers.items()
        )
        raise ReadingError(
            f"check_reading: the text says {reading!r}, but the numbers no longer support it"
            + (f" ({shown})" if shown else "")
            + "; rewrite the sentence or glue the number it rests on"
        )
