"""Taking over what a connection's earlier stores still hold.

Each store has a consumer name of its own in every group.  When a connection is cut, the
client reconnects with a new store (a new consumer name), and the old store's close tries
to give back what it held -- its leases, and what a take whose reply the cut lost took
unseen.  Where that close cannot reach Redis, those entries stay pending under the old
name until their lease lapses.

Such predecessors are remembered (:class:`Predecessors`) for the Redis they live on, by
the process: a client connection that reconnects makes its next store through the same
transport, but Celery and ``ConsumerMixin`` reconnect with a new client connection (a
clone), whose store must take them over too.  That store takes over their pending entries
at once, as soon as it is connected (and again on its maintenance rounds while some are
left): each is written again at its stream's tail marked redelivered, as a lapsed lease
is, and the old consumer is removed from the group in the same script (``TAKE_OVER``).
Only consumers of this process's closed stores are remembered: never a consumer another
connection or process may still be using.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

from .keys import GROUP

if TYPE_CHECKING:
    from .store import StreamsStore

__all__ = ["Predecessors"]

logger = logging.getLogger("kombu_like.transport.redis_streams")

#: most entries one script call takes over from one consumer in one stream
TAKE_OVER_COUNT = 1000
#: most consumers remembered for one Redis (the oldest are forgotten first: theirs come
#: back when their leases lapse)
REMEMBERED = 1000


class Predecessors:
    """Consumer names of a transport's closed stores that may still hold entries, with the
    queues each took from (thread-safe: the asyncio API connects on its I/O thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: consumer -> queues it took from that may still hold its entries
        self._left: dict[str, dict[str, None]] = {}

    def remember(self, consumer: str, queues: Iterable[str]) -> None:
        """``consumer``'s store closed without giving back what it held in ``queues``."""
        queues = list(queues)
        if not queues:
            return
        with self._lock:
            self._left.setdefault(consumer, {}).update(dict.fromkeys(queues))
            while len(self._left) > REMEMBERED:
                del self._left[next(iter(self._left))]

    @classmethod
    def of(cls, where: Hashable) -> Predecessors:
        """The predecessors remembered for the Redis ``where`` names (its addresses,
        database and key prefix): one per process, shared by the client connections to it."""
        with _REGISTRY_LOCK:
            found = _REGISTRY.get(where)
            if found is None:
                found = _REGISTRY[where] = cls()
            return found

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._left)

    def take_over(self, store: StreamsStore) -> int:
        """Redeliver, through ``store``, what the remembered consumers hold, and remove
        them from their groups; those Redis could not be asked about stay remembered.
        Returns how many entries came back."""
        with self._lock:
            snapshot = [(consumer, list(queues)) for consumer, queues in self._left.items()]
        if not snapshot:
            return 0
        script = store.scripts["TAKE_OVER"]
        pipe = store.client.pipeline(transaction=False)
        asked: list[tuple[str, str]] = []
        unread: set[tuple[str, str]] = set()
        for consumer, queues in snapshot:
            for queue in queues:
                try:
                    streams = store.streams(queue)
                except Exception as exc:  # its arguments could not be read: next time
                    logger.debug("could not read queue %r to take over consumer %s: %s", queue, consumer, exc)
                    unread.add((consumer, queue))
                    continue
                for stream in streams:
                    script(keys=[stream], args=[GROUP, consumer, TAKE_OVER_COUNT], client=pipe)
                    asked.append((consumer, queue))
        replies = pipe.execute(raise_on_error=False) if asked else []
        moved = 0
        unfinished = set(unread)
        for (consumer, queue), reply in zip(asked, replies, strict=True):
            if isinstance(reply, Exception):
                logger.debug("could not take over consumer %s in queue %r: %s", consumer, queue, reply)
                unfinished.add((consumer, queue))
                continue
            came_back, more = (int(value) for value in reply)
            if came_back:
                logger.info(
                    "%d message(s) of queue %r held by consumer %s of a connection that was cut "
                    "came back at once (redelivered)",
                    came_back,
                    queue,
                    consumer,
                )
            moved += came_back
            if more:
                unfinished.add((consumer, queue))
        with self._lock:
            for consumer, queues in snapshot:
                left = self._left.get(consumer)
                if left is None:
                    continue
                for queue in queues:
                    if (consumer, queue) not in unfinished:
                        left.pop(queue, None)
                if not left:
                    del self._left[consumer]
        return moved


#: the predecessors of the stores of this process, by the Redis they live on: state shared
#: between client connections, since a reconnect is often made by a new one (Celery, a
#: ConsumerMixin's clone) -- it names only closed stores, so it can never reach a live one
_REGISTRY: dict[Hashable, Predecessors] = {}
_REGISTRY_LOCK = threading.Lock()
