"""Redis transport: ``redis://``, ``rediss://`` (TLS) and ``sentinel://``.

A virtual transport on the ``redis`` package (``pip install "kombu_like[redis]"``) that
keeps Kombu 5's data layout, so Kombu and kombu_like processes share queues, bindings,
fanout and the unacked store on one Redis.  See ``docs/transports/redis.rst`` for the URL
forms, every transport option, the key layout and the reliability model.

URLs::

    redis://[USER:PASSWORD@]HOST[:PORT][/DB]
    rediss://[USER:PASSWORD@]HOST[:PORT][/DB]?ssl_cert_reqs=required&ssl_ca_certs=...
    sentinel://[USER:PASSWORD@]HOST[:PORT][/DB];sentinel://HOST2[:PORT]...

(Sentinel needs ``transport_options={"master_name": ...}``.)
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from ...exceptions import (
    AccessRefused,
    ChannelError,
    ConnectionError,
    IrrecoverableConnectionError,
    KombuError,
    PreconditionFailed,
    is_irrecoverable_tls_error,
)
from ..base import Capabilities
from ..virtual.channel import QoS as _QoS
from ..virtual.channel import VirtualChannel
from ..virtual.transport import VirtualConnection, VirtualTransport
from .options import RedisOptions

if TYPE_CHECKING:
    from ...connection import Connection as ClientConnection
    from .store import RedisStore

__all__ = ["RedisChannel", "RedisConnection", "RedisOptions", "SentinelTransport", "Transport"]

from ...utils.url import scrub_credentials

logger = logging.getLogger("kombu_like.transport.redis")

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


_MISSING_DRIVER = 'The Redis transport needs the redis package: pip install "kombu_like[redis]"'


def _driver() -> Any:
    try:
        import redis
    except ImportError:
        # the one line that says what to install, not a chain of two tracebacks
        raise ImportError(_MISSING_DRIVER) from None
    return redis


def database_number(virtual_host: Any) -> int:
    """The Redis database a URL's path names (``/``, empty or missing: 0)."""
    if isinstance(virtual_host, int):
        return virtual_host
    text = str(virtual_host or "").strip("/")
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the path of a Redis URL is the database number (0, 1, ...), not {virtual_host!r}") from None


class RedisChannel(VirtualChannel):
    """A virtual channel that routes a whole batch against one view of the bindings."""

    store: RedisStore

    def publish_batch(self, batch: Sequence[tuple[dict[str, Any], str, str, bool]]) -> None:
        """Publish ``batch`` as one pipeline, routed as of the moment it is sent."""
        with self.store.cache.pinned():
            super().publish_batch(batch)


class RedisConnection(VirtualConnection):
    """A connection whose fanout subscriptions follow its consumers at once."""

    store: RedisStore

    def consumers_changed(self) -> None:
        super().consumers_changed()
        if self.is_open:
            # subscribe before basic_consume returns: a fanout message published right
            # after consume() must reach this consumer
            queues = self.consumed_queues()
            self.seam.call(lambda: self.store.sync_fanout(queues))


