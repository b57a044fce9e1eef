"""The asyncio API: the blocking API's classes and semantics, awaited.

::

    from kombu_like import Exchange, Queue
    from kombu_like.aio import Connection

    async with Connection("amqp://guest:guest@localhost//") as conn:
        producer = conn.Producer(serializer="json")
        await producer.publish({"name": "x.mp4"}, exchange=media, routing_key="video", declare=[video])
        async with conn.Consumer([video], accept=["json"]) as consumer:
            async for message in consumer:
                await message.ack()

Entities (:class:`~kombu_like.Exchange`, :class:`~kombu_like.Queue`) are the blocking
API's: bound to an asyncio channel, their broker operations are awaited
(``await queue(conn.default_channel).declare()``).  Exceptions, retry policy, serializers
and compression are shared too.  See the asyncio user guide.
"""

from __future__ import annotations

from ..entity import Exchange, Queue, binding
from .connection import Connection
from .message import Message
from .messaging import Consumer, Producer, maybe_declare
from .simple import SimpleBuffer, SimpleQueue

__all__ = [
    "Connection",
    "Consumer",
    "Exchange",
    "Message",
    "Producer",
    "Queue",
    "SimpleBuffer",
    "SimpleQueue",
    "binding",
    "maybe_declare",
]
