"""Messages between Kombu 5.7 and kombu_like over the same RabbitMQ, in both directions.

Each test publishes with one library and consumes with the other; bodies, headers and
properties must arrive equal, for every serializer and compression method they share.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu  # a test dependency: pip install "kombu==5.7.*"
import kombu.compression
import pytest

import kombu_like

pytestmark = [pytest.mark.amqp, pytest.mark.interop]

LIBRARIES = {"kombu": kombu, "kombu_like": kombu_like}
DIRECTIONS = [("kombu", "kombu_like"), ("kombu_like", "kombu")]

BODIES: dict[str, tuple[Any, dict[str, Any]]] = {
    "json": ({"text": "h\u00e9llo \u2603", "n": 42, "f": 2.5, "items": [1, None, True]}, {"serializer": "json"}),
    "msgpack": ({"text": "h\u00e9llo", "n": 42, "raw": [1, 2, 3]}, {"serializer": "msgpack"}),
    "yaml": ({"text": "h\u00e9llo", "n": 42, "nested": {"a": [1, 2]}}, {"serializer": "yaml"}),
    "raw": (bytes(range(256)), {"content_type": "application/octet-stream", "content_encoding": "binary"}),
}
ACCEPT = ["json", "msgpack", "yaml", "application/octet-stream"]
COMPRESSIONS = [None, "zlib", "bzip2", "zstd"]


def _consume(lib: Any, url: str, queue_name: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
    """Consume ``count`` messages with ``lib`` (one at a time, in queue order); return
    ``(decoded body, headers, properties, content type)`` for each."""
    got: list[tuple[Any, Any, Any, Any]] = []
    with lib.Connection(url) as conn:
        queue = lib.Queue(queue_name, durable=False, max_priority=10)

        def on_message(body: Any, message: Any) -> None:
            got.append((body, dict(message.headers or {}), dict(message.properties), message.content_type))
            message.ack()

        with lib.Consumer(conn, [queue], callbacks=[on_message], accept=ACCEPT, prefetch_count=1):
            deadline = time.monotonic() + timeout
            while len(got) < count:
                if time.monotonic() > deadline:
                    pytest.fail(f"{lib.__name__} received {len(got)} of {count} on {queue_name} within {timeout}s")
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    continue
    return got


def _consume_one(lib: Any, url: str, queue_name: str) -> Any:
    [one] = _consume(lib, url, queue_name, 1)
    return one


def _publish(lib: Any, url: str, queue_name: str, body: Any, **kwargs: Any) -> None:
    with lib.Connection(url) as conn:
        queue = lib.Queue(queue_name, durable=False, max_priority=10)
        producer = lib.Producer(conn)
        producer.publish(body, routing_key=queue_name, declare=[queue], **kwargs)


@pytest.fixture
def queue_name(amqp_url: str) -> Iterator[str]:
    name = f"interop-{uuid.uuid4().hex[:10]}"
    yield name
    with kombu_like.Connection(amqp_url) as conn:
        conn.default_channel.queue_delete(name)


def _names(direction: tuple[str, str]) -> str:
    return f"{direction[0]}-to-{direction[1]}"


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_names)
@pytest.mark.parametrize("kind", sorted(BODIES))
def test_bodies(amqp_url: str, queue_name: str, direction: tuple[str, str], kind: str) -> None:
    sender, receiver = (LIBRARIES[name] for name in direction)
    body, options = BODIES[kind]
    _publish(sender, amqp_url, queue_name, body, **options)
    received, _, _, content_type = _consume_one(receiver, amqp_url, queue_name)
    if kind == "raw":
        assert received == body
        assert content_type == "application/octet-stream"
    else:
        assert received == body


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_names)
@pytest.mark.parametrize("compression", COMPRESSIONS[1:])
def test_compression(amqp_url: str, queue_name: str, direction: tuple[str, str], compression: str) -> None:
    if compression == "zstd" and "application/zstd" not in kombu.compression.encoders():
        pytest.fail('Kombu 5.7 needs "backports.zstd" for zstd on Python < 3.14: pip install backports-zstd')
    sender, receiver = (LIBRARIES[name] for name in direction)
    body = {"data": "abc" * 3000, "text": "\u00e9\u2603"}
    _publish(sender, amqp_url, queue_name, body, serializer="json", compression=compression)
    received, headers, _, _ = _consume_one(receiver, amqp_url, queue_name)
    assert received == body
    expected = {"zlib": "application/x-gzip", "bzip2": "application/x-bz2", "zstd": "application/zstd"}
    assert headers["compression"] == expected[compression]


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_names)
def test_headers_priority_and_properties(amqp_url: str, queue_name: str, direction: tuple[str, str]) -> None:
    sender, receiver = (LIBRARIES[name] for name in direction)
    headers = {"str": "v\u00e9", "int": 7, "bool": True, "list": [1, "two"], "nested": {"k": "v"}}
    _publish(
        sender,
        amqp_url,
        queue_name,
        {"p": 1},
        headers=dict(headers),
        priority=7,
        correlation_id="corr-9",
        reply_to="replies",
        message_id="mid-9",
        app_id="interop",
        type="kind.x",
        expiration=60,
        delivery_mode=1,
    )
    received, got_headers, props, content_type = _consume_one(receiver, amqp_url, queue_name)
    assert received == {"p": 1}
    assert content_type == "application/json"
    for key, value in headers.items():
        assert got_headers[key] == value
    assert props["priority"] == 7
    assert props["delivery_mode"] == 1
    assert props["expiration"] == "60000"
    for key, value in {
        "correlation_id": "corr-9",
        "reply_to": "replies",
        "message_id": "mid-9",
        "app_id": "interop",
        "type": "kind.x",
    }.items():
        assert props[key] == value


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_names)
def test_priority_order_across_libraries(amqp_url: str, queue_name: str, direction: tuple[str, str]) -> None:
    sender, receiver = (LIBRARIES[name] for name in direction)
    for priority in (1, 9, 4):
        _publish(sender, amqp_url, queue_name, priority, priority=priority)
    received = _consume(receiver, amqp_url, queue_name, 3)
    assert [body for body, *_ in received] == [9, 4, 1]


def test_kombu_simple_queue_to_kombu_like_simple_queue(amqp_url: str, queue_name: str) -> None:
    with kombu.Connection(amqp_url) as conn:
        with conn.SimpleQueue(queue_name, queue_opts={"durable": False}, exchange_opts={"durable": False}) as queue:
            queue.put({"simple": True})
    with kombu_like.Connection(amqp_url) as conn:
        with conn.SimpleQueue(queue_name, queue_opts={"durable": False}, exchange_opts={"durable": False}) as queue:
            message = queue.get(timeout=10)
            assert message.payload == {"simple": True}
            message.ack()
    with kombu_like.Connection(amqp_url) as conn:
        conn.default_channel.exchange_delete(queue_name)


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_names)
def test_large_body_spanning_many_frames(amqp_url: str, queue_name: str, direction: tuple[str, str]) -> None:
    sender, receiver = (LIBRARIES[name] for name in direction)
    body = bytes(range(256)) * 4096 * 3  # 3 MiB: many frames of frame_max each
    _publish(sender, amqp_url, queue_name, body, content_type="application/octet-stream", content_encoding="binary")
    received, *_ = _consume_one(receiver, amqp_url, queue_name)
    assert received == body


@pytest.mark.parametrize("direction", DIRECTIONS, ids=_names)
def test_text_made_by_exchange_message(amqp_url: str, queue_name: str, direction: tuple[str, str]) -> None:
    """``exchange.publish(exchange.Message(text))``: no serializer, the text goes out as utf-8."""
    sender, receiver = (LIBRARIES[name] for name in direction)
    with sender.Connection(amqp_url) as conn:
        queue = sender.Queue(queue_name, durable=False, max_priority=10)
        queue(conn.default_channel).declare()
        exchange = sender.Exchange("", channel=conn.default_channel)
        exchange.publish(exchange.Message("h\u00e9llo \u2603"), routing_key=queue_name)
    received, _, props, content_type = _consume_one(receiver, amqp_url, queue_name)
    assert received == "h\u00e9llo \u2603"
    assert props["content_encoding"] == "utf-8" and content_type is None
