"""Import a name given as text (Kombu's ``kombu.utils.imports``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["symbol_by_name"]


def symbol_by_name(
    name: Any,
    aliases: Mapping[str, str] | None = None,
    imp: Callable[..., Any] | None = None,
    package: str | None = None,
    sep: str = ".",
    default: Any = None,
    **kwargs: Any,
) -> Any:
    """Return the object named ``"package.module.attr"`` or ``"package.module:attr"``.

    ``aliases`` maps short names to full ones; a non-string ``name`` is returned as is; a
    name without a separator imports the module ``package`` (or ``name``).  When the
    import fails, ``default`` is returned if given, else the error is raised.
    """
    if not isinstance(name, str):
        return name
    name = (aliases or {}).get(name) or name
    if imp is None:
        imp = importlib.import_module
    if ":" in name:
        sep = ":"
    module_name, _, attr = name.rpartition(sep)
    if not module_name:
        attr, module_name = "", package or attr
    try:
        try:
            module = imp(module_name, package=package, **kwargs)
        except ValueError as exc:
            raise ValueError(f"Couldn't import {name!r}: {exc}") from exc
        return getattr(module, attr) if attr else module
    except (ImportError, AttributeError):
        if default is None:
            raise
    return default
