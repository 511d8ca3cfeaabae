"""Sphinx extension: every page says which package version and commit it was built from.

The footer of each page reads "Built with bncourse <version> from commit
<hash>", the version being ``bncourse.__version__`` of the package the
chapters ran with and the hash that of the repository's ``HEAD`` (marked
"with uncommitted changes" when tracked files differ from it; "not a git
checkout" when there is no repository). The commit links to the repository of
``_config.yml``.

The build also checks what readers launch: the first cell of every notebook
installs the package version named in ``BNCOURSE_VERSION = "..."``, and a
notebook whose cell names another version than the one being built is a
warning, so ``jupyter-book build -W`` fails instead of publishing pages whose
launch buttons install other code than the one that computed them.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
PINNED = re.compile(r'^BNCOURSE_VERSION = "([^"]+)"$', re.MULTILINE)


def git_commit(repo: Path) -> tuple[str | None, bool]:
    """(full hash of HEAD or None, whether tracked files differ from it)."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return head, bool(status)


def footer_html(version: str, commit: str | None, dirty: bool, repository_url: str) -> str:
    """The footer line; ``data-`` attributes carry the exact values for the browser test."""
    if commit is None:
        where = '<span class="bncourse-commit" data-commit="">not a git checkout</span>'
    else:
        url = html.escape(f"{repository_url.rstrip('/')}/commit/{commit}", quote=True)
        where = (f'commit <a class="bncourse-commit" data-commit="{commit}" href="{url}">'
                 f"<code>{commit[:12]}</code></a>")
        if dirty:
            where += " with uncommitted changes"
    return (f'<p class="bncourse-build" data-version="{html.escape(version, quote=True)}">'
            f"Built with bncourse {html.escape(version)} from {where}.</p>")


def pinned_version(notebook_text: str) -> str | None:
    """The version that the first cell of a notebook (JSON text) installs, or None."""
    cells = json.loads(notebook_text).get("cells", [])
    if not cells or cells[0].get("cell_type") != "code":
        return None
    source = cells[0].get("source", "")
    match = PINNED.search("".join(source) if isinstance(source, list) else source)
    return match.group(1) if match else None


def set_footer(app, config):
    import bncourse

    commit, dirty = git_commit(Path(app.confdir))
    repository_url = config.html_theme_options.get("repository_url", "")
    config.html_theme_options["extra_footer"] = footer_html(
        bncourse.__version__, commit, dirty, repository_url
    )


def check_install_cell(app, docname, source):
    import bncourse

    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb":
        return
    pinned = pinned_version(source[0])
    expected = bncourse.__version__
    if pinned != expected:
        logger.warning(
            f"{path.name}: the first cell installs bncourse {pinned!r}, but the book is built "
            f"with {expected!r}; set BNCOURSE_VERSION = \"{expected}\" in the install cell",
            location=docname,
        )


def setup(app):
    app.connect("config-inited", set_footer)
    app.connect("source-read", check_install_cell)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
