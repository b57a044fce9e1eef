"""Readiness polling for event loops (Kombu's ``kombu.utils.eventio``).

:func:`poll` returns a poller over the best mechanism of the platform, with Kombu's
interface: ``register(fd, events)``, ``unregister(fd)``, ``poll(timeout)`` returning
``[(fd, events), ...]`` and ``close()``; events are the bit flags :data:`READ`,
:data:`WRITE` and :data:`ERR`.  On Linux that is :class:`select.epoll` itself, whose
flags are these very bits, so an event loop pays one system call and no translation per
change; elsewhere the best :mod:`selectors` implementation (kqueue, poll or select).
"""

from __future__ import annotations

import errno
import select
import selectors
from typing import Any

from .compat import fileno

__all__ = ["ERR", "READ", "SELECT_BAD_FD", "WRITE", "poll"]

READ = POLL_READ = 0x001
WRITE = POLL_WRITE = 0x004
ERR = POLL_ERR = 0x008 | 0x010

#: errno values meaning "that descriptor is not open (any more)"
SELECT_BAD_FD = {errno.EBADF}


class _Epoll:
    """Kombu-style poller straight on :class:`select.epoll` (READ, WRITE and ERR are
    EPOLLIN, EPOLLOUT and EPOLLERR | EPOLLHUP)."""

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: Any, events: int) -> None:
        """Watch ``fd`` for ``events`` (replacing what it was watched for before)."""
        if type(fd) is not int:
            fd = fileno(fd)
        try:
            self._epoll.register(fd, events)
        except FileExistsError:
            # watched already: change the events.  A closed descriptor is forgotten by
            # epoll itself, so a reused number (a reconnect) registers afresh above
            self._epoll.modify(fd, events)

    def unregister(self, fd: Any) -> None:
        """Stop watching ``fd`` (no error if it was not watched or is closed)."""
        try:
            self._epoll.unregister(fd if type(fd) is int else fileno(fd))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds; return ``(fd, events)`` for ready descriptors."""
        return self._epoll.poll(-1 if timeout is None else timeout)

    def close(self) -> None:
        """Release the epoll descriptor."""
        self._epoll.close()


class _Poller:
    """Kombu-style poller on :mod:`selectors` (platforms without epoll)."""

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self._selector = selector or selectors.DefaultSelector()
        # selectors cannot watch "errors only"; remember what was asked for
        self._wanted: dict[int, int] = {}

    @staticmethod
    def _mask(events: int) -> int:
        mask = 0
        if events & (READ | ERR):
            mask |= selectors.EVENT_READ
        if events & WRITE:
            mask |= selectors.EVENT_WRITE
        return mask

    def register(self, fd: Any, events: int) -> None:
        """Watch ``fd`` for ``events`` (replacing what it was watched for before)."""
        fd = fileno(fd)
        mask = self._mask(events)
        if fd in self._wanted:
            # epoll and kqueue forget a descriptor by themselves when its file is closed, so
            # a number seen before may be a new socket the kernel has never been told of: a
            # modify would be skipped (same events) or fail; register it afresh instead
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass
        self._selector.register(fd, mask)
        self._wanted[fd] = events

    def unregister(self, fd: Any) -> None:
        """Stop watching ``fd`` (no error if it was not watched or is closed)."""
        try:
            fd = fileno(fd)
        except (ValueError, AttributeError, OSError):
            return
        self._wanted.pop(fd, None)
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds; return ``(fd, events)`` for ready descriptors."""
        if not self._wanted:
            return []
        ready = self._selector.select(timeout)
        out = []
        for key, mask in ready:
            wanted = self._wanted.get(key.fd, 0)
            events = 0
            if mask & selectors.EVENT_READ:
                events |= READ if wanted & READ else ERR
            if mask & selectors.EVENT_WRITE:
                events |= WRITE
            out.append((key.fd, events))
        return out

    def close(self) -> None:
        """Release the selector."""
        self._wanted.clear()
        self._selector.close()


def poll(*args: Any, **kwargs: Any) -> _Epoll | _Poller:
    """A new poller for this platform (a :mod:`selectors` one if given a selector)."""
    if hasattr(select, "epoll") and not args and not kwargs:
        return _Epoll()
    return _Poller(*args, **kwargs)
