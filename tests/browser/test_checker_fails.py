"""The browser check fails on broken pages, and passes a good one.

A copy of the built book gets extra pages, each the introduction with one
fault added: math with a TeX error, math never closed, an undefined macro, TeX that was never
typeset, a figure whose image is missing, an image without alternative text, a
figure whose alternative text is only a title, a text field without a label (a
critical violation for axe-core), a broken link, a missing anchor, a script
that throws, and a footer that names another package version. A last page adds correct math that uses every macro of
``_config.yml`` and a figure whose image exists, and must pass. Finally one
image file of a chapter is deleted, and that chapter's page must fail.
"""

from __future__ import annotations

import shutil

import dataclasses

import pytest
import yaml
from book_pages import BuildInfo, check_page
from book_paths import REPO_ROOT
from book_server import BookServer


def _macro_example(name: str, definition) -> str:
    n_args = definition[1] if isinstance(definition, list) else 0
    return "\\" + name + "".join("{z}" for _ in range(n_args))


def _config_macros() -> dict:
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]


GOOD = (
    "<p>Good math: "
    + "".join(
        f'<span class="math notranslate nohighlight">\\({_macro_example(name, value)}\\)</span> '
        for name, value in _config_macros().items()
    )
    + '</p><div class="math notranslate nohighlight">\\[\\hat{x}_i = \\frac{x_i - \\mu_B}'
    "{\\sqrt{\\sigma_B^2 + \\epsilon}}\\]</div>"
    '<figure><img alt="The Colab logo, two orange rings that interlock; nothing to read from '
    'it but the name of the service it opens." src="../_static/images/logo_colab.png"/></figure>'
)
OTHER_VERSION = "0.0.0.dev-other"
FAULTS = {
    "tex_error": (
        '<p><span class="math notranslate nohighlight">\\(\\frac{1}{m}\\sum_i x_i}\\)</span></p>',
        "MathJax: merror",
    ),
    "unclosed_math": (
        '<p><span class="math notranslate nohighlight">\\(\\frac{1}{\\)</span></p>',
        "math not typeset",
    ),
    "undefined_macro": (
        '<p><span class="math notranslate nohighlight">\\(\\nosuchmacro{x}\\)</span></p>',
        "MathJax: undefined macro",
    ),
    "raw_tex": (
        "<p>The mean is $\\mu_B = \\frac{1}{m}\\sum_i x_i$ here.</p>",
        "raw TeX in the text",
    ),
    "missing_figure": (
        '<figure><img alt="gone" src="../_images/no-such-figure.png"/></figure>',
        "image not loaded",
    ),
    "image_without_alt": (
        '<figure><img src="../_static/images/logo_colab.png"/></figure>',
        "image without alt text",
    ),
    "figure_alt_only_a_title": (
        '<figure><img alt="Colab logo" src="../_static/images/logo_colab.png"/></figure>',
        "figure alt text has 2 words",
    ),
    "field_without_label": ('<p><input type="text"/></p>', "accessibility (critical): label"),
    "broken_link": ('<p><a href="no-such-page.html">a page</a></p>', "broken a link"),
    "missing_anchor": (
        '<p><a href="intro.html#no-such-section">a section</a></p>',
        "no such anchor",
    ),
    "script_error": (
        '<script>throw new Error("deliberate failure");</script>',
        "JavaScript: uncaught",
    ),
}


@pytest.fixture(scope="module")
def faulty_book(html_dir, tmp_path_factory):
    """A copy of the book with ``book/good.html`` and one ``book/fault_<name>.html`` per fault."""
    copy = tmp_path_factory.mktemp("faulty") / "html"
    shutil.copytree(html_dir, copy)
    root = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"]
    intro = (copy / f"{root}.html").read_text(encoding="utf-8")
    marker = "</h1>"
    assert marker in intro, "the introduction has no title to insert after"

    def add_page(name: str, snippet: str) -> str:
        page = f"{root.rsplit('/', 1)[0]}/{name}.html"
        # After the last title: the first one is in the theme's print-only copy, which is
        # hidden on screen, and axe-core audits only what is shown.
        head, tail = intro.rsplit(marker, 1)
        (copy / page).write_text(head + marker + snippet + tail, encoding="utf-8")
        return page

    pages = {"good": add_page("good", GOOD)}
    for fault, (snippet, _) in FAULTS.items():
        pages[fault] = add_page(f"fault_{fault}", snippet)
    footer = 'class="bncourse-build" data-version="'
    assert footer in intro, "the introduction has no build footer"
    other = intro.replace(footer, footer + OTHER_VERSION + '" data-was="', 1)
    pages["other_version"] = f"{root.rsplit('/', 1)[0]}/fault_other_version.html"
    (copy / pages["other_version"]).write_text(other, encoding="utf-8")
    with BookServer(copy) as server:
        yield copy, server, pages


pytestmark = pytest.mark.browser


def test_a_good_page_passes(faulty_book, browser, launch_config, build_info):
    copy, server, pages = faulty_book
    report = check_page(browser, server, copy, pages["good"], REPO_ROOT, launch_config, build_info)
    assert report.problems == []
    assert report.n_math >= len(_config_macros()) + 1
    assert report.n_images >= 1


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_faulty_page_fails(fault, faulty_book, browser, launch_config, build_info):
    copy, server, pages = faulty_book
    report = check_page(browser, server, copy, pages[fault], REPO_ROOT, launch_config, build_info)
    expected = FAULTS[fault][1]
    assert any(expected in problem for problem in report.problems), report.problems


def test_a_page_built_from_another_version_or_commit_fails(
    faulty_book, browser, launch_config, build_info
):
    copy, server, pages = faulty_book
    report = check_page(browser, server, copy, pages["other_version"], REPO_ROOT, launch_config,
                        build_info)
    assert any(f"footer names bncourse {OTHER_VERSION!r}" in p for p in report.problems), (
        report.problems
    )
    other_commit = dataclasses.replace(build_info, commit="0" * 40)
    report = check_page(browser, server, copy, pages["good"], REPO_ROOT, launch_config,
                        other_commit)
    assert any("footer names commit" in p for p in report.problems), report.problems


def test_a_chapter_whose_figure_file_is_deleted_fails(faulty_book, browser, launch_config):
    copy, server, _ = faulty_book
    images = sorted((copy / "_images").glob("*.png")) if (copy / "_images").is_dir() else []
    pages = sorted(
        p for p in (copy / "book").glob("*.html") if "_images/" in p.read_text(encoding="utf-8")
    )
    if not images or not pages:
        pytest.skip("the built book has no figure image yet")
    page = pages[0]
    used = [img for img in images if f"_images/{img.name}" in page.read_text(encoding="utf-8")]
    used[0].unlink()
    relative = page.relative_to(copy).as_posix()
    report = check_page(browser, server, copy, relative, REPO_ROOT, launch_config)
    problems = report.problems
    assert any("image not loaded" in p and used[0].name in p for p in problems), problems
