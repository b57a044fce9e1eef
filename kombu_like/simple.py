"""Queue.Queue-like interface over a broker queue (Kombu's ``kombu.simple``)."""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Mapping
from queue import Empty as _Empty
from types import MappingProxyType, TracebackType
from typing import Any

from .entity import Exchange, Queue
from .message import Message
from .messaging import Consumer, Producer
from .plan import Plan, call, run
from .transport.base import time_limit

__all__ = ["SimpleBuffer", "SimpleQueue"]

logger = logging.getLogger(__name__)


class SimpleBase:
    """Shared implementation of :class:`SimpleQueue` and :class:`SimpleBuffer`."""

    Empty = _Empty
    _consuming = False

    def __init__(
        self,
        channel: Any,
        producer: Producer,
        consumer: Consumer,
        no_ack: bool = False,
    ) -> None:
        self.channel = channel
        self.producer = producer
        self.consumer = consumer
        self.no_ack = no_ack
        self.queue = self.consumer.queues[0]
        self.buffer: deque[Message] = deque()
        self.consumer.register_callback(self._receive)

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        """Return the next message; raise :class:`Empty` if none came within ``timeout``."""
        if not block:
            return self.get_nowait()
        deadline = None if timeout is None else time.monotonic() + timeout
        with time_limit(timeout):  # starting to consume counts against the timeout too
            self._consume()
        while True:
            if self.buffer:
                return self.buffer.popleft()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise self.Empty()
            try:
                self.channel.connection.client.drain_events(timeout=remaining)
            except socket.timeout:
                raise self.Empty() from None

    def get_nowait(self) -> Any:
        """Return a waiting message at once or raise :class:`Empty`."""
        if self.buffer:
            return self.buffer.popleft()
        return run(self.channel, self._get_nowait_plan())

    def _get_nowait_plan(self) -> Plan[Message]:
        # through the queue's own methods: a Queue subclass's take part
        message = yield from call(self.queue, "get", no_ack=self.no_ack, accept=self.consumer.accept)
        if message is None:
            raise self.Empty()
        return message

    def put(
        self,
        message: Any,
        serializer: str | None = None,
        headers: dict[str, Any] | None = None,
        compression: str | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Publish ``message`` to the queue."""
        return self.producer.publish(
            message,
            serializer=serializer,
            routing_key=routing_key or self.queue.routing_key or self.queue.name,
            headers=headers,
            compression=compression,
            **kwargs,
        )

    def clear(self) -> Any:
        """Delete every waiting message; return how many."""
        return self.consumer.purge()

    def qsize(self) -> Any:
        """Number of messages waiting in the queue."""
        return run(self.channel, self._qsize_plan())

    def _qsize_plan(self) -> Plan[int]:
        _, size, _ = yield from call(self.queue, "queue_declare", passive=True)
        return int(size) + len(self.buffer)

    def close(self) -> Any:
        """Stop consuming; messages received but not returned by :meth:`get` go back.

        In acknowledging mode they are requeued at once, so another consumer can have
        them without waiting for this channel to close.
        """
        return run(self.channel, self._close_plan())

    def _close_plan(self) -> Plan[None]:
        # no yield inside a finally: a plan cancelled under asyncio is closed at its yield
        failed: Exception | None = None
        try:
            yield from call(self.consumer, "cancel")
        except Exception as exc:
            failed = exc
        yield from self._give_back_buffered()
        if failed is not None:
            raise failed

    def _give_back_buffered(self) -> Plan[None]:
        buffered, self.buffer = list(self.buffer), deque()
        if not buffered:
            return
        if self.no_ack:
            # the broker forgot them on delivery: say so rather than drop them quietly
            logger.warning(
                "SimpleQueue %r closed with %d no-ack message(s) received but never taken with get(); they are gone",
                self.queue.name,
                len(buffered),
            )
            return
        # last first: a store that puts a requeued message at the head of its queue (memory,
        # Redis) then holds them in their order again; RabbitMQ restores positions anyway
        for message in reversed(buffered):
            if not message.acknowledged:
                try:
                    yield from call(message, "requeue")
                except Exception:  # the channel is gone: the broker redelivers them anyway
                    logger.debug("could not requeue a buffered message of %r", self.queue.name, exc_info=True)

    def _receive(self, body: Any, message: Message) -> None:
        self.buffer.append(message)

    def _consume(self) -> Any:
        if not self._consuming:
            self._consuming = True
            return self.consumer.consume(no_ack=self.no_ack)
        return None

    def __len__(self) -> int:
        return self.qsize()

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> SimpleBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SimpleQueue(SimpleBase):
    """A persistent queue with ``put``/``get``: ``conn.SimpleQueue('name')``."""

    no_ack = False
    # read-only: subclasses override them, instances never change them
    queue_opts: Mapping[str, Any] = MappingProxyType({})
    queue_args: Mapping[str, Any] = MappingProxyType({})
    exchange_opts: Mapping[str, Any] = MappingProxyType({"type": "direct"})
    #: the classes it publishes and consumes with (the asyncio API's subclass swaps them)
    Producer = Producer
    Consumer = Consumer

    def __init__(
        self,
        channel: Any,
        name: str | Queue,
        no_ack: bool | None = None,
        queue_opts: Mapping[str, Any] | None = None,
        queue_args: Mapping[str, Any] | None = None,
        exchange_opts: Mapping[str, Any] | None = None,
        serializer: str | None = None,
        compression: str | None = None,
        accept: Any = None,
        **kwargs: Any,
    ) -> None:
        from .connection import is_connection

        connection = channel if is_connection(channel) else None
        if connection is not None:
            channel = connection.default_channel
        q_opts = {**self.queue_opts, **(queue_opts or {})}
        q_args = {**self.queue_args, **(queue_args or {})}
        e_opts = {**self.exchange_opts, **(exchange_opts or {})}
        if no_ack is None:
            no_ack = self.no_ack
        if isinstance(name, Queue):
            queue = name
            exchange = queue.exchange
            routing_key = queue.routing_key
        else:
            exchange = Exchange(name, **e_opts)
            queue = Queue(name, exchange, name, queue_arguments=q_args or None, **q_opts)
            routing_key = name
        producer = self.Producer(
            channel, exchange, serializer=serializer, routing_key=routing_key, compression=compression
        )
        consumer = self.Consumer(channel, queue, accept=accept)
        super().__init__(channel, producer, consumer, no_ack)


class SimpleBuffer(SimpleQueue):
    """A transient, auto-deleted, no-ack :class:`SimpleQueue`."""

    no_ack = True
    queue_opts: Mapping[str, Any] = MappingProxyType({"durable": False, "auto_delete": True, "exclusive": True})
    exchange_opts: Mapping[str, Any] = MappingProxyType(
        {
            "durable": False,
            "delivery_mode": "transient",
            "auto_delete": True,
            "type": "direct",
        }
    )
