"""Delayed delivery on ``redis+streams://`` through the public API, on the real Redis.

Messages published with ``x-delay`` (ms) or Celery's ``eta`` wait in their queue's delayed
set in Redis and reach consumers when due, on the blocking API and under the Hub.
"""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from kombu_like import Connection, Consumer, Message, Producer, Queue
from kombu_like.asynchronous import Hub
from kombu_like.transport.redis_streams.keys import StreamKeys
from t.integration.streams_fixtures import prefix, url

pytestmark = pytest.mark.redis

#: how late after its due time a delayed message may reach its consumer
LATE = 1.0
#: how early: the due time is the server's clock, the check this machine's (the same one)
EARLY = 0.05


def _connection(url: str, prefix: str, **options: Any) -> Connection:
    return Connection(url, transport_options={"global_keyprefix": prefix, "lease": 2, **options})


def _drain_until(conn: Connection, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        assert left > 0, f"not done within {timeout}s"
        try:
            conn.drain_events(timeout=min(left, 0.5))
        except TimeoutError:
            pass


def _run_until(hub: Hub, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    tick = hub.call_repeatedly(0.05, lambda: None)  # bounds each round's wait
    try:
        while not done():
            assert time.monotonic() < deadline, f"not done within {timeout}s of running the loop"
            hub.run_once()
    finally:
        if tick is not None:
            tick.cancel()


def _delayed_count(redis_url: str, prefix: str, queue: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return int(client.zcard(StreamKeys(prefix).delayed(queue)))


def _publish_delays(conn: Connection, queue: Queue, delays_ms: list[int]) -> dict[str, float]:
    """Publish one message per delay; body -> when it is due (monotonic)."""
    producer = Producer(conn)
    due: dict[str, float] = {}
    for n, delay in enumerate(delays_ms):
        body = f"m{n}-{delay}"
        producer.publish(body, routing_key=queue.name, declare=[queue], headers={"x-delay": delay})
        due[body] = time.monotonic() + delay / 1000
    return due


def test_delayed_messages_reach_a_blocking_consumer_when_due(url: str, redis_url: str, prefix: str) -> None:
    queue = Queue("dq")
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    with _connection(url, prefix) as conn:
        Producer(conn).publish("now", routing_key=queue.name, declare=[queue])
        due = _publish_delays(conn, queue, [1500, 300, 900])
        due["now"] = time.monotonic()
        assert _delayed_count(redis_url, prefix, queue.name) == 3
        with Consumer(conn, [queue], on_message=on_message):
            _drain_until(conn, lambda: len(arrived) == 4, timeout=10)
    assert sorted(arrived, key=arrived.__getitem__) == ["now", "m1-300", "m2-900", "m0-1500"]
    for body, at in arrived.items():
        assert due[body] - EARLY <= at <= due[body] + LATE, (body, at - due[body])
    assert _delayed_count(redis_url, prefix, queue.name) == 0


def test_delayed_messages_reach_a_consumer_under_the_hub_when_due(url: str, prefix: str) -> None:
    queue = Queue("dq-hub")
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    hub = Hub()
    try:
        with _connection(url, prefix) as conn:
            conn.register_with_event_loop(hub)
            with Consumer(conn, [queue], on_message=on_message):
                # scheduled while the consumer waits: its next look must come by then
                with _connection(url, prefix) as producer_conn:
                    due = _publish_delays(producer_conn, queue, [700, 200, 1200])
                _run_until(hub, lambda: len(arrived) == 3, timeout=10)
    finally:
        hub.close()
    assert sorted(arrived, key=arrived.__getitem__) == ["m1-200", "m0-700", "m2-1200"]
    for body, at in arrived.items():
        assert due[body] - EARLY <= at <= due[body] + LATE, (body, at - due[body])


def test_delayed_messages_survive_their_consumer_closing(url: str, redis_url: str, prefix: str) -> None:
    queue = Queue("dq-restart")
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    with _connection(url, prefix) as first:
        due = _publish_delays(first, queue, [1000])
        with Consumer(first, [queue], on_message=on_message):
            _drain_until(first, lambda: time.monotonic() >= due["m0-1000"] - 0.6, timeout=5)
    assert arrived == {}
    assert _delayed_count(redis_url, prefix, queue.name) == 1
    with _connection(url, prefix) as second, Consumer(second, [queue], on_message=on_message):
        _drain_until(second, lambda: len(arrived) == 1, timeout=10)
    assert due["m0-1000"] - EARLY <= arrived["m0-1000"] <= due["m0-1000"] + LATE


def test_celery_eta_header_delays_unless_switched_off(url: str, prefix: str) -> None:
    queue = Queue("dq-eta")
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.time()
        message.ack()

    eta = datetime.now(timezone.utc) + timedelta(seconds=0.8)
    past = datetime.now(timezone.utc) - timedelta(seconds=5)
    with _connection(url, prefix) as conn:
        producer = Producer(conn)
        producer.publish("eta", routing_key=queue.name, declare=[queue], headers={"eta": eta.isoformat()})
        producer.publish("past", routing_key=queue.name, headers={"eta": past.isoformat()})
        producer.publish("none", routing_key=queue.name, headers={"eta": None})
        with _connection(url, prefix, eta_delivery=False) as off:
            Producer(off).publish("off", routing_key=queue.name, headers={"eta": eta.isoformat()})
        sent = time.time()
        with Consumer(conn, [queue], on_message=on_message):
            _drain_until(conn, lambda: len(arrived) == 4, timeout=10)
    assert sorted(arrived, key=arrived.__getitem__)[-1] == "eta"
    for body in ("past", "none", "off"):
        assert arrived[body] < eta.timestamp(), body
    assert eta.timestamp() - EARLY <= arrived["eta"] <= eta.timestamp() + LATE
    assert sent < eta.timestamp()


def test_delayed_messages_keep_their_priority(url: str, prefix: str) -> None:
    queue = Queue("dq-prio", max_priority=9)
    order: list[str] = []

    def on_message(message: Message) -> None:
        order.append(message.payload)
        message.ack()

    with _connection(url, prefix) as conn:
        producer = Producer(conn)
        for body, priority in (("low", 1), ("high", 8), ("middle", 5)):
            producer.publish(body, routing_key=queue.name, declare=[queue], priority=priority, headers={"x-delay": 100})
        time.sleep(0.3)  # all due before any consumer looks: one move takes them together
        with Consumer(conn, [queue], on_message=on_message, prefetch_count=1):
            _drain_until(conn, lambda: len(order) == 3, timeout=10)
    assert order == ["high", "middle", "low"]


def test_size_purge_and_delete_with_delayed_messages(url: str, redis_url: str, prefix: str) -> None:
    queue = Queue("dq-size")
    with _connection(url, prefix) as conn:
        channel = conn.default_channel
        Producer(conn).publish("ready", routing_key=queue.name, declare=[queue])
        _publish_delays(conn, queue, [60_000, 120_000])
        bound = queue(channel)
        # delayed messages are not ready: not counted, as on RabbitMQ's delayed-message exchange
        assert bound.queue_declare(passive=True).message_count == 1
        # a purge leaves nothing to arrive later
        assert bound.purge() == 3
        assert _delayed_count(redis_url, prefix, queue.name) == 0
        _publish_delays(conn, queue, [60_000])
        bound.delete()
        assert _delayed_count(redis_url, prefix, queue.name) == 0


def test_a_bad_delay_header_is_refused_naming_it(url: str, prefix: str) -> None:
    queue = Queue("dq-bad")
    with _connection(url, prefix) as conn:
        with pytest.raises(ValueError, match=r"x-delay.*'soon'.*dq-bad"):
            Producer(conn).publish("x", routing_key=queue.name, declare=[queue], headers={"x-delay": "soon"})
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 0


def test_many_delayed_messages_leave_the_consumer_flat_and_the_due_ones_on_time(
    url: str, redis_url: str, prefix: str
) -> None:
    """100,000 delayed messages (1 s .. 30 days): the consumer holds none of them in
    memory while they wait, and the few hundred due in 1-3 s arrive on time."""
    queue = Queue("dq-many")
    soon = 300
    later = 100_000 - soon
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    with _connection(url, prefix) as producer_conn, _connection(url, prefix) as conn:
        producer = Producer(producer_conn)
        producer.maybe_declare(queue)
        with Consumer(conn, [queue], on_message=on_message):
            published: dict[str, float] = {}
            delays: dict[str, float] = {}
            with producer.batch(max_size=5000):
                for n in range(later):
                    # spread over 30 s .. 30 days
                    delay = 30_000 + (n * 2_592_000_000) // later
                    producer.publish(f"l{n}", routing_key=queue.name, headers={"x-delay": delay})
                for n in range(soon):
                    body = f"s{n}"
                    delays[body] = 1 + n * 2 / soon
                    published[body] = time.monotonic()
                    producer.publish(body, routing_key=queue.name, headers={"x-delay": int(delays[body] * 1000)})
            scheduled = time.monotonic()
            assert scheduled - min(published.values()) < 1.0, "the machine is too slow to check the due times"
            # from here on the consumer waits for the due ones beside 99,700 that are not
            gc.collect()
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                _drain_until(conn, lambda: len(arrived) == soon, timeout=15)
                after, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert _delayed_count(redis_url, prefix, queue.name) == later
    # each was due between its publish and the batch's send (plus its delay)
    for body, at in arrived.items():
        assert published[body] + delays[body] - EARLY <= at <= scheduled + delays[body] + LATE, body
    # the consumer never held the waiting messages (100,000 envelopes: tens of MB)
    assert peak - before < 5_000_000, (before, after, peak)


def test_time_to_live_counts_from_when_a_delayed_message_is_due(url: str, prefix: str) -> None:
    # due after 1 s with 0.6 s to live: counted from the publish it would expire first
    queue = Queue("dq-ttl", message_ttl=0.6)
    received: list[str] = []
    with _connection(url, prefix) as conn:
        Producer(conn).publish("late", routing_key=queue.name, declare=[queue], headers={"x-delay": 1000})
        with Consumer(conn, [queue], callbacks=[lambda body, message: (received.append(body), message.ack())]):
            _drain_until(conn, lambda: bool(received), timeout=10)
    assert received == ["late"]


def test_a_rejected_delayed_message_is_dead_lettered_at_once(url: str, redis_url: str, prefix: str) -> None:
    dead = Queue("dq-dead")
    queue = Queue("dq-dlx", queue_arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead.name})
    seen: list[str] = []
    after_reject: list[int] = []

    def on_message(message: Message) -> None:
        seen.append(message.delivery_info["routing_key"])
        if message.delivery_info["routing_key"] == queue.name:
            message.reject()
            after_reject.append(_delayed_count(redis_url, prefix, dead.name))
        else:
            message.ack()

    with _connection(url, prefix) as conn:
        Producer(conn).publish("x", routing_key=queue.name, declare=[queue, dead], headers={"x-delay": 200})
        with Consumer(conn, [queue, dead], on_message=on_message):
            _drain_until(conn, lambda: len(seen) == 2, timeout=10)
    # its x-delay was served once: the dead-letter copy went straight to its queue
    assert seen == [queue.name, dead.name]
    assert after_reject == [0]


def test_a_consumer_publishing_delayed_messages_to_its_own_queue_gets_them_when_due(url: str, prefix: str) -> None:
    # as a Celery worker retrying a task with a countdown: its own next look comes by then
    queue = Queue("dq-self")
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    with _connection(url, prefix) as conn:
        with Consumer(conn, [queue], on_message=on_message):
            Producer(conn).publish("first", routing_key=queue.name, declare=[queue])
            _drain_until(conn, lambda: "first" in arrived, timeout=10)
            due = _publish_delays(conn, queue, [150, 50])
            _drain_until(conn, lambda: len(arrived) == 3, timeout=10)
    for body in due:
        assert due[body] - EARLY <= arrived[body] <= due[body] + LATE, (body, arrived[body] - due[body])


def test_delayed_messages_on_the_asyncio_api(url: str, prefix: str) -> None:
    import asyncio

    from kombu_like.aio import Connection as AsyncConnection

    queue = Queue("dq-aio")

    async def main() -> tuple[float, float]:
        options = {"global_keyprefix": prefix, "lease": 2}
        async with AsyncConnection(url, transport_options=options) as conn:
            await conn.Producer().publish("later", routing_key=queue.name, declare=[queue], headers={"x-delay": 300})
            due = time.monotonic() + 0.3
            async with conn.Consumer([queue]) as consumer:
                async for message in consumer:
                    await message.ack()
                    return due, time.monotonic()
        raise AssertionError("the consumer ended without a message")

    due, arrived = asyncio.run(asyncio.wait_for(main(), 10))
    assert due - EARLY <= arrived <= due + LATE


def test_delayed_messages_on_a_redis_cluster(redis_cluster: Any, unique_name: str) -> None:
    # queues on three masters, their script caches empty (a master restarted or promoted):
    # each queue's delayed set and streams share its slot, so each script runs on one node
    import contextlib

    from t.integration.test_redis_streams_cluster import delete_prefixed

    prefix = f"kldelayed-{unique_name}:"
    names = redis_cluster.names_on_distinct_masters("dq", 3)
    queues = [Queue(name, routing_key=name, max_priority=5) for name in names]
    arrived: dict[str, float] = {}

    def on_message(message: Message) -> None:
        arrived[message.payload] = time.monotonic()
        message.ack()

    options = {"cluster": True, "global_keyprefix": prefix, "lease": 2}
    try:
        for port in redis_cluster.masters():
            with contextlib.closing(redis_cluster.node(port).client()) as client:
                client.script_flush()
        with Connection(redis_cluster.url(), transport_options=options) as conn:
            producer = Producer(conn)
            due: dict[str, float] = {}
            for n, queue in enumerate(queues):
                delay = 300 * (n + 1)
                producer.publish(
                    queue.name, routing_key=queue.name, declare=[queue], priority=n, headers={"x-delay": delay}
                )
                due[queue.name] = time.monotonic() + delay / 1000
            with Consumer(conn, queues, on_message=on_message):
                _drain_until(conn, lambda: len(arrived) == len(queues), timeout=10)
    finally:
        delete_prefixed(redis_cluster, prefix)
    for name, at in arrived.items():
        assert due[name] - EARLY <= at <= due[name] + LATE, (name, at - due[name])


def test_a_queue_whose_delayed_key_is_broken_does_not_hold_up_the_others(
    url: str, redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken, good = Queue("dq-broken"), Queue("dq-good")
    received: list[str] = []
    with redis.Redis.from_url(redis_url) as client:
        client.set(StreamKeys(prefix).delayed(broken.name), "not a sorted set")
    with _connection(url, prefix) as conn:
        Producer(conn).publish("later", routing_key=good.name, declare=[broken, good], headers={"x-delay": 200})
        with caplog.at_level("WARNING", logger="kombu_like.transport.redis_streams"):
            with Consumer(
                conn, [broken, good], callbacks=[lambda body, message: (received.append(body), message.ack())]
            ):
                _drain_until(conn, lambda: bool(received), timeout=10)
    assert received == ["later"]
    assert any("dq-broken" in record.getMessage() for record in caplog.records)


def test_more_due_at_once_than_one_move_takes_all_arrive(url: str, prefix: str) -> None:
    # 1,200 due together: moved 500 a run, the runs follow one another without a wait
    queue = Queue("dq-burst")
    received: set[str] = set()

    def on_message(message: Message) -> None:
        received.add(message.payload)
        message.ack()

    with _connection(url, prefix) as conn:
        producer = Producer(conn)
        producer.maybe_declare(queue)
        with producer.batch():
            for n in range(1200):
                producer.publish(str(n), routing_key=queue.name, headers={"x-delay": 300})
        due = time.monotonic() + 0.3
        with Consumer(conn, [queue], on_message=on_message, prefetch_count=100):
            _drain_until(conn, lambda: len(received) == 1200, timeout=20)
        done = time.monotonic()
    assert received == {str(n) for n in range(1200)}
    assert done >= due - EARLY
