"""The asyncio drivers of redis://: on the asyncio loop, or on an I/O thread.

**redis://** (TCP, no TLS) is driven on the asyncio loop itself, with no thread
(:class:`LoopDriver`): the blocking transport's store, routing, envelopes, prefetch and
unacked bookkeeping, restore and ledger do the deciding, through the same conversations,
request builders and reply handlers (:mod:`.conversation`); only the connections are the
loop's (:class:`~.aio_wire.AsyncWire`, the same RESP encoding and parsers).  The store is
:mod:`.aio_store`, the channel, publishing and deliveries :mod:`.aio_channel`:

* a round trip (declare, bind, purge, ``basic_get``, ``qos``, cancel, close ...) is
  awaited, after the publishes handed over before it were answered;
* a publish is handed over and returns, as on AMQP without confirms: the publishes of a
  round of the loop are routed against one reading of the bindings and go out as one
  pipeline; a failure is raised by the next publish on the channel and by the
  connection's next wait.  ``mandatory`` publishes, and every publish with
  ``transport_options={"confirm_publish": True}`` or ``wait_replicas``, await Redis's
  reply instead; the publishes not answered yet are bounded (``backlog``);
* acks, rejects and requeues are written at once and return;
* deliveries are taken by the blocking event-loop driver's logic, each take awaited;
  an empty queue is watched through client tracking, so a connection cut while a
  consumer waits loses nothing.

A cancelled caller stops waiting; what it sent is still answered in order (the stream
never falls out of step), and a take whose reply it no longer awaits is given back by the
ledger.  Messages delivered and not acked when a channel closes go back to their queues.

**rediss://**, Sentinel, Unix sockets and connections with extra redis-py options
(keepalive settings, a custom connection class) keep the I/O-thread driver
(:mod:`kombu_like.aio.threaded`, :class:`ThreadedRedisDriver`): redis-py makes those
connections, and its connect is blocking.  So does a Redis Cluster of several masters
(the ``cluster`` option, or ``key_layout="cluster"`` on a node of one, found when the
loop's connection meets it): the blocking store routes each command to its master.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from ...aio.hub import AsyncioHub
from ...aio.threaded import MAX_UNSENT, IOThread, ThreadedDriver, publishes_awaited, threaded_channel_class
from ...exceptions import ConnectionError
from .aio_channel import AsyncLoopDriver, AsyncRedisChannel, AsyncRedisConnection, AsyncSeam, Publisher
from .aio_store import AsyncRedisStore
from .aio_wire import Endpoint, endpoint_of

if TYPE_CHECKING:
    from ...aio.connection import Connection
    from ...connection import Connection as SyncConnection

__all__ = [
    "MAX_UNSENT",
    "IOThread",
    "LoopDriver",
    "ThreadedRedisDriver",
    "async_redis_channel_class",
    "driver_for",
]

logger = logging.getLogger(__name__)

#: the Redis transport's channel class for the I/O-thread driver
async_redis_channel_class = threaded_channel_class


class ThreadedRedisDriver(ThreadedDriver):
    """Connects rediss://, Sentinel and the other connections redis-py makes, for an
    asyncio :class:`~kombu_like.aio.connection.Connection`: one I/O thread."""

    driver_types: ClassVar[frozenset[str]] = frozenset({"redis"})


def _no_blocking_connection() -> Any:
    raise ConnectionError("the asyncio Redis driver makes no blocking connection")


def endpoint(sync: SyncConnection) -> Endpoint | None:
    """Where the asyncio loop connects for ``sync``, or None when redis-py must."""
    from . import SentinelTransport

    transport: Any = sync.transport
    if isinstance(transport, SentinelTransport) or transport.driver_type != "redis":
        return None
    if transport.options.cluster or transport._routed:
        return None  # a Redis Cluster of several masters: the blocking store, routed
    return endpoint_of(transport._connection_kwargs())


class LoopDriver:
    """Connects redis:// on the asyncio loop, with no thread (see the module's docstring)."""

    def __init__(self, client: Connection, sync: SyncConnection, where: Endpoint) -> None:
        self.client = client
        self.sync = sync
        self.endpoint = where
        self.store: AsyncRedisStore | None = None
        self.connection: AsyncRedisConnection | None = None
        self.hub: AsyncioHub | None = None
        #: the I/O-thread driver this one hands over to on a Redis Cluster of several masters
        self.routed: ThreadedRedisDriver | None = None

    @property
    def is_open(self) -> bool:
        if self.routed is not None:
            return bool(self.routed.is_open)
        connection = self.connection
        store = self.store
        return connection is not None and connection.is_open and store is not None and not store.closed

    async def connect(self) -> None:
        from .command import SeveralMasters

        try:
            await self._connect()
        except SeveralMasters:
            # key_layout='cluster' on a node of a cluster of several masters: the loop's
            # connections talk to one server, the blocking store routes across them; it
            # runs on an I/O thread (as with the cluster option from the start)
            transport: Any = self.sync.transport
            transport._routed = True
            routed = ThreadedRedisDriver(self.client, self.sync)
            await routed.connect()
            self.routed = routed

    async def _connect(self) -> None:
        from .store import RedisStore

        transport: Any = self.sync.transport
        transport.check_options()
        report = self.client._on_driver_error

        def on_error(exc: BaseException) -> None:
            report(transport.translate_error(exc) if isinstance(exc, Exception) else exc)

        _, db, _ = transport._connection_factory()
        blocking = RedisStore(
            transport.options,
            _no_blocking_connection,
            db,
            transport.translate_error,
            transport.capabilities,
            None,
            transport._ledger,
        )
        store = self.store = AsyncRedisStore(blocking, self.endpoint, on_error)
        try:
            await store.connect()
        except BaseException as exc:
            await asyncio.shield(store.aclose())
            if isinstance(exc, Exception):
                translated = transport.translate_error(exc)
                if translated is not exc:
                    raise translated from exc
            raise
        connection = self.connection = AsyncRedisConnection(transport, store)  # type: ignore[arg-type]
        connection.seam = AsyncSeam(store, transport.translate_store_error)
        connection.publisher = Publisher(store, on_error)
        self.hub = AsyncioHub(asyncio.get_running_loop(), on_error)
        driver = AsyncLoopDriver(connection, self.hub, on_error)
        connection.loop_driver = driver
        driver.start()

    async def channel(self) -> Any:
        if self.routed is not None:
            return await self.routed.channel()
        connection = self.connection
        if connection is None or not self.is_open:
            raise ConnectionError("connection is closed")
        channel: Any = connection.channel(AsyncRedisChannel)
        channel.aio_client = self.client
        channel._confirm = publishes_awaited(self.sync.transport_options)
        return channel

    async def close(self) -> None:
        if self.routed is not None:
            await self.routed.close()
            return
        connection, store = self.connection, self.store
        if store is None or store.closed:
            return
        try:
            if connection is not None and connection.is_open:
                await connection.publisher.settled()
                channels: list[Any] = list(connection.channels)
                for channel in channels:
                    try:
                        await channel.close()
                    except Exception as exc:  # the others still close; unacked ones come back
                        logger.warning("error closing channel %s: %s", channel.channel_id, exc)
                driver = connection.loop_driver
                connection.close()  # leaves the loop, gives back what was taken and not handed out
                connection.publisher.fail_all(ConnectionError("connection is closed"))
                if isinstance(driver, AsyncLoopDriver) and driver.left is not None:
                    # a take cut short: noted in the ledger once its task ended
                    await asyncio.wait([driver.left])
        finally:
            await asyncio.shield(store.aclose())
            if self.hub is not None:
                self.hub.close()


def driver_for(client: Connection, sync: SyncConnection) -> Any:
    """The driver for ``sync``'s URL: on the loop when the loop can make its connections."""
    where = endpoint(sync)
    if where is None:
        return ThreadedRedisDriver(client, sync)
    return LoopDriver(client, sync, where)
