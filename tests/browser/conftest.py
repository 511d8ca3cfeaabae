"""Tests of the book as readers meet it: in a browser, on Binder, on Colab.

They need the built book (``_build/html``, or the folder that the environment
variable ``BNCOURSE_HTML_DIR`` names), Chromium and ChromeDriver (Debian
packages ``chromium``, ``chromium-driver``), MathJax and axe-core from
``npm ci --prefix tests/browser``, and a minute or two. ``make test-browser``
provides all of that after the book build (``tools/browser_tools.sh`` installs
the Debian packages where it runs as root with apt).

Tests marked ``browser`` (every test that opens a page) are skipped, with the
command that installs what is missing, when Chromium, ChromeDriver or the npm
packages are not there; with ``BNCOURSE_REQUIRE_BROWSER=1`` (as ``.ci/run``
sets) they fail instead, so CI always runs them. The fresh-environment test
needs none of it and always runs.

A plain ``pytest`` or ``pytest tests`` does not collect them; they run when
this folder, or a file in it, is named on the command line:
``pytest tests/browser``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

# The helper modules beside this file (book_paths, book_pages, ...) are imported by name;
# with --import-mode=importlib nothing else puts this folder on sys.path in every
# process (pytest-xdist's workers included).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_paths import BROWSER_TESTS, REPO_ROOT, html_dir_from_env  # noqa: E402

INSTALL_COMMAND = (
    "sudo apt-get install -y chromium chromium-driver npm && "
    "npm ci --prefix tests/browser && make test-browser"
)
REQUIRE_VARIABLE = "BNCOURSE_REQUIRE_BROWSER"
SKIP_MARK = "BROWSER TEST SKIPPED"


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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: opens pages in headless Chromium (skipped when it is not installed)"
    )


def missing_browser_tools() -> list[str]:
    """What the page tests need and this machine lacks."""
    from accessibility import AXE_JS
    from book_pages import CHROMEDRIVER, CHROMIUM
    from book_server import MATHJAX_DIR

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if not (MATHJAX_DIR / "es5" / "tex-mml-chtml.js").is_file():
        missing.append("MathJax (tests/browser/node_modules)")
    if not AXE_JS.is_file():
        missing.append("axe-core (tests/browser/node_modules)")
    return missing


def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") is None:
        return
    missing = missing_browser_tools()
    if not missing:
        return
    message = f"{', '.join(missing)} not installed; to install and run: {INSTALL_COMMAND}"
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"browser test required ({REQUIRE_VARIABLE}=1) but {message}")
    pytest.skip(f"{SKIP_MARK}: {message}")


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
def build_info():
    """The version and commit that the footer of every page must name (book/_ext/build_info.py)."""
    import bncourse
    from book_pages import BuildInfo

    spec = importlib.util.spec_from_file_location(
        "build_info", REPO_ROOT / "book" / "_ext" / "build_info.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commit, _ = module.git_commit(REPO_ROOT)
    return BuildInfo(version=bncourse.__version__, commit=commit)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    from book_pages import start_chromium

    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


_TOTALS = {"pages": 0, "math": 0, "images": 0, "links": 0, "violations": 0, "minor": 0}


def pytest_runtest_logreport(report):
    """Add up the page counts that ``test_page`` records (also from xdist workers)."""
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == "page_counts":
            for key, count in value.items():
                _TOTALS[key] += count


def pytest_terminal_summary(terminalreporter):
    if _TOTALS["pages"]:
        terminalreporter.write_line(
            f"browser: {_TOTALS['pages']} pages, {_TOTALS['math']} math elements, "
            f"{_TOTALS['images']} figure images, {_TOTALS['links']} links checked; "
            f"axe-core: {_TOTALS['violations']} serious or critical violations, "
            f"{_TOTALS['minor']} moderate or minor"
        )
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if SKIP_MARK in str(r.longrepr)]
    if skipped:
        # longrepr of a skip is (file, line, "Skipped: <reason>")
        reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else ""
        bar = "!" * 78
        for line in (bar, f"{SKIP_MARK} ({len(skipped)} tests): the built book was NOT opened "
                     "in a browser.", reason, bar):
            terminalreporter.write_line(line, red=True, bold=True)
