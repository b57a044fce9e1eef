"""Scenarios of the asyncio API that every transport it drives must pass (memory in
t/unit, RabbitMQ in t/integration), with the blocking API on the other end."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from kombu_like import Connection as SyncConnection
from kombu_like import Exchange, Queue
from kombu_like.aio import Connection


async def async_to_sync_and_back(url: str, name: str, **options: Any) -> None:
    """Published by the asyncio API, consumed by the blocking one, and the reverse."""
    exchange = Exchange(f"{name}.ex", "direct", auto_delete=True)
    queue = Queue(name, exchange, routing_key="k", auto_delete=False)
    async with Connection(url, **options) as conn:
        await conn.Producer().publish({"from": "aio"}, exchange=exchange, routing_key="k", declare=[queue])
    with SyncConnection(url, **options) as sync:
        message = queue(sync.default_channel).get()
        assert message is not None and message.payload == {"from": "aio"}
        message.ack()
        sync.Producer().publish({"from": "sync"}, exchange=exchange, routing_key="k", declare=[queue])
    async with Connection(url, **options) as conn:
        got: list[Any] = []

        async def handle(body: Any, message: Any) -> None:
            got.append(body)
            await message.ack()

        async with conn.Consumer([queue], callbacks=[handle]):
            await conn.drain_events(timeout=5)
        assert got == [{"from": "sync"}]
        await queue(conn.default_channel).delete()


async def stopped(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it to end (a cancellation of the caller is not swallowed)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def cancelled_consumers_lose_nothing(
    url: str, name: str, count: int = 30, rounds: int = 15, **options: Any
) -> None:
    """Consumer tasks cancelled at random points: every message is acked exactly once,
    what was delivered and not acked when its task was cancelled comes back."""
    rng = random.Random(19)
    queue = Queue(name, auto_delete=False)
    async with Connection(url, **options) as conn:
        await queue(conn.default_channel).declare()
        await queue(conn.default_channel).purge()
        producer = conn.Producer()
        async with producer.batch():
            for number in range(count):
                await producer.publish(number, routing_key=name)
    acked: list[int] = []

    async def consume(conn: Connection) -> None:
        async with conn.Consumer([queue], prefetch_count=5) as consumer:
            async for message in consumer:
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)
                # no suspension between the two: a cancel lands before both or after both
                acked.append(message.payload)
                await message.ack()

    for _ in range(rounds):
        async with Connection(url, **options) as conn:
            task = asyncio.ensure_future(consume(conn))
            for _ in range(rng.randrange(1, 40)):
                await asyncio.sleep(0)
            await stopped(task)
        if len(acked) == count:
            break
    async with Connection(url, **options) as conn:  # whatever is left, unhurried
        task = asyncio.ensure_future(consume(conn))
        try:
            for _ in range(500):
                if len(acked) >= count:
                    break
                await asyncio.sleep(0.01)
        finally:
            await stopped(task)
        remaining = await queue(conn.default_channel).queue_declare(passive=True)
        await queue(conn.default_channel).delete()
    assert sorted(acked) == list(range(count)), acked
    assert remaining[1] == 0


async def simple_queue_round_trip(url: str, name: str, **options: Any) -> None:
    """SimpleQueue: put, get with a timeout, Empty, give back on close, qsize, clear."""
    async with Connection(url, **options) as conn:
        async with conn.SimpleQueue(name) as queue:
            for n in (1, 2, 3):
                await queue.put({"n": n})
            message = await queue.get(timeout=5)
            assert message.payload == {"n": 1}
            await message.ack()
        # what the first one received and get() never returned went back
        async with conn.SimpleQueue(name) as queue:
            for n in (2, 3):
                message = await queue.get(timeout=5)
                assert message.payload == {"n": n}
                await message.ack()
            try:
                await queue.get(timeout=0.05)
            except queue.Empty:
                pass
            else:
                raise AssertionError("get() returned with nothing in the queue")
        async with conn.SimpleQueue(name) as queue:
            await queue.put("x")
            await queue.put("y")
            assert await queue.qsize() == 2
            assert await queue.clear() == 2
        await Queue(name)(conn.default_channel).delete()


async def rpc_calls(url: str, name: str, **options: Any) -> None:
    """The asyncio RPC server answers concurrent asyncio calls and a blocking client's."""
    from kombu_like.aio.rpc import RemoteError, RpcClient, RpcServer, RpcTimeout
    from kombu_like.rpc import RpcClient as SyncRpcClient

    async def add(payload: dict[str, int]) -> int:
        if payload.get("fail"):
            raise ValueError("no")
        await asyncio.sleep(0)
        return payload["a"] + payload["b"]

    async with Connection(url, **options) as conn:
        server = RpcServer(conn, name, add)
        await server.declare()
        serving = asyncio.ensure_future(server.run())
        try:
            async with RpcClient(conn) as client:
                results = await asyncio.gather(*(client.call(name, {"a": n, "b": 1}, timeout=5) for n in range(5)))
                assert results == [1, 2, 3, 4, 5]
                try:
                    await client.call(name, {"fail": True}, timeout=5)
                except RemoteError as exc:
                    assert exc.exc_type == "ValueError"
                else:
                    raise AssertionError("the handler's error did not come back")
                try:
                    await client.call(f"{name}-nobody", {}, timeout=0.2)
                except RpcTimeout:  # RpcNoRoute on RabbitMQ, which returns the request
                    pass
                else:
                    raise AssertionError("a call nobody answers returned")

            def blocking_call() -> Any:
                with SyncConnection(url, **options) as sync, SyncRpcClient(sync) as blocking:
                    return blocking.call(name, {"a": 20, "b": 22}, timeout=5)

            assert await asyncio.get_running_loop().run_in_executor(None, blocking_call) == 42
        finally:
            await stopped(serving)
        await Queue(name)(conn.default_channel).delete()
