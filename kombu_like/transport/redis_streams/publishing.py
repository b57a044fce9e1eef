"""Publishing to Redis Streams: a message due now is an ``XADD`` to the stream of its
priority level (a script where the queue has ``x-max-length``); the usual one -- due now,
to a queue without limits -- is one pre-encoded ``XADD`` sent straight on the hot wire.
A batch is one round trip; one with delayed messages (``x-delay``, Celery's ``eta``)
goes through a pipeline that also adds those to their queues' delayed sets, and with
``wait_replicas`` every write is confirmed by ``WAIT`` on the master that took it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..redis.codec import PlainTemplates
from ..redis.resp import command_head, with_bulk
from ..virtual.store import PlainShape
from .cluster import put_confirmed
from .codec import encode_fields, envelope_text, level_of
from .delayed import Delay, delay_of, encode_member, maybe_delayed
from .hotpath import Step, WireExecutor, append_command

if TYPE_CHECKING:
    from .store import StreamsStore

__all__ = ["Publishing", "TTL_TRIM_MARGIN_MS"]

#: a message to publish (queue, envelope, priority) and how it is delayed (None: due now)
_Timed = tuple[str, dict[str, Any], int, Delay | None]

#: entries are trimmed this much after their queue's TTL ran out (the ids carry the Redis
#: server's clock, expiry is judged by the client's: a small difference must not trim early)
TTL_TRIM_MARGIN_MS = 1000


def now_ms() -> int:
    """The time now in milliseconds since the epoch."""
    return int(time.time() * 1000)


class Publishing:
    """The publishes of ``store``."""

    def __init__(self, store: StreamsStore) -> None:
        self.store = store
        hot = store.hot
        #: a publish of a message due now, to a queue without limits, is one pre-encoded XADD
        self._plain_puts = hot if isinstance(hot, WireExecutor) and not store.options.wait_replicas else None
        self._xadd_heads: dict[str, bytes] = {}
        self._plain = PlainTemplates(
            lambda queue: command_head(5, ("XADD", store.keys.stream(queue, 0), "*", "payload")), store.body_encoding
        )

    def _append(self, queue: str, payload: dict[str, Any], priority: int, now: int) -> list[Step]:
        """The commands storing ``payload`` in ``queue`` now (for either executor)."""
        store = self.store
        spec = store.spec(queue)
        fields = encode_fields(queue, spec, payload, now)
        stream = store.keys.stream(queue, level_of(spec, priority))
        level_streams = store.streams(queue) if spec.max_length is not None else ()
        steps = [append_command(stream, fields, spec.max_length, level_streams)]
        if spec.ttl_ms is not None and spec.dead_letter_exchange is None:
            # entries written longer than the queue's TTL ago have expired, delivered or not:
            # they go with the next publish, so a queue nobody reads (a dead worker's
            # broadcast queue) does not grow without bound (with a dead-letter exchange they
            # stay until a take dead-letters them)
            steps.append(("XTRIM", stream, "MINID", max(now - spec.ttl_ms - TTL_TRIM_MARGIN_MS, 0)))
        elif "exp" in fields:
            # size() then counts entry by entry, leaving out expired ones
            steps.append(("HSET", store.keys.meta(queue), "expiring", 1))
        return steps

    def put(self, queue: str, payload: dict[str, Any], priority: int = 0) -> None:
        store = self.store
        spec = store.spec(queue)
        plain = self._plain_puts
        if (
            plain is not None
            and spec.max_length is None
            and spec.ttl_ms is None
            and payload["properties"].get("expiration") is None
            and not maybe_delayed(payload.get("headers"))
        ):
            # the usual publish: one XADD, encoded once from a cached head
            stream = store.keys.stream(queue, level_of(spec, priority))
            head = self._xadd_heads.get(stream)
            if head is None:
                head = command_head(5, ("XADD", stream, "*", "payload"))
                if len(self._xadd_heads) < 10_000:
                    self._xadd_heads[stream] = head
            self._xadd(plain, queue, with_bulk(head, envelope_text(queue, payload).encode("utf-8")))
            return
        self.put_many([(queue, payload, priority)])

    def put_plain(self, queue: str, body: str, delivery_tag: str, shape: PlainShape) -> bool:
        """Store a plain message (see :meth:`~..virtual.store.QueueStore.put_plain`) in
        ``queue`` as one XADD, its envelope from a template; False where :meth:`put` is
        needed (a queue with a length limit or a TTL, or a shape no template fits)."""
        plain = self._plain_puts
        if plain is None:
            return False
        spec = self.store.spec(queue)
        if spec.max_length is not None or spec.ttl_ms is not None:
            return False
        data = self._plain.command(queue, body, delivery_tag, shape)
        if data is None:
            return False
        self._xadd(plain, queue, data)
        return True

    @staticmethod
    def _xadd(plain: WireExecutor, queue: str, data: bytes) -> None:
        """Send the one encoded XADD ``data`` storing a message of ``queue`` on the hot
        wire ``plain``; its error reply raised, naming the queue."""
        [reply] = plain.run_packed(data, 1)
        if isinstance(reply, Exception):
            raise type(reply)(f"publishing 1 message(s) failed for queue(s) {queue}: {reply}")

    def put_many(self, items: Sequence[tuple[str, dict[str, Any], int]]) -> None:
        store = self.store
        if not items:
            return
        now = now_ms()
        eta, seconds = store.options.eta_delivery, now / 1000
        # each message's delay is read once: it decides the path, and the path uses it
        timed = [
            (queue, payload, priority, delay_of(payload.get("headers"), eta_delivery=eta, now=seconds, queue=queue))
            for queue, payload, priority in items
        ]
        if not store.options.wait_replicas and all(delay is None for *_, delay in timed):
            self._put_now(timed, now)
            return
        delayed: dict[str, list[tuple[Delay, bytes]]] = defaultdict(list)
        if store.options.wait_replicas:
            # one pipeline per slot, each followed by WAIT on its master's connection:
            # returns once the replicas have every write, or raises MessageNacked
            put_confirmed(
                store.client,
                timed,
                lambda item: store.keys.tag(item[0]),
                lambda pipe, group: self._write(pipe, group, now, delayed),
                store.options.wait_replicas,
                store.options.wait_timeout,
                cluster=store.options.cluster,
            )
        else:
            pipe = store.client.pipeline(transaction=False)
            self._write(pipe, timed, now, delayed)
            pipe.execute()
        for queue, members in delayed.items():
            soonest = min(d.ms if d.relative else d.ms - now for d, _ in members)
            store.due.nudge(queue, soonest / 1000)

    def _put_now(self, items: Sequence[_Timed], now: int) -> None:
        """Store ``items`` (none of them delayed) in their streams in one round trip on
        the hot path."""
        store = self.store
        steps: list[Step] = []
        owners: list[str] = []
        for queue, payload, priority, _ in items:
            added = self._append(queue, payload, priority, now)
            steps += added
            owners += [queue] * len(added)
        failed = [(owners[i], reply) for i, reply in enumerate(store.hot.run(steps)) if isinstance(reply, Exception)]
        if failed:
            queues = ", ".join(sorted({queue for queue, _ in failed}))
            first = failed[0][1]
            raise type(first)(f"publishing {len(items)} message(s) failed for queue(s) {queues}: {first}")

    def _write(
        self, pipe: Any, items: Sequence[_Timed], now: int, delayed: dict[str, list[tuple[Delay, bytes]]]
    ) -> None:
        """Queue on ``pipe`` the commands that store ``items``; the delayed ones are added
        to ``delayed`` too (by queue)."""
        store = self.store
        scheduled: dict[str, list[tuple[Delay, bytes]]] = defaultdict(list)
        for queue, payload, priority, delay in items:
            if delay is None:
                for step in self._append(queue, payload, priority, now):
                    store.pipelines.add(pipe, step)
            else:
                scheduled[queue].append((delay, self._delayed_member(pipe, queue, payload, priority, delay, now)))
        for queue, members in scheduled.items():
            store.delayed.schedule(store.keys.delayed(queue), members, pipe, store.keys.schedule(queue))
            delayed[queue].extend(members)

    def _delayed_member(
        self, pipe: Any, queue: str, payload: dict[str, Any], priority: int, delay: Delay, now: int
    ) -> bytes:
        """The delayed-set member of ``payload``; a time to live counts from when it is due."""
        store = self.store
        spec = store.spec(queue)
        fields = encode_fields(queue, spec, payload, now + delay.ms if delay.relative else delay.ms)
        named = dict(zip(fields[::2], fields[1::2], strict=True))
        expires = named.get("exp")
        if expires is not None and spec.ttl_ms is None:
            pipe.hset(store.keys.meta(queue), "expiring", 1)
        return encode_member(level_of(spec, priority), named["payload"], expires)
