"""Kombu 5.7 and kombu_like on one Redis: each consumes what the other publishes.

Every test runs in both directions (``kombu -> kombu_like`` and ``kombu_like -> kombu``):
direct and topic routing (bindings made by the consuming side), fanout over pub/sub,
priorities, headers and properties, compression, ``global_keyprefix``, batches, and a
consumer killed with SIGKILL whose message the other library restores.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import kombu
import pytest
import redis

import kombu_like

pytestmark = [pytest.mark.redis, pytest.mark.interop]

LIBS = {"kombu": kombu, "kombu_like": kombu_like}
DIRECTIONS = [("kombu", "kombu_like"), ("kombu_like", "kombu")]


@pytest.fixture(params=DIRECTIONS, ids=["kombu-to-kombu_like", "kombu_like-to-kombu"])
def libs(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(publishing library, consuming library)."""
    publisher, consumer = request.param
    return LIBS[publisher], LIBS[consumer]


@pytest.fixture
def cleanup(redis_url: str, unique_name: str) -> Iterator[None]:
    """Delete every key the test's unique name appears in (queues, bindings, prefixes)."""
    yield
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"*{unique_name}*"):
        client.delete(key)
    client.close()


def consume(
    lib: ModuleType,
    url: str,
    queues: list[Any],
    count: int,
    timeout: float = 10.0,
    before: Callable[[], None] | None = None,
    transport_options: dict[str, Any] | None = None,
    prefetch_count: int | None = None,
    accept: list[str] | None = None,
) -> list[tuple[Any, Any]]:
    """Consume ``count`` messages with ``lib`` (any broker; ``accept`` defaults to json);
    ``before`` runs once the consumer listens."""
    received: list[tuple[Any, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        received.append((body, message))
        message.ack()

    with lib.Connection(url, transport_options=transport_options or {}) as conn:
        kwargs: dict[str, Any] = {"callbacks": [on_message], "accept": accept or ["json"]}
        if prefetch_count is not None:
            kwargs["prefetch_count"] = prefetch_count
        with conn.Consumer(queues, **kwargs):
            if before is not None:
                # one empty wait lets a Kombu consumer send its PSUBSCRIBE before we publish
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.3)
                before()
            deadline = time.monotonic() + timeout
            while len(received) < count and time.monotonic() < deadline:
                # short waits: Kombu's synchronous consumer only sweeps for overdue unacked
                # messages when a wait ends before its one-second BRPOP does
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=min(max(deadline - time.monotonic(), 0.01), 0.5))
            # nothing more may arrive than was expected
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.2)
    return received


def test_direct_with_headers_and_properties(
    libs: tuple[ModuleType, ModuleType], redis_url: str, unique_name: str, cleanup: None
) -> None:
    pub, sub = libs
    with pub.Connection(redis_url) as conn:
        exchange = pub.Exchange(unique_name, type="direct")
        queue = pub.Queue(unique_name, exchange, routing_key="rk")
        producer = conn.Producer()
        producer.publish(
            {"n": 1, "text": "h\u00e9llo"},
            exchange=exchange,
            routing_key="rk",
            declare=[queue],
            headers={"h": "v", "list": [1, "two"], "nested": {"a": None}},
            correlation_id="corr-1",
            reply_to="replies",
            message_id="mid-1",
        )
        producer.publish({"n": 2}, exchange=exchange, routing_key="other")
    sub_queue = sub.Queue(unique_name, sub.Exchange(unique_name, type="direct"), routing_key="rk")
    [(body, message)] = consume(sub, redis_url, [sub_queue], 1)
    assert body == {"n": 1, "text": "h\u00e9llo"}
    assert message.headers["h"] == "v"
    assert message.headers["list"] == [1, "two"]
    assert message.headers["nested"] == {"a": None}
    assert message.properties["correlation_id"] == "corr-1"
    assert message.properties["reply_to"] == "replies"
    assert message.properties["message_id"] == "mid-1"
    assert message.delivery_info["exchange"] == unique_name
    assert message.delivery_info["routing_key"] == "rk"
    assert not message.delivery_info.get("redelivered")


