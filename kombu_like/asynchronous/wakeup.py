"""A descriptor that other threads make readable to wake an event loop.

:class:`WakeupFd` is the one wake-up primitive of the library: the :class:`~.hub.Hub`
wakes its poller with it (``call_soon`` from another thread, a descriptor added while it
waits), and stores with no socket of their own (process memory, a file, a receive
thread) hand one to the loop as their descriptor.  It is an ``eventfd`` on Linux and a
non-blocking socket pair elsewhere.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref

__all__ = ["WakeupFd"]

_EVENTFD = hasattr(os, "eventfd")

# wake-ups alive in this process; a forked child gets fresh locks for them (a thread of
# the parent may have held one at the fork, and no thread of the child would release it)
_instances: weakref.WeakSet[WakeupFd] = weakref.WeakSet()
_fork_hook = False


def _after_fork_in_child() -> None:
    for wakeup in list(_instances):
        wakeup._lock = threading.Lock()


class WakeupFd:
    """A descriptor that turns readable when :meth:`wake` is called, from any thread.

    Wake-ups that come before :meth:`drain` are folded into one: the first writes, the
    others find one pending and return at once.  :meth:`wake` after :meth:`close` does
    nothing, and never writes to a descriptor number reused since.

    A forked child inherits the descriptor, shared with its parent (a wake in either
    makes it readable in both); an owner that must not share it, as the Hub, makes a new
    one when :attr:`pid` is not its own.
    """

    def __init__(self) -> None:
        global _fork_hook
        self._lock = threading.Lock()
        #: the process that made it
        self.pid = os.getpid()
        self.closed = False
        self._pending = False
        self._pair: tuple[socket.socket, socket.socket] | None = None
        if _EVENTFD:
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - platforms without eventfd (select takes sockets everywhere)
            self._pair = socket.socketpair()
            for sock in self._pair:
                sock.setblocking(False)
            self._fd = self._pair[0].fileno()
        if not _fork_hook and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook = True
        _instances.add(self)

    def fileno(self) -> int:
        """The descriptor to watch for reading."""
        return self._fd

    def wake(self) -> None:
        """Make the descriptor readable (once, until :meth:`drain`); safe from any thread."""
        if self._pending:
            return
        with self._lock:
            if self._pending or self.closed:
                return
            self._pending = True
            try:
                if self._pair is None:
                    os.eventfd_write(self._fd, 1)
                else:  # pragma: no cover - platforms without eventfd
                    self._pair[1].send(b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    def drain(self) -> bool:
        """Consume the wake-ups; True when there was one.

        A wake-up that comes after this returns writes again; one that came before it
        is consumed, so whatever it announced must be looked at after the drain.
        """
        with self._lock:
            if self.closed:
                return False
            woken = False
            try:
                if self._pair is None:
                    os.eventfd_read(self._fd)
                    woken = True
                else:  # pragma: no cover - platforms without eventfd
                    while self._pair[0].recv(4096):
                        woken = True
            except OSError:  # nothing (more) to read
                pass
            self._pending = False
            return woken

    def close(self) -> None:
        """Release the descriptor; later wake-ups are ignored."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self._pair is None:
                os.close(self._fd)
            else:  # pragma: no cover - platforms without eventfd
                for sock in self._pair:
                    sock.close()

    #: the names of earlier releases, which transports outside the library may call
    signal = wake
    clear = drain

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<{type(self).__name__} {state}>"