class Transport(VirtualTransport):
    """The ``redis://`` and ``rediss://`` transport."""

    driver_type = "redis"
    driver_name = "redis"
    default_port = DEFAULT_PORT
    Channel = RedisChannel
    Connection = RedisConnection
    capabilities = Capabilities(
        exchange_types=frozenset({"direct", "topic", "fanout", "headers"}),
        priority=False,
        ttl=False,
        fanout=False,
        batch_publish=True,
        # the store implements the event-loop hooks (see .looping)
        asynchronous=True,
    )
    #: connection error classes come from the library's tree; ``translate_error`` maps
    #: redis-py's exceptions onto them
    connection_errors = VirtualTransport.connection_errors
    channel_errors = VirtualTransport.channel_errors
    recoverable_connection_errors = VirtualTransport.recoverable_connection_errors
    recoverable_channel_errors = VirtualTransport.recoverable_channel_errors

    def __init__(self, client: ClientConnection, **kwargs: Any) -> None:
        version = str(_driver().__version__)  # first: a missing driver names the extra
        from .compat import check_version

        check_version(version)
        super().__init__(client, **kwargs)
        self.options = RedisOptions.from_transport_options(self.transport_options)
        from .store import Ledger

        # acks and interrupted takes a broken connection could not settle, for the next one
        self._ledger = Ledger()
        #: the URL named a node of a Redis Cluster of several masters (found on connecting)
        self._routed = False
        self._topology: Any = None
        # capabilities describe the semantics the options select: AMQP priority order and
        # fanout that reaches queues nobody listens on are both opt-in
        self.capabilities = type(self).capabilities.replace(
            priority=self.options.priority_order == "amqp",
            fanout=self.options.fanout_mode == "durable",
            extra={"priority_order": self.options.priority_order, "fanout_mode": self.options.fanout_mode},
        )

    # -- connections ---------------------------------------------------------------------
    def _connection_kwargs(self) -> dict[str, Any]:
        tls = self.client.transport_cls == "rediss"
        kwargs = connection_kwargs(self.client, self.options, self.default_port, tls=tls)
        kwargs["protocol"] = 2  # replies are parsed by .wire, which speaks RESP2
        return kwargs

    def _connection_factory(self) -> tuple[Any, int, Any]:
        """A function returning new redis-py connections, the database, and a closer."""
        kwargs = self._connection_kwargs()
        connection_class = kwargs.pop("connection_class")
        db = int(kwargs["db"])

        def factory() -> Any:
            return connection_class(**kwargs)

        return factory, db, None

    def create_store(self) -> RedisStore:
        from .command import SeveralMasters

        if self.options.cluster or self._routed:
            return self._connected_store(*self._cluster_factory())
        try:
            return self._connected_store(*self._connection_factory())
        except SeveralMasters:
            if type(self) is not Transport:
                raise
            # key_layout='cluster' on a cluster of several masters: route across them
            # from now on, starting from the URL's hosts
            self._routed = True
            return self._connected_store(*self._cluster_factory())

    def _connected_store(self, factory: Any, db: int, on_close: Any) -> RedisStore:
        from .store import RedisStore

        store = RedisStore(self.options, factory, db, self.translate_error, self.capabilities, on_close, self._ledger)
        try:
            store.connect()
        except BaseException:
            store.close()
            raise
        return store

    def _cluster_factory(self) -> tuple[Any, int, Any]:
        """The topology of the Redis Cluster the URL's hosts belong to (see
        :mod:`.cluster`): the routed connections' factory, database 0, no closer.  One per
        transport: the nodes it learnt of are asked for the slot map by the stores made
        after a failure, when the URL's hosts may be the nodes that failed."""
        if self._topology is None:
            self._topology = self._new_topology()
        return self._topology, 0, None

    def _new_topology(self) -> Any:
        from .topology import ClusterTopology, startup_nodes

        if not hasattr(select, "epoll"):
            raise IrrecoverableConnectionError(
                "redis:// on a Redis Cluster of several masters watches their connections with epoll, "
                "which this platform lacks (Linux has it); use redis+streams:// with the cluster option"
            )
        kwargs = self._connection_kwargs()
        if kwargs.get("db"):
            raise ValueError(f"a Redis Cluster has database 0 only; the URL names database {kwargs['db']}")
        connection_class = kwargs.pop("connection_class")
        nodes = startup_nodes(self.client.alt or [], self.client.hostname, self.client.port, self.default_port)

        def connect_to(address: tuple[str, int]) -> Any:
            return connection_class(**{**kwargs, "host": address[0], "port": address[1]})

        return ClusterTopology(nodes, connect_to)

    def collect_connection(self, connection: VirtualConnection) -> None:
        """Close a connection that failed; its unacked messages go back if Redis answers."""
        try:
            connection.close()
        except Exception:  # broken already; the visibility timeout brings messages back
            logger.debug("error while collecting a broken Redis connection", exc_info=True)

    # -- errors --------------------------------------------------------------------------
    def translate_error(self, exc: BaseException) -> BaseException:
        """Map redis-py's exceptions onto the library's tree (the one place that does)."""
        if isinstance(exc, KombuError | socket.timeout):
            return exc
        try:
            from redis import exceptions as rexc
        except ImportError:  # pragma: no cover - the transport cannot exist without it
            return super().translate_error(exc)
        where = self.client.as_uri()
        text = self._scrub(str(exc))
        self._scrub_driver_error(exc)
        if isinstance(exc, rexc.AuthenticationError):
            return AccessRefused(f"Redis at {where} refused the credentials: {text}")
        if isinstance(exc, rexc.NoPermissionError):
            return AccessRefused(f"Redis at {where} does not allow this user to run a command it needs: {text}")
        if isinstance(exc, rexc.ReadOnlyError):
            return ConnectionError(f"Redis at {where} is a read-only replica now (failover?): {text}")
        if self._uses_tls() and isinstance(exc, rexc.ConnectionError | rexc.TimeoutError):
            tls_failure = self._irrecoverable_tls_failure(exc, where)
            if tls_failure is not None:
                return tls_failure
        if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | rexc.InvalidResponse):
            return ConnectionError(f"Redis connection to {where} failed: {text}")
        if isinstance(exc, rexc.ResponseError):
            code = text.split(" ", 1)[0]
            if code in ("MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "UNBLOCKED", "MOVED", "ASK"):
                return ConnectionError(f"Redis at {where} is not ready: {text}")
            if "WRONGTYPE" in text:
                return PreconditionFailed(f"a key holds the wrong kind of value in Redis at {where}: {text}")
            return ChannelError(f"Redis at {where} rejected a command: {text}")
        if isinstance(exc, rexc.RedisError):
            return ChannelError(f"Redis client error for {where}: {text}")
        return super().translate_error(exc)

    def _scrub(self, text: str) -> str:
        """``text`` without credentials: those of any URL in it and the configured password."""
        # the configured password first: one holding "@" would end the URL pattern early
        password = self.client.password
        if password and len(str(password)) > 1:
            text = text.replace(str(password), "**")
        # redis-py echoes a host back into its messages, and a mis-written URL puts the
        # credentials into the host name
        return scrub_credentials(text)

    def _scrub_driver_error(self, exc: BaseException) -> None:
        """Remove credentials from the driver's own error too: it is kept as ``__cause__``
        and printed with every traceback of the translated error."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            try:
                args = tuple(self._scrub(a) if isinstance(a, str) else a for a in current.args)
                if args != current.args:
                    current.args = args
            except Exception:  # an exception type with read-only args keeps them
                pass
            current = current.__cause__ or current.__context__

    def _uses_tls(self) -> bool:
        return bool(self.client.ssl) or self.client.transport_cls == "rediss"

    def _irrecoverable_tls_failure(self, exc: BaseException, where: str) -> BaseException | None:
        """An error for a TLS connect that retrying cannot cure, else None.

        A plain Redis reads a TLS greeting as an unfinished command and never answers, so
        TLS to a plain port shows up as a connect timeout: when the same port accepts a
        plain TCP connection at once, the port is up and TLS is the likely cause.
        """
        cause = exc.__cause__ or exc.__context__
        if is_irrecoverable_tls_error(cause):
            return IrrecoverableConnectionError(f"TLS with Redis at {where} cannot work: {self._scrub(str(cause))}")
        if "Timeout connecting" not in str(exc):
            return None
        kwargs = self._connection_kwargs()
        try:
            probe = socket.create_connection((kwargs["host"], kwargs["port"]), timeout=1.0)
        except OSError:
            return None  # the port itself does not answer: an outage, worth retrying
        probe.close()
        return IrrecoverableConnectionError(
            f"Redis at {where} accepts connections but did not answer the TLS handshake: "
            f"TLS may be the cause (rediss:// or ssl= need a port where Redis speaks TLS; "
            f"use redis:// for a plain one)"
        )

    # -- descriptive -------------------------------------------------------------------
    def driver_version(self) -> str:
        return str(_driver().__version__)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {"port": self.default_port, "hostname": "localhost"}


def get_redis_error_classes() -> error_classes_t:
    """``(connection_errors, channel_errors)`` including redis-py's own exception classes.

    Kombu's name, for code that drives redis-py itself next to this transport (Celery's
    Redis result backend retries on the first group).
    """
    rexc = _driver().exceptions
    connection = (
        *Transport.connection_errors,
        OSError,
        rexc.ConnectionError,
        rexc.BusyLoadingError,
        rexc.AuthenticationError,
        rexc.TimeoutError,
    )
    channel = (*Transport.channel_errors, rexc.DataError, rexc.InvalidResponse, rexc.ResponseError)
    return error_classes_t(connection, channel)


def connection_kwargs(client: Any, opts: Any, default_port: int, tls: bool) -> dict[str, Any]:
    """redis-py's keyword arguments for a connection of ``client`` (a Connection) with the
    transport options ``opts``; ``tls`` when its scheme asks for TLS."""
    redis = _driver()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs: dict[str, Any] = {
        "host": client.hostname or "127.0.0.1",
        "port": client.port or default_port,
        "db": database_number(client.virtual_host),
        "username": client.userid or None,
        "password": client.password or None,
        "socket_timeout": opts.socket_timeout,
        "socket_connect_timeout": opts.socket_connect_timeout or client.connect_timeout,
        "client_name": opts.client_name,
        # one attempt per command: a take or a requeue retried blindly could run twice;
        # Connection.ensure_connection owns retrying
        "retry": Retry(NoBackoff(), 0),
        "connection_class": redis.Connection,
    }
    if opts.socket_keepalive is not None:
        kwargs["socket_keepalive"] = bool(opts.socket_keepalive)
    if opts.socket_keepalive_options:
        kwargs["socket_keepalive_options"] = dict(opts.socket_keepalive_options)
    ssl = client.ssl
    if ssl or tls:
        kwargs["connection_class"] = redis.SSLConnection
        if isinstance(ssl, dict):
            kwargs.update(ssl)
    kwargs.update(opts.connection_kwargs)
    return kwargs


class SentinelTransport(Transport):
    """The ``sentinel://`` transport: Sentinel tells where the master is.

    ``sentinel://host1:26379;sentinel://host2:26379`` with
    ``transport_options={"master_name": "mymaster"}``; optional ``min_other_sentinels``
    and ``sentinel_kwargs`` (connection options for the Sentinels themselves).  After a
    failover the next command on each connection reconnects to the new master.
    """

    default_port = DEFAULT_SENTINEL_PORT

    def _sentinels(self) -> list[tuple[str, int]]:
        return sentinel_addresses(self.client, "sentinel")

    def _cluster_factory(self) -> tuple[Any, int, Any]:
        raise ValueError(
            "the cluster option and sentinel:// exclude each other: a Redis Cluster fails over by itself; "
            "name its nodes with redis:// URLs"
        )

    def _connection_factory(self) -> tuple[Any, int, Any]:
        pool, manager = sentinel_pool(self.options, self._connection_kwargs(), self._sentinels(), "sentinel")
        return pool.make_connection, int(pool.connection_kwargs["db"]), getattr(manager, "close", None)


def sentinel_addresses(client: Any, scheme: str) -> list[tuple[str, int]]:
    """The Sentinels ``client`` (a Connection) names: host and port of each of its
    ``scheme://`` URLs, or its own host when it lists none."""
    from ...utils.url import url_to_parts

    found: list[tuple[str, int]] = []
    for url in client.alt or []:
        parts = url_to_parts(url)
        if parts.scheme == scheme and parts.hostname:
            found.append((parts.hostname, parts.port or DEFAULT_SENTINEL_PORT))
    if not found:
        found.append((client.hostname or "127.0.0.1", client.port or DEFAULT_SENTINEL_PORT))
    return found


