"""The sqlite store under an event loop (Kombu's Hub).

Puts and requeues of this process signal a wake-up descriptor; another process cannot,
so the loop's timer looks at the file's change counter every ``polling_interval``.  A
take under the loop never waits, and opens no write transaction when nothing can have
changed since the last take found the queues empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...asynchronous.wakeup import WakeupFd
from .options import OWNER_CHECK_INTERVAL

if TYPE_CHECKING:
    from ..virtual import Delivery
    from .store import SqliteStore

__all__ = ["MIN_LOOP_POLL", "LoopHooks"]

#: shortest period, in seconds, of the event loop's look at the file for other processes'
#: writes (``polling_interval=0`` must not turn the loop's timer into a spin)
MIN_LOOP_POLL = 0.01


class LoopHooks:
    """The event-loop hooks of one :class:`~.store.SqliteStore` (see
    :class:`~kombu_like.transport.virtual.QueueStore`)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        #: the descriptor our own process's stores make readable (None: no loop drives us)
        self.wakeup: WakeupFd | None = None
        #: what the last empty take under the loop saw: (queues, notifier generation,
        #: the file's data_version, when a lease on those queues lapses)
        self._idle: tuple[frozenset[str], int, int, float | None] | None = None
        #: the notifier generation the last take under the loop started from
        self._seen = 0

    def event_fds(self) -> Sequence[Any]:
        if self.wakeup is None or self.wakeup.closed:
            self.wakeup = WakeupFd()
        return [self.wakeup]

    def watch(self, queues: Sequence[str]) -> bool:
        # stored by this process since the take started: take again at once; another
        # process's write (or a file found locked) waits for the next poll
        return self.store.notifier.subscribe(self.event_fds()[0], self._seen)

    def on_readable(self, fd: int) -> bool:
        return self.wakeup is not None and self.wakeup.drain()

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        # after each of these the loop takes again; the take costs one read of the file's
        # change counter when nothing changed
        return (
            (max(self.store.polling_interval, MIN_LOOP_POLL), self._poll),
            (OWNER_CHECK_INTERVAL, self._reap),
        )

    def _reap(self) -> None:
        # a dead consumer's messages given back notify, which wakes this loop too
        self.store.reap_dead_owners()

    def _poll(self) -> None:
        """Wake the loop when another process committed to the file or a lease lapsed
        since the last empty take (the loop takes after this in any case; the take then
        skips its transaction when nothing changed)."""
        idle = self._idle
        if self.wakeup is None or idle is None:
            return
        if self.store.db.data_version() != idle[2] or (idle[3] is not None and time.time() >= idle[3]):
            self.wakeup.wake()

    def unwatch(self) -> None:
        wakeup, self.wakeup = self.wakeup, None
        self._idle = None
        if wakeup is not None:
            self.store.notifier.unsubscribe(wakeup)
            wakeup.close()

    def take_now(self, queues: Sequence[str], max_count: int) -> list[Delivery]:
        """A take under the event loop: never waits, and opens no write transaction when
        nothing can have changed since the last take found the queues empty (nothing
        stored by this process, nothing committed by another, no lease lapsed)."""
        store = self.store
        generation = self._seen = store.notifier.generation
        data_version = store.db.data_version()
        idle = self._idle
        key = frozenset(queues)  # the loop rotates the order of several queues
        if (
            idle is not None
            and idle[:3] == (key, generation, data_version)
            and (idle[3] is None or time.time() < idle[3])
        ):
            return []
        taken = store.take_by(queues, max_count, time.monotonic())
        if taken is None:
            self._idle = None  # locked by another process: look again at the next poll
            return []
        deliveries, lease_due = taken
        self._idle = None if deliveries else (key, generation, data_version, lease_due)
        return deliveries
