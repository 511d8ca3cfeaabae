"""Open pages of the built book in headless Chromium and list what is wrong.

``check_page`` loads one page from a ``BookServer`` and returns a
``PageReport`` whose ``problems`` is empty for a good page. It reports:

- JavaScript errors: uncaught exceptions, rejected promises, ``console.error``,
  resources that failed to load, and SEVERE entries of the browser's log;
- math that MathJax did not typeset (an element of class ``math`` without a
  rendered ``mjx-container``), math that it typeset as an error (``merror``,
  or an undefined macro shown in red), and raw TeX left in the text
  (``\\(``, ``\\[``, ``$$``, ``\\begin{``, ``$...\\macro...$``);
- images that did not load (``naturalWidth == 0`` after decoding), images
  without alternative text, and figures whose alternative text is too short to
  say what they show (``accessibility.alt_text_problems``);
- violations of impact "serious" or "critical" found by axe-core
  (``accessibility.audit``);
- a footer that does not name the package version and the commit the book was
  built from (``build``, when given);
- internal links, images, scripts and stylesheets whose file is missing from
  the HTML folder, and ``#anchors`` that the target page does not define;
- on a page built from a notebook (``.ipynb``) of the repository: Binder and
  Colab launch buttons that do not open that notebook of the repository set in
  ``_config.yml``, or a download button that does not give the ``.ipynb``; on
  any other page: launch buttons at all; on every page: the repository button.
"""

from __future__ import annotations

import dataclasses
import html.parser
import shutil
import time
import urllib.parse
from pathlib import Path

import yaml
from accessibility import alt_text_problems, audit, describe, severe

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags that keep Chromium off the network it cannot reach and out of any profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)
MATHJAX_TIMEOUT_S = 60

# Installed before any script of the page runs: records every error the page sees.
_ERROR_RECORDER = """
window.__bookErrors = [];
window.addEventListener('error', (e) => {
  const t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__bookErrors.push('failed to load ' + (t.src || t.href));
  } else {
    window.__bookErrors.push('uncaught ' + (e.message || e.error));
  }
}, true);
window.addEventListener('unhandledrejection', (e) => {
  window.__bookErrors.push('unhandled rejection ' + (e.reason && (e.reason.stack || e.reason)));
});
const __bookConsoleError = console.error.bind(console);
console.error = (...args) => {
  window.__bookErrors.push('console.error ' + args.map(String).join(' '));
  __bookConsoleError(...args);
};
"""

# Runs after the load event; waits for MathJax, decodes every image, collects facts.
_INSPECT = r"""
const done = arguments[arguments.length - 1];
const timeoutMs = arguments[0];
(async () => {
  const out = {mathjax: null, math: [], rawTex: [], images: [], links: [], errors: []};
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // Wait for MathJax where the page has math or loads MathJax.
  const wantsMathJax = document.querySelector('.math, script[src*="mathjax"]') !== null;
  const t0 = Date.now();
  while (wantsMathJax && !(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - t0 > timeoutMs) break;
    await sleep(50);
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, sleep(timeoutMs)]);
    out.mathjax = MathJax.version || 'unknown';
  }
  // Every element that Sphinx or myst marked as math must hold a typeset container.
  for (const el of document.querySelectorAll('.math')) {
    const container = el.querySelector('mjx-container');
    out.math.push({
      source: el.textContent.slice(0, 120),
      typeset: container !== null,
      merror: el.querySelector('mjx-merror') !== null,
    });
  }
  // MathJax's own tree: errors and undefined macros (shown as red \name text).
  out.mathErrors = [];
  if (window.MathJax && MathJax.startup && MathJax.startup.document) {
    for (const item of MathJax.startup.document.math) {
      item.root.walkTree((node) => {
        if (node.isKind('merror')) {
          out.mathErrors.push('merror in ' + item.math.slice(0, 120));
        } else if (node.isKind('mtext') && node.attributes.getExplicit('mathcolor') === 'red') {
          out.mathErrors.push('undefined macro in ' + item.math.slice(0, 120));
        }
      });
    }
  }
  // Raw TeX left in the prose (code blocks and typeset math are skipped).
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .math';
  const rawTex = /\\\(|\\\[|\$\$|\\begin\{|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    if (rawTex.test(n.textContent)) out.rawTex.push(n.textContent.trim().slice(0, 160));
  }
  // Images, lazy ones included.
  const imgs = [...document.images];
  for (const img of imgs) img.loading = 'eager';
  await Promise.race([Promise.allSettled(imgs.map((img) => img.decode())), sleep(timeoutMs)]);
  for (const img of imgs) {
    out.images.push({src: img.currentSrc || img.src, width: img.naturalWidth,
                     alt: img.getAttribute('alt'),
                     inFigure: img.closest('figure, .cell_output') !== null});
  }
  // The footer line that says what the page was built from (book/_ext/build_info.py).
  const build = document.querySelector('.bncourse-build');
  out.build = build === null ? null : {
    version: build.dataset.version,
    commit: (build.querySelector('.bncourse-commit') || {dataset: {}}).dataset.commit,
    text: build.textContent.trim(),
  };
  // Every address the page refers to.
  const refs = [['a', 'href'], ['img', 'src'], ['script', 'src'], ['link', 'href']];
  for (const [tag, attr] of refs) {
    for (const el of document.querySelectorAll(tag + '[' + attr + ']')) {
      out.links.push({tag: tag, url: el[attr], classes: String(el.className || ''),
                      launch: el.closest('.dropdown-launch-buttons') !== null});
    }
  }
  out.errors = window.__bookErrors || [];
  return out;
})().then(done, (e) => done({fatal: String(e && (e.stack || e))}));
"""


