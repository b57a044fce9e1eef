"""Acknowledgements made while one take is handed out, written to Redis together.

The blocking API hands a take (up to the prefetch count, at most 64 messages) out one
message per ``drain_events`` call; the acks made meanwhile are kept and written in one
pipeline once the take's last message was handed out (or given back), once
:data:`ACK_BATCH` wait, or at the store's next maintenance round -- whichever comes first.
A kept ack only delays the entry's removal: the entry stays leased (renewed) until it is
written, and a consumer that dies first has those messages delivered once more
(at-least-once).  Acks made at any other time are written at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..virtual import Delivery

__all__ = ["ACK_BATCH", "AckBatch"]

#: most acks kept before they are written
ACK_BATCH = 256


class AckBatch:
    """The acks kept while a take is handed out (thread-safe)."""

    def __init__(self, limit: int = ACK_BATCH) -> None:
        self.limit = limit
        self.holding = False
        self._kept: list[Delivery] = []
        self._lock = threading.Lock()

    def hold(self) -> None:
        """A take is being handed out: keep the acks made from now on."""
        self.holding = True

    def add(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        """Keep ``deliveries``; returns what is to be written now (nothing while holding,
        until the batch is full)."""
        if not self.holding:
            return deliveries
        with self._lock:
            self._kept.extend(deliveries)
            if len(self._kept) < self.limit:
                return ()
            kept, self._kept = self._kept, []
        return kept

    def keep(self, deliveries: Sequence[Delivery]) -> None:
        """Keep ``deliveries`` again (writing them failed): the next write or maintenance
        round carries them."""
        with self._lock:
            self._kept[:0] = deliveries

    def release(self) -> list[Delivery]:
        """The take was handed out: stop keeping acks; returns those kept."""
        self.holding = False
        return self.take()

    def take(self) -> list[Delivery]:
        """The acks kept so far (keeping on, if holding)."""
        with self._lock:
            kept, self._kept = self._kept, []
        return kept
