"""The Redis Streams transport's hot path on its own RESP connection: acknowledgements
written behind are settled when the connection closes, survive a cut (resent, or their
messages come back: at-least-once), and the Lua scripts of publishes and takes are loaded
again after the server's script cache is flushed."""
# ruff: noqa: F401, F811 - the fixtures of streams_fixtures are imported and taken as parameters

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from kombu_like import Connection, Exchange, Message, Queue
from kombu_like.exceptions import ChannelError
from kombu_like.transport.redis_streams import StreamKeys
from t.faultproxy import FaultProxy
from t.integration.streams_fixtures import prefix
from t.integration.test_redis_servers import redis_server

pytestmark = pytest.mark.redis

LEASE = 1.0


def streams_url(url: str) -> str:
    return url.replace("redis://", "redis+streams://", 1)


def publish(url: str, opts: dict[str, Any], queue: Queue, bodies: list[Any]) -> None:
    with Connection(url, transport_options=opts) as conn:
        producer = conn.Producer()
        for body in bodies:
            producer.publish(body, routing_key=queue.name, declare=[queue], serializer="json")


def drain(conn: Connection, queue: Queue, until: Any, seconds: float, ack: bool = True) -> list[Any]:
    got: list[Any] = []

    def on_message(message: Message) -> None:
        got.append(message.payload)
        if ack:
            message.ack()

    deadline = time.monotonic() + seconds
    with conn.Consumer([queue], on_message=on_message, prefetch_count=100, accept=["json"]):
        while not until(got) and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    return got


def test_acks_written_behind_are_settled_when_the_connection_closes(redis_url: str, prefix: str) -> None:
    url, opts = streams_url(redis_url), {"global_keyprefix": prefix}
    queue = Queue(f"behind-{uuid.uuid4().hex[:6]}")
    bodies = list(range(150))
    publish(url, opts, queue, bodies)
    with Connection(url, transport_options=opts) as conn:
        got = drain(conn, queue, lambda g: len(g) >= len(bodies), 10.0)
    assert got == bodies
    raw = redis.Redis.from_url(redis_url)
    stream = StreamKeys(prefix).stream(queue.name)
    # every ack reached Redis: nothing pending, nothing left in the stream
    assert raw.xpending(stream, "kombu_like")["pending"] == 0
    assert raw.xlen(stream) == 0
    raw.close()


def test_acks_cut_before_their_replies_came_lose_no_message(redis_url: str, prefix: str) -> None:
    url, opts = streams_url(redis_url), {"global_keyprefix": prefix, "lease": LEASE, "socket_timeout": 5}
    queue = Queue(f"cutacks-{uuid.uuid4().hex[:6]}")
    bodies = list(range(20))
    publish(url, opts, queue, bodies)
    got: list[Any] = []
    with FaultProxy("127.0.0.1", 6379) as proxy:
        with Connection(proxy.url_for(url), transport_options=opts) as conn:

            def on_message(message: Message) -> None:
                got.append(message.payload)
                message.ack()
                if len(got) == len(bodies):
                    proxy.stall()  # the acks of the take are written after this one: held back

            with conn.Consumer([queue], on_message=on_message, prefetch_count=100, accept=["json"]):
                while len(got) < len(bodies):
                    conn.drain_events(timeout=5)
                proxy.cut()  # the acks die with the connection
                proxy.stall(False)
        # the cancel or the close sent what the cut lost again; had they not, the leases
        # would lapse
    assert got == bodies
    with Connection(url, transport_options=opts) as again:
        raw = redis.Redis.from_url(redis_url)
        stream = StreamKeys(prefix).stream(queue.name)
        back = drain(again, queue, lambda g: raw.xlen(stream) == 0, LEASE + 6.0)
        assert set(back) <= set(bodies)  # at most redelivered, never lost
        assert raw.xlen(stream) == 0
        assert raw.xpending(stream, "kombu_like")["pending"] == 0
        raw.close()