@dataclasses.dataclass
class PageReport:
    """What one page showed: ``problems`` is empty for a good page."""

    page: str
    problems: list[str]
    n_math: int = 0
    n_images: int = 0
    n_links: int = 0
    violations: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """What every page's footer must name: the package version and the full commit hash."""

    version: str
    commit: str | None


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """The repository and launch settings of ``_config.yml``."""

    repository_url: str
    branch: str
    path_to_book: str
    binderhub_url: str | None
    colab_url: str | None

    @classmethod
    def from_config(cls, config_path: Path) -> LaunchConfig:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        repo = config.get("repository", {})
        launch = config.get("launch_buttons", {})
        return cls(
            repository_url=repo["url"].rstrip("/"),
            branch=repo.get("branch", "main"),
            path_to_book=(repo.get("path_to_book") or "").strip("/"),
            binderhub_url=(launch.get("binderhub_url") or "").rstrip("/") or None,
            colab_url=(launch.get("colab_url") or "").rstrip("/") or None,
        )

    @property
    def github_path(self) -> str:
        """``owner/name`` of the repository."""
        return urllib.parse.urlparse(self.repository_url).path.strip("/")


def start_chromium(user_data_dir: Path):
    """A headless Chromium under ChromeDriver, with the error recorder installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(program) is None:
            raise FileNotFoundError(
                f"start_chromium: {program} must be installed "
                "(Debian packages chromium, chromium-driver)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(2 * MATHJAX_TIMEOUT_S + 30)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _ERROR_RECORDER})
    return driver


def list_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the book, relative to ``html_dir``, in POSIX form."""
    return sorted(
        p.relative_to(html_dir).as_posix()
        for p in html_dir.rglob("*.html")
        if not p.relative_to(html_dir).parts[0].startswith("_")
    )


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


class _Anchors:
    """The ids that each file of the HTML folder defines, parsed once."""

    def __init__(self):
        self._cache: dict[Path, set[str]] = {}

    def __call__(self, path: Path) -> set[str]:
        if path not in self._cache:
            parser = _Ids()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            self._cache[path] = parser.ids
        return self._cache[path]


_anchors = _Anchors()


def _local_file(html_dir: Path, path: str) -> Path:
    relative = urllib.parse.unquote(path).lstrip("/")
    target = html_dir / relative
    if relative == "" or relative.endswith("/"):
        target = target / "index.html"
    return target


def _check_links(html_dir: Path, origin: str, links: list[dict]) -> list[str]:
    problems = []
    for link in links:
        url = urllib.parse.urlsplit(link["url"])
        if f"{url.scheme}://{url.netloc}" != origin:
            continue
        if url.path.startswith("/_mathjax/"):
            continue  # served from the local MathJax copy
        target = _local_file(html_dir, url.path)
        if not target.is_file():
            missing = target.relative_to(html_dir)
            problems.append(f"broken {link['tag']} link to {url.path} (no file {missing})")
            continue
        if url.fragment and target.suffix == ".html":
            fragment = urllib.parse.unquote(url.fragment)
            if fragment not in _anchors(target):
                problems.append(f"link to {url.path}#{fragment}: no such anchor")
    return problems


