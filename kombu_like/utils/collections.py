"""Containers (Kombu's ``kombu.utils.collections``)."""

from __future__ import annotations

from typing import Any

__all__ = ["EqualityDict", "HashedSeq", "eqhash"]


class HashedSeq(list):  # type: ignore[type-arg]
    """A list whose hash is computed once, from the items it was made with."""

    __slots__ = ("hashvalue",)

    def __init__(self, *seq: Any) -> None:
        super().__init__(seq)
        self.hashvalue = hash(seq)

    def __hash__(self) -> int:  # type: ignore[override]
        return self.hashvalue


def eqhash(o: Any) -> int:
    """``o.__eqhash__()`` if it has one, else ``hash(o)``."""
    try:
        return int(o.__eqhash__())
    except AttributeError:
        return hash(o)


class EqualityDict(dict):  # type: ignore[type-arg]
    """A dict keyed by :func:`eqhash`, so equal-but-unhashable objects share a slot."""

    def __getitem__(self, key: Any) -> Any:
        h = eqhash(key)
        if h not in self:
            return self.__missing__(key)
        return super().__getitem__(h)

    def __missing__(self, key: Any) -> Any:
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(eqhash(key), value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(eqhash(key))
