"""Request/reply for asyncio: the wire format, request handling and reply interpretation
of :mod:`kombu_like.rpc`, awaited; a client makes any number of calls at once.

::

    async def add(payload):                      # or a plain function
        return payload["a"] + payload["b"]

    server = RpcServer(conn, "math.add", add)
    task = asyncio.ensure_future(server.run())   # until cancelled

    async with RpcClient(conn) as client:
        assert await client.call("math.add", {"a": 1, "b": 2}, timeout=5) == 3

Servers and clients of either API talk to each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from ..common import uuid
from ..entity import Queue
from ..mixins import W_CONN_LOST
from ..rpc import (
    DEFAULT_TIMEOUT,
    DIRECT_REPLY_TO,
    RemoteError,
    RpcNoRoute,
    RpcTimeout,
    _uses_direct_reply_to,
    call_result,
    no_route,
    reply_outcome,
    request_arguments,
)
from ..rpc import RpcServer as SyncRpcServer
from .connection import Connection
from .hub import bounded
from .messaging import Consumer, Producer

__all__ = ["RemoteError", "RpcClient", "RpcNoRoute", "RpcServer", "RpcTimeout"]

logger = logging.getLogger(__name__)


class RpcServer(SyncRpcServer):
    """Answers requests from ``queue`` with ``handler(payload)`` (a plain or coroutine
    function): :meth:`run` until cancelled.  Requests are handled one at a time per
    server, each acknowledged after its reply was published; a cancelled server leaves
    the request it was handling to be redelivered."""

    connection: Connection  # type: ignore[assignment]

    def __init__(self, connection: Connection, *args: Any, **kwargs: Any) -> None:
        super().__init__(connection, *args, **kwargs)  # type: ignore[arg-type]

    @property
    def producer(self) -> Producer:  # type: ignore[override]
        producer: Producer | None = self.__dict__.get("_aio_producer")
        if producer is None:
            producer = self.__dict__["_aio_producer"] = Producer(self.connection)
        return producer

    async def declare(self) -> None:  # type: ignore[override]
        """Declare the request queue now (requests sent before the server starts wait there)."""
        if not self.connection.connected:
            await self.connection.connect()
        await self.queue(self.connection.default_channel).declare()

    async def run(self) -> None:  # type: ignore[override]
        """Answer requests until the task is cancelled, reconnecting after a connection
        loss as the blocking server does: the connection's ``ensure_connection``, paced
        by its ``interval_start``/``interval_step``/``interval_max`` transport options
        (2, 2 and 30 seconds by default), :attr:`connect_max_retries` attempts, each
        failure told to :meth:`on_connection_error`; at most one restart a second
        (:attr:`restart_limit`).  The request being handled when the connection went
        comes back to the queue."""
        connection = self.connection
        errors = (*connection.connection_errors, *connection.channel_errors)
        while True:
            restarts = self.restart_limit
            if not restarts.can_consume(1):
                await asyncio.sleep(restarts.expected_time(1))
                continue
            try:
                await self._serve()
            except errors:
                logger.warning(W_CONN_LOST, exc_info=True)

    async def _serve(self) -> None:
        await self.connection.ensure_connection(**self._connect_policy(self.connection))
        self.on_connection_revived()
        consumer = Consumer(
            self.connection,
            [self.queue],
            accept=self.accept,
            prefetch_count=self.prefetch_count,
            on_decode_error=self.on_decode_error,
        )
        async with consumer:
            async for message in consumer:
                await self.on_request(message)


class RpcClient:
    """Calls :class:`RpcServer` queues: ``await client.call(queue, payload, timeout)``.

    Calls may run concurrently: each waits for the reply with its correlation id.  The
    client opens a channel of its own with its reply consumer; :meth:`close` it (or use
    ``async with``).  ``direct_reply_to`` as on :class:`kombu_like.rpc.RpcClient`.
    """

    def __init__(
        self,
        connection: Connection,
        serializer: str | None = None,
        accept: Iterable[str] | None = None,
        direct_reply_to: bool | None = None,
    ) -> None:
        self.connection = connection
        self.serializer = serializer
        self.accept = list(accept) if accept is not None else None
        self._direct = direct_reply_to
        self._channel: Any = None
        self._producer: Producer | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reply_queue: Queue | None = None
        #: correlation id -> the future of its call's outcome
        self._calls: dict[str, asyncio.Future[tuple[str, Any]]] = {}
        self._setting_up: asyncio.Lock | None = None

    async def _ready(self) -> tuple[Producer, Queue]:
        if self._setting_up is None:
            self._setting_up = asyncio.Lock()
        async with self._setting_up:  # concurrent first calls set up one consumer
            channel = self._channel
            if channel is not None and channel.is_open and self._reader is not None and not self._reader.done():
                assert self._producer is not None and self.reply_queue is not None
                return self._producer, self.reply_queue
            await self._reset()
            if not self.connection.connected:
                await self.connection.connect()
            direct = _uses_direct_reply_to(self.connection) if self._direct is None else self._direct  # type: ignore[arg-type]
            channel = await self.connection.channel()
            if direct:
                queue = Queue(DIRECT_REPLY_TO, no_declare=True, no_ack=True)
            else:
                queue = Queue(f"rpc.reply.{uuid()}", durable=False, exclusive=True, auto_delete=True, no_ack=True)
            accept = self.accept
            if accept is not None and self.serializer and self.serializer not in accept:
                accept = [*accept, self.serializer]
            consumer = Consumer(channel, [queue], no_ack=True, on_message=_ignored, accept=accept)
            await consumer.consume()  # before any request: direct reply-to requires it
            self.reply_queue = consumer.queues[0]
            self._producer = Producer(channel, serializer=self.serializer, on_return=self._on_return)
            self._channel = channel
            self._reader = asyncio.ensure_future(self._read_replies(consumer))
            return self._producer, self.reply_queue

    async def _read_replies(self, consumer: Consumer) -> None:
        try:
            async for message in consumer:
                correlation_id = (message.properties or {}).get("correlation_id")
                waiting = self._calls.get(correlation_id) if correlation_id is not None else None
                if waiting is None or waiting.done():
                    logger.debug("RpcClient: dropping reply %s that no call waits for", correlation_id)
                    continue
                waiting.set_result(reply_outcome(message))
        except Exception as exc:  # the connection went: every call waiting fails with it
            for waiting in self._calls.values():
                if not waiting.done():
                    waiting.set_exception(exc)

    def _on_return(self, exc: BaseException, exchange: str, routing_key: str, message: Any) -> None:
        correlation_id = (getattr(message, "properties", None) or {}).get("correlation_id")
        waiting = self._calls.get(correlation_id) if correlation_id is not None else None
        if waiting is not None and not waiting.done():
            waiting.set_result(("returned", no_route(exchange, routing_key)))

    async def call(
        self,
        queue: str | Queue,
        payload: Any,
        timeout: float = DEFAULT_TIMEOUT,
        headers: dict[str, Any] | None = None,
        **properties: Any,
    ) -> Any:
        """Send ``payload`` to ``queue`` and return the server's answer; raises
        :class:`RpcTimeout` (or :class:`RpcNoRoute`) and :class:`RemoteError` as the
        blocking client does."""
        if timeout is None or timeout <= 0:
            raise ValueError("RpcClient.call needs a positive timeout")
        producer, reply_queue = await self._ready()
        correlation_id = uuid()
        waiting: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[correlation_id] = waiting
        try:
            arguments = request_arguments(queue, reply_queue.name, correlation_id, timeout, headers, properties)
            await producer.publish(payload, **arguments)
            try:
                outcome: tuple[str, Any] | None = await bounded(waiting, timeout, asyncio.TimeoutError)
            except asyncio.TimeoutError:
                outcome = None
        finally:
            self._calls.pop(correlation_id, None)
        return call_result(outcome, queue, timeout)

    async def _reset(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
        channel, self._channel = self._channel, None
        self._producer = None
        if channel is not None and channel.is_open:
            try:
                await channel.close()
            except Exception:  # the channel died with its connection
                logger.debug("RpcClient: error closing channel", exc_info=True)

    async def close(self) -> None:
        """Stop consuming replies and close the client's channel."""
        await self._reset()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _ignored(message: Any) -> None:
    """The reply consumer's messages are read by the client's reader task."""
