"""Sphinx extension: launch buttons only on pages built from ``.ipynb`` files.

sphinx-book-theme adds Binder and Colab buttons to every page that has a
kernel, MyST text notebooks (``.md`` with code cells) included, and points
them at the ``.md`` file. Colab cannot open a ``.md`` file, and on Binder it
opens as text, so on such pages the buttons would lead nowhere useful. This
extension removes them there; the chapters, which are ``.ipynb`` files, keep
theirs.
"""

from __future__ import annotations

from pathlib import Path


def remove_launch_buttons_from_text_pages(app, pagename, templatename, context, doctree):
    if pagename not in app.env.all_docs or Path(app.env.doc2path(pagename)).suffix == ".ipynb":
        return
    buttons = context.get("header_buttons")
    if buttons:
        buttons[:] = [b for b in buttons if b.get("label") != "launch-buttons"]


def setup(app):
    # After sphinx-book-theme adds the buttons (priority 501), before they are rendered.
    app.connect("html-page-context", remove_launch_buttons_from_text_pages, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
