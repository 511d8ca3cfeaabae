"""Sphinx extension: write each inline ``<script>`` of an extension once.

Sphinx 7.4 registers ``app.add_js_file(None, body=...)`` twice when an
extension calls it after the HTML builder has started, as sphinx-thebe and
sphinx-togglebutton do: once under the name ``None`` and once more, from its
registry, under ``''``. The two entries do not compare equal, so both reach
every page, and sphinx-thebe's duplicated ``const THEBE_JS_URL`` is then a
JavaScript SyntaxError on every page. Registering inline scripts under ``''``
from the start makes the two entries equal, and Sphinx keeps one.
"""

from __future__ import annotations


def setup(app):
    add_js_file = app.add_js_file

    def add_js_file_once(filename, priority=500, loading_method=None, **kwargs):
        return add_js_file("" if filename is None else filename, priority, loading_method, **kwargs)

    app.add_js_file = add_js_file_once
    return {"parallel_read_safe": True, "parallel_write_safe": True}
