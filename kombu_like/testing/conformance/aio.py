"""Conformance: what only the asyncio API (:mod:`kombu_like.aio`) has -- coroutine callbacks,
``async for``, cancellation, awaited SimpleQueue and RPC -- and interop with the blocking
API over the transport.  (Every topic class's test runs on the asyncio API too, through
its ``api`` parameter.)

Mixed into a transport's conformance class once the asyncio API drives that transport::

    class TestMyTransport(TransportConformance, AsyncAPITests):
        url = "mytransport://localhost"

Each test runs its scenario with :func:`asyncio.run` (no plugin needed) under a time limit;
connections are made from :meth:`~.base.ConformanceBase.make_connection`'s settings, so a
subclass that overrides it (a private broker, say) covers both APIs.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Coroutine
from typing import Any

import pytest

from ...aio import Connection as AsyncConnection
from ...connection import Connection
from .base import ConformanceBase

__all__ = ["AsyncAPITests"]


async def stopped(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end (a cancellation of the caller is not swallowed)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class AsyncAPITests(ConformanceBase):
    """The asyncio API: publish/consume both ways with the blocking API, acknowledgements,
    coroutine callbacks, timeouts, cancellation, SimpleQueue and RPC."""

    #: seconds a whole scenario may take
    scenario_limit: float = 30.0
    #: seconds of each wait before a consumer task is cancelled (0: one round of the
    #: loop), and messages to consume: a driver whose deliveries take longer than a few
    #: rounds (an I/O thread's) needs real time for cancels to land mid-delivery
    cancel_pause: float = 0.0
    cancel_count: int = 30

    def run_async(self, scenario: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(asyncio.wait_for(scenario, self.scenario_limit))

    def test_async_publish_sync_consume_and_back(self) -> None:
        queue = self.new_queue("aio_interop")

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                await conn.Producer().publish({"from": "aio"}, routing_key=queue.name, declare=[queue])
            with self.connection() as sync:
                message = queue(sync.default_channel).get()
                assert message is not None and message.payload == {"from": "aio"}
                message.ack()
                sync.Producer().publish({"from": "sync"}, routing_key=queue.name, declare=[queue])
            async with self.make_async_connection() as conn:
                got: list[Any] = []

                async def handle(body: Any, message: Any) -> None:  # a coroutine callback
                    got.append(body)
                    await message.ack()

                async with conn.Consumer([queue], callbacks=[handle]):
                    await conn.drain_events(timeout=self.wait)
                assert got == [{"from": "sync"}]

        self.run_async(scenario())

    def test_async_ack_reject_requeue(self) -> None:
        queue = self.new_queue("aio_acks")

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                producer = conn.Producer()
                for body in ("ack", "reject", "requeue"):
                    await producer.publish(body, routing_key=queue.name, declare=[queue])
                requeued: list[bool] = []
                async with conn.Consumer([queue], prefetch_count=10) as consumer:
                    async for message in consumer:
                        if message.payload == "ack":
                            await message.ack()
                        elif message.payload == "reject":
                            await message.reject()
                        elif not requeued:
                            requeued.append(bool(message.delivery_info.get("redelivered")))
                            await message.requeue()
                        else:
                            assert message.delivery_info.get("redelivered")
                            await message.ack()
                            break
                assert requeued == [False]
                assert (await queue(conn.default_channel).queue_declare(passive=True)).message_count == 0

        self.run_async(scenario())

    def test_async_waits_time_out_and_consuming_goes_on(self) -> None:
        queue = self.new_queue("aio_timeouts")

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                got: list[Any] = []
                async with conn.Consumer([queue], callbacks=[lambda body, message: got.append(body)]):
                    with pytest.raises(socket.timeout):
                        await conn.drain_events(timeout=self.quiet)
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(conn.drain_events(), self.quiet)
                    await conn.Producer().publish("late", routing_key=queue.name)
                    await conn.drain_events(timeout=self.wait)
                assert got == ["late"]

        self.run_async(scenario())

    def test_async_cancelled_consumers_lose_nothing(self) -> None:
        """Consumer tasks cancelled at random points: every message is acked exactly once;
        what was delivered and not acked when its task was cancelled comes back."""
        queue = self.new_queue("aio_cancel")
        count, rounds = self.cancel_count, 15
        rng = random.Random(19)
        acked: list[int] = []

        async def consume(conn: AsyncConnection) -> None:
            async with conn.Consumer([queue], prefetch_count=5) as consumer:
                async for message in consumer:
                    for _ in range(rng.randrange(3)):
                        await asyncio.sleep(0)
                    # no suspension between the two: a cancel lands before both or after both
                    acked.append(message.payload)
                    await message.ack()

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                producer = conn.Producer()
                await queue(conn.default_channel).declare()
                async with producer.batch():
                    for number in range(count):
                        await producer.publish(number, routing_key=queue.name)
            for _ in range(rounds):
                async with self.make_async_connection() as conn:
                    task = asyncio.ensure_future(consume(conn))
                    for _ in range(rng.randrange(1, 40)):
                        await asyncio.sleep(self.cancel_pause)
                    await stopped(task)
                if len(acked) == count:
                    break
            async with self.make_async_connection() as conn:  # whatever is left, unhurried
                task = asyncio.ensure_future(consume(conn))
                try:
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + self.redelivery_wait
                    while len(acked) < count and loop.time() < deadline:
                        await asyncio.sleep(0.01)
                finally:
                    await stopped(task)
                remaining = await queue(conn.default_channel).queue_declare(passive=True)
            assert sorted(acked) == list(range(count)), acked
            assert remaining.message_count == 0

        self.run_async(scenario())

    def test_async_simple_queue(self) -> None:
        name = self.unique("aio_simple")
        self.track_queue(name)
        self.track_exchange(name)

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                async with conn.SimpleQueue(name) as queue:
                    for n in (1, 2, 3):
                        await queue.put({"n": n})
                    message = await queue.get(timeout=self.wait)
                    assert message.payload == {"n": 1}
                    await message.ack()
                # what the first one received and get() never returned went back, in order
                async with conn.SimpleQueue(name) as queue:
                    for n in (2, 3):
                        message = await queue.get(timeout=self.wait)
                        assert message.payload == {"n": n}
                        await message.ack()
                    with pytest.raises(queue.Empty):
                        await queue.get(timeout=self.quiet)
                async with conn.SimpleQueue(name) as queue:
                    await queue.put("x")
                    await queue.put("y")
                    assert await queue.qsize() == 2
                    assert await queue.clear() == 2

        self.run_async(scenario())

    def test_async_rpc(self) -> None:
        from ...aio.rpc import RemoteError, RpcClient, RpcServer, RpcTimeout
        from ...rpc import RpcClient as SyncRpcClient

        name = self.unique("aio_rpc")
        self.track_queue(name)

        async def add(payload: dict[str, int]) -> int:
            if payload.get("fail"):
                raise ValueError("no")
            await asyncio.sleep(0)
            return payload["a"] + payload["b"]

        def blocking_call() -> Any:
            sync: Connection = self.make_connection()
            try:
                with SyncRpcClient(sync) as client:
                    return client.call(name, {"a": 20, "b": 22}, timeout=self.wait)
            finally:
                sync.release()

        async def scenario() -> None:
            async with self.make_async_connection() as conn:
                server = RpcServer(conn, name, add)
                await server.declare()
                serving = asyncio.ensure_future(server.run())
                try:
                    async with RpcClient(conn) as client:
                        calls = (client.call(name, {"a": n, "b": 1}, timeout=self.wait) for n in range(5))
                        assert await asyncio.gather(*calls) == [1, 2, 3, 4, 5]
                        with pytest.raises(RemoteError) as info:
                            await client.call(name, {"fail": True}, timeout=self.wait)
                        assert info.value.exc_type == "ValueError"
                        with pytest.raises(RpcTimeout):  # RpcNoRoute where the broker returns it
                            await client.call(self.unique("aio_rpc_nobody"), {}, timeout=self.quiet)
                    # a blocking client calls the asyncio server
                    assert await asyncio.get_running_loop().run_in_executor(None, blocking_call) == 42
                finally:
                    await stopped(serving)

        self.run_async(scenario())
