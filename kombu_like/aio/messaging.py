"""Producer and Consumer for asyncio: the blocking API's classes, awaited.

Everything that is not I/O -- serialization, compression, header checks, routing
defaults, decoding, accept lists, decode-error handling -- is the blocking classes' own
code; only the waiting differs.
"""

from __future__ import annotations

import functools
import inspect
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from ..common import declaration_cached
from ..entity import Queue
from ..messaging import Consumer as SyncConsumer
from ..messaging import Producer as SyncProducer
from ..messaging import _annotate, _Batch
from ..plan import Ready
from .message import Message, backlog

__all__ = ["Consumer", "Producer", "maybe_declare"]


async def _settle(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def maybe_declare(entity: Any, channel: Any = None) -> bool:
    """Declare ``entity`` unless this connection declared it already; True if declared now."""
    channel = channel or entity.channel
    cacheable = bool(getattr(entity, "can_cache_declaration", False))
    if cacheable and declaration_cached(entity, channel):
        return False
    bound = entity if entity.is_bound and entity.channel is channel else entity.bind(channel)
    await bound.declare()
    if cacheable:
        declared = channel.aio_client.declared_entities
        declared.add(hash(entity))
    if entity is not bound and getattr(entity, "name", None) == "" and getattr(bound, "name", ""):
        entity.name = bound.name  # a server-named queue keeps its name
    return True


class _NoBatch:
    """A producer's batch slot while none of its batches is open: ``current`` is a class
    attribute, read by every publish without a context lookup."""

    __slots__ = ()
    current = None


_NO_BATCH = _NoBatch()


class _ContextBatch:
    """The batch open in the current task (a thread-local would be shared by all tasks);
    a producer's batch slot while one of its batches is open."""

    def __init__(self) -> None:
        self._var: ContextVar[_AsyncBatch | None] = ContextVar(f"batch-{id(self):x}", default=None)
        #: batches of the producer open in any task
        self.open = 0

    @property
    def current(self) -> Any:
        batch = self._var.get()
        # a task started inside a batch block inherits its context: once the block has
        # ended, that task's publishes are sent, not added to a batch nobody will send
        return batch if batch is not None and batch.active else None

    @current.setter
    def current(self, batch: Any) -> None:
        self._var.set(batch)


class _AsyncBatch(_Batch):
    """``async with producer.batch():``: the publishes of the block, sent in one write."""

    producer: Producer

    def __init__(self, producer: Producer, max_size: int | None) -> None:
        super().__init__(producer, max_size)
        #: confirms of the sends made so far, awaited when the block ends
        self.pending: list[Any] = []

    def flush(self) -> None:
        channel = self.producer.channel
        items, self.items = self.items, []
        options, self.options = self.options, {}
        if not items:
            return
        publish_batch = getattr(channel, "publish_batch", None)
        if publish_batch is not None:
            self.pending.append(publish_batch(items))
            return
        for index, (message, exchange, routing_key, mandatory) in enumerate(items):
            extra = options.get(index, {})
            self.pending.append(channel.basic_publish(message, exchange, routing_key, mandatory, **extra))

    def __enter__(self) -> _AsyncBatch:
        producer = self.producer
        context = producer._batch_context
        context.open += 1
        producer._batch_local = context  # type: ignore[assignment]
        try:
            super().__enter__()
        except BaseException:
            self._left()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self._left()

    def _left(self) -> None:
        producer = self.producer
        context = producer._batch_context
        context.open -= 1
        if not context.open:
            producer._batch_local = _NO_BATCH  # type: ignore[assignment]

    async def __aenter__(self) -> _AsyncBatch:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
        pending, self.pending = self.pending, []
        for result in pending:
            await _settle(result)
        wait = backlog(self.producer.channel)
        if wait is not None:
            await wait


class Producer(SyncProducer):
    """:class:`kombu_like.Producer` for asyncio: ``await producer.publish(...)``, same arguments.

    The message is encoded and its frames written in one piece before the first
    suspension, so a cancelled publish never leaves half a message on the connection:
    either nothing was sent (cancelled while declaring) or all of it was (cancelled while
    waiting for room in the write buffer, or for the broker's confirm).
    """

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self._batch_context = _ContextBatch()
        self._batch_local = _NO_BATCH  # type: ignore[assignment]

    def _bind_channel(self, channel: Any) -> None:
        auto_declare, self.auto_declare = self.auto_declare, False
        try:
            super()._bind_channel(channel)  # declared when publishing: nothing awaits here
        finally:
            self.auto_declare = auto_declare

    async def declare(self) -> None:  # type: ignore[override]
        """Declare the default exchange (done by the first publish with ``auto_declare``)."""
        if self.exchange.name:
            await maybe_declare(self.exchange, self.channel)

    async def maybe_declare(self, entity: Any, retry: bool = False, **retry_policy: Any) -> bool:  # type: ignore[override]
        """Declare ``entity`` unless this connection declared it already."""
        return await maybe_declare(entity, self.channel) if entity else False

    async def publish(self, body: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Serialize, compress and publish ``body``: :meth:`kombu_like.Producer.publish`'s
        arguments.  With publisher confirms, returns once the broker confirmed."""
        if kwargs and kwargs.get("retry"):
            del kwargs["retry"]
            policy = kwargs.pop("retry_policy", None) or {}
            connection = self.connection
            assert connection is not None
            return await connection.ensure(self, functools.partial(self.publish, body, *args, **kwargs), **policy)
        # this runs for every publish: plain attribute work until the blocking publish
        channel = self._channel
        if channel is None or (self._lazy and not channel.is_open):
            channel = self.channel
        if kwargs and "declare" in kwargs:
            for entity in kwargs.pop("declare") or ():
                await maybe_declare(entity, channel)
        own = self.exchange
        if self.auto_declare and own.name and not self._exchange_declared():
            await maybe_declare(own, channel)
            # the blocking publish, all of it up to the channel's write (which never
            # waits), told that the declarations are done: nothing runs before it returns
            self.auto_declare = False
            try:
                result = SyncProducer.publish(self, body, *args, **kwargs)
            finally:
                self.auto_declare = True
        else:
            # declared (the blocking publish finds it so too): nothing runs before it returns
            result = SyncProducer.publish(self, body, *args, **kwargs)
        if result is not None:
            result = None if type(result) is Ready else await result
        full = channel.backlog  # what to wait for while the write buffer is full, if anything
        if full is not None:
            wait = full()
            if wait is not None:
                await wait
        return result

    def batch(self, max_size: int | None = None) -> _AsyncBatch:
        """``async with producer.batch(): await producer.publish(...)``: sent in one write
        when the block ends (and whenever ``max_size`` are waiting)."""
        return _AsyncBatch(self, max_size)

    @property
    def connection(self) -> Any:
        connection = self.__dict__.get("_Producer__connection__")
        if connection is not None:
            return connection
        return getattr(self.channel, "aio_client", None)

    @property
    def channel(self) -> Any:
        channel = self._channel
        if channel is None or (self._lazy and not getattr(channel, "is_open", True)):
            connection = self.__dict__.get("_Producer__connection__")
            assert connection is not None
            channel = self._channel = connection.default_channel
            self._bind_channel(channel)
        return channel

    @channel.setter
    def channel(self, channel: Any) -> None:
        self._channel = channel

    def revive(self, channel: Any) -> None:
        if hasattr(channel, "default_channel") and not hasattr(channel, "basic_publish"):
            self.__dict__["_Producer__connection__"] = channel
            self._channel = None
            self._lazy = True
        else:
            super().revive(channel)

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.release()


# what the loop hands a consumer: ("body", message, body) for callbacks, ("message",
# message, None) for on_message, ("decode_error", message, exc), ("error", None, exc)
_Item = tuple[str, Any, Any]


class Consumer(SyncConsumer):
    """:class:`kombu_like.Consumer` for asyncio.

    Callbacks and ``on_message`` may be coroutine functions.  Use it as
    ``async with consumer:`` (declare, qos, consume; cancel on the way out), then
    ``await connection.drain_events()`` to run the callbacks, or ``async for message in
    consumer`` to take the messages one by one instead (the callbacks are then not called).

    Deliveries wait in the consumer until processed, within the prefetch window; one whose
    processing is cancelled stays unacknowledged and comes back to its queue when the
    channel closes, as every unacknowledged message does.
    """

    def __init__(
        self,
        channel: Any,
        queues: Queue | Sequence[Queue] | None = None,
        no_ack: bool | None = None,
        auto_declare: bool | None = None,
        callbacks: list[Callable[[Any, Any], Any]] | None = None,
        on_decode_error: Callable[[Any, BaseException], Any] | None = None,
        on_message: Callable[[Any], Any] | None = None,
        accept: Iterable[str] | None = None,
        prefetch_count: int | None = None,
        tag_prefix: str | None = None,
        max_decompressed_size: int | None | object = ...,
    ) -> None:
        self._inbox: deque[_Item] = deque()
        self._user_on_message = on_message
        self._user_on_decode_error = on_decode_error
        super().__init__(
            None,
            queues,
            no_ack,
            auto_declare,
            callbacks,
            self._keep_decode_error,
            self._keep_message if on_message else None,
            accept,
            prefetch_count,
            tag_prefix,
            max_decompressed_size,
        )
        self._target = channel

    # -- starting and stopping -------------------------------------------------------------
    async def revive(self, channel: Any) -> None:  # type: ignore[override]
        """Bind to ``channel`` (or a connection's default channel), declare, set the
        prefetch window and resume what was consumed before."""
        self._inbox.clear()  # deliveries of the old channel came back to their queues with it
        if hasattr(channel, "default_channel") and not hasattr(channel, "basic_publish"):
            channel = channel.default_channel
        await _settle(super().revive(channel))
        self.connection_aio._consumers.add(self)

    async def consume(self, no_ack: bool | None = None) -> None:  # type: ignore[override]
        """Start consuming from every queue not consumed yet (binding first if needed)."""
        if self.channel is None:
            await self.revive(self._target)
        await _settle(super().consume(no_ack))

    @property
    def connection_aio(self) -> Any:
        return self.channel.aio_client

    async def __aenter__(self) -> Consumer:
        await self.consume()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection = self.connection_aio
        connection._consumers.discard(self)
        if connection.connected:
            try:
                await self.cancel()
            except Exception:  # the channel may be gone already; nothing left to cancel
                pass

    # -- from the loop: keep what arrives, raise nothing there ------------------------------
    def receive(self, body: Any, message: Any) -> None:
        # _keep inlined: this runs for every message
        inbox = self._inbox
        inbox.append(("body", message, body))
        if len(inbox) == 1:
            self.channel.aio_client._notify()

    def _keep_message(self, message: Any) -> None:
        self._keep(("message", message, None))

    def _keep_decode_error(self, message: Any, exc: BaseException) -> None:
        if self._user_on_decode_error is not None:
            self._keep(("decode_error", message, exc))
            return
        # raised where the messages are processed, as the blocking Consumer raises it
        error = _annotate(exc, message, self._queue_of(message))
        error.__cause__ = exc
        self._keep(("error", None, error))

    def _keep(self, item: _Item) -> None:
        inbox = self._inbox
        inbox.append(item)
        if len(inbox) == 1:  # a waiter only looks whether an inbox holds something
            self.channel.aio_client._notify()

    # -- processing -----------------------------------------------------------------------
    async def _process(self, item: _Item) -> None:
        kind, message, value = item
        if kind == "body":
            callbacks = self.callbacks
            if not callbacks:
                raise NotImplementedError("Consumer does not have any callbacks")
            for callback in callbacks:
                result = callback(value, message)
                if result is not None and inspect.isawaitable(result):
                    await result
            return
        if kind == "error":
            raise value
        if kind == "decode_error":
            await _settle(self._user_on_decode_error(message, value))  # type: ignore[misc]
        else:
            await _settle(self._user_on_message(message))  # type: ignore[misc]

    async def _process_all(self) -> None:
        inbox = self._inbox
        callbacks = self.callbacks
        while inbox:
            item = inbox.popleft()
            if item[0] != "body" or not callbacks:
                await self._process(item)
                continue
            # the common case, without a coroutine of its own per message
            _, message, body = item
            for callback in callbacks:
                result = callback(body, message)
                if result is not None and inspect.isawaitable(result):
                    await result

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        connection = self.connection_aio
        inbox = self._inbox
        while True:
            if not inbox:
                await connection.wait_delivered((self,))
            kind, message, value = inbox.popleft()
            if kind == "error":
                raise value
            if kind == "decode_error":
                await _settle(self._user_on_decode_error(message, value))  # type: ignore[misc]
                continue
            yield message