def test_topic_bindings_made_by_the_consumer(
    libs: tuple[ModuleType, ModuleType], redis_url: str, unique_name: str, cleanup: None
) -> None:
    pub, sub = libs
    sub_exchange = sub.Exchange(unique_name, type="topic")
    star = sub.Queue(f"{unique_name}.star", sub_exchange, routing_key="stock.*.nyse")
    hashed = sub.Queue(f"{unique_name}.hash", sub_exchange, routing_key="stock.#")
    with sub.Connection(redis_url) as conn:
        for queue in (star, hashed):
            queue(conn.default_channel).declare()
    with pub.Connection(redis_url) as conn:
        producer = conn.Producer(exchange=pub.Exchange(unique_name, type="topic"))
        for key in ("stock.ibm.nyse", "stock.ibm.nasdaq", "bond.x.nyse", "stock.sap.x.nyse"):
            producer.publish({"key": key}, routing_key=key)
    got_star = consume(sub, redis_url, [star], 1)
    got_hash = consume(sub, redis_url, [hashed], 3)
    assert [body["key"] for body, _ in got_star] == ["stock.ibm.nyse"]
    assert sorted(body["key"] for body, _ in got_hash) == ["stock.ibm.nasdaq", "stock.ibm.nyse", "stock.sap.x.nyse"]


def test_fanout_over_pubsub(
    libs: tuple[ModuleType, ModuleType], redis_url: str, unique_name: str, cleanup: None
) -> None:
    pub, sub = libs
    # one queue per consuming connection: Kombu delivers a fanout exchange's messages to
    # a single queue per channel
    queue = sub.Queue(unique_name, sub.Exchange(unique_name, type="fanout"), routing_key="")

    def publish() -> None:
        with pub.Connection(redis_url) as conn:
            producer = conn.Producer(exchange=pub.Exchange(unique_name, type="fanout"))
            producer.publish({"to": "all"}, routing_key="")

    received = consume(sub, redis_url, [queue], 1, before=publish)
    assert [body for body, _ in received] == [{"to": "all"}]
    assert received[0][1].delivery_info["exchange"] == unique_name
    # pub/sub fanout is not stored: nothing waits in the queue afterwards
    client = redis.Redis.from_url(redis_url)
    assert client.llen(unique_name) == 0
    client.close()


@pytest.mark.parametrize(
    "options",
    # Kombu wants a custom prefix with a leading slash and a single, trailing dot
    [{"fanout_prefix": False, "fanout_patterns": False}, {"fanout_prefix": "/custom{db}.", "fanout_patterns": True}],
    ids=["no-prefix-no-patterns", "custom-prefix"],
)
def test_fanout_channel_options(
    libs: tuple[ModuleType, ModuleType], options: dict[str, Any], redis_url: str, unique_name: str, cleanup: None
) -> None:
    pub, sub = libs
    # both libraries must name the same pub/sub channel for these options, or nothing
    # arrives; Kombu's own naming is the reference
    queue = sub.Queue(unique_name, sub.Exchange(unique_name, type="fanout"), routing_key="")

    def publish() -> None:
        with pub.Connection(redis_url, transport_options=options) as conn:
            conn.Producer(exchange=pub.Exchange(unique_name, type="fanout")).publish({"opt": 1}, routing_key="")

    received = consume(sub, redis_url, [queue], 1, before=publish, transport_options=options)
    assert [body for body, _ in received] == [{"opt": 1}]


