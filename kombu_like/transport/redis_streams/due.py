"""When a consumer looks at its queues' delayed sets (:mod:`.delayed`).

A consumer looks at a queue's delayed set -- one run of :data:`~.delayed.MOVE_DUE`, which
moves what is due and answers when the soonest member left is due -- when:

* it starts consuming the queue (its first wait on it looks first);
* the soonest member it knows of is due;
* it hears of a member due sooner: a schedule that puts a message before every other one
  waiting adds an entry ``due <ms>`` to the queue's schedule stream ``P{q}:sched``, and
  a consumer waits on that stream in the same ``XREAD BLOCK`` as on its queues' streams
  (:mod:`.watch`), from the last entry id it knows (a look reads that id in the same step
  as the set, so nothing scheduled after a look goes unheard).  The entry says when the
  message is due: the look comes then, not at once;
* its watch connection was made again (the server may have failed over: it looks at each
  queue once, which also reads the schedule streams' ids anew);
* it took messages without waiting for ``delayed_check_interval`` (a consumer that is
  never idle never waits on the schedule streams either: it looks at each queue that
  often, as it did before it could wait);
* and at least every :data:`SAFETY_INTERVAL` (a member added without a schedule entry: by
  a version of the transport that did not write them).

An idle consumer so makes no round trip for delayed messages until one is due.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .delayed import MOVE_BATCH, SCHEDULE_KEPT, DelayedScripts

__all__ = ["SAFETY_INTERVAL", "DueWatch", "QueueTarget", "StreamsOf"]

#: longest time (seconds) between two looks at a queue's delayed set when nothing said it
#: changed: covers members added by a version of the transport that wrote no schedule entry
SAFETY_INTERVAL = 30.0

logger = logging.getLogger("kombu_like.transport.redis_streams")


class QueueTarget(NamedTuple):
    """Where a queue's due delayed messages go."""

    #: the queue's delayed set
    delayed_key: str
    #: ``(level, stream key)``: the queue's priority level streams
    streams: Sequence[tuple[int, str]]
    #: the queue's x-max-length, if it has one
    max_length: int | None = None
    #: the queue's schedule stream
    schedule_key: str | None = None


