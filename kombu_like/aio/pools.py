"""Connection and producer pools for asyncio: the blocking pools' bookkeeping
(:class:`~kombu_like.resource.Resource`: limits, idle reuse, replace, resize), with the
waiting for a free resource, connecting and closing awaited.

::

    pool = conn.Pool(limit=10)
    async with pool.acquire(timeout=5) as connection:
        await connection.Producer().publish(...)

    producers = ProducerPool(pool, limit=10)
    async with producers.acquire(timeout=5) as producer:
        await producer.publish(...)

The global pools, as :data:`kombu_like.pools.connections` and
:data:`kombu_like.pools.producers` are for the blocking API: ``connections[conn]`` and
``producers[conn]`` return the pool for the broker ``conn`` points at, created on first
use with the global limit (:func:`kombu_like.pools.get_limit`, changed by
:func:`~kombu_like.pools.set_limit`).  An asyncio connection belongs to the event loop it
was made in, so each running loop has pools of its own (a second ``asyncio.run`` starts
with new ones); ``await close_all()`` closes the running loop's pools.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterator, MutableMapping
from types import TracebackType
from typing import Any

from ..exceptions import ConnectionLimitExceeded, LimitExceeded
from ..pools import PoolGroup as SyncPoolGroup
from ..pools import _connection_kwargs, get_limit, register_group, use_global_limit
from ..resource import Resource
from .connection import Connection
from .hub import bounded
from .messaging import Producer as AsyncProducer

__all__ = ["ConnectionPool", "PoolGroup", "ProducerPool", "close_all", "connections", "producers"]


class _Acquisition:
    """What ``pool.acquire()`` returns: ``await`` it for the resource, or use it as
    ``async with`` (the resource goes back to the pool on the way out)."""

    def __init__(self, pool: _AsyncResource, timeout: float | None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.resource: Any = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self.pool._acquire(self.timeout).__await__()

    async def __aenter__(self) -> Any:
        self.resource = await self.pool._acquire(self.timeout)
        return self.resource

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        resource, self.resource = self.resource, None
        if resource is None:
            return
        if exc_type is not None and isinstance(exc, self.pool.broken_errors(resource)):
            self.pool.replace(resource)  # maybe broken: the pool makes a fresh one
        else:
            self.pool.release(resource)


class _AsyncResource(Resource):
    """:class:`Resource` whose acquire waits in the event loop."""

    _loop: asyncio.AbstractEventLoop | None = None

    def setup(self) -> None:
        # called again by resize: the acquires waiting then may go on (a larger limit)
        if hasattr(self, "_waiting"):
            self._on_loop(self._wake)
            return
        #: acquires waiting for a resource to be released
        self._waiting: set[asyncio.Future[Any]] = set()
        self._closing: set[asyncio.Task[Any]] = set()

    def acquire(self, block: bool = True, timeout: float | None = None) -> Any:  # type: ignore[override]
        """A free resource: ``await pool.acquire(timeout=...)`` or ``async with
        pool.acquire() as resource``; :attr:`LimitExceeded` when none is released within
        ``timeout`` seconds (at once with ``block=False``)."""
        return _Acquisition(self, timeout if block else 0)

    async def _take(self, timeout: float | None) -> Any:
        loop = self._loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                return Resource.acquire(self, block=False)
            except LimitExceeded:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise self.LimitExceeded(self._limit_message(timeout)) from None
            freed = loop.create_future()
            self._waiting.add(freed)
            try:
                await bounded(freed, remaining, asyncio.TimeoutError)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiting.discard(freed)

    async def _acquire(self, timeout: float | None) -> Any:
        return await self._take(timeout)

    def _wake(self) -> None:
        for waiting in self._waiting:
            if not waiting.done():
                waiting.set_result(None)

    def release(self, resource: Any) -> None:
        super().release(resource)
        self._wake()

    def replace(self, resource: Any) -> None:
        super().replace(resource)
        self._wake()

    def broken_errors(self, resource: Any) -> tuple[type[BaseException], ...]:
        return ()

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the loop of the pool's resources (the latest acquire's): at
        once from there, handed over from elsewhere (:func:`kombu_like.pools.set_limit`
        or ``reset()`` in another thread); not at all when no loop acquired yet, or it is
        closed (nothing of the pool is open then)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback(*args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def _schedule(self, close: Callable[[], Awaitable[Any]]) -> None:
        self._on_loop(self._start_closing, close)

    def _start_closing(self, close: Callable[[], Awaitable[Any]]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every resource, those in use too; the pool refuses further acquires."""
        self.force_close_all()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class ConnectionPool(_AsyncResource):
    """Connections to the broker ``connection`` points at (``conn.Pool(limit)``),
    connected when acquired."""

    LimitExceeded = ConnectionLimitExceeded

    def __init__(self, connection: Connection, limit: int | None = None, **kwargs: Any) -> None:
        self.connection = connection
        super().__init__(limit=limit, **kwargs)

    def new(self) -> Connection:
        return Connection(**_connection_kwargs(self.connection.sync))

    async def _acquire(self, timeout: float | None) -> Connection:
        connection: Connection = await self._take(timeout)
        if not connection.connected:
            try:
                await connection.connect()
            except BaseException:
                self.replace(connection)
                raise
        return connection

    def broken_errors(self, resource: Any) -> tuple[type[BaseException], ...]:
        return resource.connection_errors  # type: ignore[no-any-return]

    def _attach_release(self, resource: Any) -> None:
        pool = self

        async def release() -> None:  # the contract: ``await connection.release()`` gives it back
            pool.release(resource)

        resource.release = release

    def close_resource(self, resource: Any) -> None:
        self._schedule(resource.close)

    def collect_resource(self, resource: Any) -> None:
        self._schedule(resource.close)


