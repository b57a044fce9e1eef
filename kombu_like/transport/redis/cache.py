"""The binding cache: bindings and exchange declarations kept fresh by Redis itself.

A publish must not pay a round trip to read the bindings, yet must see a binding made a
moment ago by any process, Kombu's included.  Redis's client-side caching does exactly
that: the command connection turns on ``CLIENT TRACKING ... BCAST PREFIX _kombu.binding.``
with its invalidation messages redirected to a connection of their own.  Redis writes an
invalidation to that connection for every change to a key under those prefixes, in the
same event-loop turn in which it answers the client that made the change.  So before each
routing decision a zero-timeout ``poll()`` of that socket (no round trip) tells whether
anything changed; if so the cache is dropped and read again.  When the server refuses
tracking (Redis before 6, an ACL without ``CLIENT``), nothing is cached and every publish
reads the table.

The asyncio driver routes each batch of publishes against one reading of the bindings
instead (:class:`SnapshotCache`), made just before the batch is written.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from redis import exceptions as rexc

from ..virtual.routing import Binding, ExchangeInfo
from .cluster import ClusterWire
from .wire import Wire

if TYPE_CHECKING:
    from .command import CommandConnection

__all__ = ["BindingCache", "CacheOptions", "SnapshotCache", "TrackedKeys", "TrackingConnection"]

logger = logging.getLogger("kombu_like.transport.redis")

INVALIDATE_CHANNEL = b"__redis__:invalidate"


class TrackedKeys(Protocol):
    """The keys whose changes invalidate the cache (the list and the streams transports'
    key layouts both have them)."""

    @property
    def binding_prefix(self) -> str:
        """The start of every key holding bindings or an exchange's declaration."""

    @property
    def exchanges(self) -> str:
        """The key of the declared exchanges."""


class CacheOptions(Protocol):
    """The transport options the cache reads."""

    binding_cache: bool
    socket_timeout: float | None
    health_check_interval: float


class TrackingConnection(Protocol):
    """The connection whose reads are cached: it turns tracking on, and says when its
    socket was replaced (tracking then starts again)."""

    @property
    def generation(self) -> int:
        """Changes whenever the socket is replaced."""

    def track(self, redirect: Any, prefixes: list[str]) -> int:
        """Turn on broadcast tracking of ``prefixes``; the generation it holds for."""


class _Pins(threading.local):
    active = False


