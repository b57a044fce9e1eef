"""Driving a virtual connection from an event loop (Kombu's Hub).

The blocking driver is :meth:`VirtualConnection.drain_events`: plan, take with a timeout,
dispatch.  :class:`LoopDriver` is the other one: it plans and dispatches with the same
methods of the connection (so prefetch, acknowledgement bookkeeping and redelivery are
shared), but never waits.  It takes with ``get(queues, 0, n)``, asks the store to
:meth:`~.store.QueueStore.watch` the queues when they are empty, and takes again when
one of the store's descriptors turns readable, when an ack frees prefetch room or when
consumers change (``loop.call_soon``).  The store's periodic work runs from the loop's
timer (``loop.call_repeatedly``); no thread is started.

Only the loop's public API is used (``add_reader``, ``remove``/``remove_reader``,
``call_soon``, ``call_repeatedly``), so Kombu's own Hub drives it as well as ours.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...utils.compat import fileno

if TYPE_CHECKING:
    from .transport import VirtualConnection

__all__ = ["LoopDriver", "WakeupFd"]

logger = logging.getLogger(__name__)


class LoopDriver:
    """Takes and dispatches messages of one :class:`VirtualConnection` from ``loop``."""

    def __init__(self, connection: VirtualConnection, loop: Any) -> None:
        self.connection = connection
        self.loop = loop
        self.seam = connection.seam
        #: what the store asked to be watched: key (the object, or the number) -> fd
        self.watched: dict[Any, int] = {}
        self.timers: list[Any] = []
        self.active = False
        # a take is queued with call_soon and not run yet (set from any thread: acks)
        self._scheduled = False

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Watch the store's descriptors, start its periodic work and take once."""
        self.active = True
        self.sync_fds()
        for interval, work in self.seam.call(self.connection.store.periodic):
            self.timers.append(self.loop.call_repeatedly(interval, self._periodic, work))
        self.schedule()

    def stop(self) -> None:
        """Leave the loop: no descriptor of the store stays watched, no timer stays."""
        if not self.active:
            return
        self.active = False
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        for fd in self.watched.values():
            self._forget(fd)
        self.watched.clear()

    # -- taking ----------------------------------------------------------------------
    def schedule(self) -> None:
        """Take at the loop's next round (safe from any thread)."""
        if self.active and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.take)

    def take(self) -> None:
        """Take what the consumers have room for and dispatch it; watch when empty."""
        self._scheduled = False
        connection = self.connection
        if not (self.active and connection.is_open):
            return
        queues, targets, max_count = connection._plan()
        if queues:
            try:
                deliveries = self.seam.get(queues, 0, max_count)
                woken = not deliveries and self.seam.watch(queues)
            except BaseException:
                # a connection found broken: its descriptors leave the loop with the error
                self.sync_fds(ignore_errors=True)
                raise
            if deliveries:
                # more may be waiting: take again next round, after other descriptors and
                # timers had their turn (and even if a callback raises below)
                self.schedule()
                connection._dispatch(deliveries, targets)
            elif woken:
                self.schedule()
        # without queues to take from, capacity_changed/consumers_changed schedule the next take
        if self.active:
            self.sync_fds()

    def on_readable(self, fd: int) -> None:
        """One of the store's descriptors is readable: let the store read, then take."""
        if not self.active or fd not in self.watched.values():
            return  # a descriptor number left over from a replaced connection
        try:
            wake = self.seam.on_readable(fd)
        except BaseException:
            if self.active:
                self.sync_fds(ignore_errors=True)
            raise
        if wake:
            self.take()
        else:
            self.sync_fds()

    def _periodic(self, work: Callable[[], None]) -> None:
        if not (self.active and self.connection.is_open):
            return
        try:
            self.seam.call(work)
        finally:
            # the work may have reconnected or dropped a connection, or given messages
            # back; a take also brings back consumers a failed take left without one
            self.sync_fds(ignore_errors=True)
            self.schedule()

    # -- descriptors -----------------------------------------------------------------
    def sync_fds(self, ignore_errors: bool = False) -> None:
        """Watch exactly the descriptors the store names now."""
        try:
            wanted = self.seam.event_fds()
        except Exception:
            if not ignore_errors:
                raise
            wanted = ()
        keys = {(item if isinstance(item, int) else _Key(item)): item for item in wanted}
        if keys.keys() == self.watched.keys():
            return
        # forget first: a new socket may have the number of the one it replaces
        for key in [k for k in self.watched if k not in keys]:
            self._forget(self.watched.pop(key))
        for key, item in keys.items():
            if key not in self.watched:
                fd = fileno(item)
                self.loop.add_reader(fd, self.on_readable, fd)
                self.watched[key] = fd

    def _forget(self, fd: int) -> None:
        readers = getattr(self.loop, "readers", None)
        if readers is not None:
            entry = readers.get(fd)
            # only our own reader: the number may belong to someone else's socket by now
            if entry is not None and not (isinstance(entry, tuple) and entry and entry[0] == self.on_readable):
                return
        try:
            self.loop.remove(fd)
        except (OSError, ValueError, KeyError):
            logger.debug("could not stop watching descriptor %r", fd, exc_info=True)


class _Key:
    """A watched object (a socket) compared by identity: a reconnect makes a new one,
    which must be watched anew even when it got the old one's number."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.item is self.item

    def __hash__(self) -> int:
        return id(self.item)


class WakeupFd:
    """A descriptor that turns readable when :meth:`signal` is called, from any thread.

    For stores with no socket of their own (process memory, a file): an ``eventfd``
    where the platform has one, else a pipe.  Signals that come before the loop reads
    are folded into one.
    """

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self._read = self._write = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - platforms without eventfd
            self._read, self._write = os.pipe()
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)
        self._pending = False
        self.closed = False

    def fileno(self) -> int:
        return self._read

    def signal(self) -> None:
        """Make the descriptor readable (once, until :meth:`clear`)."""
        if self._pending or self.closed:
            return
        self._pending = True
        try:
            if self._read == self._write:
                os.eventfd_write(self._write, 1)
            else:  # pragma: no cover - platforms without eventfd
                os.write(self._write, b"\0")
        except OSError:  # full (a signal is pending anyway) or closed
            pass

    def clear(self) -> bool:
        """Consume the signals; True when there was one.

        The flag is reset after reading: a signal in between is seen by the take that
        follows, and a later one writes again.
        """
        try:
            if self._read == self._write:
                os.eventfd_read(self._read)
            else:  # pragma: no cover - platforms without eventfd
                while os.read(self._read, 4096):
                    pass
            signalled = True
        except (BlockingIOError, OSError):
            signalled = False
        self._pending = False
        return signalled

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        os.close(self._read)
        if self._write != self._read:  # pragma: no cover - platforms without eventfd
            os.close(self._write)
