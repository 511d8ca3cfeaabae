"""Tests of the book as readers meet it: in a browser, on Binder, on Colab.

They need the built book (``_build/html``, or the folder that the environment
variable ``BNCOURSE_HTML_DIR`` names), Chromium and ChromeDriver (Debian
packages ``chromium``, ``chromium-driver``), MathJax from
``npm ci --prefix tests/browser``, and a minute or two. ``make test-browser``
provides all of that after the book build.

A plain ``pytest`` or ``pytest tests`` does not collect them; they run when
this folder, or a file in it, is named on the command line:
``pytest tests/browser``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from book_paths import BROWSER_TESTS, REPO_ROOT, html_dir_from_env

_REPORTS: list = []


def _named_on_command_line(config) -> bool:
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0]).resolve()
        if path == BROWSER_TESTS or BROWSER_TESTS in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    inside = BROWSER_TESTS in Path(collection_path).resolve().parents
    if inside and not _named_on_command_line(config):
        return True
    return None


@pytest.fixture(scope="session")
def html_dir() -> Path:
    path = html_dir_from_env()
    if not (path / "index.html").is_file():
        pytest.fail(f"no built book in {path}: run `make book` first (or set BNCOURSE_HTML_DIR)")
    return path


@pytest.fixture(scope="session")
def launch_config():
    from book_pages import LaunchConfig

    return LaunchConfig.from_config(REPO_ROOT / "_config.yml")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    from book_pages import start_chromium

    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def page_reports() -> list:
    """The ``PageReport`` of every page checked, for the closing summary."""
    return _REPORTS


def pytest_terminal_summary(terminalreporter):
    if _REPORTS:
        terminalreporter.write_line(
            f"browser: {len(_REPORTS)} pages, {sum(r.n_math for r in _REPORTS)} math elements, "
            f"{sum(r.n_images for r in _REPORTS)} figure images, "
            f"{sum(r.n_links for r in _REPORTS)} links checked"
        )
