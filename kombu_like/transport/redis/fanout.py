"""Fanout over Redis pub/sub, the way Kombu does it.

A queue bound to a fanout exchange is fed by the pub/sub channel
``<prefix>/<db>.<exchange>`` (with ``fanout_patterns``: the glob
``.../<exchange>/<binding key>``).  While a connection consumes such a queue it keeps a
pattern subscription on a connection of its own; every message received there becomes,
for each queue it feeds, a copy with a delivery tag of its own, recorded in the unacked
store like any other delivery (see :meth:`.store.RedisStore.get`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc

from .codec import check, dumps, loads, preview, text
from .keys import KeyLayout, clamp_priority
from .options import RedisOptions
from .wire import Wire

if TYPE_CHECKING:
    from .command import CommandConnection

__all__ = ["FanoutListener"]

logger = logging.getLogger("kombu_like.transport.redis")

#: commands to run, and what they do (for the error message)
Write = tuple[list[tuple[Any, ...]], str]


class FanoutListener:
    """The pub/sub subscriptions of one store, following what its connection consumes.

    ``lock`` guards the subscriptions and the pub/sub connection; messages that must be
    kept in lists go through ``cmd``, whose lock is taken after this one, never before.
    """

    def __init__(
        self, connection_factory: Callable[[], Any], cmd: CommandConnection, keys: KeyLayout, options: RedisOptions
    ) -> None:
        self.cmd = cmd
        self.keys = keys
        self.options = options
        self.wire = Wire(
            connection_factory,
            "pub/sub",
            options.socket_timeout,
            0,
            self._on_connect,
            parser=options.reply_parser,
        )
        self.lock = threading.RLock()
        #: queue -> {(exchange, binding key)} for fanout bindings made through the store
        self.bindings: dict[str, set[tuple[str, str]]] = {}
        #: pattern -> queues it feeds (what the wire is subscribed to)
        self.patterns: dict[str, set[str]] = {}
        #: the queues the connection consumes
        self.consumed: set[str] = set()
        # messages read while (un)subscribing, not delivered yet
        self._early: list[Any] = []
        self._pinged = False
        self._next_check = 0.0

    @property
    def active(self) -> bool:
        return bool(self.patterns) and self.wire.connected

    @property
    def wanted(self) -> bool:
        return bool(self.patterns or self.bindings)

    def _on_connect(self, wire: Wire) -> None:
        if self.patterns:
            wire.send([("PSUBSCRIBE", *self.patterns)])
            for _ in self.patterns:
                self._expect(wire, b"psubscribe")

    def _expect(self, wire: Wire, kind: bytes) -> None:
        while True:
            reply = wire.read()
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, list) and reply and reply[0] == kind:
                return
            if isinstance(reply, list) and reply and reply[0] == b"pmessage":
                # published while (un)subscribing: delivered by the next wait
                self._early.append(reply)

    def bound(self, queue: str, exchange: str, binding_key: str) -> None:
        """Note a fanout binding; subscribe at once if ``queue`` is being consumed."""
        bindings = self.bindings.setdefault(queue, set())
        if (exchange, binding_key) not in bindings:
            bindings.add((exchange, binding_key))
            if queue in self.consumed:
                self.sync(self.consumed)

    def unbound(self, queue: str, exchange: str | None = None, binding_key: str = "") -> None:
        """Forget one fanout binding of ``queue`` (all of them without ``exchange``)."""
        if exchange is None:
            self.bindings.pop(queue, None)
        elif queue in self.bindings:
            self.bindings[queue].discard((exchange, binding_key))

    def patterns_for(self, queues: Iterable[str]) -> dict[str, set[str]]:
        """The pub/sub patterns consuming ``queues`` needs, each with the queues it feeds."""
        keys = self.keys
        use_keys = self.options.fanout_patterns
        wanted: dict[str, set[str]] = {}
        for queue in queues:
            for exchange, binding_key in self.bindings.get(queue, ()):
                pattern = keys.fanout_channel(exchange, binding_key.replace("#", "*"), use_keys)
                wanted.setdefault(pattern, set()).add(queue)
        return wanted

    def follow(self, queues: Iterable[str]) -> tuple[list[str], list[str]]:
        """Note that ``queues`` are consumed now; the patterns to subscribe to and those to
        drop (the subscriptions themselves are the caller's I/O)."""
        self.consumed = set(queues)
        wanted = self.patterns_for(self.consumed)
        added = [p for p in wanted if p not in self.patterns]
        removed = [p for p in self.patterns if p not in wanted]
        self.patterns = wanted
        return added, removed

    def sync(self, queues: Iterable[str]) -> None:
        """Subscribe to the channels of the consumed ``queues`` (and no others), now."""
        with self.lock:
            added, removed = self.follow(queues)
            wanted = self.patterns
            if not added and not removed:
                return
            wire = self.wire
            if not wanted:
                wire.disconnect()
                return
            if not wire.connected:
                wire.connect()  # subscribes to everything wanted
                return
            try:
                if removed:
                    wire.send([("PUNSUBSCRIBE", *removed)])
                    for _ in removed:
                        self._expect(wire, b"punsubscribe")
                if added:
                    wire.send([("PSUBSCRIBE", *added)])
                    for _ in added:
                        self._expect(wire, b"psubscribe")
            except rexc.RedisError:
                wire.disconnect()
                if added:
                    raise

    def has_pending(self) -> bool:
        return bool(self._early) or self.wire.has_buffered()

    def read(self, numbers: dict[bytes, int], max_count: int) -> list[tuple[int, bytes]]:
        """Messages received, as (list number, message) for the store's take script."""
        with self.lock:
            # another thread may have read what woke us up (subscribing): look again
            messages, self._early = self._early, []
            wire = self.wire
            while len(messages) < max_count and wire.readable():
                messages.append(wire.read())
                self._pinged = False
        got, writes = self.copies(messages, numbers)
        for commands, doing in writes:
            check(self.cmd.execute(commands), doing)
        return got

    def copies(self, messages: list[Any], numbers: dict[bytes, int]) -> tuple[list[tuple[int, bytes]], list[Write]]:
        """The copies of pub/sub ``messages`` for the take script (see :meth:`read`), and
        the writes to make first: copies for consumers without prefetch room kept in their
        queues, undecodable messages kept in dead-letter lists."""
        got: list[tuple[int, bytes]] = []
        writes: list[Write] = []
        for message in messages:
            if isinstance(message, list) and len(message) == 4 and message[0] == b"pmessage":
                got += self._copies(text(message[1]), message[3], numbers, writes)
        return got, writes

    def receive_ready(self) -> bool:
        """Read what the pub/sub connection has without waiting (an event loop found it
        readable); True when messages wait to be taken.  Replies to health checks are
        noted; a closed connection raises."""
        with self.lock:
            wire = self.wire
            while wire.connected and wire.readable():
                reply = wire.read()
                if isinstance(reply, Exception):
                    raise reply
                if isinstance(reply, list) and reply and reply[0] == b"pmessage":
                    self._early.append(reply)
                else:  # the answer to a health check (or to a subscription change)
                    self._pinged = False
            return bool(self._early)

    def _copies(
        self, pattern: str, data: bytes, numbers: dict[bytes, int], writes: list[Write]
    ) -> list[tuple[int, bytes]]:
        """One message per queue fed by ``pattern``, each with its own delivery tag."""
        keys = self.keys
        queues = self.patterns.get(pattern, set())
        try:
            payload = loads(data)
            if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
                raise TypeError("not an envelope object")
        except Exception as exc:  # published by another program
            kept: list[tuple[Any, ...]] = [("LPUSH", keys.deadletter(queue), data) for queue in sorted(queues)]
            if kept:
                writes.append((kept, "keeping an undecodable fanout message"))
            logger.error(
                "Cannot decode a fanout message on channel pattern %r (%s); kept it in %s: %s",
                pattern,
                exc,
                ", ".join(keys.deadletter(q) for q in sorted(queues)) or "no list",
                preview(data),
            )
            return []
        out: list[tuple[int, bytes]] = []
        parked: list[tuple[Any, ...]] = []
        for queue in sorted(queues):
            props = dict(payload["properties"])
            props["delivery_tag"] = str(uuid.uuid4())
            raw = dumps({**payload, "properties": props}).encode("utf-8")
            number = numbers.get(keys.list_key(queue).encode("utf-8"))
            if number is None:
                # its consumer has no prefetch room right now: keep the copy in the queue
                parked.append(("LPUSH", keys.list_key(queue, clamp_priority(props.get("priority"))), raw))
            else:
                out.append((number, raw))
        if parked:
            writes.append((parked, "keeping fanout messages for busy consumers"))
        return out

    def next_check(self) -> float:
        """When the next health check is due (monotonic seconds)."""
        if self.patterns and self.options.health_check_interval:
            return self._next_check
        return float("inf")

    def check_health(self) -> None:
        """PING every ``health_check_interval``; an answer still missing at the next
        check means a half-open connection, which is replaced."""
        interval = self.options.health_check_interval
        now = time.monotonic()
        if not (self.patterns and interval) or now < self._next_check:
            return
        self._next_check = now + interval
        with self.lock:
            wire = self.wire
            if not wire.connected:
                return
            while self._pinged and wire.readable():
                reply = wire.read()
                if isinstance(reply, list) and reply and reply[0] == b"pmessage":
                    self._early.append(reply)
                else:
                    self._pinged = False
            if self._pinged:
                logger.warning("Redis pub/sub connection missed its health check; reconnecting")
                wire.disconnect()
                wire.connect()
                self._pinged = False
                return
            wire.send([("PING",)])
            self._pinged = True

    def close(self) -> None:
        self.wire.disconnect()
