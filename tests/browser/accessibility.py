"""An automated accessibility audit of a loaded page with axe-core, and the alt-text rule.

``audit(driver)`` injects axe-core (``node_modules/axe-core`` of
``package.json`` beside this file, installed by ``npm ci``) into the page that
``driver`` shows and returns axe's violations of its default rule set (WCAG 2
A and AA, and best practices). ``severe(violations)`` keeps those of impact
"serious" or "critical", which the browser test does not accept.

``alt_text_problems(images)`` applies the book's own rule to the images that
the page inspection collected: every image has alternative text, and a figure's
says what it shows and what to read from it, which takes at least
``MIN_FIGURE_ALT_WORDS`` words.
"""

from __future__ import annotations

import functools
from pathlib import Path

AXE_JS = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SEVERE_IMPACTS = ("serious", "critical")
MIN_FIGURE_ALT_WORDS = 12

_RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(
  (r) => done(r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.map((n) => n.target.join(' ')),
  }))),
  (e) => done([{id: 'axe-error', impact: 'critical', help: String(e), targets: []}]),
);
"""


@functools.cache
def axe_source() -> str:
    if not AXE_JS.is_file():
        raise FileNotFoundError(
            f"axe_source: axe-core must be installed in {AXE_JS.parents[1]}, "
            "got no axe.min.js; run `npm ci --prefix tests/browser`"
        )
    return AXE_JS.read_text(encoding="utf-8")


def audit(driver) -> list[dict]:
    """axe-core's violations on the current page: ``id``, ``impact``, ``help``, ``targets``."""
    if not driver.execute_script("return typeof window.axe === 'object';"):
        driver.execute_script(axe_source())
    return driver.execute_async_script(_RUN_AXE)


def severe(violations: list[dict]) -> list[dict]:
    """The violations of impact "serious" or "critical"."""
    return [v for v in violations if v["impact"] in SEVERE_IMPACTS]


def describe(violation: dict) -> str:
    targets = violation["targets"]
    shown = ", ".join(targets[:3]) + (f" and {len(targets) - 3} more" if len(targets) > 3 else "")
    return (f"accessibility ({violation['impact']}): {violation['id']}: {violation['help']} "
            f"[{len(targets)} elements: {shown}]")


def alt_text_problems(images: list[dict]) -> list[str]:
    """Images without alternative text, and figures whose text is too short to describe them."""
    problems = []
    for image in images:
        alt = (image.get("alt") or "").strip()
        if not alt:
            problems.append(f"image without alt text: {image['src']}")
        elif image["inFigure"] and len(alt.split()) < MIN_FIGURE_ALT_WORDS:
            problems.append(
                f"figure alt text has {len(alt.split())} words, fewer than "
                f"{MIN_FIGURE_ALT_WORDS} to say what it shows and what to read from it: "
                f"{alt!r} ({image['src']})"
            )
    return problems