def sentinel_pool(
    options: Any, kwargs: dict[str, Any], sentinels: list[tuple[str, int]], scheme: str
) -> tuple[Any, Any]:
    """A redis-py pool of connections to the master the Sentinels at ``sentinels`` name,
    and the Sentinel manager it asks; ``kwargs`` are the data connections' keyword
    arguments (the transport's ``_connection_kwargs()``), ``options`` the transport's
    options (``master_name``, ``min_other_sentinels``, ``sentinel_kwargs``)."""
    _driver()
    from redis import sentinel

    master_name = options.master_name
    if not master_name:
        raise ValueError(
            f"the {scheme}:// transport needs the name of the master: "
            "Connection(url, transport_options={'master_name': 'mymaster'})"
        )
    kwargs = dict(kwargs)
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    ssl = kwargs.pop("connection_class") is not _driver().Connection
    kwargs["connection_class"] = sentinel.SentinelManagedSSLConnection if ssl else sentinel.SentinelManagedConnection
    kwargs["redis_connect_func"] = _connected_to_master
    # asking the Sentinels: one attempt each (a dead one is skipped at once), with the
    # socket options of the data connections unless sentinel_kwargs says otherwise
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_") or k == "retry"}
    sentinel_kwargs.update(options.sentinel_kwargs or {})
    manager = _sentinel_manager_class()(
        sentinels,
        min_other_sentinels=int(options.min_other_sentinels or 0),
        sentinel_kwargs=sentinel_kwargs,
    )
    return sentinel.SentinelConnectionPool(master_name, manager, **kwargs), manager


