"""Object helpers (Kombu's ``kombu.utils.objects``)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["cached_property"]

_T = TypeVar("_T")
_MISSING = object()


class cached_property(functools.cached_property, Generic[_T]):  # type: ignore[type-arg]  # noqa: N801
    """A property computed once per instance and then kept in its ``__dict__``.

    Unlike :func:`functools.cached_property` it takes an optional setter (whose return
    value is what gets stored) and deleter (called with the cached value, if any), and
    computing the value is serialized by a lock, so two threads never compute it twice.
    """

    def __init__(
        self,
        fget: Callable[[Any], _T] | None = None,
        fset: Callable[[Any, Any], Any] | None = None,
        fdel: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        super().__init__(fget)  # type: ignore[arg-type]
        self._fset = fset
        self._fdel = fdel
        self._compute_lock = threading.RLock()

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        cache = instance.__dict__
        value = cache.get(self.attrname, _MISSING) if self.attrname else _MISSING
        if value is not _MISSING:
            return value
        with self._compute_lock:
            return super().__get__(instance, owner)

    def __set__(self, instance: Any, value: Any) -> Any:
        if instance is None:  # on the class, as Kombu's: the descriptor itself
            return self
        with self._compute_lock:
            if self._fset is not None:
                value = self._fset(instance, value)
            instance.__dict__[self.attrname] = value

    def __delete__(self, instance: Any) -> Any:
        if instance is None:
            return self
        with self._compute_lock:
            value = instance.__dict__.pop(self.attrname, _MISSING)
            if self._fdel is not None and value is not _MISSING:
                self._fdel(instance, value)

    def setter(self, fset: Callable[[Any, Any], Any]) -> cached_property[_T]:
        """Return a copy with ``fset`` as setter (``@prop.setter`` decorator)."""
        return type(self)(self.func, fset, self._fdel)

    def deleter(self, fdel: Callable[[Any, Any], Any]) -> cached_property[_T]:
        """Return a copy with ``fdel`` as deleter (``@prop.deleter`` decorator)."""
        return type(self)(self.func, self._fset, fdel)