#: ``streams_of(queue)``: where ``queue``'s due delayed messages go
StreamsOf = Callable[[str], QueueTarget]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DueWatch:
    """When each consumed queue's delayed set is next worth a look, the looks, and the
    last schedule entry heard of per queue.

    :meth:`run` moves what is due in the queues whose look is due and answers how long
    until the next look (0 when a queue had more due than one batch).  Thread-safe: the
    store's puts and waits and its maintenance thread call it from their threads.
    """

    def __init__(
        self,
        scripts: DelayedScripts,
        streams_of: StreamsOf,
        field: str = "payload",
        longest: float = SAFETY_INTERVAL,
        count: int = MOVE_BATCH,
    ) -> None:
        self.scripts = scripts
        self.streams_of = streams_of
        self.field = field
        self.longest = longest
        self.count = count
        self._lock = threading.Lock()
        #: queue -> when (monotonic) its delayed set is next worth a look
        self._next_look: dict[str, float] = {}
        #: queue -> the last entry id of its schedule stream heard of
        self._heard: dict[str, str] = {}
        #: changes whenever one of those ids does (a wait from the old ones is out of date)
        self.heard_version = 0
        #: the server's clock less this machine's (seconds), from the last look
        self._offset = 0.0
        #: schedule stream -> its queue (for the replies of waits)
        self._schedule_streams: dict[str, str] = {}
        #: called when a nudge brings a look forward (wakes whoever runs :meth:`run`)
        self.waker: Callable[[], None] | None = None

    # -- being told -----------------------------------------------------------------------
    def nudge(self, queue: str, due_in: float = 0.0) -> None:
        """A message for ``queue`` is due in ``due_in`` seconds: look no later than then,
        and call :attr:`waker` when that is sooner than planned."""
        at = time.monotonic() + max(0.0, due_in)
        with self._lock:
            planned = self._next_look.get(queue)
            if planned is None or planned <= at:
                return  # not consumed here yet (looked at first thing), or looked at by then
            self._next_look[queue] = at
        self._wake()

    def nudge_all(self) -> None:
        """Look at every queue consumed here now (the watch connection was made again, or
        the store kept taking without waiting)."""
        with self._lock:
            queues = list(self._next_look)
        for queue in queues:
            self.nudge(queue)

    def heard(self, queue: str, entries: Sequence[Any]) -> None:
        """``entries`` (``[id, fields]`` pairs) were read from ``queue``'s schedule stream:
        look when the soonest they name is due (at once when there may be more than were
        read: the stream keeps :data:`SCHEDULE_KEPT` entries)."""
        if not entries:
            return
        soonest: float | None = None
        for _entry_id, fields in entries:
            named = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=False))
            for key, value in named.items():
                if _text(key) == "due":
                    try:
                        due = int(_text(value)) / 1000.0
                    except ValueError:
                        due = 0.0  # not written by this transport: look now
                    soonest = due if soonest is None else min(soonest, due)
        with self._lock:
            if queue not in self._next_look:
                return  # not consumed any more: a wait for it looks first
            self._hear(queue, _text(entries[-1][0]))
            offset = self._offset
        if soonest is None or len(entries) >= SCHEDULE_KEPT:
            due_in = 0.0
        else:
            due_in = soonest - (time.time() + offset)
        self.nudge(queue, due_in)

    def schedule_points(self, queues: Sequence[str]) -> tuple[list[str], list[str]]:
        """The schedule streams of ``queues`` and the last entry heard of in each: where a
        wait on them starts (a queue never looked at is looked at first, for its id)."""
        self.look_first(queues)
        with self._lock:
            heard = {queue: self._heard[queue] for queue in queues if queue in self._heard}
        streams = []
        for queue in heard:
            key = self.streams_of(queue).schedule_key
            if key is not None:
                self._schedule_streams[key] = queue
                streams.append(key)
        return streams, [heard[self._schedule_streams[key]] for key in streams]

    def hear(self, reply: Any) -> None:
        """The reply of a wait (``XREAD``): what the schedule streams in it say."""
        for stream, entries in reply.items() if isinstance(reply, dict) else reply:
            queue = self._schedule_streams.get(_text(stream))
            if queue is not None:
                self.heard(queue, entries)

    # -- looking ----------------------------------------------------------------------------
    def run(self, queues: Iterable[str]) -> float:
        """Move the due messages of ``queues`` whose look is due; seconds until the next
        look.  Queues not among them are forgotten (not consumed any more)."""
        wanted = list(dict.fromkeys(queues))
        wait, _ = self._look(wanted)
        consumed = set(wanted)
        with self._lock:
            for queue in [q for q in self._next_look if q not in consumed]:
                del self._next_look[queue]
                self._heard.pop(queue, None)
        return wait

    def look_first(self, queues: Iterable[str]) -> None:
        """Look at those of ``queues`` never looked at (about to be waited on: the wait
        needs their schedule streams' ids); whoever runs :meth:`run` is woken to plan
        their next looks."""
        with self._lock:
            new = [queue for queue in dict.fromkeys(queues) if queue not in self._heard]
        if new and self._look(new)[1]:
            self._wake()

    def _look(self, queues: Sequence[str]) -> tuple[float, bool]:
        """Look at those of ``queues`` whose look is due: seconds until the next look, and
        whether any was looked at."""
        wait = self.longest
        looked = False
        for queue in queues:
            now = time.monotonic()
            with self._lock:
                look_at = self._next_look.get(queue, 0.0)
            if look_at > now:
                wait = min(wait, look_at - now)
                continue
            looked = True
            target = self.streams_of(queue)
            try:
                result = self.scripts.move_due(
                    target.delayed_key, target.streams, self.field, self.count, target.max_length, target.schedule_key
                )
            except Exception as exc:
                if not _queue_level_error(exc):
                    raise  # the connection: the caller's error handling (reconnects) decides
                # one queue's keys in a bad state must not keep the others' messages waiting
                logger.warning("could not move the due delayed messages of queue %r: %s", queue, exc)
                queue_wait = self.longest
            else:
                queue_wait = result.wait(self.longest)
                if result.moved:
                    logger.debug("%d delayed message(s) of queue %r are due: moved", result.moved, queue)
                with self._lock:
                    self._offset = result.now_ms / 1000.0 - time.time()
                    if result.schedule_id is not None:
                        self._hear(queue, result.schedule_id)
            with self._lock:
                at = time.monotonic() + queue_wait
                current = self._next_look.get(queue, look_at)
                # a nudge that came during the run stays when it is earlier
                self._next_look[queue] = at if current == look_at else min(current, at)
            wait = min(wait, queue_wait)
        return wait, looked

    def _hear(self, queue: str, entry_id: str) -> None:
        # with the lock held
        if self._heard.get(queue) != entry_id:
            self._heard[queue] = entry_id
            self.heard_version += 1

    def _wake(self) -> None:
        waker = self.waker
        if waker is not None:
            waker()


def _queue_level_error(exc: BaseException) -> bool:
    """An error about one queue's keys (a key of another type, a script that failed on
    them), not about the connection or the server's role (a replica, a moving slot)."""
    from redis.exceptions import ResponseError

    if type(exc) is not ResponseError:  # its subclasses name the server's state
        return False
    text = str(exc)
    return "WRONGTYPE" in text or "user_script" in text or "Error running script" in text
