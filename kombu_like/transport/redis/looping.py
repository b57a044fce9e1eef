"""The Redis store under an event loop (Kombu's Hub).

The loop watches two sockets: the take connection, on which ``CLIENT TRACKING`` makes
Redis send an invalidation push when a watched list changes, and the pub/sub connection
of fanout subscriptions.  Nothing is popped while waiting, so a connection cut while the
loop waits loses nothing.  Takes are the same atomic script as without a loop
(:meth:`.taking.Taker.get` with ``timeout=0``); when it finds every list empty its last
step reads them on the tracking connection, so the next change is reported.

What the blocking take does while it waits -- the visibility-timeout sweep, acks owed
after a reconnect, refreshing expiring queues, fanout and take-connection health checks
-- runs from the loop's timer instead (:meth:`LoopHooks.maintain`).  No thread is used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc

from .codec import check
from .resp import is_push

if TYPE_CHECKING:
    from .fanout import FanoutListener
    from .options import RedisOptions
    from .taking import Taker

__all__ = ["LoopHooks"]

logger = logging.getLogger("kombu_like.transport.redis")

#: longest time (seconds) between two runs of the maintenance under a loop; each step of
#: it keeps its own interval, this only bounds how late a step can come
MAINTENANCE_TICK = 1.0


class LoopHooks:
    """The event-loop hooks of one :class:`~.store.RedisStore` (see
    :class:`~kombu_like.transport.virtual.QueueStore`)."""

    def __init__(
        self,
        taker: Taker,
        fanout: FanoutListener,
        options: RedisOptions,
        maintain: Callable[[Sequence[str]], None],
    ) -> None:
        self.taker = taker
        self.fanout = fanout
        self.options = options
        self._maintain = maintain
        #: the queues the loop's consumers take from (for the maintenance)
        self.queues: tuple[str, ...] = ()
        self._warned = False

    def event_fds(self) -> Sequence[Any]:
        self.taker.evented = True
        watched: list[Any] = []
        wire = self.taker.wire
        if wire.connected:
            watched.append(wire.sock)
        fanout = self.fanout.wire
        if fanout.connected and self.fanout.patterns:
            watched.append(fanout.sock)
        return watched

    def watch(self, queues: Sequence[str]) -> bool:
        taker = self.taker
        wire = taker.wire
        self.queues = tuple(queues)
        if self.fanout.active and self.fanout.has_pending():
            return True
        if wire.connected and (wire.pushes or wire.has_buffered()):
            # came with the take's reply: the socket will not turn readable for it
            if self._read_take():
                return True
        if not taker.tracking:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "Redis refused client tracking: under an event loop the consumer looks for messages "
                    "every %.1f seconds instead of being woken by Redis",
                    MAINTENANCE_TICK,
                )
            return False
        if wire.connected and taker.armed == (frozenset(queues), wire.generation):
            return False  # the take that found them empty watches them already
        # arm tracking on lists not read by a take on this connection: reading them
        # makes Redis report their next change; a message already there means take now
        keys = taker._lists_for(queues)[0]
        if taker.pong_due is not None:
            taker.finish_ping()
        replies = wire.execute([("LLEN", key) for key in keys])
        check(replies, f"watching queue(s) {', '.join(queues)}")
        wire.pushes.clear()
        taker.armed = (frozenset(queues), wire.generation)
        return any(replies)

    def on_readable(self, fd: int) -> bool:
        wire = self.taker.wire
        if wire.connected and fd == wire.fileno():
            return self._read_take()
        fanout = self.fanout.wire
        if fanout.connected and fd == fanout.fileno():
            return self.fanout.receive_ready()
        return False

    def _read_take(self) -> bool:
        """Read the take connection's pushes without waiting; True when a list changed."""
        taker = self.taker
        wire = taker.wire
        woken = any(map(taker.reports_change, wire.pushes))
        wire.pushes.clear()
        while wire.connected and wire.readable():
            message = wire.read_message()
            if is_push(message):
                woken = taker.reports_change(message) or woken
            elif message == b"PONG" and taker.pong_due is not None:
                taker.pong_due = None
            elif isinstance(message, Exception):
                raise message
            else:
                wire.disconnect()
                raise rexc.InvalidResponse(f"unexpected reply on the take connection while waiting: {message!r}")
        if woken:
            taker.armed = None
        return woken

    def periodic(self) -> Sequence[tuple[float, Callable[[], None]]]:
        intervals = [MAINTENANCE_TICK, self.options.unacked_restore_interval or MAINTENANCE_TICK]
        if self.options.health_check_interval:
            intervals.append(self.options.health_check_interval)
        return [(min(intervals), self.maintain)]

    def maintain(self) -> None:
        """The waiting take's periodic work, from the loop's timer."""
        self._maintain(self.queues)
        self._check_take_connection()

    def _check_take_connection(self) -> None:
        """PING the take connection when it was idle for ``health_check_interval``; an
        answer still missing after the grace period means it died without telling (a
        half-open connection never turns readable): drop it and say so."""
        taker = self.taker
        wire = taker.wire
        interval = self.options.health_check_interval
        if not (interval and wire.connected and taker.tracking):
            return
        now = time.monotonic()
        if taker.pong_due is not None:
            if now >= taker.pong_due:
                taker.pong_due = None
                wire.disconnect()
                raise rexc.TimeoutError("Redis did not answer PING on the take connection in time")
            return
        if now - wire.last_io >= interval:
            wire.send([("PING",)])
            taker.pong_due = now + (self.options.socket_timeout or interval)

    def unwatch(self) -> None:
        taker = self.taker
        if taker.pong_due is not None and taker.wire.connected:
            try:
                taker.finish_ping()
            except rexc.RedisError:
                logger.debug("no answer to the take connection's PING; dropping it", exc_info=True)
                taker.wire.disconnect()
        taker.evented = False
        taker.armed = None
        self.queues = ()
