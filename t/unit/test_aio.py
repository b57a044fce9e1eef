"""The asyncio API on memory://: the blocking API's semantics, awaited."""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from typing import Any

import pytest

from kombu_like import Connection as SyncConnection
from kombu_like import Exchange, Queue
from kombu_like.aio import Connection, Message
from kombu_like.exceptions import DecodeError, MessageStateError
from kombu_like.transport import memory
from t.aio_cancellation import cancellation_seed, run_cancellations


@pytest.fixture
def broker() -> memory.Broker:
    return memory.Broker()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def opts(broker: memory.Broker) -> dict[str, Any]:
    return {"transport_options": {"broker": broker}}


def test_ack_reject_requeue_are_awaited(broker: memory.Broker) -> None:
    queue = Queue("q-states")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            bound = queue(conn.default_channel)
            await bound.declare()
            producer = conn.Producer()
            for body in ("a", "b", "c"):
                await producer.publish(body, routing_key="q-states")
            first = await bound.get()
            assert isinstance(first, Message) and first.payload == "a"
            await first.ack()
            with pytest.raises(MessageStateError):
                await first.ack()
            second = await bound.get()
            await second.reject()  # dropped
            third = await bound.get()
            await third.requeue()
            again = await bound.get()
            assert again.payload == "c" and again.delivery_info["redelivered"]
            await again.ack()
            assert await bound.get() is None

    run(main())


def test_coroutine_and_plain_callbacks_and_on_message(broker: memory.Broker) -> None:
    queue = Queue("q-callbacks")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            seen: list[Any] = []

            async def slow(body: Any, message: Any) -> None:
                await asyncio.sleep(0)
                seen.append(("async", body))
                await message.ack()

            async with conn.Consumer([queue], callbacks=[lambda body, message: seen.append(("sync", body)), slow]):
                await conn.Producer().publish([1], routing_key="q-callbacks")
                await conn.drain_events(timeout=2)
            assert seen == [("sync", [1]), ("async", [1])]

            raw: list[Any] = []

            async def on_message(message: Any) -> None:
                raw.append(message.body)
                await message.ack()

            async with conn.Consumer([queue], on_message=on_message):
                await conn.Producer().publish("x", routing_key="q-callbacks", serializer="raw")
                await conn.drain_events(timeout=2)
            assert raw == [b"x"]

    run(main())


def test_async_for_and_decode_errors(broker: memory.Broker) -> None:
    queue = Queue("q-iter")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            errors: list[Any] = []

            async def on_decode_error(message: Any, exc: BaseException) -> None:
                errors.append(type(exc).__name__)
                await message.reject()

            producer = conn.Producer()
            await producer.publish(
                b"\x80not json",
                routing_key="q-iter",
                content_type="application/json",
                content_encoding="utf-8",
                declare=[queue],
            )
            await producer.publish({"n": 1}, routing_key="q-iter")
            async with conn.Consumer([queue], on_decode_error=on_decode_error) as consumer:
                async for message in consumer:
                    assert message.payload == {"n": 1}
                    await message.ack()
                    break
            assert errors == ["DecodeError"]

    run(main())


def test_an_undecodable_message_without_a_handler_is_raised_by_the_wait(broker: memory.Broker) -> None:
    queue = Queue("q-undecodable")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            producer = conn.Producer()
            await producer.publish(b"\x80", routing_key=queue.name, content_type="application/json", declare=[queue])
            await producer.publish({"n": 1}, routing_key=queue.name)
            bodies: list[Any] = []
            async with conn.Consumer([queue], callbacks=[lambda body, message: bodies.append(body)]):
                with pytest.raises(DecodeError, match="q-undecodable.*on_decode_error") as info:
                    await conn.drain_events(timeout=1)
                assert info.value.__cause__ is not None
                while not bodies:  # the consumer goes on with the next message
                    await conn.drain_events(timeout=1)
            assert bodies == [{"n": 1}]

    run(main())


def test_timeouts_around_waits(broker: memory.Broker) -> None:
    queue = Queue("q-timeouts")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            async with conn.Consumer([queue], callbacks=[lambda body, message: None]) as consumer:
                with pytest.raises(socket.timeout):
                    await conn.drain_events(timeout=0.01)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(consumer.__aiter__().__anext__(), 0.01)
                if sys.version_info >= (3, 11):
                    with pytest.raises(TimeoutError):
                        async with asyncio.timeout(0.01):
                            await conn.drain_events()
                # still consuming after the cancelled waits
                await conn.Producer().publish("late", routing_key="q-timeouts")
                await conn.drain_events(timeout=2)

    run(main())