class ProducerPool(_AsyncResource):
    """:class:`~kombu_like.aio.Producer` objects, each on a connection of ``connections``
    while it is acquired."""

    Producer: type[AsyncProducer] = AsyncProducer

    def __init__(self, connections: ConnectionPool, *args: Any, **kwargs: Any) -> None:
        self.connections = connections
        producer_cls = kwargs.pop("Producer", None)
        if producer_cls is not None:
            self.Producer = producer_cls
        super().__init__(*args, **kwargs)

    def new(self) -> AsyncProducer:
        return self.Producer(None)

    async def _acquire(self, timeout: float | None) -> AsyncProducer:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        producer: AsyncProducer = await self._take(timeout)
        if producer._channel is None and producer.__dict__.get("_Producer__connection__") is None:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                producer.revive(await self.connections.acquire(timeout=remaining))
            except BaseException:
                Resource.release(self, producer)
                raise
        return producer

    def release(self, resource: Any) -> None:
        # the connection goes back to its pool now; the producer gets one again on acquire
        connection = resource.__dict__.pop("_Producer__connection__", None)
        resource.__dict__["_Producer__connection__"] = None
        resource._channel = None
        if connection is not None:
            self.connections.release(connection)
        super().release(resource)

    def close_resource(self, resource: Any) -> None:
        return None

    def collect_resource(self, resource: Any) -> None:
        return None


class PoolGroup(MutableMapping[Any, Any]):
    """Pools by connection, for the running event loop: ``group[conn]`` creates the pool
    on first use.  Connections are compared by broker, as in
    :class:`kombu_like.pools.PoolGroup`; each loop has pools of its own, forgotten with it.
    """

    def __init__(self, limit: Any = use_global_limit) -> None:
        self.limit = limit
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, tuple[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def create(self, connection: Connection, limit: int | None) -> Any:
        """Create the pool for ``connection``."""
        raise NotImplementedError("PoolGroups must define ``create``")

    def _pools(self, create: bool = False) -> dict[Any, tuple[Any, Any]]:
        """The running loop's pools; none outside a loop, where none can be created."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if create:
                raise RuntimeError(f"{type(self).__name__}: asyncio pools are used from a coroutine") from None
            return {}
        pools = self._loops.get(loop)
        if pools is None:
            pools = {}
            if create:
                self._loops[loop] = pools
        return pools

    @staticmethod
    def _key(connection: Any) -> Any:
        return SyncPoolGroup._key(connection.sync if isinstance(connection, Connection) else connection)

    def __getitem__(self, connection: Any) -> Any:
        pools = self._pools(create=True)
        key = self._key(connection)
        entry = pools.get(key)
        if entry is None:
            limit = get_limit() if self.limit is use_global_limit else self.limit
            entry = pools[key] = (connection, self.create(connection, limit))
        return entry[1]

    def __setitem__(self, connection: Any, pool: Any) -> None:
        self._pools(create=True)[self._key(connection)] = (connection, pool)

    def __delitem__(self, connection: Any) -> None:
        del self._pools()[self._key(connection)]

    def __contains__(self, connection: object) -> bool:
        return self._key(connection) in self._pools()

    def __iter__(self) -> Iterator[Any]:
        return iter([connection for connection, _ in list(self._pools().values())])

    def __len__(self) -> int:
        return len(self._pools())

    def values(self) -> Any:
        """The pools of every loop (:func:`kombu_like.pools.set_limit` resizes them all)."""
        return [pool for pools in list(self._loops.values()) for _, pool in list(pools.values())]

    def clear(self) -> None:
        """Forget the pools of every loop (:func:`kombu_like.pools.reset`)."""
        self._loops.clear()

    async def close(self) -> None:
        """Close the running loop's pools, their resources in use too, and forget them."""
        pools = self._loops.pop(asyncio.get_running_loop(), {})
        await asyncio.gather(*(pool.close() for _, pool in pools.values()))

    def __repr__(self) -> str:
        return f"<aio.{type(self).__name__}: {len(self._loops)} loops>"


class Connections(PoolGroup):
    """Connection pools by connection."""

    def create(self, connection: Connection, limit: int | None) -> ConnectionPool:
        return ConnectionPool(connection, limit=limit)


class Producers(PoolGroup):
    """Producer pools by connection, each on the connection pool of that connection."""

    def create(self, connection: Connection, limit: int | None) -> ProducerPool:
        return ProducerPool(connections[connection], limit=limit)


#: connection pools: ``async with connections[conn].acquire(timeout=5) as connection``
connections = register_group(Connections())
#: producer pools: ``async with producers[conn].acquire(timeout=5) as producer``
producers = register_group(Producers())


async def close_all() -> None:
    """Close the running loop's global pools (producers first, then connections)."""
    await producers.close()
    await connections.close()