def test_priorities_follow_kombus_order(
    libs: tuple[ModuleType, ModuleType], redis_url: str, unique_name: str, cleanup: None
) -> None:
    pub, sub = libs
    with pub.Connection(redis_url) as conn:
        queue = pub.Queue(unique_name, routing_key=unique_name)
        producer = conn.Producer()
        for priority in (9, 0, 6, 3, 1):
            producer.publish({"p": priority}, routing_key=unique_name, declare=[queue], priority=priority)
    client = redis.Redis.from_url(redis_url)
    # one list per priority step, named as Kombu names them
    assert client.llen(unique_name) == 2
    for step in (3, 6, 9):
        assert client.llen(f"{unique_name}\x06\x16{step}") == 1
    client.close()
    received = consume(sub, redis_url, [sub.Queue(unique_name, routing_key=unique_name)], 5, prefetch_count=1)
    assert [body["p"] for body, _ in received] == [0, 1, 3, 6, 9]


@pytest.mark.parametrize("method", ["zlib", "bzip2", "lzma"])
def test_compression(
    libs: tuple[ModuleType, ModuleType], method: str, redis_url: str, unique_name: str, cleanup: None
) -> None:
    pub, sub = libs
    body = {"data": "abc" * 500, "method": method}
    with pub.Connection(redis_url) as conn:
        queue = pub.Queue(unique_name, routing_key=unique_name)
        conn.Producer().publish(body, routing_key=unique_name, declare=[queue], compression=method)
    [(got, message)] = consume(sub, redis_url, [sub.Queue(unique_name, routing_key=unique_name)], 1)
    assert got == body
    assert (
        message.headers["compression"]
        == {
            "zlib": "application/x-gzip",
            "bzip2": "application/x-bz2",
            "lzma": "application/x-lzma",
        }[method]
    )


def test_global_keyprefix(libs: tuple[ModuleType, ModuleType], redis_url: str, unique_name: str, cleanup: None) -> None:
    pub, sub = libs
    options = {"global_keyprefix": f"{unique_name}:"}
    with pub.Connection(redis_url, transport_options=options) as conn:
        exchange = pub.Exchange(f"{unique_name}.ex", type="direct")
        queue = pub.Queue(f"{unique_name}.q", exchange, routing_key="k")
        conn.Producer().publish({"prefixed": True}, exchange=exchange, routing_key="k", declare=[queue])
    client = redis.Redis.from_url(redis_url)
    assert client.llen(f"{unique_name}:{unique_name}.q") == 1
    assert client.exists(f"{unique_name}:_kombu.binding.{unique_name}.ex")
    assert not client.exists(f"{unique_name}.q")
    client.close()
    sub_queue = sub.Queue(f"{unique_name}.q", sub.Exchange(f"{unique_name}.ex", type="direct"), routing_key="k")
    [(body, _)] = consume(sub, redis_url, [sub_queue], 1, transport_options=options)
    assert body == {"prefixed": True}


def test_batch_publish_reaches_the_other_library(redis_url: str, unique_name: str, cleanup: None) -> None:
    with kombu_like.Connection(redis_url) as conn:
        queue = kombu_like.Queue(unique_name, routing_key=unique_name)
        producer = conn.Producer()
        producer.maybe_declare(queue)
        with producer.batch():
            for n in range(50):
                producer.publish({"n": n}, routing_key=unique_name)
    received = consume(kombu, redis_url, [kombu.Queue(unique_name, routing_key=unique_name)], 50)
    assert [body["n"] for body, _ in received] == list(range(50))


# -- a consumer killed with SIGKILL: the other library restores its message -------------

CHILD = """
import sys, time
import {lib} as lib

queue = lib.Queue({queue!r}, routing_key={queue!r})
with lib.Connection({url!r}, transport_options={{"visibility_timeout": 3600, **{options!r}}}) as conn:
    def on_message(body, message):
        print("got", body["n"], flush=True)
        time.sleep(60)  # killed here, never acks

    with conn.Consumer([queue], callbacks=[on_message], accept=["json"]):
        conn.drain_events(timeout=20)
"""


