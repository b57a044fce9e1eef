"""Driving a virtual connection from an event loop (Kombu's Hub).

The blocking driver is :meth:`VirtualConnection.drain_events`: plan, take with a timeout,
hand out one message a call (the rest of the take at the calls that follow, as Kombu's
virtual transports hand out one).  :class:`LoopDriver` is the other one: it plans and
dispatches with the same methods of the connection (so prefetch, acknowledgement
bookkeeping and redelivery are shared), but never waits, and hands out all of a take in
one round of the loop (the loop runs its other work between takes).  It takes with
``get(queues, 0, n)``, asks the store to :meth:`~.store.QueueStore.watch` the queues
when they are empty, and takes again when one of the store's descriptors turns readable,
when an ack frees prefetch room or when consumers change (``loop.call_soon``).  The
store's periodic work runs from the loop's timer (``loop.call_repeatedly``; a work that
returns a number of seconds runs again that much later too, ``loop.call_later``, when it
knows it is due sooner than its interval, and at the next round when the store says after a
take or a readable event that it is due now: ``QueueStore.periodic_due``); no thread is
started.

Each take is a round trip to the broker (unless the store says its calls cost nothing:
``QueueStore.costly_calls``), so the driver takes no more often than it must:

* at most once per round of the loop, however many acks freed room in it;
* for a channel that still holds unacknowledged messages, only once a fair share of its
  prefetch window is free (:func:`~.transport.fair_share`) -- or after :data:`HOLD_DELAY`,
  so a consumer holding messages for long still gets the rest of its window.  When acks
  did not free a fair share in that time, the consumer is one that holds messages for
  long (Celery's ETA tasks raise its window by one each, so half of it is never free):
  for :data:`HOLD_PAUSE` it takes as room frees, as if nothing were held back;
* not at all when every queue to take from was found empty and watched by the last take,
  and nothing woke the loop since (a readable descriptor, the periodic work, consumers
  or descriptors changing).

Acks made on the loop's thread are written together: before the next take, or
:data:`ACK_DELAY` after the first of them, or when the loop is left.  An ack not written
yet only delays the message's removal; it was taken out of the prefetch window at once,
and a connection lost before the write gives the message back (at-least-once).

Only the loop's public API is used (``add_reader``, ``remove``/``remove_reader``,
``call_soon``, ``call_later``, ``call_repeatedly``), so Kombu's own Hub drives it as well as ours.

A store with no socket of its own hands the loop a
:class:`~kombu_like.asynchronous.wakeup.WakeupFd` (the Hub's own wake-up primitive, also
importable from here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...asynchronous.wakeup import WakeupFd
from ...utils.compat import fileno

if TYPE_CHECKING:
    from .store import Delivery
    from .transport import VirtualConnection

__all__ = ["ACK_DELAY", "HOLD_DELAY", "HOLD_PAUSE", "LoopDriver", "WakeupFd"]

logger = logging.getLogger(__name__)

#: longest time (seconds) an ack made on the loop's thread waits to be written with others
ACK_DELAY = 0.02
#: longest time (seconds) prefetch room smaller than a fair share waits for more acks
HOLD_DELAY = 0.02
#: how long (seconds) a consumer whose acks did not free a fair share within HOLD_DELAY
#: takes as room frees instead (one wait of HOLD_DELAY per HOLD_PAUSE at most)
HOLD_PAUSE = 1.0


class LoopDriver:
    """Takes and dispatches messages of one :class:`VirtualConnection` from ``loop``."""

    def __init__(self, connection: VirtualConnection, loop: Any) -> None:
        self.connection = connection
        self.loop = loop
        self.seam = connection.seam
        #: what the store asked to be watched: key (the object, or the number) -> fd
        self.watched: dict[Any, int] = {}
        self.timers: list[Any] = []
        #: one-shot runs of periodic work that asked to run again sooner: work -> timer
        self.sooner: dict[Callable[[], Any], Any] = {}
        self.active = False
        # a take is queued with call_soon and not run yet (set from any thread: acks)
        self._scheduled = False
        #: queues the last take found empty and the store watches since (see take)
        self.idle: frozenset[str] = frozenset()
        #: acks made on the loop's thread, not written yet
        self.acks: list[Delivery] = []
        self._ack_timer: Any = None
        self._hold_timer: Any = None
        # until when (monotonic) room short of a fair share is taken at once (see HOLD_PAUSE)
        self._hold_off_until = 0.0
        #: whether takes and acks are batched (not for a store whose calls cost nothing)
        self.batching = bool(getattr(connection.store, "costly_calls", True))
        # the loop's thread, known from the first take (run by the loop)
        self._thread: int | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Watch the store's descriptors, start its periodic work and take once."""
        self.active = True
        self.sync_fds()
        for interval, work in self.seam.call(self.connection.store.periodic):
            self.timers.append(self.loop.call_repeatedly(interval, self._periodic, work))
        self.schedule()

    def stop(self) -> None:
        """Leave the loop: acks not written yet are written (what cannot be stays unacked
        and comes back), no descriptor of the store stays watched, no timer stays."""
        if not self.active:
            return
        self.active = False
        pending = len(self.acks)
        try:
            self.flush_acks()
        except Exception as exc:
            # unacked, they come back to their queues as any unacked message does
            logger.warning("could not write %d acknowledgement(s) when leaving the event loop: %s", pending, exc)
        for timer in (*self.timers, *self.sooner.values(), self._ack_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self.timers.clear()
        self.sooner.clear()
        self._ack_timer = self._hold_timer = None
        for fd in self.watched.values():
            self._forget(fd)
        self.watched.clear()

    # -- taking ----------------------------------------------------------------------
    def schedule(self) -> None:
        """Take at the loop's next round (safe from any thread)."""
        if self.active and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.take)

    def reset(self) -> None:
        """Forget which queues were found idle, and take at the next round."""
        self.idle = frozenset()
        self.schedule()

    def take(self, eager: bool = False) -> None:
        """Take what the consumers have room for and dispatch it; watch when empty.

        ``eager``: take for any free room, not only a fair share of a prefetch window.
        """
        self._scheduled = False
        if self._thread is None:
            self._thread = threading.get_ident()
        connection = self.connection
        if not (self.active and connection.is_open):
            return
        if connection.buffer:
            # taken by a drain_events by hand and not handed out yet: those go first, all
            # of them, as a take's are (and the take follows next round, even if a
            # callback raises)
            self.schedule()
            connection.deliver_all()
            return
        hold = self.batching and not eager and (not self._hold_off_until or time.monotonic() >= self._hold_off_until)
        queues, targets, max_count, held = connection._plan_holding(hold)
        if held:
            if self._hold_timer is None:
                self._hold_timer = self.loop.call_later(HOLD_DELAY, self._hold_due)
        elif self._hold_timer is not None and hold:
            # acks freed a fair share in time: nothing is held back any longer
            self._hold_timer.cancel()
            self._hold_timer = None
        if queues and not self.idle.issuperset(queues):
            self._fetch(queues, targets, max_count)
        elif self.active and not queues:
            # nothing to take from: capacity_changed/consumers_changed schedule the next take
            self.sync_fds()
        # else every queue is idle and watched: the store was not called, so its
        # descriptors are still those of the last take

    def _fetch(self, queues: list[str], targets: dict[str, Any], max_count: int) -> None:
        """Take from ``queues`` (not all idle) for ``targets`` and hand out what came; a
        driver whose takes are awaited overrides this."""
        try:
            self.flush_acks()
            deliveries = self.seam.get(queues, 0, max_count)
            woken = self._found(queues, deliveries)
        except BaseException:
            self._failed()
            raise
        self._hand_out(deliveries, targets, woken)

    def _found(self, queues: list[str], deliveries: list[Delivery]) -> bool:
        """Note which queues a take found empty (watched from now on); True when one may
        hold messages already."""
        if deliveries:
            # those queues may hold more, and the take may have ended their watch;
            # the others stay as the store watches them
            self.idle = self.idle.difference(d.queue for d in deliveries)
            return False
        woken = self.seam.watch(queues)
        self.idle = frozenset() if woken else frozenset(queues)
        return woken

    def _failed(self) -> None:
        # a connection found broken: its descriptors leave the loop with the error
        self.idle = frozenset()
        self.sync_fds(ignore_errors=True)

    def _hand_out(self, deliveries: list[Delivery], targets: dict[str, Any], woken: bool) -> None:
        connection = self.connection
        if deliveries:
            # more may be waiting: take again next round, after other descriptors and
            # timers had their turn (and even if a callback raises below)
            self.schedule()
            connection.fill(deliveries, targets)
            connection.deliver_all()
        elif woken:
            self.schedule()
        if self.active:
            self._run_due_work()
            self.sync_fds()

    def _hold_due(self) -> None:
        self._hold_timer = None
        # acks did not free a fair share in time: a consumer holding messages for long
        self._hold_off_until = time.monotonic() + HOLD_PAUSE
        self.take(eager=True)

    # -- acknowledgements --------------------------------------------------------------
    def defer_ack(self, deliveries: list[Delivery]) -> bool:
        """Keep ``deliveries`` to acknowledge with the loop round's others; False when the
        caller must acknowledge them itself (not on the loop's thread, or not in the loop)."""
        if not (self.batching and self.active) or self._thread != threading.get_ident():
            return False
        self.acks += deliveries
        if self._ack_timer is None:
            self._ack_timer = self.loop.call_later(ACK_DELAY, self._ack_due)
        return True

    def _ack_due(self) -> None:
        self._ack_timer = None
        if self.active and self.connection.is_open:
            self.flush_acks()

    def flush_acks(self) -> None:
        """Write the acks kept so far, in one call to the store."""
        acks, self.acks = self.acks, []
        if acks:
            self.seam.ack(acks)

    def on_readable(self, fd: int) -> None:
        """One of the store's descriptors is readable: let the store read, then take."""
        if not self.active or fd not in self.watched.values():
            return  # a descriptor number left over from a replaced connection
        try:
            wake = self.seam.on_readable(fd)
        except BaseException:
            self.idle = frozenset()
            if self.active:
                self.sync_fds(ignore_errors=True)
            raise
        self._run_due_work()
        if wake:
            self.idle = frozenset()
            self.take()
        else:
            self.sync_fds()

    def _run_due_work(self) -> None:
        """Run at the next round the periodic work the store says is due before its timer."""
        due = getattr(self.connection.store, "periodic_due", None)  # a store of QueueStore's shape
        for work in due() if due is not None else ():
            earlier = self.sooner.pop(work, None)
            if earlier is not None:
                earlier.cancel()
            self.sooner[work] = self.loop.call_later(0, self._periodic, work)

    def _periodic(self, work: Callable[[], float | None]) -> None:
        self.sooner.pop(work, None)
        if not (self.active and self.connection.is_open):
            return
        # the work may have given messages back or found writes no descriptor reports
        self.idle = frozenset()
        again = None
        try:
            again = self.seam.call(work)
        finally:
            # the work may have reconnected or dropped a connection, or given messages
            # back; a take also brings back consumers a failed take left without one
            self.sync_fds(ignore_errors=True)
            self.schedule()
        if isinstance(again, (int, float)) and not isinstance(again, bool) and self.active:
            # the work knows when it is next due (a delayed message): one run then, besides
            # the repeating one; a newer answer replaces an older one
            earlier = self.sooner.pop(work, None)
            if earlier is not None:
                earlier.cancel()
            self.sooner[work] = self.loop.call_later(max(0.0, float(again)), self._periodic, work)

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
        # a descriptor replaced or gone: what the old one watched is watched no more
        self.idle = frozenset()
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