def test_scripts_are_loaded_again_after_the_script_cache_is_flushed(tmp_path: Path) -> None:
    with redis_server(tmp_path / "flush") as port:
        url = f"redis+streams://127.0.0.1:{port}/0"
        queue = Queue("limited", routing_key="limited", queue_arguments={"x-max-length": 3})
        raw = redis.Redis(port=port)
        with Connection(url) as conn:
            producer = conn.Producer()
            producer.publish({"n": 0}, routing_key="limited", declare=[queue], serializer="json")
            raw.script_flush()  # the max-length script is gone from the server
            for n in range(1, 5):
                producer.publish({"n": n}, routing_key="limited", serializer="json")
            raw.script_flush()  # and so is the take script
            got = drain(conn, queue, lambda g: len(g) >= 3, 5.0)
        # x-max-length 3 dropped the two oldest
        assert got == [{"n": 2}, {"n": 3}, {"n": 4}]
        raw.close()


def test_cached_bindings_follow_changes_made_by_another_connection(redis_url: str, prefix: str) -> None:
    url, opts = streams_url(redis_url), {"global_keyprefix": prefix}
    tag = uuid.uuid4().hex[:6]
    exchange = Exchange(f"cached-{tag}", type="direct")
    first = Queue(f"first-{tag}", exchange, routing_key="k")
    second = Queue(f"second-{tag}", exchange, routing_key="k")
    with Connection(url, transport_options=opts) as publisher, Connection(url, transport_options=opts) as other:
        producer = publisher.Producer()
        first(publisher.default_channel).declare()
        for n in range(3):  # routed from the cache after the first
            producer.publish(n, exchange=exchange, routing_key="k", serializer="json")
        bound = first(other.default_channel)
        bound.unbind_from(exchange, routing_key="k")
        second(other.default_channel).declare()
        producer.publish("moved", exchange=exchange, routing_key="k", serializer="json")
        assert drain(other, first, lambda g: len(g) >= 3, 5.0) == [0, 1, 2]
        assert drain(other, second, lambda g: len(g) >= 1, 5.0) == ["moved"]
        assert other.default_channel.queue_declare(first.name, passive=True).message_count == 0


def test_runs_on_redis_pys_own_resp2_parser(redis_url: str, prefix: str) -> None:
    # without hiredis redis-py parses RESP2 in Python, and its pools set up maintenance
    # notifications that only a RESP3 or hiredis parser takes: the transport's own
    # connections (hot path, invalidations) must not inherit that from the pool
    from redis._parsers import _RESP2Parser

    exchange = Exchange(f"x-{uuid.uuid4().hex[:6]}", type="direct")
    queue = Queue(f"resp2-{uuid.uuid4().hex[:6]}", exchange, routing_key="k")
    options = {"global_keyprefix": prefix, "connection_kwargs": {"parser_class": _RESP2Parser}}
    with Connection(redis_url.replace("redis://", "redis+streams://", 1), transport_options=options) as conn:
        conn.Producer().publish({"n": 1}, exchange=exchange, routing_key="k", declare=[queue])
        message = queue(conn.default_channel).get()
        assert message is not None and message.payload == {"n": 1}
        message.ack()


def test_a_refused_publish_names_its_queue_and_the_connection_goes_on(redis_url: str, prefix: str) -> None:
    # the stream key of one queue holds a string (another program's key): the one-XADD
    # publish of a plain message and the pipelined publish of an expiring one are both
    # refused with an error naming the queue, and the next publish elsewhere is stored
    url, opts = streams_url(redis_url), {"global_keyprefix": prefix}
    broken, fine = Queue(f"broken-{uuid.uuid4().hex[:6]}"), Queue(f"fine-{uuid.uuid4().hex[:6]}")
    with Connection(url, transport_options=opts) as conn:
        producer = conn.Producer()
        fine(conn.default_channel).declare()
        redis.Redis.from_url(redis_url).set(StreamKeys(prefix).stream(broken.name), "not a stream")
        for extra in ({}, {"expiration": 60}):
            with pytest.raises(ChannelError) as raised:
                producer.publish({"n": 1}, routing_key=broken.name, serializer="json", **extra)
            assert broken.name in str(raised.value) and "WRONGTYPE" in str(raised.value)
        producer.publish({"n": 2}, routing_key=fine.name, serializer="json")
        assert drain(conn, fine, lambda got: got, 5) == [{"n": 2}]
