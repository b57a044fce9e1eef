"""Event loop (Kombu's ``kombu.asynchronous``): :class:`Hub`, its timer and semaphores."""

from __future__ import annotations

from ..utils.eventio import ERR, READ, WRITE
from .hub import Hub, get_event_loop, set_event_loop

__all__ = ["ERR", "READ", "WRITE", "Hub", "get_event_loop", "set_event_loop"]