# -- Kombu's module-level names ----------------------------------------------------------
#: Kombu's name for the channel class of this transport
Channel = RedisChannel
#: the sentinel:// transport uses the same channel
SentinelChannel = RedisChannel
QoS = _QoS


class error_classes_t(NamedTuple):  # noqa: N801 - Kombu's name
    """The driver errors a Redis connection treats as connection and as channel errors."""

    connection_errors: tuple[type[BaseException], ...]
    channel_errors: tuple[type[BaseException], ...]


def get_redis_ConnectionError() -> type[BaseException]:  # noqa: N802 - Kombu's name
    """redis-py's ``ConnectionError`` class."""
    return _driver().exceptions.ConnectionError  # type: ignore[no-any-return]


class MutexHeld(Exception):
    """Raised by :func:`Mutex` when someone else holds the lock."""


@contextmanager
def Mutex(client: Any, name: str, expire: float) -> Iterator[None]:  # noqa: N802 - Kombu's name
    """Hold the Redis lock ``name`` (expiring after ``expire`` seconds) without waiting.

    Raises :class:`MutexHeld` at once when another holder has it; releasing a lock that
    expired meanwhile is not an error.
    """
    lock = client.lock(name, timeout=expire)
    acquired = lock.acquire(blocking=False)
    if not acquired:
        raise MutexHeld()
    try:
        yield
    finally:
        try:
            lock.release()
        except _driver().exceptions.LockError:
            # it expired (and may be someone else's now): nothing of ours to release
            pass


