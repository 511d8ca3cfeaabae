"""Every page of the built book, opened in headless Chromium from 127.0.0.1.

Each page must load without JavaScript errors, with all its math typeset by
MathJax (served locally), every image loaded, every internal link and anchor
resolving, and, on a chapter, Binder and Colab buttons that open that chapter's
notebook. Every image must have alternative text (a figure's long enough to
describe it), axe-core must find no serious or critical accessibility
violation, and the footer must name the package version and commit the book
was built from. Screenshots of the introduction and of the first chapter are saved
to ``_build/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml
from accessibility import severe
from book_pages import check_page, list_pages, screenshot
from book_paths import REPO_ROOT, html_dir_from_env
from book_server import BookServer


def toc_files() -> list[str]:
    """The documents of ``_toc.yml`` in reading order, without suffix."""
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def pytest_generate_tests(metafunc):
    if "page" in metafunc.fixturenames:
        html_dir = html_dir_from_env()
        pages = list_pages(html_dir) if html_dir.is_dir() else []
        metafunc.parametrize("page", pages or [pytest.param(None, id="no-built-book")])


@pytest.fixture(scope="module")
def server(html_dir):
    with BookServer(html_dir) as served:
        yield served


@pytest.mark.browser
def test_page(page, browser, server, html_dir, launch_config, build_info, record_property):
    assert page is not None, f"no pages in {html_dir_from_env()}: build the book first"
    report = check_page(browser, server, html_dir, page, REPO_ROOT, launch_config, build_info)
    n_severe = len(severe(report.violations))
    record_property("page_counts", {
        "pages": 1, "math": report.n_math, "images": report.n_images, "links": report.n_links,
        "violations": n_severe, "minor": len(report.violations) - n_severe,
    })
    assert report.problems == [], f"{page}:\n  " + "\n  ".join(report.problems)


def test_every_toc_entry_has_a_page(html_dir):
    missing = [f for f in toc_files() if not (html_dir / f"{f}.html").is_file()]
    assert missing == [], f"documents of _toc.yml without a page: {missing}"


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.mark.browser
def test_screenshots_of_the_introduction_and_the_first_chapter(browser, server, html_dir):
    shots = html_dir.parent / "screenshots"
    files = toc_files()
    chapters = [f for f in files[1:] if (REPO_ROOT / f"{f}.ipynb").is_file()]
    assert chapters, "no chapter notebook in _toc.yml"
    assert (html_dir / f"{chapters[0]}.html").is_file(), f"no page for {chapters[0]}"
    taken = []
    browser.get(server.url(f"{files[0]}.html"))
    taken.append(screenshot(browser, shots / "intro.png"))
    browser.get(server.url(f"{chapters[0]}.html"))
    browser.execute_async_script(
        "const done = arguments[0];"
        "(window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve())"
        ".then(() => done())"
    )
    taken.append(screenshot(browser, shots / "chapter.png"))
    figure = "figure img, .cell_output img"
    taken.append(screenshot(browser, shots / "chapter-figure.png", selector=figure))
    for path in taken:
        width, height = _png_size(path)
        assert width >= 800 and height >= 600, f"{path}: {width}x{height}"
