"""Serve a built book on 127.0.0.1 with MathJax from a local copy.

The pages that Sphinx writes load MathJax 3 from a CDN, which an offline test
machine cannot reach. This server answers every request from the HTML folder,
except paths under ``/_mathjax/``, which it answers from a local MathJax
folder (``node_modules/mathjax`` of ``package.json`` beside this file), and it
rewrites each ``<script src=".../mathjax@3.../es5/X.js">`` of an HTML page to
``/_mathjax/es5/X.js``. Nothing else on the page changes, so any other remote
script or stylesheet still fails to load and the browser test reports it.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

MATHJAX_DIR = Path(__file__).resolve().parent / "node_modules" / "mathjax"
MATHJAX_PREFIX = "/_mathjax/"
# A CDN address of MathJax 3, e.g. https://<cdn>/npm/mathjax@3/es5/tex-mml-chtml.js;
# group 1 is the part below the package root.
_MATHJAX_URL = re.compile(r"https?://[^\"'\s]+/mathjax@3[^/\"'\s]*/(es5/[^\"'\s]+)")


def rewrite_mathjax(html: str) -> tuple[str, int]:
    """Point every MathJax 3 CDN address in ``html`` at the local copy.

    Returns the new text and the number of addresses rewritten.
    """
    return _MATHJAX_URL.subn(lambda m: MATHJAX_PREFIX + m.group(1), html)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from the book, MathJax from ``mathjax_dir``, HTML rewritten."""

    def __init__(self, *args, directory: str, mathjax_dir: Path, **kwargs):
        self.mathjax_dir = mathjax_dir
        super().__init__(*args, directory=directory, **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith(MATHJAX_PREFIX):
            relative = path[len(MATHJAX_PREFIX) :].split("?", 1)[0].split("#", 1)[0]
            target = (self.mathjax_dir / relative).resolve()
            if self.mathjax_dir.resolve() in target.parents:
                return str(target)
            return str(self.mathjax_dir / "__outside__")
        return super().translate_path(path)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir() and self.path.split("?", 1)[0].endswith("/"):
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body, _ = rewrite_mathjax(path.read_text(encoding="utf-8"))
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # keep the test output readable


class BookServer:
    """A threaded HTTP server for ``html_dir`` on a free port of 127.0.0.1.

    Use as a context manager; ``url(relative)`` gives a page's address.
    """

    def __init__(self, html_dir: Path, mathjax_dir: Path = MATHJAX_DIR):
        if not (mathjax_dir / "es5" / "tex-mml-chtml.js").is_file():
            raise FileNotFoundError(
                "BookServer: mathjax_dir must hold MathJax 3 (es5/tex-mml-chtml.js), "
                f"got {mathjax_dir}; "
                "run `npm ci --prefix tests/browser`"
            )
        handler = functools.partial(_Handler, directory=str(html_dir), mathjax_dir=mathjax_dir)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def root(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def url(self, relative: str) -> str:
        return self.root + relative.lstrip("/")

    def __enter__(self) -> BookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
