"""Pools of connections, channels and producers (Kombu's ``kombu.pools``).

``connections[conn]`` and ``producers[conn]`` are process-wide pools keyed by the broker a
:class:`~kombu_like.Connection` points at (two Connections with the same URL and options
share a pool)::

    from kombu_like import Connection
    from kombu_like.pools import connections, producers

    conn = Connection("amqp://")
    with producers[conn].acquire(block=True, timeout=5) as producer:
        producer.publish({"hello": "world"}, routing_key="greetings")

Every pool is thread-safe.  A limited pool hands out at most ``limit`` resources at a
time; ``acquire(block=False)`` raises the pool's ``LimitExceeded`` error
(:class:`~kombu_like.exceptions.ConnectionLimitExceeded`,
:class:`~kombu_like.exceptions.ChannelLimitExceeded`) when none is free, and
``acquire(block=True, timeout=t)`` waits up to ``t`` seconds for one to be released first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from . import messaging
from .connection import Connection
from .exceptions import ChannelLimitExceeded, ConnectionLimitExceeded
from .resource import Resource, _check_limit, _close_in_child_after_fork, _Lazy

__all__ = [
    "ChannelPool",
    "ConnectionPool",
    "PoolGroup",
    "PooledConnection",
    "ProducerPool",
    "Resource",
    "connections",
    "get_limit",
    "producers",
    "register_group",
    "reset",
    "set_limit",
    "use_global_limit",
]

logger = logging.getLogger(__name__)

#: marker: a pool group whose pools follow :func:`get_limit`
use_global_limit: Any = object()

_limit_lock = threading.Lock()
_limit = [10]
_groups: list[_Group] = []


class PooledConnection(Connection):
    """A :class:`~kombu_like.Connection` handed out by a :class:`ConnectionPool`.

    ``release()``, ``close()`` and leaving a ``with`` block give it back to the pool
    (leaving the block with an exception closes it first, in case it is broken).
    """

    def __init__(self, pool: ConnectionPool | None = None, **kwargs: Any) -> None:
        self._pool = pool
        super().__init__(**kwargs)

    def release(self) -> None:
        """Give the connection back to its pool (close it when not pooled)."""
        if self._pool is None:
            self._close()
        else:
            self._pool.release(self)

    def close(self) -> None:
        """Close the broker connection and give this object back to its pool."""
        self._close()
        if self._pool is not None:
            self._pool.release(self)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and self._pool is not None and self._pool.limit:
            self._pool.replace(self)
            return
        self.release()

    def close_for_good(self) -> None:
        """Close the broker connection without giving the object back."""
        self._close()


def _connection_kwargs(template: Connection) -> dict[str, Any]:
    """Keyword arguments that build a Connection to the same broker as ``template``."""
    kwargs: dict[str, Any] = {
        "hostname": list(template.alt) if template.alt else template.as_uri(include_password=True),
        "insist": template.insist,
        "ssl": template.ssl,
        "connect_timeout": template.connect_timeout,
        "transport_options": dict(template.transport_options),
        "login_method": template.login_method,
        "heartbeat": template.heartbeat or 0,
        "failover_strategy": template.failover_strategy,
    }
    if not isinstance(template.transport_cls, str):
        kwargs["transport"] = template.transport_cls
    return kwargs


class ConnectionPool(Resource):
    """A pool of connections to the broker ``connection`` points at (``conn.Pool(limit)``)."""

    LimitExceeded = ConnectionLimitExceeded
    close_after_fork = True

    def __init__(self, connection: Connection, limit: int | None = None, **kwargs: Any) -> None:
        self.connection = connection
        super().__init__(limit=limit, **kwargs)

    def new(self) -> PooledConnection:
        return PooledConnection(self, **_connection_kwargs(self.connection))

    def _attach_release(self, resource: Any) -> None:
        # a PooledConnection's own release() already gives it back to this pool
        if not isinstance(resource, PooledConnection):
            super()._attach_release(resource)

    def close_resource(self, resource: Any) -> None:
        if isinstance(resource, PooledConnection):
            resource.close_for_good()
        else:
            resource.close()

    def collect_resource(self, resource: Any, socket_timeout: float = 0.1) -> None:
        resource.collect(socket_timeout)

    @contextmanager
    def acquire_channel(self, block: bool = False, timeout: float | None = None) -> Iterator[tuple[Any, Any]]:
        """``with pool.acquire_channel() as (connection, channel):`` on a pooled connection."""
        connection = self.acquire(block=block, timeout=timeout)
        try:
            yield connection, connection.default_channel
        finally:
            connection.release()


class ChannelPool(Resource):
    """A pool of channels on one connection (``conn.ChannelPool(limit)``)."""

    LimitExceeded = ChannelLimitExceeded

    def __init__(self, connection: Connection, limit: int | None = None, **kwargs: Any) -> None:
        self.connection = connection
        super().__init__(limit=limit, **kwargs)

    def new(self) -> Any:
        return _Lazy(self.connection.channel)

    def prepare(self, channel: Any) -> Any:
        if isinstance(channel, _Lazy) or not getattr(channel, "is_open", True):
            # a channel closed while it was idle (broker error, reconnect) is replaced
            return self.connection.channel()
        return channel

    def _reusable(self, channel: Any) -> bool:
        return bool(getattr(channel, "is_open", True))

    def close_resource(self, channel: Any) -> None:
        if not isinstance(channel, _Lazy):
            channel.close()

    def collect_resource(self, channel: Any) -> None:
        # the channel dies with its connection; nothing to say to the broker
        return None


class ProducerPool(Resource):
    """A pool of :class:`~kombu_like.Producer` objects, each on a pooled connection."""

    Producer: type[messaging.Producer] = messaging.Producer
    close_after_fork = True

    def __init__(self, connections: ConnectionPool, *args: Any, **kwargs: Any) -> None:
        self.connections = connections
        producer_cls = kwargs.pop("Producer", None)
        if producer_cls is not None:
            self.Producer = producer_cls
        super().__init__(*args, **kwargs)

    def _acquire_connection(self, timeout: float | None = None) -> Any:
        return self.connections.acquire(block=True, timeout=timeout)

    def create_producer(self, timeout: float | None = None) -> messaging.Producer:
        conn = self._acquire_connection(timeout)
        try:
            return self.Producer(conn)
        except BaseException:
            conn.release()
            raise

    def new(self) -> Any:
        return _Lazy(self.create_producer)

    def _prepare_within(self, producer: Any, timeout: float | None) -> Any:
        if isinstance(producer, _Lazy):
            producer = self.create_producer(timeout)
        if producer._channel is None and producer.__connection__ is None:
            conn = self._acquire_connection(timeout)
            try:
                producer.revive(conn)
            except BaseException:
                conn.release()
                raise
        return producer

    def prepare(self, producer: Any) -> Any:
        return self._prepare_within(producer, None)

    def release(self, resource: Any) -> None:
        connection = resource.__connection__
        # the connection goes back to its pool now; the producer gets one again on acquire
        resource.__connection__ = None
        resource.channel = None
        if connection is not None:
            connection.release()
        super().release(resource)

    def close_resource(self, resource: Any) -> None:
        return None

    def collect_resource(self, resource: Any) -> None:
        return None


class PoolGroup(MutableMapping[Any, Any]):
    """Pools by connection: ``group[conn]`` creates the pool on first use.

    Connections are compared by broker (URL, credentials, virtual host, transport
    options), so two equal Connection objects share one pool.
    """

    def __init__(self, limit: Any = None, close_after_fork: bool = True) -> None:
        self.limit = limit
        self.close_after_fork = close_after_fork
        self._lock = threading.RLock()
        self._data: dict[Any, tuple[Any, Any]] = {}

    def create(self, resource: Any, limit: int | None) -> Any:
        """Create the pool for ``resource``."""
        raise NotImplementedError("PoolGroups must define ``create``")

    @staticmethod
    def _key(obj: Any) -> Any:
        eqhash = getattr(obj, "__eqhash__", None)
        if eqhash is not None:
            return eqhash()
        if isinstance(obj, Connection):
            transport = obj.transport_cls if isinstance(obj.transport_cls, str) else id(obj.transport_cls)
            options = tuple(sorted((str(k), repr(v)) for k, v in obj.transport_options.items()))
            return (
                "connection",
                transport,
                obj.hostname,
                obj.userid,
                obj.password,
                obj.virtual_host,
                obj.port,
                tuple(obj.alt),
                options,
            )
        return obj

    def __getitem__(self, resource: Any) -> Any:
        key = self._key(resource)
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                if self.close_after_fork:
                    _close_in_child_after_fork(self)
                limit = get_limit() if self.limit is use_global_limit else self.limit
                entry = self._data[key] = (resource, self.create(resource, limit))
            return entry[1]

    def __setitem__(self, resource: Any, pool: Any) -> None:
        with self._lock:
            self._data[self._key(resource)] = (resource, pool)

    def __delitem__(self, resource: Any) -> None:
        with self._lock:
            del self._data[self._key(resource)]

    def __contains__(self, resource: object) -> bool:
        return self._key(resource) in self._data

    def __iter__(self) -> Iterator[Any]:
        return iter([resource for resource, _ in list(self._data.values())])

    def __len__(self) -> int:
        return len(self._data)

    def values(self) -> Any:
        return [pool for _, pool in list(self._data.values())]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self._data)} pools>"


class _Group(Protocol):
    """What :func:`set_limit` and :func:`reset` use of a group (asyncio's groups too)."""

    def values(self) -> Any: ...

    def clear(self) -> None: ...


_G = TypeVar("_G", bound=_Group)


def register_group(group: _G) -> _G:
    """Include ``group`` in :func:`set_limit` and :func:`reset` (usable as a decorator)."""
    _groups.append(group)
    return group


class Connections(PoolGroup):
    """Connection pools by connection."""

    def create(self, connection: Connection, limit: int | None) -> ConnectionPool:
        return connection.Pool(limit=limit)  # type: ignore[no-any-return]


class Producers(PoolGroup):
    """Producer pools by connection (each on the connection pool of that connection)."""

    def create(self, connection: Connection, limit: int | None) -> ProducerPool:
        return ProducerPool(connections[connection], limit=limit)


#: connection pools: ``connections[conn].acquire(block=True, timeout=5)``
connections = register_group(Connections(limit=use_global_limit))
#: producer pools: ``producers[conn].acquire(block=True, timeout=5)``
producers = register_group(Producers(limit=use_global_limit))


def _all_pools() -> Iterator[Any]:
    for group in list(_groups):
        yield from group.values()


def get_limit() -> int:
    """The limit new pools of :data:`connections` and :data:`producers` get (default 10)."""
    return _limit[0]


def set_limit(limit: int, force: bool = False, reset_after: bool = False, ignore_errors: bool = False) -> int:
    """Change the limit of every global pool.

    Shrinking pools whose resources are in use raises :class:`RuntimeError` unless
    ``force`` or ``ignore_errors`` (see :meth:`Resource.resize`); on error the limit is
    left as it was.
    """
    _check_limit(limit)
    limit = limit or 0
    with _limit_lock:
        if limit == (_limit[0] or 0):
            return limit
        pools = list(_all_pools())
        if not force and not ignore_errors:
            for pool in pools:
                previous = pool.limit or 0
                if pool.in_use and 0 < limit < previous:
                    raise RuntimeError(f"Can't shrink pool when in use: was={previous} now={limit}")
        _limit[0] = limit
        for pool in pools:
            pool.resize(limit, force=force, ignore_errors=ignore_errors, reset=reset_after)
    return limit


def reset(*args: Any, **kwargs: Any) -> None:
    """Forget every global pool, closing their resources without talking to the broker."""
    for pool in list(_all_pools()):
        try:
            pool.force_close_all()
        except Exception:  # one broken pool must not keep the others alive
            logger.debug("error resetting pool %r", pool, exc_info=True)
    for group in list(_groups):
        group.clear()
