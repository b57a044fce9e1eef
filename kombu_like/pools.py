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
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from . import messaging
from .connection import Connection
from .exceptions import ChannelLimitExceeded, ConnectionLimitExceeded, LimitExceeded

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
_groups: list[PoolGroup] = []
_fork_lock = threading.Lock()
_fork_hook_installed = False
#: pools and groups to forget in a forked child (their sockets belong to the parent)
_close_after_fork: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _check_limit(limit: Any) -> None:
    # bool is an int: limit=True would silently become a pool of one
    if isinstance(limit, bool):
        raise TypeError("limit must be an int, not bool")


def _after_fork_in_child() -> None:
    for item in list(_close_after_fork.values()):
        try:
            if isinstance(item, PoolGroup):
                item.clear()
            else:
                item.force_close_all()
        except Exception:  # the child must start whatever the parent's pools looked like
            logger.debug("error forgetting pool after fork", exc_info=True)


def _close_in_child_after_fork(item: Any) -> None:
    global _fork_hook_installed
    with _fork_lock:
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True
        _close_after_fork[id(item)] = item


class _Lazy:
    """A resource not created yet: created on first acquire, outside the pool's lock."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory

    def __call__(self) -> Any:
        return self.factory()


class Resource:
    """A thread-safe pool of reusable resources, at most ``limit`` handed out at once.

    Subclasses implement :meth:`new` (and usually :meth:`prepare`,
    :meth:`close_resource`, :meth:`collect_resource`).  ``limit`` of ``None``/``0`` means
    no pooling: every acquire creates a resource and every release closes it.
    """

    #: raised when no resource is free (subclasses name what ran out)
    LimitExceeded: type[LimitExceeded] = LimitExceeded
    #: forget every resource in a forked child process
    close_after_fork = False

    def __init__(
        self, limit: int | None = None, preload: int | None = None, close_after_fork: bool | None = None
    ) -> None:
        _check_limit(limit)
        self._limit = limit
        self.preload = preload or 0
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        #: released resources, most recently released last (reused first: warm connections)
        self._idle: list[Any] = []
        #: id -> resource handed out and not released yet
        self._in_use: dict[int, Any] = {}
        #: id -> resource handed out while the pool was unlimited (so never pooled); a
        #: later limit does not count them, and they are closed when they come back
        self._unpooled: dict[int, Any] = {}
        #: slots taken by acquires still creating/preparing their resource
        self._reserved = 0
        if close_after_fork is not None:
            self.close_after_fork = close_after_fork
        if self.close_after_fork:
            _close_in_child_after_fork(self)
        self.setup()

    # -- to implement ------------------------------------------------------------------
    def new(self) -> Any:
        """Create a resource (cheaply: connect lazily, in :meth:`prepare` or on use)."""
        raise NotImplementedError("subclass responsibility")

    def setup(self) -> None:
        """Called when the pool is created or resized."""

    def prepare(self, resource: Any) -> Any:
        """Make ``resource`` ready to hand out; return it (or a replacement)."""
        if isinstance(resource, _Lazy):
            return resource()
        return resource

    def close_resource(self, resource: Any) -> None:
        """Close a resource the pool no longer keeps."""
        resource.close()

    def release_resource(self, resource: Any) -> None:
        """Called when ``resource`` comes back to the pool."""

    def collect_resource(self, resource: Any) -> None:
        """Drop ``resource`` without talking to the broker (after fork, on reset)."""

    def _prepare_within(self, resource: Any, timeout: float | None) -> Any:
        # hook for pools whose preparation itself waits on another pool
        return self.prepare(resource)

    # -- acquire / release -----------------------------------------------------------
    @property
    def limit(self) -> int | None:
        """Most resources handed out at once (``None``/``0``: unlimited, no pooling)."""
        return self._limit

    @limit.setter
    def limit(self, limit: int | None) -> None:
        self.resize(limit or 0)

    def acquire(self, block: bool = False, timeout: float | None = None) -> Any:
        """Take a resource from the pool; call its ``release()`` to give it back.

        With ``block=False`` a full pool raises :attr:`LimitExceeded` at once; with
        ``block=True`` the call waits up to ``timeout`` seconds (``None``: until one is
        released) and then raises :attr:`LimitExceeded`.
        """
        if self._closed:
            raise RuntimeError(f"acquire on closed pool {self!r}")
        if not self._limit:
            resource = self._prepare_within(self.new(), timeout)
            with self._cond:
                self._in_use[id(resource)] = resource
            self._attach_release(resource)
            return resource
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError(f"acquire on closed pool {self!r}")
                if self._idle:
                    candidate = self._idle.pop()
                    break
                limit = self._limit
                if not limit or len(self._in_use) + self._reserved < limit:
                    candidate = None
                    break
                if not block:
                    raise self.LimitExceeded(self._limit_message(None))
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise self.LimitExceeded(self._limit_message(timeout))
                self._cond.wait(remaining)
            self._reserved += 1
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            resource = self._prepare_within(self.new() if candidate is None else candidate, remaining)
        except BaseException:
            with self._cond:
                self._reserved -= 1
                if candidate is not None:
                    # still a valid (possibly never used) resource: keep it for the next one
                    self._idle.append(candidate)
                self._cond.notify()
            raise
        with self._cond:
            self._reserved -= 1
            self._in_use[id(resource)] = resource
        self._attach_release(resource)
        return resource

    def _limit_message(self, timeout: float | None) -> str:
        waited = f" after waiting {timeout:g}s" if timeout else ""
        return (
            f"{type(self).__name__}: all {self._limit} resources are in use{waited}; "
            f"release one, raise the limit or acquire(block=True, timeout=...)"
        )

    def _attach_release(self, resource: Any) -> None:
        # Kombu's contract: the acquired object's release() gives it back to its pool
        if not isinstance(resource, PooledConnection):
            pool = self

            def release() -> None:
                pool.release(resource)

            try:
                resource.release = release
            except AttributeError:  # objects with __slots__ are released with pool.release()
                pass

    def release(self, resource: Any) -> None:
        """Give ``resource`` back (releasing it twice is harmless)."""
        with self._cond:
            if self._in_use.pop(id(resource), None) is not None:
                limit = self._limit
                # unlimited pools do not pool: what comes back is closed
                keep = (
                    bool(limit)
                    and not self._closed
                    and self._reusable(resource)
                    and (len(self._in_use) + len(self._idle) + self._reserved < (limit or 0))
                )
                if keep:
                    self._idle.append(resource)
            elif self._unpooled.pop(id(resource), None) is not None:
                keep = False
            else:
                logger.debug("%r: %r was released already", self, resource)
                return
            self._cond.notify()
        if keep:
            self.release_resource(resource)
        else:
            self._quietly(self.close_resource, resource)

    def _reusable(self, resource: Any) -> bool:
        return True

    def replace(self, resource: Any) -> None:
        """Close a defective resource; the pool creates a fresh one when next needed."""
        with self._cond:
            self._in_use.pop(id(resource), None)
            self._unpooled.pop(id(resource), None)
            self._cond.notify()
        self._quietly(self.close_resource, resource)

    def _quietly(self, fun: Callable[[Any], Any], resource: Any) -> None:
        try:
            fun(resource)
        except Exception:  # closing something broken must not break the caller
            logger.debug("%r: error closing %r", self, resource, exc_info=True)

    def force_close_all(self, close_pool: bool = True) -> None:
        """Forget every resource, those in use too (used after fork and by :func:`reset`).

        With ``close_pool`` the pool refuses further acquires.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = close_pool
            items = list(self._in_use.values()) + list(self._unpooled.values()) + self._idle
            self._in_use.clear()
            self._unpooled.clear()
            self._idle = []
            self._cond.notify_all()
        for item in items:
            if not isinstance(item, _Lazy):
                self._quietly(self.collect_resource, item)

    def resize(self, limit: int, force: bool = False, ignore_errors: bool = False, reset: bool = False) -> None:
        """Change the limit.

        Shrinking below the number of resources in use raises :class:`RuntimeError`
        unless ``force`` (which forgets every resource, in use or not) or
        ``ignore_errors`` (resources in use stay out until released, then are closed).
        """
        _check_limit(limit)
        previous = self._limit or 0
        if self._in_use and 0 < limit < previous and not ignore_errors:
            if not force:
                raise RuntimeError(f"Can't shrink pool when in use: was={previous} now={limit}")
            reset = True
        if reset:
            self.force_close_all(close_pool=False)
        surplus: list[Any] = []
        with self._cond:
            self._limit = limit
            if limit and not previous:
                # handed out while unlimited: not the limited pool's, closed when released
                self._unpooled.update(self._in_use)
                self._in_use.clear()
            if limit:
                while self._idle and len(self._idle) + len(self._in_use) > limit:
                    surplus.append(self._idle.pop(0))
            self._cond.notify_all()
        self.setup()
        for item in surplus:
            if not isinstance(item, _Lazy):
                self._quietly(self.collect_resource, item)

    # -- introspection -----------------------------------------------------------------
    @property
    def in_use(self) -> int:
        """How many resources are handed out right now."""
        return len(self._in_use) + len(self._unpooled)

    @property
    def idle(self) -> int:
        """How many released resources wait in the pool."""
        return len(self._idle)

    # Kombu keeps its pool in ``_resource`` (a LIFO queue of idle and not-yet-created
    # resources) and ``_dirty`` (the set handed out); test suites written for Kombu,
    # Celery's among them, look at both.  Read-only views of the same state:
    @property
    def _dirty(self) -> set[Any]:
        with self._cond:
            # as in Kombu: only what a limited pool handed out (unlimited ones are not pooled)
            return set(self._in_use.values()) if self._limit else set()

    @property
    def _resource(self) -> _ResourceView:
        return _ResourceView(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} limit={self._limit} in_use={self.in_use} idle={len(self._idle)}>"


class _ResourceView:
    """``pool._resource`` as Kombu has it: ``queue`` lists what acquire would take, last first."""

    def __init__(self, pool: Resource) -> None:
        self._pool = pool

    @property
    def queue(self) -> list[Any]:
        pool = self._pool
        with pool._cond:
            idle = list(pool._idle)
            free = max((pool._limit or 0) - len(pool._in_use) - len(idle) - pool._reserved, 0)
        # slots not filled yet are resources to be created on acquire, as in Kombu
        return [_Lazy(pool.new) for _ in range(free)] + idle

    def qsize(self) -> int:
        return len(self.queue)

    def empty(self) -> bool:
        return not self.queue


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


def register_group(group: PoolGroup) -> PoolGroup:
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
