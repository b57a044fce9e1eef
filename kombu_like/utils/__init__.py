"""Small utilities shared by the library (and Kombu-compatible paths under ``kombu_like.utils``).

The names Kombu exports from ``kombu.utils`` itself are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# bound eagerly: the name is also a submodule, and importing that submodule later would
# otherwise leave the package attribute pointing at the module instead of the function
from .uuid import uuid

__all__ = [
    "EqualityDict",
    "cached_property",
    "emergency_dump_state",
    "fileno",
    "fxrange",
    "fxrangemax",
    "maybe_fileno",
    "maybe_list",
    "nested",
    "register_after_fork",
    "reprcall",
    "reprkwargs",
    "retry_over_time",
    "symbol_by_name",
    "uuid",
]

_LAZY = {
    "EqualityDict": "collections",
    "cached_property": "objects",
    "emergency_dump_state": "div",
    "fileno": "compat",
    "fxrange": "functional",
    "fxrangemax": "functional",
    "maybe_fileno": "compat",
    "maybe_list": "functional",
    "nested": "compat",
    "register_after_fork": "compat",
    "reprcall": "functional",
    "reprkwargs": "functional",
    "retry_over_time": "functional",
    "symbol_by_name": "imports",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kombu_like.utils' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
