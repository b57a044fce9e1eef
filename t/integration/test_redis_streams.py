"""Redis Streams transport behaviour beyond the conformance suite: dead-lettering,
x-max-length, requeue order, counts with messages in flight, streams that do not grow,
durable fanout.  Every test under a key prefix of its own, removed afterwards."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from kombu_like import Connection, Exchange, Message, Queue
from kombu_like.transport.redis_streams import StreamKeys
from kombu_like.transport.redis_streams.watch import Watcher
from t.integration.streams_fixtures import prefix

pytestmark = pytest.mark.redis


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def conn(redis_url: str, prefix: str) -> Iterator[Connection]:
    with Connection(
        redis_url.replace("redis://", "redis+streams://", 1), transport_options={"global_keyprefix": prefix}
    ) as c:
        yield c


def collect(conn: Connection, queue: Queue, count: int, ack: bool = True, timeout: float = 5.0) -> list[Message]:
    got: list[Message] = []

    def on_message(message: Message) -> None:
        got.append(message)
        if ack:
            message.ack()

    with conn.Consumer([queue], on_message=on_message, prefetch_count=count):
        while len(got) < count:
            conn.drain_events(timeout=timeout)
    return got


def quiet(conn: Connection, queue: Queue, seconds: float = 0.3) -> list[Message]:
    got: list[Message] = []
    with conn.Consumer([queue], on_message=got.append):
        try:
            conn.drain_events(timeout=seconds)
        except socket.timeout:
            pass
    return got


def test_reject_without_dead_letter_exchange_keeps_it_in_the_dead_stream(
    conn: Connection, raw: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(f"rej-{uuid.uuid4().hex[:6]}")
    conn.Producer().publish({"poison": True}, routing_key=queue.name, declare=[queue])
    [message] = collect(conn, queue, 1, ack=False)
    with caplog.at_level(logging.INFO, "kombu_like.transport.redis_streams"):
        message.reject()
    assert any(queue.name in r.getMessage() and "dead-lettered" in r.getMessage() for r in caplog.records)
    keys = StreamKeys(prefix)
    [(_, fields)] = raw.xrange(keys.dead(queue.name))
    assert fields[b"reason"] == b"rejected"
    assert json.loads(fields[b"payload"])["properties"]["delivery_info"]["routing_key"] == queue.name
    assert raw.xlen(keys.stream(queue.name)) == 0
    assert quiet(conn, queue) == []


def test_reject_goes_to_the_dead_letter_exchange(conn: Connection) -> None:
    tag = uuid.uuid4().hex[:6]
    dlx = Exchange(f"dlx-{tag}", type="direct")
    dead = Queue(f"dead-{tag}", dlx, routing_key="failed")
    queue = Queue(
        f"work-{tag}", queue_arguments={"x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "failed"}
    )
    dead(conn.default_channel).declare()
    conn.Producer().publish({"n": 1}, routing_key=queue.name, declare=[queue])
    [message] = collect(conn, queue, 1, ack=False)
    message.reject()
    [again] = collect(conn, dead, 1)
    assert again.payload == {"n": 1}
    assert again.headers["x-death"][0]["queue"] == queue.name
    assert again.delivery_info["routing_key"] == "failed"
    assert quiet(conn, queue) == []


def test_max_length_drops_from_the_head(conn: Connection) -> None:
    queue = Queue(f"maxlen-{uuid.uuid4().hex[:6]}", max_length=3)
    producer = conn.Producer()
    for n in range(5):
        producer.publish(n, routing_key=queue.name, declare=[queue])
    assert queue(conn.default_channel).queue_declare(passive=True).message_count == 3
    assert sorted(m.payload for m in collect(conn, queue, 3)) == [2, 3, 4]


def test_max_length_keeps_messages_in_flight(conn: Connection) -> None:
    queue = Queue(f"maxlen-flight-{uuid.uuid4().hex[:6]}", max_length=1)
    producer = conn.Producer()
    producer.publish("held", routing_key=queue.name, declare=[queue])
    [held] = collect(conn, queue, 1, ack=False)
    for n in range(3):
        producer.publish(n, routing_key=queue.name)
    held.requeue()  # still in the stream: it comes back, at the tail
    got = [m.payload for m in collect(conn, queue, 1)]
    assert got == [2]
    assert [m.payload for m in collect(conn, queue, 1)] == ["held"]


def test_requeue_goes_to_the_tail_marked_redelivered(conn: Connection) -> None:
    queue = Queue(f"tail-{uuid.uuid4().hex[:6]}")
    producer = conn.Producer()
    for label in ("a", "b"):
        producer.publish(label, routing_key=queue.name, declare=[queue])
    channel = conn.channel()
    first = queue(channel).get()
    assert first is not None and first.payload == "a"
    first.requeue()
    received = collect(conn, queue, 2)
    assert [(m.payload, bool(m.redelivered)) for m in received] == [("b", False), ("a", True)]


def test_counts_leave_out_messages_in_flight_and_purge_keeps_them(
    conn: Connection, raw: redis.Redis, prefix: str
) -> None:
    queue = Queue(f"count-{uuid.uuid4().hex[:6]}")
    producer = conn.Producer()
    for n in range(4):
        producer.publish(n, routing_key=queue.name, declare=[queue])
    bound = queue(conn.channel())
    held = bound.get()
    assert held is not None
    assert bound.queue_declare(passive=True).message_count == 3
    assert bound.purge() == 3
    assert bound.queue_declare(passive=True).message_count == 0
    held.ack()  # its entry survived the purge and goes now
    assert raw.xlen(StreamKeys(prefix).stream(queue.name)) == 0


def test_acked_entries_leave_the_stream(conn: Connection, raw: redis.Redis, prefix: str) -> None:
    queue = Queue(f"shrink-{uuid.uuid4().hex[:6]}", max_priority=3)
    producer = conn.Producer()
    for n in range(20):
        producer.publish(n, routing_key=queue.name, declare=[queue], priority=n % 4)
    assert len(collect(conn, queue, 20)) == 20
    keys = StreamKeys(prefix)
    assert [raw.xlen(stream) for stream in keys.streams(queue.name, 3)] == [0, 0, 0, 0]


def test_published_before_declared_is_delivered(conn: Connection) -> None:
    queue = Queue(f"early-{uuid.uuid4().hex[:6]}")
    conn.Producer().publish("early", routing_key=queue.name)
    [message] = collect(conn, queue, 1)
    assert message.payload == "early"


def test_fanout_copies_reach_queues_nobody_consumes(conn: Connection) -> None:
    tag = uuid.uuid4().hex[:6]
    exchange = Exchange(f"fan-{tag}", type="fanout")
    queues = [Queue(f"fan-{tag}-{n}", exchange) for n in range(3)]
    for queue in queues:
        queue(conn.default_channel).declare()
    conn.Producer().publish({"all": 1}, exchange=exchange, routing_key="ignored")
    for queue in queues:
        assert [m.payload for m in collect(conn, queue, 1)] == [{"all": 1}]


def test_binding_made_by_another_connection_routes_the_next_publish(redis_url: str, prefix: str) -> None:
    url = redis_url.replace("redis://", "redis+streams://", 1)
    options: dict[str, Any] = {"global_keyprefix": prefix}
    tag = uuid.uuid4().hex[:6]
    exchange = Exchange(f"topic-{tag}", type="topic")
    queue = Queue(f"topic-{tag}", exchange, routing_key="a.#")
    with Connection(url, transport_options=options) as publisher, Connection(url, transport_options=options) as other:
        producer = publisher.Producer()
        producer.publish("nowhere", exchange=exchange, routing_key="a.b", declare=[exchange])
        queue(other.default_channel).declare()
        producer.publish("routed", exchange=exchange, routing_key="a.b")
        assert [m.payload for m in collect(other, queue, 1)] == ["routed"]


def test_queue_ttl_trims_what_nobody_reads(conn: Connection, raw: redis.Redis, prefix: str) -> None:
    queue = Queue(f"ttl-trim-{uuid.uuid4().hex[:6]}", message_ttl=0.05)
    producer = conn.Producer()
    for n in range(300):
        producer.publish(n, routing_key=queue.name, declare=[queue] if n == 0 else [])
    time.sleep(1.2)  # past the TTL and the trim margin
    producer.publish("fresh", routing_key=queue.name)
    stream = StreamKeys(prefix).stream(queue.name)
    left = [fields[b"payload"][:80] for _, fields in raw.xrange(stream)]
    assert len(left) == 1, f"{len(left)} entries left after the trim, the first: {left[:2]}"
    assert [m.payload for m in collect(conn, queue, 1)] == ["fresh"]


def test_acks_kept_during_a_handout_are_written_by_the_next_maintenance_round(
    redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    url = redis_url.replace("redis://", "redis+streams://", 1)
    queue = Queue(f"kept-acks-{uuid.uuid4().hex[:6]}")
    stream = StreamKeys(prefix).stream(queue.name)
    with Connection(url, transport_options={"global_keyprefix": prefix, "lease": 0.6}) as conn:
        producer = conn.Producer()
        for n in range(5):
            producer.publish(n, routing_key=queue.name, declare=[queue])
        got: list[Message] = []
        with conn.Consumer([queue], on_message=lambda m: (got.append(m), m.ack()), prefetch_count=5):  # type: ignore[func-returns-value]
            conn.drain_events(timeout=5)  # one message of a take of five handed out, and acked
            assert len(got) == 1
            deadline = time.monotonic() + 5
            while raw.xlen(stream) != 4:  # the ack goes out with the next round, not the take's end
                assert time.monotonic() < deadline, "the kept ack was not written"
                time.sleep(0.05)
            assert raw.xpending(stream, "kombu_like")["pending"] == 4
            while len(got) < 5:
                conn.drain_events(timeout=5)
        assert raw.xlen(stream) == 0


def test_a_connection_dropped_without_closing_leaves_no_lease_thread(redis_url: str, prefix: str) -> None:
    def lease_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("kombu_like-streams-leases-")}

    before = lease_threads()
    url = redis_url.replace("redis://", "redis+streams://", 1)
    conn = Connection(url, transport_options={"global_keyprefix": prefix, "lease": 0.3})
    queue = Queue(f"dropped-{uuid.uuid4().hex[:6]}")
    assert queue(conn.channel()).get() is None  # a take starts the lease thread
    [thread] = lease_threads() - before
    del conn
    deadline = time.monotonic() + 5
    while thread.is_alive():
        assert time.monotonic() < deadline, "the lease thread kept a dropped connection alive"
        gc.collect()
        thread.join(0.1)


def test_cancelling_a_wait_redis_has_not_read_yet_does_not_wait_it_out(raw: redis.Redis, prefix: str) -> None:
    # CLIENT UNBLOCK answers 0 for a wait Redis has not read yet (here: held by a stalled
    # proxy); the cancel must not then wait for that wait's whole block interval
    from t.faultproxy import FaultProxy

    stream = StreamKeys(prefix).stream("cancel")
    with FaultProxy("127.0.0.1", 6379) as proxy:
        pool = redis.ConnectionPool(host="127.0.0.1", port=proxy.port, socket_timeout=30)
        watcher = Watcher(pool.make_connection, lambda client_id: raw.client_unblock(client_id), 20_000)
        try:
            assert watcher.socket() is not None  # connected (CLIENT ID answered)
            proxy.stall()
            watcher.arm([stream], ["0-0"])  # the wait is sent: the proxy holds it
            started = time.monotonic()
            watcher.cancel()
            assert time.monotonic() - started < 2, "the cancel waited for the stalled wait"
            assert watcher.armed is None
        finally:
            proxy.stall(False)
            watcher.close()
            pool.disconnect()
