"""A store's timed work: acks kept too long written, leases renewed, lapsed leases taken
back (:mod:`.lease`), due delayed messages moved into their streams (:mod:`.delayed`),
expiring queues waited on renewed and expired ones swept (:mod:`.expiry`).

In the blocking API one maintenance thread per store runs it, started by the store's first
take and stopped (joined) when the store closes.  Under an event loop the loop's timer runs
it (:meth:`Upkeep.periodic`) -- except the renewals: a thread renews what the store holds
there too, because a loop busy with one long callback (a task run in the loop's thread, as
Celery's solo pool does) is still a live consumer whose messages must stay with it.

The delayed moves run when :class:`~.due.DueWatch` says a look is due; when it hears of one
due sooner it wakes the thread, or under a loop asks the loop to run the moves at its next
round (:meth:`Upkeep.periodic_due`), which then run again when they said they are due.  So
do an event loop's renewals of the expiring queues it waits on: the first wait on one
starts them, and each says when the next is due.  Nothing runs at a short interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .lease import Maintenance

if TYPE_CHECKING:
    from .store import StreamsStore

__all__ = ["EXPIRY_CHECK", "Upkeep"]

#: longest time, seconds, between an event loop's looks at the expiring queues it waits on
#: when none said it is due sooner (a wait on one starts the looks, each says when the next
#: is due)
EXPIRY_CHECK = 30.0


class Upkeep:
    """The timed work of ``store``, and the thread that runs it outside an event loop."""

    def __init__(self, store: StreamsStore) -> None:
        self.store = store
        self.options = store.options
        self._thread: Maintenance | None = None
        self._next_lease_round = 0.0
        #: driven by an event loop: its timer runs the work, a thread only the renewals
        self.looping = False
        #: under a loop: the work due before its timer
        self._requested: dict[Callable[[], float | None], None] = {}
        #: under a loop: the renewals of the expiring queues waited on say when they are due
        self._renewing = False

    def maintain(self, renew: bool = True) -> None:
        """Write the acks kept, renew the leases held (unless ``renew`` is false: a thread
        of its own does), take back lapsed ones of the queues the store took from (and what
        the connection's earlier stores left there)."""
        store = self.store
        try:
            if store.predecessors:  # the attempt when connecting could not reach them all
                store.predecessors.take_over(store)
            kept = store.acks.take()
            if kept:
                store.write_acks(kept)
            if renew:
                store.leases.renew()
        finally:
            # taking back others' lapsed leases does not wait for our own renewals to work
            streams = [stream for queue in store.taken_from() for stream in store.streams(queue)]
            store.leases.claim(streams)
            store.expiry.sweep_due()

    def move_due(self) -> float:
        """Move the due delayed messages of the queues taken from into their streams;
        seconds until their delayed sets are next worth a look."""
        return self.store.due.run(self.store.taken_from())

    def round(self) -> float:
        """A round of the maintenance thread: the lease work once a renew interval, the
        delayed moves when due; seconds until the next round."""
        if time.monotonic() >= self._next_lease_round:
            self._next_lease_round = time.monotonic() + self.options.renew_interval
            self.maintain()
        return min(self.move_due(), max(0.0, self._next_lease_round - time.monotonic()))

    def periodic(self) -> Sequence[tuple[float, Callable[[], float | None]]]:
        """The work as an event loop's timers run it (the renewals are the thread's)."""
        # the delayed moves and the renewals answer when they are next due: the loop runs
        # them then too
        return [
            (self.options.renew_interval, self._maintain_in_loop),
            (self.store.due.longest, self.move_due),
            # expiring queues the loop waits on: renewed when due (they answer when)
            (EXPIRY_CHECK, self._renew_expiring),
        ]

    def periodic_due(self) -> Sequence[Callable[[], float | None]]:
        """The work an event made due before its timer (under a loop): the delayed moves
        when a look was brought forward, the renewals when an expiring queue is waited on."""
        works, self._requested = list(self._requested), {}
        return works

    def _bring_moves_forward(self) -> None:
        self._requested[self.move_due] = None

    def expiring_watched(self) -> None:
        """Under a loop: expiring queues are waited on; their renewals start, unless they run."""
        if self.looping and not self._renewing:
            self._renewing = True
            self._requested[self._renew_expiring] = None

    def _renew_expiring(self) -> float | None:
        self._renewing = False  # a run that raises is started again by the next wait
        again = self.store.expiry.renew_watched()
        self._renewing = again is not None
        return again

    def _maintain_in_loop(self) -> None:
        self.maintain(renew=False)

    def _renew(self) -> None:
        self.store.leases.renew()

    def start(self) -> None:
        """Run the work on a thread -- under an event loop the renewals only -- unless a
        thread already runs it."""
        if self._thread is not None:
            return
        interval = self.options.renew_interval
        name = f"kombu_like-streams-leases-{self.store.consumer}"
        if self.looping:
            self._thread = Maintenance(name, interval, self._renew)
        else:
            self._next_lease_round = time.monotonic() + interval
            self._thread = Maintenance(name, interval, self.round, first=0.0)
            self.store.due.waker = self._thread.wake
        self._thread.start()

    def wake(self) -> None:
        """Run a round now -- under a loop the delayed moves, at its next round (a new
        queue is taken from: its delayed messages may be due)."""
        if self.looping:
            self._bring_moves_forward()
            return
        thread = self._thread
        if thread is not None:
            thread.wake()

    def stop(self) -> None:
        """Stop the thread and wait for it (a round in progress finishes first)."""
        thread, self._thread = self._thread, None
        self.store.due.waker = None
        if thread is not None:
            thread.stop(timeout=(self.options.socket_timeout or 30.0) + 1.0)

    def enter_loop(self) -> None:
        """An event loop drives the store from now on: its timer runs the work, and the
        next take starts the thread of the renewals."""
        if not self.looping:
            self.looping = True
            self._renewing = False
            self.stop()
        self.store.due.waker = self._bring_moves_forward

    def leave_loop(self) -> None:
        """The loop lets go of the store: the next take starts the whole work's thread."""
        if self.looping:
            self.looping = False
            self._renewing = False  # the loop's timers are gone
            self.stop()
