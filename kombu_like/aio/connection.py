"""The asyncio Connection: the blocking Connection's URL, options, failover and retry
policy, with an asyncio driver for the I/O."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..connection import Connection as SyncConnection
from ..connection import _gave_up_message
from ..exceptions import ConnectionClosed, KombuError, OperationalError
from ..retry import NEVER_RETRIED, RetryPolicy

if TYPE_CHECKING:
    from ..transport.base import Transport
    from .messaging import Consumer, Producer

__all__ = ["Connection"]


async def _settle(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class Connection:
    """A broker connection for asyncio code; the arguments are those of
    :class:`kombu_like.Connection` (URLs, ``transport_options``, failover ...).

    ``async with Connection(url) as conn`` connects (one attempt per URL) and releases.
    Deliveries reach consumers from the loop; :meth:`drain_events` runs their callbacks.
    Supported transports: ``memory://``, ``amqp://``/``amqps://``,
    ``redis://``/``rediss://`` (Sentinel too), ``redis+streams://``, ``sqlite://`` and ``sqs://``.
    """

    def __init__(self, hostname: str | Sequence[str] | None = "localhost", *args: Any, **kwargs: Any) -> None:
        #: the blocking Connection that parses, holds the settings and picks URLs; it
        #: does no I/O for transports with a driver of their own (amqp)
        self.sync = SyncConnection(hostname, *args, **kwargs)
        self._driver: Any = None
        self._default_channel: Any = None
        self._consumers: set[Consumer] = set()
        self._wakeup: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- what the blocking Connection knows -------------------------------------------
    @property
    def transport(self) -> Transport:
        return self.sync.transport

    @property
    def declared_entities(self) -> set[Any]:
        return self.sync.declared_entities

    @property
    def transport_options(self) -> dict[str, Any]:
        return self.sync.transport_options

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        return tuple(self.sync.connection_errors)

    @property
    def channel_errors(self) -> tuple[type[BaseException], ...]:
        return tuple(self.sync.channel_errors)

    @property
    def recoverable_connection_errors(self) -> tuple[type[BaseException], ...]:
        return tuple(self.sync.recoverable_connection_errors)

    def as_uri(self, include_password: bool = False) -> str:
        return self.sync.as_uri(include_password=include_password)

    def __repr__(self) -> str:
        return f"<aio.Connection: {self.as_uri()} at {id(self):#x}>"

    # -- connecting -------------------------------------------------------------------
    def _make_driver(self) -> Any:
        from .virtual import VirtualDriver

        sync = self.sync
        if VirtualDriver.supports(sync):
            return VirtualDriver(self, sync)
        if sync.transport.driver_type == "amqp":
            from ..transport.amqp.aio import AMQPDriver

            return AMQPDriver(self, sync)
        if sync.transport.driver_type == "redis":
            from ..transport.redis.aio import driver_for

            return driver_for(self, sync)
        from .threaded import ThreadedDriver

        if ThreadedDriver.supports(sync):
            return ThreadedDriver(self, sync)
        raise NotImplementedError(
            f"the asyncio API does not drive {sync.transport.driver_type}:// yet; "
            f"use memory://, amqp://, redis://, redis+streams://, sqlite:// or sqs://, or the blocking API"
        )

    @property
    def connected(self) -> bool:
        return self._driver is not None and bool(self._driver.is_open)

    async def _connect_once(self) -> None:
        driver = self._make_driver()
        await driver.connect()
        try:
            channel = await driver.channel()
        except BaseException:  # a cancellation too: no connection is left half made
            await asyncio.shield(driver.close())
            raise
        self._driver = driver
        self._error = None
        self.declared_entities.clear()
        self._default_channel = channel

    async def connect(self) -> Connection:
        """Connect now: one attempt per URL (the failover URLs in turn), no sleeping."""
        urls = len(self.sync.alt) + (0 if self.sync._first_url in self.sync.alt else 1)
        return await self.ensure_connection(max_retries=max(urls - 1, 0), interval_start=0, interval_step=0)

    async def ensure_connection(
        self,
        errback: Callable[[BaseException, float], Any] | None = None,
        max_retries: int | None = None,
        interval_start: float = 2,
        interval_step: float = 2,
        interval_max: float = 30,
        callback: Callable[[], Any] | None = None,
        timeout: float | None = None,
    ) -> Connection:
        """Connect, retrying on connection errors with growing sleeps, moving to the next
        failover URL after each failure (the blocking API's policy and messages)."""
        if self.connected:
            return self
        await self._drop()
        policy = RetryPolicy(max_retries, interval_start, interval_step, interval_max, timeout)
        sleeps = policy.intervals()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        failures: list[tuple[str, BaseException]] = []
        errors = self.recoverable_connection_errors
        retries = 0
        while True:
            try:
                await self._connect_once()
                return self
            except NEVER_RETRIED:
                raise
            except errors as exc:
                failures.append((self.as_uri(), exc))
                out_of_time = deadline is not None and loop.time() >= deadline
                if (max_retries is not None and retries >= max_retries) or out_of_time:
                    if isinstance(exc, KombuError) or len(failures) > 1:
                        raise OperationalError(_gave_up_message(failures)) from exc
                    raise
                interval = next(sleeps) if self.sync.completes_cycle(retries) else 0.0
                if deadline is not None:
                    interval = min(interval, max(deadline - loop.time(), 0.0))
                if errback is not None:
                    errback(exc, interval)
                if callback is not None:
                    callback()
                self.sync.maybe_switch_next()
                await asyncio.sleep(interval)
                retries += 1

    async def channel(self) -> Any:
        """Open a new channel (connecting first if needed)."""
        if not self.connected:
            await self.connect()
        return await self._driver.channel()

    @property
    def default_channel(self) -> Any:
        """The channel opened with the connection (entities bind to it: ``queue(conn)``)."""
        if self._default_channel is None:
            raise ConnectionClosed(f"not connected to {self.as_uri()}: await connect() first")
        return self._default_channel

    # -- events -------------------------------------------------------------------------
    def _on_driver_error(self, exc: BaseException) -> None:
        """A driver lost the connection (or a loop callback failed): raised by the next wait."""
        self._error = exc
        self._notify()

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _raise_error(self) -> None:
        error = self._error
        if error is not None:
            self._error = None
            raise error

    async def wait_delivered(self, consumers: Any = None, timeout: float | None = None) -> None:
        """Wait until one of ``consumers`` (default: all of this connection's) holds a
        delivery, or raise the driver's error; :class:`socket.timeout` after ``timeout`` s."""
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        wakeup = self._wakeup
        expired = False
        handle = None
        if timeout is not None:

            def expire() -> None:
                nonlocal expired
                expired = True
                wakeup.set()

            handle = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            while True:
                self._raise_error()
                if any(consumer._inbox for consumer in (consumers or self._consumers)):
                    return
                if not self.connected:
                    raise ConnectionClosed(f"connection to {self.as_uri()} is closed")
                if expired:
                    raise socket.timeout("timed out")
                wakeup.clear()
                await wakeup.wait()
        finally:
            if handle is not None:
                handle.cancel()

    async def drain_events(self, timeout: float | None = None) -> None:
        """Wait for deliveries to this connection's consumers and run their callbacks;
        :class:`socket.timeout` (a :class:`TimeoutError`) when none came in ``timeout`` s."""
        await self.wait_delivered(timeout=timeout)
        for consumer in list(self._consumers):
            await consumer._process_all()

    async def ensure(self, obj: Any, fun: Callable[..., Any], *args: Any, **policy: Any) -> Any:
        """``await fun(*args)``, reconnecting and retrying on connection loss as the
        blocking ``Connection.ensure`` does (``max_retries``, ``interval_start``,
        ``interval_step``, ``interval_max``, ``errback(exc, interval)``): ``obj`` is revived
        on the new connection's default channel before each retry."""
        max_retries = policy.get("max_retries")
        errback = policy.get("errback")
        errors = self.recoverable_connection_errors + tuple(self.sync.recoverable_channel_errors)
        retries = 0
        while True:
            try:
                return await fun(*args)
            except NEVER_RETRIED:
                raise
            except errors as exc:
                if max_retries is not None and retries >= max_retries:
                    raise
                if errback is not None:
                    errback(exc, 0)
                await self._drop()
                await self.ensure_connection(
                    max_retries=max_retries,
                    interval_start=policy.get("interval_start", 2),
                    interval_step=policy.get("interval_step", 2),
                    interval_max=policy.get("interval_max", 30),
                )
                await _settle(obj.revive(self.default_channel))
                retries += 1

    # -- factories -----------------------------------------------------------------------
    def Producer(self, channel: Any = None, *args: Any, **kwargs: Any) -> Producer:  # noqa: N802
        from .messaging import Producer

        return Producer(channel or self, *args, **kwargs)

    def Consumer(self, queues: Any = None, channel: Any = None, *args: Any, **kwargs: Any) -> Consumer:  # noqa: N802
        from .messaging import Consumer

        return Consumer(channel or self, queues, *args, **kwargs)

    def Pool(self, limit: int | None = None, **kwargs: Any) -> Any:  # noqa: N802
        """A pool of connections to this broker (:class:`kombu_like.aio.pools.ConnectionPool`)."""
        from .pools import ConnectionPool

        return ConnectionPool(self, limit=limit, **kwargs)

    def SimpleQueue(self, name: Any, no_ack: bool | None = None, **kwargs: Any) -> Any:  # noqa: N802
        """A ``put``/``get`` queue (:class:`kombu_like.aio.simple.SimpleQueue`)."""
        from .simple import SimpleQueue

        return SimpleQueue(kwargs.pop("channel", None) or self, name, no_ack, **kwargs)

    def SimpleBuffer(self, name: Any, no_ack: bool | None = None, **kwargs: Any) -> Any:  # noqa: N802
        """A transient, no-ack SimpleQueue (:class:`kombu_like.aio.simple.SimpleBuffer`)."""
        from .simple import SimpleBuffer

        return SimpleBuffer(kwargs.pop("channel", None) or self, name, no_ack, **kwargs)

    # -- closing -------------------------------------------------------------------------
    async def _drop(self) -> None:
        driver, self._driver = self._driver, None
        self._default_channel = None
        if driver is not None:
            await driver.close()

    async def close(self) -> None:
        """Close the connection; unacknowledged messages go back to their queues."""
        await self._drop()
        self._notify()

    release = close

    async def __aenter__(self) -> Connection:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