def _connected_to_master(connection: Any) -> None:
    """Finish a connection to the master Sentinel named, refusing one that is a replica.

    Sentinel's answer can be a moment old: during a failover the demoted master is still
    named until the switch is complete, and writes there fail with ``READONLY``.  As
    Sentinel's client guidelines say, the role is checked on every new connection; a
    replica is refused with a connection error, so the retry asks Sentinel again.
    """
    from .compat import finish_handshake

    finish_handshake(connection)
    connection.send_command("ROLE")
    role = connection.read_response()
    if not role or role[0] not in (b"master", "master"):
        where = f"{connection.host}:{connection.port}"
        raise _driver().exceptions.ConnectionError(
            f"Sentinel named {where} as the master, but it is a replica now (a failover is under way)"
        )


def _sentinel_manager_class() -> Any:
    from redis import exceptions as rexc
    from redis import sentinel

    class SentinelManager(sentinel.Sentinel):  # type: ignore[misc]
        """Asks ``SENTINEL GET-MASTER-ADDR-BY-NAME``, which names the promoted replica as
        soon as it is promoted, instead of waiting for the failover to finish."""

        def discover_master(self, service_name: str) -> tuple[str, int]:
            errors: list[str] = []
            for number, node in enumerate(self.sentinels):
                try:
                    address = node.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service_name)
                    if address and self.min_other_sentinels:
                        state = node.sentinel_master(service_name)
                        if not self.check_master_state(state, service_name):
                            address = None
                except (rexc.ConnectionError, rexc.ResponseError, rexc.TimeoutError) as exc:
                    errors.append(f"{node}: {exc}")
                    continue
                if address:
                    # the Sentinel that answered is asked first next time
                    self.sentinels[0], self.sentinels[number] = node, self.sentinels[0]
                    host, port = address
                    return (host.decode() if isinstance(host, bytes) else str(host)), int(port)
            detail = f": {'; '.join(errors)}" if errors else ""
            raise sentinel.MasterNotFoundError(f"No master found for {service_name!r}{detail}")

    return SentinelManager
