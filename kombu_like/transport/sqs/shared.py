"""State every Connection of a process to one SQS account, region and prefix shares."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..virtual import InMemoryBindings

__all__ = ["SharedState", "shared_state"]


class SharedState:
    """What every Connection of a process to one SQS account, region and prefix shares.

    Exchanges and bindings are shared so that code that declares a binding on one
    connection and publishes on another works (Kombu keeps them per connection and drops
    such a publish); that is the one reason this is shared.  Publishes also wake consumers
    of the same process that wait between short polls.
    """

    def __init__(self) -> None:
        self.bindings = InMemoryBindings()
        self._cond = threading.Condition(threading.Lock())
        self._puts: dict[str, int] = {}
        self._waiters = 0

    def notify(self, queue: str) -> None:
        """Something was put into ``queue`` by this process."""
        with self._cond:
            self._puts[queue] = self._puts.get(queue, 0) + 1
            if self._waiters:
                self._cond.notify_all()

    def marks(self, queues: Sequence[str]) -> tuple[int, ...]:
        """Where the put counters of ``queues`` stand now (for :meth:`wait`)."""
        with self._cond:
            return tuple(self._puts.get(q, 0) for q in queues)

    def wait(self, queues: Sequence[str], seen: tuple[int, ...], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a put into one of ``queues`` after ``seen``."""
        with self._cond:
            self._waiters += 1
            try:
                return self._cond.wait_for(lambda: tuple(self._puts.get(q, 0) for q in queues) != seen, timeout)
            finally:
                self._waiters -= 1


_shared_lock = threading.Lock()
_shared: dict[tuple[str, ...], SharedState] = {}


def shared_state(key: tuple[str, ...]) -> SharedState:
    """The process-wide :class:`SharedState` for ``key`` (endpoint, region, prefix, key id)."""
    with _shared_lock:
        state = _shared.get(key)
        if state is None:
            state = _shared[key] = SharedState()
        return state
