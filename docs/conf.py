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