class BindingCache:
    """Bindings and exchange declarations read from Redis, dropped when Redis says so.

    Its state is guarded by ``lock``, the lock of the :class:`~.bindings.Bindings` that
    owns it: every method but :meth:`pinned` and :meth:`close` runs with it held.
    """

    def __init__(
        self,
        connection_factory: Callable[[], Any],
        cmd: CommandConnection | TrackingConnection,
        keys: TrackedKeys,
        options: CacheOptions,
        lock: threading.RLock,
    ) -> None:
        self.cmd = cmd
        self.keys = keys
        self.lock = lock
        self.enabled = options.binding_cache
        self.exchanges: dict[str, ExchangeInfo | None] = {}
        self.tables: dict[str, list[Binding]] = {}
        #: changes whenever what is cached may have changed
        self.version = 0
        # on a Redis Cluster (.cluster) one connection per master, tracked each by its own
        self.inval: Wire = getattr(connection_factory, "wire_class", Wire)(
            connection_factory,
            "invalidation",
            options.socket_timeout,
            on_connect=self._on_inval_connect,
            # a transport without the option parses as its other connections do
            parser=getattr(options, "reply_parser", "auto"),
        )
        self._poller: Any = None
        self._recent = False
        self._pins = _Pins()
        self._health_interval = options.health_check_interval
        self._next_ping = 0.0
        self._ping_pending = False
        self._tracking: tuple[int, int] | None = None

    def clear(self) -> None:
        self._recent = False
        self.exchanges.clear()
        self.tables.clear()
        self.version += 1

    def _on_inval_connect(self, wire: Wire) -> None:
        [client_id, subscribed] = wire.execute([("CLIENT", "ID"), ("SUBSCRIBE", INVALIDATE_CHANNEL)])
        for reply in (client_id, subscribed):
            if isinstance(reply, Exception):
                raise reply
        wire.client_id = int(client_id)

    def _start_tracking(self) -> None:
        """(Re)start tracking on the command connection."""
        self.clear()
        self._tracking = None
        try:
            inval = self.inval
            redirect: Any
            if isinstance(inval, ClusterWire):
                inval.connect_every_master()  # a master the map gained since has its own
                redirect = inval.client_ids
            else:
                inval.connect()
                redirect = inval.client_id
            generation = self.cmd.track(redirect, [self.keys.binding_prefix, self.keys.exchanges])
        except rexc.ResponseError as exc:
            logger.info("Redis refused client-side caching (%s); bindings are read on every publish", exc)
            self.enabled = False
            self.inval.disconnect()
            return
        poller = select.poll()
        poller.register(self.inval.fileno(), select.POLLIN | select.POLLPRI)
        self._poller = poller
        self._ping_pending = False
        self._next_ping = time.monotonic() + self._health_interval
        self._tracking = (generation, self.inval.generation)
        self._recent = True

    def fresh(self, reuse: bool = False) -> bool:
        """Drop whatever Redis invalidated; True when the cache may be used.

        With ``reuse``, a check made by the previous call stands: a publish looks up its
        exchange and then its bindings, and one look at the socket serves both.
        """
        if not self.enabled:
            self.version += 1
            return False
        if self._pins.active:
            return True
        if reuse and self._recent:
            self._recent = False
            return True
        self._recent = False
        inval = self.inval
        if self._tracking != (self.cmd.generation, inval.generation) or not inval.connected:
            self._start_tracking()
            return self.enabled
        if self._poller.poll(0) or inval.has_buffered():
            self._drain()
        if self._health_interval and self._tracking is not None and time.monotonic() >= self._next_ping:
            self._check_health()
        self._recent = self._tracking is not None
        return self._recent

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Check for invalidations once, then trust the cache in this thread until the block
        ends: the messages of one ``Producer.batch()`` are routed against one view of the
        bindings, taken when the batch is sent, as if they were one publish."""
        with self.lock:
            usable = self.fresh()
        self._pins.active = usable
        try:
            yield
        finally:
            self._pins.active = False

    def _check_health(self) -> None:
        # a silently dead invalidation connection would leave the cache stale for good:
        # PING it every health_check_interval and give up on it if the answer is late
        now = time.monotonic()
        if now < self._next_ping:
            return
        if self._ping_pending:
            logger.warning("Redis invalidation connection missed its health check; reconnecting")
            self._lost()
            return
        try:
            self.inval.send([("PING",)])
        except rexc.RedisError:
            self._lost()
            return
        self._ping_pending = True
        self._next_ping = now + self._health_interval

    def _lost(self) -> None:
        self.inval.disconnect()
        self._tracking = None
        self.clear()

    def _drain(self) -> None:
        inval = self.inval
        try:
            while True:
                message = inval.read()
                if isinstance(message, list) and message and message[0] == b"message":
                    # any change under the tracked prefixes: bindings change rarely, so
                    # dropping everything is simpler than tracking which key was which
                    self.clear()
                else:
                    self._ping_pending = False
                if not inval.has_buffered() and not self._poller.poll(0):
                    return
        except rexc.RedisError:
            logger.debug("lost the Redis invalidation connection; dropping the binding cache")
            self._lost()

    def close(self) -> None:
        self._tracking = None
        self.inval.disconnect()


class SnapshotCache:
    """The bindings' cache on the asyncio loop: filled for one publish batch and trusted
    only while that batch is routed (:meth:`pinned`); every other lookup reads Redis."""

    enabled = True

    def __init__(self) -> None:
        self.exchanges: dict[str, ExchangeInfo | None] = {}
        self.tables: dict[str, list[Binding]] = {}
        self.version = 0
        self._filling = False
        self._pinned = False

    @property
    def is_pinned(self) -> bool:
        return self._pinned

    def fresh(self, reuse: bool = False) -> bool:
        if self._filling or self._pinned:
            return True
        self.clear()
        return False

    def clear(self) -> None:
        self.exchanges.clear()
        self.tables.clear()
        self.version += 1

    @contextlib.contextmanager
    def filling(self) -> Iterator[None]:
        """Lookups made within the block are kept (they are read from Redis)."""
        self.clear()
        self._filling = True
        try:
            yield
        finally:
            self._filling = False

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Lookups within the block are answered from what was filled (the blocking
        channel's ``publish_batch`` pins too, inside the publisher's block)."""
        if self._pinned:
            yield
            return
        self._pinned = True
        try:
            yield
        finally:
            self._pinned = False
            self.clear()

    def close(self) -> None:
        self.clear()
