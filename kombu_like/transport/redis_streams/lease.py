"""Leases: the messages a consumer holds, kept with it while it lives.

A delivered entry stays in its stream's pending entries list (PEL) under the consumer that
read it.  Its *idle time* says how long ago its consumer last showed it was alive:

* a live consumer renews every entry it holds every quarter of the lease
  (``XCLAIM <stream> <group> <itself> 0 <ids> JUSTID`` resets the idle time without
  counting a delivery);
* an entry idle longer than three quarters of the lease (``lapse_ms``) belongs to a
  consumer that stopped renewing (its process died, its connection was lost): any
  consumer of the queue, looking every quarter of the lease, takes it back
  (``XAUTOCLAIM``) and writes it again at the stream's tail, marked redelivered with one
  more delivery counted (the ``CLAIM`` script, atomic on the queue's slot).  So a stopped
  consumer's messages are back within one lease of its last renewal.

In the blocking API one maintenance thread per store runs the work (:class:`Maintenance`),
stopped and joined on close; under an event loop the store's ``periodic()`` runs it and
that thread only renews (see :mod:`.upkeep`).
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .codec import Receipt
from .keys import GROUP

__all__ = ["Leases", "Maintenance"]

logger = logging.getLogger("kombu_like.transport.redis_streams")

#: most ids renewed by one XCLAIM
RENEW_CHUNK = 500
#: a consumer holding nothing and idle this many leases is removed from its group
FORGET_AFTER_LEASES = 30


class Leases:
    """The entries one store's consumer holds, and their renewal.

    ``client`` is the store's redis-py client (thread-safe: a connection pool).
    """

    def __init__(
        self, client: Any, consumer: str, lease_ms: int, claim: Any, claim_count: int, lapse_ms: int | None = None
    ) -> None:
        self.client = client
        self.consumer = consumer
        self.lease_ms = lease_ms
        #: idle time after which an entry is taken back (the lease by default)
        self.lapse_ms = lease_ms if lapse_ms is None else lapse_ms
        self.claim_script = claim
        self.claim_count = claim_count
        self._lock = threading.Lock()
        #: stream -> ids of its entries this consumer holds (insertion-ordered)
        self.held: dict[str, dict[str, None]] = {}

    def add(self, receipts: Iterable[Receipt]) -> None:
        with self._lock:
            for receipt in receipts:
                self.held.setdefault(receipt.stream, {})[receipt.entry_id] = None

    def remove(self, receipts: Iterable[Receipt]) -> None:
        with self._lock:
            for receipt in receipts:
                ids = self.held.get(receipt.stream)
                if ids is not None:
                    ids.pop(receipt.entry_id, None)
                    if not ids:
                        del self.held[receipt.stream]

    def holding(self) -> list[Receipt]:
        """Every entry held now."""
        with self._lock:
            return [Receipt(stream, entry_id, 0) for stream, ids in self.held.items() for entry_id in ids]

    def count(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self.held.values())

    def renew(self) -> int:
        """Reset the idle time of every entry held; forget those no longer ours (taken
        back by another consumer after our lease lapsed).  Returns how many were renewed."""
        with self._lock:
            snapshot = [(stream, list(ids)) for stream, ids in self.held.items()]
        if not snapshot:
            return 0
        pipe = self.client.pipeline(transaction=False)
        asked: list[tuple[str, list[str]]] = []
        for stream, ids in snapshot:
            for start in range(0, len(ids), RENEW_CHUNK):
                chunk = ids[start : start + RENEW_CHUNK]
                # parse_justid: redis-py would read the reply (ids) as entries otherwise
                pipe.execute_command("XCLAIM", stream, GROUP, self.consumer, 0, *chunk, "JUSTID", parse_justid=True)
                asked.append((stream, chunk))
        replies = pipe.execute(raise_on_error=False)
        renewed = 0
        lost: list[Receipt] = []
        gone: list[Receipt] = []
        for (stream, chunk), reply in zip(asked, replies, strict=True):
            if isinstance(reply, Exception):
                if _missing_key(reply):  # the queue was deleted
                    gone.extend(Receipt(stream, entry_id, 0) for entry_id in chunk)
                continue
            kept = {r.decode() if isinstance(r, bytes) else str(r) for r in reply or ()}
            renewed += len(kept)
            lost.extend(Receipt(stream, entry_id, 0) for entry_id in chunk if entry_id not in kept)
        if gone:
            self.remove(gone)
        if lost:
            # acked meanwhile (the ack removed it from held as well), or taken back
            # after the lease lapsed: either way no longer ours to renew
            with self._lock:
                still = [r for r in lost if r.entry_id in self.held.get(r.stream, {})]
            if still:
                logger.warning(
                    "%d message(s) held by consumer %s were taken back by another consumer: their "
                    "lease (%d ms) lapsed before it was renewed (a process paused too long?)",
                    len(still),
                    self.consumer,
                    self.lease_ms,
                )
                self.remove(still)
        return renewed

    def claim(self, streams: Sequence[str]) -> int:
        """Take back the entries of ``streams`` whose lease lapsed: each is written again
        at its stream's tail, marked redelivered.  Returns how many came back."""
        if not streams:
            return 0
        pipe = self.client.pipeline(transaction=False)
        forget_ms = self.lease_ms * FORGET_AFTER_LEASES
        for stream in streams:
            self.claim_script(
                keys=[stream], args=[GROUP, self.consumer, self.lapse_ms, self.claim_count, forget_ms], client=pipe
            )
        moved = 0
        for stream, reply in zip(streams, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):
                logger.warning("could not take back lapsed leases of stream %r: %s", stream, reply)
                continue
            if reply:
                logger.info("%d message(s) of stream %r came back: their consumer's lease lapsed", reply, stream)
                moved += int(reply)
        return moved


def _missing_key(reply: Exception) -> bool:
    """The stream or group is gone (the queue was deleted): nothing left to renew."""
    return "NOGROUP" in str(reply) or "no such key" in str(reply).lower()


class Maintenance:
    """One thread that runs ``work`` every ``interval`` seconds until stopped.

    A ``work`` that returns a number of seconds runs again after that long when it is
    sooner than ``interval`` (a delayed message is due); :meth:`wake` runs it at once.
    The first run comes ``first`` seconds after :meth:`start` (default: ``interval``).
    """

    def __init__(
        self, name: str, interval: float, work: Callable[[], float | None], first: float | None = None
    ) -> None:
        self.interval = interval
        self.work = work
        self._work_ref: Callable[[], Callable[[], float | None] | None] = (
            weakref.WeakMethod(work) if inspect.ismethod(work) else (lambda: work)  # type: ignore[assignment]
        )
        self.first = interval if first is None else first
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run the work now (from any thread)."""
        self._wake.set()

    def _run(self) -> None:
        # the thread holds its work weakly: a store its program dropped without closing
        # it is collected, and the thread ends at its next round instead of keeping it
        ref = self._work_ref
        self.work = None  # type: ignore[assignment]
        wait = self.first
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            wait = self.interval
            work = ref()
            if work is None:
                return
            try:
                again = work()
            except Exception as exc:  # a broken connection: the next round tries again
                logger.warning("lease maintenance failed (retried in %.1f s): %s", self.interval, exc)
                continue
            finally:
                del work
            if again is not None:
                wait = min(wait, max(0.0, again))

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread and wait for it (a round in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
