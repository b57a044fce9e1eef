"""``put``/``get`` over a broker queue for asyncio: the blocking
:class:`kombu_like.simple.SimpleQueue` with the asyncio Producer and Consumer, awaited."""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Any

from ..plan import run
from ..simple import SimpleBuffer as SyncSimpleBuffer
from ..simple import SimpleQueue as SyncSimpleQueue
from .messaging import Consumer, Producer

__all__ = ["SimpleBuffer", "SimpleQueue"]


class SimpleQueue(SyncSimpleQueue):
    """A persistent queue with ``await put(...)`` / ``await get(timeout=...)``:
    ``conn.SimpleQueue("name")`` on an asyncio :class:`~kombu_like.aio.Connection`.

    ``get`` raises :class:`SimpleQueue.Empty` (:class:`queue.Empty`) when nothing came in
    time; ``close`` (or leaving ``async with``) gives back what was received and not
    taken.  ``qsize()``, ``clear()``, ``get_nowait()`` and ``put()`` are awaited.
    """

    Producer = Producer  # type: ignore[assignment]
    Consumer = Consumer  # type: ignore[assignment]

    async def _bound(self) -> None:
        """Declare and bind what the blocking SimpleQueue declares when it is made."""
        consumer = self.consumer
        if consumer.channel is None:
            await consumer.revive(consumer._target)  # type: ignore[attr-defined]
            self.channel = consumer.channel
            self.queue = consumer.queues[0]

    async def get(self, block: bool = True, timeout: float | None = None) -> Any:  # type: ignore[override]
        """The next message; :class:`Empty` when none came within ``timeout`` seconds."""
        await self._bound()
        if not block:
            return await self.get_nowait()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        consumer: Any = self.consumer
        await self._consume()
        while True:
            if self.buffer:
                return self.buffer.popleft()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise self.Empty()
            try:
                await consumer.connection_aio.wait_delivered((consumer,), remaining)
            except socket.timeout:
                raise self.Empty() from None
            await consumer._process_all()  # into the buffer, by _receive

    async def get_nowait(self) -> Any:  # type: ignore[override]
        """A waiting message at once, or :class:`Empty`."""
        await self._bound()
        return await super().get_nowait()

    async def put(self, message: Any, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Publish ``message`` to the queue (declared first, as the blocking one is)."""
        await self._bound()
        await super().put(message, *args, **kwargs)

    async def qsize(self) -> int:  # type: ignore[override]
        await self._bound()
        return int(await super().qsize())

    async def clear(self) -> int:  # type: ignore[override]
        await self._bound()
        return int(await super().clear())

    async def _consume(self) -> None:  # type: ignore[override]
        if not self._consuming:
            self._consuming = True
            await self.consumer.consume(no_ack=self.no_ack)  # type: ignore[misc]

    async def close(self) -> None:  # type: ignore[override]
        """Stop consuming; what was received and not taken goes back to the queue."""
        consumer: Any = self.consumer
        if consumer.channel is None:
            return
        try:
            await consumer.cancel()
        finally:
            await consumer._process_all()  # deliveries not handed to the buffer yet, too
            await run(self.channel, self._give_back_buffered())

    def __len__(self) -> int:
        raise TypeError("len() cannot wait for the broker: use await simple_queue.qsize()")

    async def __aenter__(self) -> SimpleQueue:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class SimpleBuffer(SimpleQueue):
    """A transient, auto-deleted, no-ack :class:`SimpleQueue`."""

    no_ack = SyncSimpleBuffer.no_ack
    queue_opts = SyncSimpleBuffer.queue_opts
    exchange_opts = SyncSimpleBuffer.exchange_opts
