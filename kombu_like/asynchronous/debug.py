"""Descriptions of an event loop's state, for debug logs."""

from __future__ import annotations

from typing import Any

from ..utils.eventio import ERR, READ, WRITE

__all__ = ["repr_active", "repr_events", "repr_flag"]


def repr_flag(flag: int) -> str:
    """``READ|WRITE|ERR`` style text for an events mask."""
    names = [name for bit, name in ((READ, "R"), (WRITE, "W"), (ERR, "!")) if flag & bit]
    return "".join(names) or "-"


def _describe(hub: Any, fd: int) -> str:
    entry = hub.readers.get(fd) or hub.writers.get(fd)
    callback = entry[0] if entry else None
    return f"({fd}){getattr(callback, '__name__', callback)!r}"


def repr_active(hub: Any) -> str:
    """The descriptors ``hub`` watches and their callbacks."""
    return ", ".join(_describe(hub, fd) for fd in sorted(set(hub.readers) | set(hub.writers)))


def repr_events(hub: Any, events: Any) -> str:
    """``(fd)callback->flags`` for each ready descriptor."""
    return ", ".join(f"{_describe(hub, fd)}->{repr_flag(flag)}" for fd, flag in events)