def _check_buttons(page: str, repo_root: Path, launch: LaunchConfig, links: list[dict]):
    """Launch, download and repository buttons for ``page`` (``book/x.html``)."""
    problems = []
    anchors = [link for link in links if link["tag"] == "a"]
    repository = [a["url"] for a in anchors if "btn-source-repository-button" in a["classes"]]
    if [u.rstrip("/") for u in repository] != [launch.repository_url]:
        problems.append(
            f"repository button should link to {launch.repository_url}, got {repository}"
        )
    stem = page[: -len(".html")]
    notebook = "/".join(p for p in (launch.path_to_book, f"{stem}.ipynb") if p)
    buttons = [a["url"] for a in anchors if a["launch"]]
    if not (repo_root / notebook).is_file():
        # Not built from a notebook of the repository: nothing to launch.
        if buttons:
            problems.append(
                f"launch buttons on a page that is not a notebook of the repository: {buttons}"
            )
        return problems
    expected = []
    if launch.binderhub_url:
        binder = f"{launch.binderhub_url}/v2/gh/{launch.github_path}/{launch.branch}"
        found = [b for b in buttons if b.split("?", 1)[0] == binder]
        queries = [urllib.parse.parse_qs(urllib.parse.urlsplit(b).query) for b in found]
        urlpaths = [q.get("urlpath", [""])[0] for q in queries]
        if len(found) != 1 or not urlpaths[0].endswith("tree/" + notebook):
            problems.append(f"Binder button should open {notebook} at {binder}, got {buttons}")
        expected += found
    if launch.colab_url:
        colab = f"{launch.colab_url}/github/{launch.github_path}/blob/{launch.branch}/{notebook}"
        if colab not in buttons:
            problems.append(f"Colab button should be {colab}, got {buttons}")
        expected.append(colab)
    if sorted(buttons) != sorted(expected):
        problems.append(f"launch buttons {buttons}, expected only {expected}")
    downloads = [a["url"] for a in anchors if "btn-download-source-button" in a["classes"]]
    source = f"/_sources/{stem}.ipynb"
    if not any(urllib.parse.urlsplit(d).path.endswith(source) for d in downloads):
        problems.append(f"no download button for _sources/{stem}.ipynb, got {downloads}")
    return problems


def _is_favicon_probe(message: str, server) -> bool:
    """Chromium asks every server for /favicon.ico by itself; no page of the book refers to it."""
    return message.startswith(server.url("favicon.ico") + " ")


def _check_build(build: BuildInfo, found: dict | None) -> list[str]:
    if found is None:
        return ["no footer naming the package version and commit the page was built from"]
    problems = []
    if found["version"] != build.version:
        problems.append(f"footer names bncourse {found['version']!r}, expected {build.version!r}")
    if (found["commit"] or None) != build.commit:
        problems.append(f"footer names commit {found['commit']!r}, expected {build.commit!r}")
    return problems


def check_page(
    driver,
    server,
    html_dir: Path,
    page: str,
    repo_root: Path,
    launch: LaunchConfig,
    build: BuildInfo | None = None,
) -> PageReport:
    """Load ``page`` (relative to ``html_dir``) in ``driver`` and report every problem."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(server.url(page))
    facts = driver.execute_async_script(_INSPECT, MATHJAX_TIMEOUT_S * 1000)
    if "fatal" in facts:
        return PageReport(page, [f"inspection failed: {facts['fatal']}"])
    problems: list[str] = []
    severe_log = [
        e["message"]
        for e in driver.get_log("browser")
        if e.get("level") == "SEVERE" and not _is_favicon_probe(e["message"], server)
    ]
    problems += [f"JavaScript: {m}" for m in facts["errors"]]
    problems += [f"browser log: {m}" for m in severe_log]
    if facts["math"] and facts["mathjax"] is None:
        problems.append(f"{len(facts['math'])} math elements but MathJax did not start")
    problems += [f"math not typeset: {m['source']!r}" for m in facts["math"] if not m["typeset"]]
    problems += [f"math error: {m['source']!r}" for m in facts["math"] if m["merror"]]
    problems += [f"MathJax: {m}" for m in facts["mathErrors"]]
    problems += [f"raw TeX in the text: {t!r}" for t in facts["rawTex"]]
    problems += [f"image not loaded: {i['src']}" for i in facts["images"] if i["width"] == 0]
    problems += alt_text_problems(facts["images"])
    violations = audit(driver)
    problems += [describe(v) for v in severe(violations)]
    if build is not None:
        problems += _check_build(build, facts["build"])
    origin = server.root.rstrip("/")
    problems += _check_links(html_dir, origin, facts["links"])
    problems += _check_buttons(page, repo_root, launch, facts["links"])
    return PageReport(
        page,
        problems,
        n_math=len(facts["math"]),
        n_images=sum(i["inFigure"] for i in facts["images"]),
        n_links=len(facts["links"]),
        violations=violations,
    )


def screenshot(driver, path: Path, selector: str | None = None) -> Path:
    """Save a PNG of the viewport, scrolled to the first ``selector`` match if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if selector is not None:
        driver.execute_script(
            "const el = document.querySelector(arguments[0]);"
            "if (el) el.scrollIntoView({block: 'center'});",
            selector,
        )
        time.sleep(0.3)  # let the theme's scroll-spy settle before the capture
    driver.save_screenshot(str(path))
    return path