def run_and_kill_consumer(lib_name: str, url: str, queue: str, options: dict[str, Any] | None = None) -> int:
    """Start a consumer of ``queue`` in a child process; SIGKILL it once it holds a message."""
    code = textwrap.dedent(CHILD.format(lib=lib_name, queue=queue, url=url, options=options or {}))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("got"):
            proc.kill()
            errors = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the child consumer did not get the message: {line!r} {errors}")
        return int(line.split()[1])
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("dead,restorer", DIRECTIONS, ids=["kombu_like-restores-kombu", "kombu-restores-kombu_like"])
def test_unacked_message_of_a_killed_consumer_is_restored(
    dead: str, restorer: str, redis_url: str, unique_name: str, cleanup: None
) -> None:
    # both libraries under a key prefix of this test's own: the short visibility timeout
    # below must not give back messages other tests on the same Redis hold, and Kombu's
    # default unacked key names are still the ones both sides use (under the prefix)
    prefix = f"{unique_name}:"
    own = {"global_keyprefix": prefix}
    with kombu_like.Connection(redis_url, transport_options=own) as conn:
        queue = kombu_like.Queue(unique_name, routing_key=unique_name)
        conn.Producer().publish({"n": 7}, routing_key=unique_name, declare=[queue])
    assert run_and_kill_consumer(dead, redis_url, unique_name, own) == 7
    client = redis.Redis.from_url(redis_url)
    assert client.llen(prefix + unique_name) == 0, "the message should be held unacked by the killed consumer"
    held = [tag for tag, value in client.hscan_iter(prefix + "unacked") if unique_name.encode() in value]
    assert len(held) == 1
    client.close()
    lib = LIBS[restorer]
    options = {"visibility_timeout": 1, "unacked_restore_interval": 0.2, "unacked_restore_throttle": 1, **own}
    queue = lib.Queue(unique_name, routing_key=unique_name)
    received = consume(lib, redis_url, [queue], 1, 15, transport_options=options)
    assert [body for body, _ in received] == [{"n": 7}]
    assert received[0][1].delivery_info.get("redelivered") is True
    client = redis.Redis.from_url(redis_url)
    assert not client.hexists(prefix + "unacked", held[0])
    assert client.zscore(prefix + "unacked_index", held[0]) is None
    client.close()


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_plain_publishes_reach_kombu_as_its_own_do(
    redis_url: str, unique_name: str, cleanup: None, serializer: str
) -> None:
    # a plain message (no headers, priority or property but delivery_mode) skips building
    # an envelope on kombu_like: Kombu must read it as it reads the same message of its own
    exchange_name = f'{unique_name}-x\u00e9"q'
    seen: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    queue_name = f"{unique_name}-q"
    for name, lib in LIBS.items():  # one after the other, on the same queue and route
        exchange = lib.Exchange(exchange_name, type="direct")
        queue = lib.Queue(queue_name, exchange, routing_key="rk")
        with lib.Connection(redis_url) as conn:
            queue(conn.default_channel).declare()
            producer = conn.Producer(exchange=exchange, routing_key="rk", serializer=serializer, auto_declare=False)
            for mode in (2, 1, "transient"):
                producer.publish({"n": mode, "text": 'h\u00e9llo "q" \\'}, delivery_mode=mode)
        kombu_queue = kombu.Queue(queue_name, kombu.Exchange(exchange_name, type="direct"), routing_key="rk")
        got = consume(kombu, redis_url, [kombu_queue], 3, accept=[serializer])
        seen[name] = [
            (
                body,
                {
                    "content_type": message.content_type,
                    "content_encoding": message.content_encoding,
                    "headers": message.headers,
                    "properties": {k: v for k, v in message.properties.items() if k != "delivery_tag"},
                    "delivery_info": {k: message.delivery_info.get(k) for k in ("exchange", "redelivered")},
                },
            )
            for body, message in got
        ]
    assert len(seen["kombu_like"]) == 3
    assert seen["kombu_like"] == seen["kombu"]
