"""Wake-ups between the stores of this process that share one database file."""

from __future__ import annotations

import threading
import weakref

from ...asynchronous.wakeup import WakeupFd

__all__ = ["Notifier", "notifier_for"]


class Notifier:
    """Wakes consumers of one database file in this process when a message is stored.

    Blocked takes wait on a condition; consumers driven by an event loop register a
    :class:`WakeupFd`, made readable by the same notification.  Other processes cannot
    signal us; for them a waiting consumer re-checks the file every ``polling_interval``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self.generation = 0
        self._waiters = 0
        self._wakeups: set[WakeupFd] = set()

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            if self._waiters:
                self._cond.notify_all()
            for wakeup in self._wakeups:
                wakeup.wake()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until something was stored after generation ``seen``; True if it was."""
        with self._cond:
            if self.generation != seen:
                return True
            self._waiters += 1
            try:
                self._cond.wait(timeout)
            finally:
                self._waiters -= 1
            return self.generation != seen

    def subscribe(self, wakeup: WakeupFd, seen: int) -> bool:
        """Wake ``wakeup`` on every store from now on; True when something was stored
        after generation ``seen`` already (before the subscription could see it)."""
        with self._cond:
            self._wakeups.add(wakeup)
            return self.generation != seen

    def unsubscribe(self, wakeup: WakeupFd) -> None:
        with self._cond:
            self._wakeups.discard(wakeup)


_notifiers_lock = threading.Lock()
# one per database file: every store of this process on that file shares it, which is
# what lets a publisher wake a consumer on another Connection without polling
_notifiers: weakref.WeakValueDictionary[str, Notifier] = weakref.WeakValueDictionary()


def notifier_for(path: str) -> Notifier:
    """The notifier of the database file at ``path`` (one per file in this process)."""
    with _notifiers_lock:
        notifier = _notifiers.get(path)
        if notifier is None:
            notifier = _notifiers[path] = Notifier()
        return notifier
