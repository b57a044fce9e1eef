"""Redis Streams transport: ``redis+streams://``, ``rediss+streams://`` (TLS) and
``sentinel+streams://``.

Queues are Redis streams read through one consumer group per queue: the broker itself
keeps which messages were delivered and not acknowledged (the group's pending entries), a
delivered message is leased to its consumer while that consumer lives, and a crashed
consumer's messages go to others once its lease lapses.  It does not share queues with
Kombu's Redis transport (lists); see ``docs/transports/redis-streams.rst``.

URLs::

    redis+streams://[USER:PASSWORD@]HOST[:PORT][/DB]
    rediss+streams://[USER:PASSWORD@]HOST[:PORT][/DB]?ssl_cert_reqs=required&...
    sentinel+streams://HOST[:PORT];sentinel+streams://HOST2[:PORT]   (master_name option)
    redis+streams://HOST:PORT[;redis+streams://HOST2:PORT2...]         (cluster option:
                                                                     startup nodes)

Transport options are the fields of :class:`StreamsOptions`.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import TYPE_CHECKING, Any

from ...exceptions import KombuError, VersionMismatch
from ..redis import DEFAULT_PORT, DEFAULT_SENTINEL_PORT, _driver
from ..redis import Transport as _RedisTransport
from ..virtual import VirtualTransport
from ..virtual.transport import VirtualConnection

_driver()  # the store needs redis-py: a missing one is said in one line naming the extra to install

from .keys import StreamKeys  # noqa: E402
from .options import StreamsOptions  # noqa: E402
from .store import StreamsStore  # noqa: E402
from .takeover import Predecessors  # noqa: E402

if TYPE_CHECKING:
    from ...connection import Connection as ClientConnection

__all__ = ["SentinelTransport", "StreamKeys", "StreamsOptions", "StreamsStore", "Transport", "check_server_version"]

logger = logging.getLogger("kombu_like.transport.redis_streams")

#: the URL schemes of this transport, and the TLS one among them
SCHEMES = ("redis+streams", "rediss+streams", "sentinel+streams")
TLS_SCHEME = "rediss+streams"


#: the oldest Redis with every command the transport uses (XAUTOCLAIM, exclusive ranges)
MIN_SERVER_VERSION = (6, 2)


def check_server_version(version: str) -> None:
    """Refuse a Redis older than :data:`MIN_SERVER_VERSION` with a clear error."""
    found = tuple(int(part) for part in re.findall(r"\d+", str(version))[:2])
    if found and found < MIN_SERVER_VERSION:
        raise VersionMismatch(
            f"the Redis Streams transport needs Redis {'.'.join(map(str, MIN_SERVER_VERSION))} or later "
            f"(XAUTOCLAIM); the server runs {version}"
        )


class StreamsConnection(VirtualConnection):
    """A connection whose cancelled consumers leave their acks confirmed in Redis (and
    their expiring queues to expire)."""

    store: StreamsStore

    def consumers_changed(self) -> None:
        super().consumers_changed()
        # an event loop renews the expiring queues it waits on: those still consumed
        self.store.expiry.consumed(self.consumed_queues())
        if self.is_open:
            # a consumer was cancelled: the acks it made are confirmed, seen by every client
            self.seam.call(self.store.settle)


class Transport(VirtualTransport):
    """The ``redis+streams://`` and ``rediss+streams://`` transport."""

    driver_type = "redis_streams"
    driver_name = "redis"
    default_port = DEFAULT_PORT
    Store = StreamsStore
    Connection = StreamsConnection
    Options = StreamsOptions

    connection_errors = VirtualTransport.connection_errors
    channel_errors = VirtualTransport.channel_errors
    recoverable_connection_errors = VirtualTransport.recoverable_connection_errors
    recoverable_channel_errors = VirtualTransport.recoverable_channel_errors

    # redis-py's errors mean here what they mean on the list transport: one translation
    _scrub = _RedisTransport._scrub
    _scrub_driver_error = _RedisTransport._scrub_driver_error
    _irrecoverable_tls_failure = _RedisTransport._irrecoverable_tls_failure

    def __init__(self, client: ClientConnection, **kwargs: Any) -> None:
        version = str(_driver().__version__)  # first: a missing driver names the extra
        from ..redis.compat import check_version

        check_version(version)
        super().__init__(client, **kwargs)

    @property
    def predecessors(self) -> Predecessors:
        """Consumers of this process's closed stores on the same Redis that may still hold
        entries: the next store takes them over (a live consumer is never among them)."""
        found: Predecessors | None = self.__dict__.get("_predecessors")
        if found is None:
            client = self.client
            where = (
                type(self).__name__,
                client.hostname,
                client.port,
                tuple(client.alt or ()),
                client.virtual_host,
                self.options.global_keyprefix,
            )
            found = self.__dict__["_predecessors"] = Predecessors.of(where)
        return found

    @property
    def options(self) -> StreamsOptions:
        """The transport options, checked (:class:`ValueError` names a bad one)."""
        options = self.check_options()
        assert isinstance(options, StreamsOptions)
        return options

    def translate_error(self, exc: BaseException) -> BaseException:
        """Map redis-py's exceptions onto the library's tree, as the Redis transport does."""
        from redis import exceptions as rexc

        from .cluster import cluster_error

        translated = cluster_error(exc, self.client.as_uri(), lambda text: self._scrub(text))  # type: ignore[misc]
        if translated is not None:
            return translated
        if isinstance(exc, rexc.RedisError | KombuError | socket.timeout):
            return _RedisTransport.translate_error(self, exc)  # type: ignore[arg-type]
        return super().translate_error(exc)

    def _uses_tls(self) -> bool:
        return bool(self.client.ssl) or self.client.transport_cls == TLS_SCHEME

    # -- connections ---------------------------------------------------------------------
    def _connection_kwargs(self) -> dict[str, Any]:
        from ..redis import connection_kwargs

        tls = self.client.transport_cls == TLS_SCHEME
        kwargs = connection_kwargs(self.client, self.options, self.default_port, tls=tls)
        kwargs["health_check_interval"] = self.options.health_check_interval
        return kwargs

    def connection_pool(self) -> Any:
        """The redis-py connection pool of a new store."""
        kwargs = self._connection_kwargs()
        connection_class = kwargs.pop("connection_class")
        return _driver().ConnectionPool(connection_class=connection_class, **kwargs)

    def create_store(self) -> StreamsStore:
        options = self.options
        if options.cluster:
            store = self._create_cluster_store()
        else:
            pool = self.connection_pool()
            client = _driver().Redis(connection_pool=pool)
            store = StreamsStore(client, options, pool.make_connection, predecessors=self.predecessors)
            try:
                # connect now: a bad URL fails here, within connect_timeout
                check_server_version(client.info("server").get("redis_version", ""))
            except BaseException:
                store.close()
                pool.disconnect()
                raise
        self._take_over(store)
        return store

    def _take_over(self, store: StreamsStore) -> None:
        """What this connection's earlier stores still hold comes back now, not when their
        leases lapse (what cannot be reached now is tried on the store's maintenance rounds)."""
        if not self.predecessors:
            return
        try:
            self.predecessors.take_over(store)
        except Exception as exc:
            logger.warning("could not take over the messages a cut connection held (retried): %s", exc)

    def _create_cluster_store(self) -> StreamsStore:
        """A store on a Redis Cluster: the URL's hosts are startup nodes."""
        from .cluster import cluster_client, startup_nodes
        from .cluster_watch import ClusterWatcher

        kwargs = self._connection_kwargs()
        if kwargs.get("db"):
            raise ValueError(f"a Redis Cluster has database 0 only; the URL names database {kwargs['db']}")
        nodes = startup_nodes(self.client.alt or [], self.client.hostname, self.client.port, self.default_port)
        client = cluster_client(nodes, kwargs)  # reads the slot map: a bad URL fails here
        try:
            node = client.get_redis_connection(client.get_default_node())
            check_server_version(node.info("server").get("redis_version", ""))
            # every master answers, or connecting fails (and is retried with the
            # connection's intervals): during a failover the slot map names the dead
            # master until its replica is promoted, and a store that connected then would
            # fail its first command on that master's queues, again and again, at once
            for primary in client.get_primaries():
                client.get_redis_connection(primary).ping()
        except BaseException:
            client.close()
            raise
        watcher = ClusterWatcher(client, int(self.options.block_interval * 1000))
        return StreamsStore(client, self.options, None, watcher, predecessors=self.predecessors)

    def close_store(self, store: Any) -> None:
        try:
            store.close()
        finally:
            if not store.gave_back:  # Redis could not be reached: the next store takes over
                self.predecessors.remember(store.consumer, store.taken_from())
            pool = getattr(store.client, "connection_pool", None)
            if pool is not None:  # a cluster client closed its nodes' pools in close()
                pool.disconnect()

    def collect_connection(self, connection: Any) -> None:
        """Close a connection that failed: it gives back what it held if Redis can be
        reached, else the next store on that Redis takes it over (see :mod:`.takeover`)."""
        try:
            connection.close()
        except Exception:
            logger.debug("error while collecting a broken Redis Streams connection", exc_info=True)

    # -- descriptive -------------------------------------------------------------------
    def driver_version(self) -> str:
        return str(_driver().__version__)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"port": self.default_port, "hostname": "localhost"}


class SentinelTransport(Transport):
    """The ``sentinel+streams://`` transport: Sentinel tells where the master is.

    ``sentinel+streams://host1:26379;sentinel+streams://host2:26379`` with
    ``transport_options={"master_name": "mymaster"}``.
    """

    default_port = DEFAULT_SENTINEL_PORT

    def _create_cluster_store(self) -> StreamsStore:
        raise ValueError(
            "the cluster option and sentinel+streams:// exclude each other: a Redis Cluster "
            "fails over by itself (list its nodes as redis+streams:// URLs)"
        )

    def _sentinels(self) -> list[tuple[str, int]]:
        from ..redis import sentinel_addresses

        return sentinel_addresses(self.client, "sentinel+streams")

    def connection_pool(self) -> Any:
        from ..redis import sentinel_pool

        pool, _manager = sentinel_pool(self.options, self._connection_kwargs(), self._sentinels(), "sentinel+streams")
        return pool
