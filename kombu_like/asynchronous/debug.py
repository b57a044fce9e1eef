"""Descriptions of an event loop's state, for debug logs (Kombu's ``kombu.asynchronous.debug``).

The text matches Kombu's, so log lines look the same under either library:
``(fd)callback(args)->RW!``.
"""

from __future__ import annotations

from typing import Any

from ..utils.eventio import ERR, READ, WRITE
from ..utils.functional import reprcall

__all__ = ["callback_for", "repr_active", "repr_events", "repr_flag", "repr_readers", "repr_writers"]


def repr_flag(flag: int) -> str:
    """``R``, ``W`` and ``!`` for the READ, WRITE and ERR bits of an events mask."""
    return ("R" if flag & READ else "") + ("W" if flag & WRITE else "") + ("!" if flag & ERR else "")


def _callback_name(entry: Any) -> str:
    if entry is None:
        return "<missing>"
    if isinstance(entry, str):
        return entry
    if isinstance(entry, tuple):
        callback, args = entry
        return reprcall(getattr(callback, "__name__", repr(callback)), args=args)
    return str(getattr(entry, "__name__", repr(entry)))


def repr_readers(h: Any) -> list[str]:
    """One ``(fd)callback->R!`` line per descriptor ``hub`` waits to read."""
    return [f"({fd}){_callback_name(entry)}->{repr_flag(READ | ERR)}" for fd, entry in h.readers.items()]


def repr_writers(h: Any) -> list[str]:
    """One ``(fd)callback->W`` line per descriptor ``hub`` waits to write."""
    return [f"({fd}){_callback_name(entry)}->{repr_flag(WRITE)}" for fd, entry in h.writers.items()]


def repr_active(h: Any) -> str:
    """The readers and writers of ``hub``, comma-separated."""
    return ", ".join(repr_readers(h) + repr_writers(h))


def callback_for(h: Any, fd: int, flag: int, *default: Any) -> Any:
    """The callback ``hub`` calls for ``fd`` becoming ready for ``flag``.

    With a ``default``, that is returned for an unknown descriptor; without one,
    :class:`KeyError` is raised.
    """
    try:
        if flag & READ:
            return h.readers[fd]
        if flag & WRITE:
            if fd in h.consolidate:
                return h.consolidate_callback
            return h.writers[fd]
    except KeyError:
        if default:
            return default[0]
        raise
    return None


def repr_events(h: Any, events: Any) -> str:
    """``callback(fd)->flags`` for each ``(fd, flags)`` a poll returned."""
    return ", ".join(
        f"{_callback_name(callback_for(h, fd, flag, '(GONE)'))}({fd})->{repr_flag(flag)}" for fd, flag in events
    )
