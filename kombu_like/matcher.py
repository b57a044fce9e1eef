"""Pattern matching registry (Kombu's ``kombu.matcher``).

``match(data, pattern, matcher=None)`` with ``glob`` (default) or ``pcre`` matchers, more
registered with :func:`register` or the ``kombu_like.matchers`` entry-point group.  Used to
select nodes by name in remote control.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

from .utils.compat import entrypoints
from .utils.encoding import bytes_to_str

__all__ = ["MatcherNotInstalled", "MatcherRegistry", "match", "register", "registry", "unregister"]

MatcherFunction = Callable[..., bool]


class MatcherNotInstalled(Exception):
    """No matcher is registered under that name."""


class MatcherRegistry:
    """Named matching functions ``fun(data, pattern) -> bool``."""

    MatcherNotInstalled = MatcherNotInstalled
    #: matchers whose function takes the pattern first (like :func:`re.match`)
    matcher_pattern_first = ["pcre"]

    def __init__(self) -> None:
        self._matchers: dict[str, MatcherFunction] = {}
        self._default_matcher: MatcherFunction | None = None

    def register(self, name: str, matcher: MatcherFunction) -> None:
        """Add ``matcher`` as ``name``."""
        self._matchers[name] = matcher

    def unregister(self, name: str) -> None:
        """Remove the matcher ``name``."""
        try:
            del self._matchers[name]
        except KeyError:
            raise self.MatcherNotInstalled(f"No matcher installed for {name}") from None

    def _set_default_matcher(self, name: str) -> None:
        try:
            self._default_matcher = self._matchers[name]
        except KeyError:
            raise self.MatcherNotInstalled(f"No matcher installed for {name}") from None

    def match(
        self,
        data: str | bytes,
        pattern: str | bytes,
        matcher: str | None = None,
        matcher_kwargs: dict[str, Any] | None = None,
    ) -> bool:
        """True when ``data`` matches ``pattern`` using ``matcher`` (glob by default)."""
        if matcher and matcher not in self._matchers:
            raise self.MatcherNotInstalled(f"No matcher installed for {matcher}")
        fun = self._matchers[matcher or "glob"]
        first, second = bytes_to_str(data), bytes_to_str(pattern)
        if matcher in self.matcher_pattern_first:
            first, second = second, first
        return bool(fun(first, second, **(matcher_kwargs or {})))


#: the process-wide registry
registry = MatcherRegistry()
match = registry.match
register = registry.register
unregister = registry.unregister


def register_glob() -> None:
    """Register shell-style wildcards as ``glob``."""
    registry.register("glob", fnmatch)


def register_pcre() -> None:
    """Register regular expressions (:func:`re.match`) as ``pcre``."""
    registry.register("pcre", re.match)  # type: ignore[arg-type]


def _register_defaults() -> None:
    register_glob()
    register_pcre()
    registry._set_default_matcher("glob")
    for ep, args in entrypoints("kombu_like.matchers"):
        register(ep.name, *args)


_register_defaults()
