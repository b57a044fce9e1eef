"""Queues declared with ``x-expires`` (``Queue(expires=...)``) on ``redis+streams://``:
deleted once unused that long -- messages and bindings with them -- and kept while a
consumer waits on them (blocking API, Hub, asyncio API), while they are read with ``get`` or declared
again."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from kombu_like import Connection, Consumer, Exchange, Message, Queue, aio
from kombu_like.asynchronous import Hub
from kombu_like.exceptions import MessageReturned, NotFound, PreconditionFailed
from kombu_like.transport.redis_streams.keys import StreamKeys
from t.integration.streams_fixtures import prefix, url
from t.integration.test_redis_evloop import hub, run_until
from t.integration.test_redis_streams_cluster import delete_prefixed
from t.redis_cluster import RedisClusterNodes

pytestmark = pytest.mark.redis

#: x-expires of the tests' queues, seconds
EXPIRES = 1.0


def exists(conn: Connection, name: str) -> bool:
    """Whether queue ``name``'s keys are in Redis: looked at without using the queue (a
    passive declaration would be a use, renewing its x-expires)."""
    store = conn.default_channel.store
    return bool(store.client.exists(store.keys.meta(name), store.keys.stream(name)))


def within(timeout: float, done: Callable[[], bool], step: Callable[[], object] = lambda: time.sleep(0.05)) -> float:
    """Seconds until ``done()`` holds, calling ``step()`` between looks; fails after ``timeout``."""
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout, f"condition not met within {timeout} s"
        step()
    return time.monotonic() - start


def drain(conn: Connection, seconds: float) -> None:
    """Run ``drain_events`` for ``seconds`` (what arrives goes to the consumers' callbacks)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=left)


def options(prefix: str) -> dict[str, object]:
    # the maintenance (and its sweep of expired queues) runs every quarter of the lease
    return {"global_keyprefix": prefix, "lease": 0.6, "expiry_sweep_interval": 0.2}


def loop_options(prefix: str) -> dict[str, object]:
    # an event loop's other timers (each followed by a take, which renews too) come
    # seldom: the renewals are the expiry's own
    return {"global_keyprefix": prefix, "lease": 60.0, "delayed_check_interval": 60.0}


def test_an_unused_queue_goes_with_its_messages_and_bindings(url: str, prefix: str, unique_name: str) -> None:
    check_unused_queue_goes(url, options(prefix), unique_name)


def test_an_unused_queue_goes_on_a_redis_cluster(redis_cluster: RedisClusterNodes, unique_name: str) -> None:
    prefix = f"klexp-{uuid.uuid4().hex[:8]}:"
    try:
        check_unused_queue_goes(redis_cluster.url(), {**options(prefix), "cluster": True}, unique_name)
    finally:
        delete_prefixed(redis_cluster, prefix)


def check_unused_queue_goes(url: str, transport_options: dict[str, object], unique_name: str) -> None:
    exchange = Exchange(f"{unique_name}-x", type="direct")
    queue = Queue(unique_name, exchange, routing_key="k", expires=EXPIRES)
    other = Queue(f"{unique_name}-other")  # consumed: its maintenance sweeps expired queues
    with Connection(url, transport_options=transport_options) as conn:
        producer = conn.Producer()
        declared = time.monotonic()
        producer.publish({"n": 1}, exchange=exchange, routing_key="k", declare=[queue, other])
        with Consumer(conn, [other], on_message=lambda message: message.ack()):
            # publishing is no use: the queue goes, its message with it
            within(10, lambda: not exists(conn, unique_name), lambda: drain(conn, 0.05))
            assert time.monotonic() - declared >= EXPIRES

            # and so does its binding: a mandatory message has nowhere to go
            def returned() -> bool:
                try:
                    producer.publish({"n": 2}, exchange=exchange, routing_key="k", mandatory=True)
                    return False
                except MessageReturned:
                    return True

            within(10, returned, lambda: drain(conn, 0.05))
        # declared again, it is a new queue: empty and unbound until bound
        fresh = Queue(unique_name, routing_key=unique_name)
        with conn.SimpleQueue(fresh) as simple:
            assert simple.qsize() == 0
        with pytest.raises(MessageReturned):
            producer.publish({"n": 3}, exchange=exchange, routing_key="k", mandatory=True)
        fresh(conn.default_channel).delete()


def test_a_publish_in_flight_when_the_queue_went_leaves_nothing_in_the_queue_declared_again(
    redis_url: str, url: str, prefix: str, unique_name: str
) -> None:
    # a publish that read the queue's binding before the sweep removed it writes the
    # queue's stream after the sweep collected the queue: written here by hand, as it lands
    keys = StreamKeys(prefix)
    queue = Queue(unique_name, routing_key=unique_name, expires=EXPIRES)
    other = Queue(f"{unique_name}-other")  # consumed: its maintenance sweeps expired queues
    with Connection(url, transport_options=options(prefix)) as conn, redis.Redis.from_url(redis_url) as client:
        conn.Producer().publish({"n": 1}, routing_key=unique_name, declare=[queue, other])
        [(_, fields)] = client.xrange(keys.stream(unique_name))
        with Consumer(conn, [other], on_message=lambda message: message.ack()):
            within(10, lambda: bool(client.exists(keys.gone(unique_name))), lambda: drain(conn, 0.05))
        client.xadd(keys.stream(unique_name), fields)
        with conn.SimpleQueue(Queue(unique_name, routing_key=unique_name)) as simple:
            assert simple.qsize() == 0
            simple.queue.delete()


def test_a_waiting_consumer_keeps_its_queue(url: str, prefix: str, unique_name: str) -> None:
    queue = Queue(unique_name, routing_key=unique_name, expires=EXPIRES)
    received: list[int] = []

    def on_message(message: Message) -> None:
        received.append(message.payload["n"])
        message.ack()

    with Connection(url, transport_options=options(prefix)) as conn:
        with Consumer(conn, [queue], on_message=on_message):
            drain(conn, 2 * EXPIRES)  # nothing arrives, the consumer waits: a use
            assert exists(conn, unique_name)
            conn.Producer().publish({"n": 1}, routing_key=unique_name)
            within(5, lambda: received == [1], lambda: drain(conn, 0.05))
        assert exists(conn, unique_name)  # renewed while waited on: not gone at once
        within(10, lambda: not exists(conn, unique_name))


def test_a_loop_consumer_keeps_its_queue(hub: Hub, url: str, prefix: str, unique_name: str) -> None:
    queue = Queue(unique_name, routing_key=unique_name, expires=EXPIRES)
    with (
        Connection(url, transport_options=loop_options(prefix)) as conn,
        Connection(url, transport_options=options(prefix)) as probe,
    ):
        conn.register_with_event_loop(hub)
        with Consumer(conn, [queue], on_message=lambda message: message.ack()):
            until = time.monotonic() + 2 * EXPIRES
            run_until(hub, lambda: time.monotonic() >= until)
            assert exists(probe, unique_name)
        assert exists(probe, unique_name)  # renewed while waited on: not gone at once
        run_until(hub, lambda: not exists(probe, unique_name))


def test_an_asyncio_consumer_keeps_its_queue(url: str, prefix: str, unique_name: str) -> None:
    queue = Queue(unique_name, routing_key=unique_name, expires=EXPIRES)

    async def main(probe: Connection) -> None:
        async with aio.Connection(url, transport_options=loop_options(prefix)) as conn:
            async with conn.Consumer([queue]):
                with contextlib.suppress(socket.timeout):
                    await conn.drain_events(timeout=2 * EXPIRES)  # nothing arrives: waiting is a use
                assert exists(probe, unique_name)
            assert exists(probe, unique_name)  # renewed while waited on: not gone at once
            start = time.monotonic()
            while exists(probe, unique_name):
                assert time.monotonic() - start < 10, "the queue did not expire"
                await asyncio.sleep(0.05)

    with Connection(url, transport_options=options(prefix)) as probe:
        asyncio.run(asyncio.wait_for(main(probe), 30))


def test_gets_and_declarations_keep_a_queue(url: str, prefix: str, unique_name: str) -> None:
    queue = Queue(unique_name, routing_key=unique_name, expires=EXPIRES)
    with Connection(url, transport_options=options(prefix)) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        for _ in range(6):  # longer than x-expires, a get every quarter of it
            assert bound.get() is None
            time.sleep(EXPIRES / 4)
        assert exists(conn, unique_name)
        for _ in range(6):
            bound.declare()
            time.sleep(EXPIRES / 4)
        assert exists(conn, unique_name)
        for _ in range(6):  # passive declarations too, as on RabbitMQ (and qsize() is one)
            last = time.monotonic()
            bound.queue_declare(passive=True)
            time.sleep(EXPIRES / 4)
        assert exists(conn, unique_name)
        within(10, lambda: not exists(conn, unique_name))
        assert time.monotonic() - last >= EXPIRES


@pytest.mark.parametrize("expires", [0, -5, "soon"])
def test_x_expires_must_be_a_positive_number_of_milliseconds(
    url: str, prefix: str, unique_name: str, expires: object
) -> None:
    queue = Queue(unique_name, routing_key=unique_name, queue_arguments={"x-expires": expires})
    with Connection(url, transport_options=options(prefix)) as conn:
        with pytest.raises(PreconditionFailed, match=rf"x-expires.*{unique_name}"):
            queue(conn.default_channel).declare()