def test_entities_are_shared_with_the_blocking_api(broker: memory.Broker) -> None:
    exchange = Exchange("ex-entities", "topic")
    queue = Queue("q-entities", exchange, routing_key="a.#")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            channel = conn.default_channel
            assert await queue(channel).declare() == "q-entities"
            await exchange(channel).declare()
            await Exchange("")(channel).declare()  # nothing to declare: awaitable all the same
            await conn.Producer(exchange=exchange).publish("m", routing_key="a.b")
            name, ready, consumers = await queue(channel).queue_declare(passive=True)
            assert (name, ready, consumers) == ("q-entities", 1, 0)
            assert await queue(channel).purge() == 1
            await queue(channel).unbind_from(exchange, "a.#")
            await queue(channel).delete()
            await exchange(channel).delete()

    run(main())
    with SyncConnection("memory://", **opts(broker)) as sync:  # the same Queue object, blocking
        assert queue(sync.default_channel).declare() == "q-entities"


def test_batch_sends_when_the_block_ends(broker: memory.Broker) -> None:
    queue = Queue("q-batch")

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            bound = queue(conn.default_channel)
            await bound.declare()
            producer = conn.Producer()
            async with producer.batch():
                for n in range(3):
                    await producer.publish(n, routing_key="q-batch")
                assert (await bound.queue_declare(passive=True))[1] == 0
            assert (await bound.queue_declare(passive=True))[1] == 3
            with pytest.raises(RuntimeError):
                async with producer.batch():
                    await producer.publish(9, routing_key="q-batch")
                    raise RuntimeError("discarded")
            assert (await bound.queue_declare(passive=True))[1] == 3
            # a batch belongs to its task: another task's publish goes out at once
            go = asyncio.Event()

            async def elsewhere() -> None:
                await go.wait()
                await producer.publish("now", routing_key="q-batch")

            other = asyncio.ensure_future(elsewhere())  # made before the batch: not in its context
            async with producer.batch():
                await producer.publish("later", routing_key="q-batch")
                go.set()
                await other
                assert (await bound.queue_declare(passive=True))[1] == 4
                with pytest.raises(RuntimeError, match="nested"):
                    async with producer.batch():
                        pass
            assert (await bound.queue_declare(passive=True))[1] == 5
            await producer.publish("after", routing_key="q-batch")  # no batch open any more
            assert (await bound.queue_declare(passive=True))[1] == 6
            # a task started in a block that has ended publishes at once, batch open or not
            late_go = asyncio.Event()

            async def late() -> None:
                await late_go.wait()
                await producer.publish("late", routing_key="q-batch")

            async with producer.batch():
                started_inside = asyncio.ensure_future(late())
            async with producer.batch():
                late_go.set()
                await started_inside
                assert (await bound.queue_declare(passive=True))[1] == 7

    run(main())


def test_unacked_messages_come_back_when_the_connection_closes(broker: memory.Broker) -> None:
    name = f"q-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        async with Connection("memory://", **opts(broker)) as conn:
            await conn.Producer().publish("once", routing_key=name, declare=[Queue(name)])
            async with conn.Consumer([Queue(name)]) as consumer:
                async for message in consumer:
                    assert not message.delivery_info.get("redelivered")
                    break  # not acked
        async with Connection("memory://", **opts(broker)) as conn:
            message = await Queue(name)(conn.default_channel).get()
            assert message.payload == "once" and message.delivery_info["redelivered"]

    run(main())


def test_unsupported_transport_says_so() -> None:
    class Elsewhere(memory.Transport):  # a transport of its own, no asyncio driver
        driver_type = "elsewhere"

    async def main() -> None:
        with pytest.raises(NotImplementedError, match="elsewhere"):
            await Connection("memory://", transport=Elsewhere).connect()

    run(main())


def test_the_plugin_s_fixture_connects_in_the_test_s_loop(kombu_aio_connection: Connection, kombu_broker: Any) -> None:
    async def main() -> None:
        async with kombu_aio_connection as conn:
            await conn.Producer().publish({"id": 7}, routing_key="orders", declare=[Queue("orders")])

    run(main())
    assert kombu_broker.bodies("orders") == [{"id": 7}]


