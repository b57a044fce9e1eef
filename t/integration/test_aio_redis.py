"""The asyncio API on Redis beyond its conformance tests (AsyncAPITests, run in
test_redis_conformance): fanout, unacked messages given back on close and after the
visibility timeout, cancelled, refused and confirmed publishes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from kombu_like import Connection as SyncConnection
from kombu_like import Exchange, Queue
from kombu_like.aio import Connection
from kombu_like.exceptions import MessageReturned
from kombu_like.testing.conformance.aio import stopped

pytestmark = pytest.mark.redis


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_fanout_to_async_and_blocking_consumers(redis_url: str, unique_name: str) -> None:
    exchange = Exchange(f"{unique_name}.fan", "fanout", auto_delete=True)
    mine, theirs = Queue(f"{unique_name}.a", exchange), Queue(f"{unique_name}.b", exchange)

    async def main() -> None:
        async with Connection(redis_url) as conn:
            got: list[Any] = []

            async def handle(body: Any, message: Any) -> None:
                got.append(body)
                await message.ack()

            with SyncConnection(redis_url) as sync:
                blocking = sync.Consumer([theirs], callbacks=[lambda body, message: (got.append(body), message.ack())])
                with blocking:
                    async with conn.Consumer([mine], callbacks=[handle]):
                        await conn.Producer(exchange=exchange).publish("to all")
                        await conn.drain_events(timeout=5)
                        sync.drain_events(timeout=5)
            assert got == ["to all", "to all"]
            for queue in (mine, theirs):
                await queue(conn.default_channel).delete()

    run(main())


def test_unacked_messages_come_back_on_close_and_after_the_visibility_timeout(
    redis_url: str, unique_name: str, own_unacked: dict[str, str]
) -> None:
    queue = Queue(unique_name, auto_delete=False)
    quick = {**own_unacked, "visibility_timeout": 0.2, "unacked_restore_interval": 0.05}

    async def main() -> None:
        async with Connection(redis_url, transport_options=own_unacked) as conn:
            await queue(conn.default_channel).declare()
            await conn.Producer().publish("held", routing_key=unique_name)
            held = await queue(conn.default_channel).get()
            assert held is not None and held.payload == "held"
        # closed unacked: it went back
        async with Connection(redis_url, transport_options=own_unacked) as conn:
            held = await queue(conn.default_channel).get()
            assert held is not None and held.payload == "held"
            assert held.delivery_info.get("redelivered")
            # held on and never acked: a consumer's timers give it back after the timeout
            async with Connection(redis_url, transport_options=quick) as other:
                async with other.Consumer([queue]) as consumer:
                    async for message in consumer:
                        assert message.payload == "held"
                        await message.ack()
                        break
            await held.ack()  # too late: restored and consumed by the other; nothing breaks
            assert (await queue(conn.default_channel).queue_declare(passive=True))[1] == 0
            await queue(conn.default_channel).delete()

    run(main())


def test_cancelled_publishes_arrive_whole_or_not_at_all(redis_url: str, unique_name: str) -> None:
    queue = Queue(unique_name, auto_delete=False)
    body = {"blob": "x" * 50_000}

    async def main() -> None:
        for options in ({}, {"confirm_publish": True}):
            async with Connection(redis_url, transport_options=options) as conn:
                await queue(conn.default_channel).declare()
                producer = conn.Producer()
                tasks = [asyncio.ensure_future(producer.publish(body, routing_key=unique_name)) for _ in range(20)]
                await asyncio.sleep(0)
                for task in tasks[::2]:
                    await stopped(task)
                await asyncio.gather(*tasks[1::2])
                # the connection goes on: every message there is whole
                await producer.publish(body, routing_key=unique_name)
                count = (await queue(conn.default_channel).queue_declare(passive=True))[1]
                assert 11 <= count <= 21
                for _ in range(count):
                    message = await queue(conn.default_channel).get()
                    assert message is not None and message.payload == body
                    await message.ack()
                await queue(conn.default_channel).delete()

    run(main())


def test_publish_failures_are_raised_not_lost(redis_url: str, unique_name: str) -> None:
    exchange = Exchange(f"{unique_name}.ex", "direct", auto_delete=True)
    queue = Queue(unique_name, exchange, routing_key="k", auto_delete=False)

    async def main() -> None:
        async with Connection(redis_url) as conn:
            producer = conn.Producer(exchange=exchange)
            await producer.publish("stored", routing_key="k", declare=[queue])
            with pytest.raises(MessageReturned):
                await producer.publish("nowhere", routing_key="unbound", mandatory=True)
            # a list key that is no list: Redis refuses the write-behind LPUSH ...
            client = redis.Redis.from_url(redis_url)
            try:
                client.delete(unique_name)
                client.set(unique_name, "not a list")
                for batched in (False, True):
                    if batched:
                        async with producer.batch():
                            for _ in range(3):
                                await producer.publish("refused", routing_key="k")
                    else:
                        await producer.publish("refused", routing_key="k")
                    # ... which the next publish (or wait) raises
                    with pytest.raises(Exception, match="WRONGTYPE"):
                        for _ in range(100):
                            await producer.publish("after", routing_key="k")
                            await asyncio.sleep(0.01)
            finally:
                client.delete(unique_name)
                client.close()
            await queue(conn.default_channel).delete()

    run(main())


def test_confirmed_publishes_are_stored_when_awaited(redis_url: str, unique_name: str) -> None:
    queue = Queue(unique_name, auto_delete=False)

    async def main() -> None:
        async with Connection(redis_url, transport_options={"confirm_publish": True}) as conn:
            await queue(conn.default_channel).declare()
            producer = conn.Producer()
            await producer.publish([1], routing_key=unique_name)
            async with producer.batch():
                for n in range(5):
                    await producer.publish([n], routing_key=unique_name)
            client = redis.Redis.from_url(redis_url)
            try:
                stored = [json.loads(raw) for raw in client.lrange(unique_name, 0, -1)]
            finally:
                client.close()
            assert len(stored) == 6
            await queue(conn.default_channel).delete()

    run(main())


def _kill_clients(redis_url: str, name: str, kinds: tuple[str, ...] = ()) -> int:
    """Cut the connections a client named ``name`` holds (those whose last command was
    one of ``kinds``, when given); how many were cut."""
    client = redis.Redis.from_url(redis_url)
    try:
        cut = 0
        for info in client.client_list():
            if info.get("name") == name and (not kinds or info.get("cmd") in kinds):
                client.client_kill_filter(_id=info["id"])
                cut += 1
        return cut
    finally:
        client.close()


def test_a_redis_connection_runs_on_the_loop_without_a_thread(redis_url: str, unique_name: str) -> None:
    import threading

    queue = Queue(unique_name, auto_delete=False)
    before = set(threading.enumerate())

    async def main() -> list[threading.Thread]:
        async with Connection(redis_url) as conn:
            await queue(conn.default_channel).declare()
            await conn.Producer().publish("hi", routing_key=unique_name)
            async with conn.Consumer([queue]) as consumer:
                async for message in consumer:
                    await message.ack()
                    break
            started = [t for t in threading.enumerate() if t not in before]
            await queue(conn.default_channel).delete()
            return started

    assert run(main()) == []


def test_a_cut_while_a_consumer_waits_on_an_empty_queue_loses_nothing(redis_url: str, unique_name: str) -> None:
    queue = Queue(unique_name, auto_delete=False)

    async def main() -> None:
        async with Connection(redis_url, transport_options={"client_name": unique_name}) as conn:
            await queue(conn.default_channel).declare()
            got: list[Any] = []

            async def handle(body: Any, message: Any) -> None:
                got.append(body)
                await message.ack()

            async with conn.Consumer([queue], callbacks=[handle]):
                with pytest.raises(TimeoutError):
                    await conn.drain_events(timeout=0.2)  # waiting: the take found the queue empty
                assert _kill_clients(redis_url, unique_name) >= 2  # the take and command connections
                with SyncConnection(redis_url) as sync:
                    sync.Producer().publish("after the cut", routing_key=unique_name)
                # the cut is raised by a wait (as on the blocking API), then consuming goes on
                for _ in range(3):
                    try:
                        await conn.drain_events(timeout=2)
                    except conn.connection_errors:
                        continue
                    break
            assert got == ["after the cut"]
            assert (await queue(conn.default_channel).queue_declare(passive=True))[1] == 0
            await queue(conn.default_channel).delete()

    run(main())


def test_a_get_whose_caller_stopped_waiting_gives_its_message_back(redis_url: str, unique_name: str) -> None:
    queue = Queue(unique_name, auto_delete=False)

    async def main() -> None:
        async with Connection(redis_url) as conn:
            bound = queue(conn.default_channel)
            await bound.declare()
            await conn.Producer().publish("kept", routing_key=unique_name)
            # cancelled at every point of the get: before the take is sent, while its reply
            # is on the way, after
            for turns in range(8):
                task = asyncio.ensure_future(bound.get())
                for _ in range(turns):
                    await asyncio.sleep(0)
                await stopped(task)
                if not task.cancelled() and task.result() is not None:
                    await task.result().requeue()  # it finished first: given back as a user would
                again = await bound.get()
                assert again is not None and again.payload == "kept", turns
                await again.requeue()
            assert (await bound.queue_declare(passive=True))[1] == 1
            await bound.delete()

    run(main())
