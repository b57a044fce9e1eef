"""Sphinx configuration."""

import os
import sys

# Sphinx runs this file from the docs directory
sys.path.insert(0, os.path.abspath(".."))
# the example transport of writing-a-transport.rst, importable by its doctests
sys.path.insert(0, os.path.abspath("examples"))

project = "kombu_like"
author = "kombu_like developers"
copyright = "2026, kombu_like developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx.ext.doctest"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
nitpicky = False
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
suppress_warnings = ["ref.python"]

# The examples run on other brokers too (t/unit/test_docs.py): with KOMBU_LIKE_DOCS_URL set,
# every "memory://" string in a page becomes that URL before the page is parsed, and
# ``transport`` (the URL's scheme) lets a block say ``:skipif: transport != "redis"``
# where a broker's output legitimately differs.
DOCS_URL = os.environ.get("KOMBU_LIKE_DOCS_URL", "")
DOCS_TRANSPORT = DOCS_URL.partition(":")[0] if DOCS_URL else "memory"
doctest_global_setup = f"transport = {DOCS_TRANSPORT!r}\n"


def _examples_on_broker(app, docname, source):
    if DOCS_URL:
        source[0] = source[0].replace('"memory://"', repr(DOCS_URL)).replace("'memory://'", repr(DOCS_URL))


def setup(app):
    app.connect("source-read", _examples_on_broker)
    app.add_directive("transport-options", TransportOptionsDirective)


from docutils.parsers.rst import Directive  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402
from sphinx.util.nodes import nested_parse_with_titles  # noqa: E402


class TransportOptionsDirective(Directive):
    """``.. transport-options:: module:OptionsClass`` -- the table of a transport's options,
    generated from its TransportOptions dataclass (kombu_like.transport.options)."""

    required_arguments = 1

    def run(self):
        import importlib

        from docutils import nodes

        from kombu_like.transport.options import options_table

        module, _, name = self.arguments[0].partition(":")
        cls = getattr(importlib.import_module(module), name)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(options_table(cls), source=self.arguments[0]), container)
        return container.children