def test_pools(broker: memory.Broker) -> None:
    from kombu_like.aio.pools import ProducerPool
    from kombu_like.exceptions import ConnectionLimitExceeded

    async def main() -> None:
        pool = Connection("memory://", **opts(broker)).Pool(limit=2)
        first = await pool.acquire()
        async with pool.acquire() as second:
            assert first.connected and second.connected and first is not second
            with pytest.raises(ConnectionLimitExceeded):
                await pool.acquire(timeout=0.01)
            waiting = asyncio.ensure_future(pool.acquire(timeout=5))
            await asyncio.sleep(0)
            await first.release()
            assert await waiting is first  # the released one, reused
        await first.release()
        producers = ProducerPool(pool, limit=2)
        async with producers.acquire(timeout=5) as producer:
            await producer.publish("pooled", routing_key="q-pool", declare=[Queue("q-pool")])
        assert pool.in_use == 0
        await pool.close()
        assert not first.connected

    run(main())
    with SyncConnection("memory://", **opts(broker)) as sync:
        assert Queue("q-pool")(sync.default_channel).get().payload == "pooled"


def test_a_consumer_cancelled_100_times_loses_nothing(broker: memory.Broker) -> None:
    """10,000 messages, 100 cancellations in every consumer state (t/aio_cancellation.py):
    each message acked exactly once, none left.  A new seed each run, named by any
    failure; ``KOMBU_LIKE_CANCEL_SEED`` replays one."""
    seed = cancellation_seed()
    queue = Queue(f"q-cancel-{uuid.uuid4().hex[:6]}")
    asyncio.run(asyncio.wait_for(run_cancellations(lambda: Connection("memory://", **opts(broker)), queue, seed), 60))


def test_global_pools_by_broker_and_loop(broker: memory.Broker) -> None:
    from kombu_like import pools as blocking_pools
    from kombu_like.aio.pools import close_all, connections, producers
    from kombu_like.exceptions import ConnectionLimitExceeded

    limit = blocking_pools.get_limit()
    name = f"q-{uuid.uuid4().hex[:6]}"

    async def first_loop() -> Any:
        conn = Connection("memory://", **opts(broker))
        pool = connections[conn]
        assert connections[Connection("memory://", **opts(broker))] is pool  # the same broker
        assert connections[Connection("memory://")] is not pool
        assert pool.limit == 2  # the global limit
        async with producers[conn].acquire(timeout=5) as producer:
            await producer.publish("pooled", routing_key=name, declare=[Queue(name)])
            assert pool.in_use == 1  # the producer's connection comes from the group's pool
        first, second = await pool.acquire(), await pool.acquire()
        with pytest.raises(ConnectionLimitExceeded):
            await pool.acquire(timeout=0.01)
        waiting = asyncio.ensure_future(pool.acquire(timeout=5))
        await asyncio.sleep(0)
        blocking_pools.set_limit(3)  # every global pool grows, asyncio's too
        assert await waiting is not None and pool.limit == 3
        for connection in (first, second, await waiting):
            await connection.release()
        await close_all()
        assert not first.connected
        return pool

    try:
        blocking_pools.set_limit(2)
        pool = run(first_loop())

        async def second_loop() -> None:  # connections of the first loop are not for this one
            assert connections[Connection("memory://", **opts(broker))] is not pool
            async with connections[Connection("memory://", **opts(broker))].acquire(timeout=5) as conn:
                message = await Queue(name)(conn).get()
                assert message.payload == "pooled"
                await message.ack()
            await close_all()

        run(second_loop())
    finally:
        blocking_pools.reset()
        blocking_pools.set_limit(limit)


@pytest.mark.parametrize("transport", ["memory", "sqlite"])
def test_every_publish_is_awaitable_and_gives_none(transport: str, broker: memory.Broker, tmp_path: Any) -> None:
    """As on AMQP without confirms (and as the blocking API returns): ``await
    producer.publish``, ``await exchange.publish`` and a batch give ``None``, in-process
    (memory://) and through an I/O thread (sqlite://)."""
    url, options = ("memory://", opts(broker)) if transport == "memory" else (f"sqlite:///{tmp_path / 'p.db'}", {})
    exchange = Exchange("x-sent", "direct")
    queue = Queue("q-sent", exchange, routing_key="k")

    def raw(exchange: Any) -> Any:
        return exchange.Message(b"raw", content_type="application/data", content_encoding="binary")

    async def main() -> None:
        async with Connection(url, **options) as conn:
            bound = exchange(conn.default_channel)
            await queue(conn.default_channel).declare()
            producer = conn.Producer(exchange=exchange)
            assert await producer.publish("one", routing_key="k") is None
            assert await bound.publish(raw(bound), routing_key="k") is None
            async with producer.batch():
                assert await producer.publish("batched", routing_key="k") is None

    run(main())
    with SyncConnection(url, **options) as sync:
        bound = exchange(sync.default_channel)
        assert sync.Producer(exchange=exchange).publish("two", routing_key="k") is None
        assert bound.publish(raw(bound), routing_key="k") is None
        assert queue(sync.default_channel).queue_declare(passive=True).message_count == 5
